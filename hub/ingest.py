"""Ingest of device events: validate, store each event once, and only then acknowledge to the broker.

paho calls `on_message` on its network thread; acknowledging there (manual_ack) was measured
crawling at a few hundred messages a second, so `on_message` only queues the message. One
writer thread takes whatever is queued, validates it, commits it in one transaction, then
acknowledges every message of the batch. A crash before the commit means no PUBACK, so the
broker delivers again; the unique event id turns the redelivery into a counted duplicate.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

import paho.mqtt.client as mqtt

from hub.store import HubStore
from protocol.envelope import Envelope, format_ts, parse_envelope
from protocol.mqtt import BrokerLogin, build_client, connect
from protocol.presence import parse_status, status_payload
from protocol.topics import Topics

log = logging.getLogger("hub.ingest")

MAX_BATCH = 500


@dataclass
class IngestCounters:
    stored: int = 0
    duplicates: int = 0
    rejected: Counter = field(default_factory=Counter)
    status_updates: int = 0
    batches: int = 0
    acked: int = 0


class Ingest:
    """Owns the hub's MQTT session and its single database writer."""

    def __init__(self, *, store_id: str, login: BrokerLogin, hub_store: HubStore, version: str,
                 topic_prefix: str = "omnikiosk", on_stored: Callable[[list[Envelope]], None] = lambda events: None,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)):
        self.topics = Topics(store_id, topic_prefix)
        self.store_id = store_id
        self.login = login
        self.hub_store = hub_store
        self.version = version
        self.on_stored = on_stored
        self._clock = clock
        self.session = int(clock().timestamp())
        self.client = build_client(
            f"hub-{store_id}", login, will_topic=self.topics.hub_status,
            will_payload=status_payload("offline", session=self.session, version=version, now=clock()),
            manual_ack=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.connected = threading.Event()
        self.counters = IngestCounters()
        self._inbox: "queue.Queue[mqtt.MQTTMessage | None]" = queue.Queue()
        self._writer: threading.Thread | None = None

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            log.error("broker refused the hub", extra={"reason": str(reason_code)})
            return
        # Subscribing again on each connect is harmless with a kept session and needed without one.
        client.subscribe([(self.topics.all_devices("events"), 1), (self.topics.all_devices("status"), 1)])
        client.publish(self.topics.hub_status,
                       status_payload("online", session=self.session, version=self.version, now=self._clock()),
                       qos=1, retain=True)
        self.connected.set()
        log.info("hub connected to broker", extra={"session_present": bool(flags.session_present)})

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self.connected.clear()
        log.warning("hub disconnected from broker", extra={"reason": str(reason_code)})

    def _on_message(self, client, userdata, message):
        self._inbox.put(message)

    def start(self) -> "Ingest":
        self._writer = threading.Thread(target=self._write_forever, name="ingest-writer", daemon=True)
        self._writer.start()
        connect(self.client, self.login)
        self.client.loop_start()
        return self

    def stop(self) -> None:
        info = self.client.publish(self.topics.hub_status,
                                   status_payload("stopped", session=self.session, version=self.version,
                                                  now=self._clock()), qos=1, retain=True)
        if self.connected.is_set():
            info.wait_for_publish(timeout=2.0)
        self.client.disconnect()
        self.client.loop_stop()
        self._inbox.put(None)
        if self._writer:
            self._writer.join(5)

    def _write_forever(self) -> None:
        while True:
            first = self._inbox.get()
            if first is None:
                return
            batch = [first]
            # Take what is already waiting, never wait for more: waiting would hold back acks.
            while len(batch) < MAX_BATCH:
                try:
                    item = self._inbox.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._inbox.put(None)
                    break
                batch.append(item)
            stored = self._write_until_committed(batch)
            for message in batch:
                self.client.ack(message.mid, message.qos)
            self.counters.acked += len(batch)
            if stored:
                try:
                    self.on_stored(stored)
                except Exception:
                    log.exception("post-commit handler failed")

    def _write_until_committed(self, batch: list[mqtt.MQTTMessage]) -> list[Envelope]:
        """Retry a failed commit (a locked or full disk) with backoff; the batch stays unacknowledged,
        so if the hub dies meanwhile the broker delivers it again."""
        delay = 0.5
        while True:
            try:
                return self.write_batch(batch)
            except Exception:
                log.exception("ingest commit failed; retrying", extra={"batch": len(batch), "retry_in_s": delay})
                threading.Event().wait(delay)
                delay = min(delay * 2, 30.0)

    def write_batch(self, batch: list[mqtt.MQTTMessage]) -> list[Envelope]:
        """Validate and commit one batch; returns the newly stored events. Pure of MQTT side effects."""
        received = format_ts(self._clock())
        stored: list[Envelope] = []
        per_device: dict[str, dict[str, int]] = {}
        with self.hub_store.transaction() as db:
            for message in batch:
                where = self.topics.parse_device_topic(message.topic)
                if where is None:
                    self._reject(db, message, "", "bad_topic", "not a device topic of this store", received)
                    continue
                device, leaf = where
                if leaf == "status":
                    status = parse_status(message.payload)
                    if status is None:
                        self._reject(db, message, device, "bad_status", "not a status payload", received)
                    elif db.update_device_status(device, self.store_id, status, received):
                        self.counters.status_updates += 1
                    continue
                envelope = parse_envelope(message.payload, topic_store=self.store_id, topic_device=device)
                if not envelope:
                    self._reject(db, message, device, envelope.reason, envelope.detail, received)
                    continue
                counts = per_device.setdefault(device, {"events": 0, "duplicates": 0, "max_seq": 0, "gaps": 0,
                                                        "last": -1})
                if counts["last"] < 0:
                    counts["last"] = db.device_last_seq(device)
                if db.insert_event(envelope, received):
                    stored.append(envelope)
                    counts["events"] += 1
                    if envelope.seq > counts["last"] + 1 and counts["last"] > 0:
                        counts["gaps"] += envelope.seq - counts["last"] - 1
                    counts["last"] = max(counts["last"], envelope.seq)
                    counts["max_seq"] = max(counts["max_seq"], envelope.seq)
                else:
                    counts["duplicates"] += 1
            for device, counts in per_device.items():
                db.update_device_counts(device, self.store_id, last_seen=received, max_seq=counts["max_seq"],
                                        events=counts["events"], duplicates=counts["duplicates"],
                                        gaps=counts["gaps"])
        self.counters.batches += 1
        self.counters.stored += len(stored)
        self.counters.duplicates += sum(c["duplicates"] for c in per_device.values())
        return stored

    def _reject(self, db: HubStore, message: mqtt.MQTTMessage, device: str, reason: str, detail: str,
                received: str) -> None:
        self.counters.rejected[reason] += 1
        log.warning("rejected message", extra={"topic": message.topic, "reason": reason, "detail": detail,
                                               "size": len(message.payload)})
        db.insert_rejection(topic=message.topic, device=device, reason=reason, detail=detail,
                            size=len(message.payload), received_at=received)
