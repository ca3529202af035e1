"""Ingest of device messages: validate, store each event once, receipt it to its device, and only
then acknowledge to the broker.

paho calls `on_message` on its network thread; acknowledging there (manual_ack) was measured
crawling at a few hundred messages a second, so `on_message` only queues the message. One
writer thread takes whatever is queued, validates it, commits it in one transaction, sends
each device a receipt of the `seq`s now safe (so its outbox may forget them), then
acknowledges every message of the batch. A crash before the commit means no PUBACK, so the
broker delivers again; the unique event id turns the redelivery into a counted duplicate,
and a duplicate is receipted again.

Requests (`requests`) do not go through the writer: they go to the request desk's own
workers, so an answer to a kiosk never waits behind a batch of events.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

import paho.mqtt.client as mqtt

from hub.store import HubStore
from protocol.backoff import Backoff
from protocol.catalog import version_payload
from protocol.envelope import MAX_ENVELOPE_BYTES, Envelope, format_ts, parse_envelope
from protocol.mqtt import BrokerLogin, build_client, connect
from protocol.presence import parse_status, status_payload
from protocol.receipts import receipt_payload
from protocol.topics import Topics

log = logging.getLogger("hub.ingest")

MAX_BATCH = 500
IDLE_TURN_S = 1.0   # the writer turns (and says so to systemd's watchdog) at least this often when idle
SUBSCRIBED_LEAVES = ("events", "status", "telemetry", "requests")


@dataclass
class IngestCounters:
    stored: int = 0
    duplicates: int = 0
    rejected: Counter = field(default_factory=Counter)
    status_updates: int = 0
    telemetry: int = 0
    batches: int = 0
    acked: int = 0
    receipts: int = 0


@dataclass
class BatchOutcome:
    """What one committed batch did: the new events, and per device the seqs to receipt."""

    stored: list[Envelope] = field(default_factory=list)
    safe: dict[str, list[int]] = field(default_factory=dict)       # stored now or before
    refused: dict[str, list[int]] = field(default_factory=dict)    # refused for good (still receipted)


class Ingest:
    """Owns the hub's MQTT session and its single database writer."""

    def __init__(self, *, store_id: str, login: BrokerLogin, hub_store: HubStore, version: str,
                 topic_prefix: str = "omnikiosk", on_stored: Callable[[list[Envelope]], None] = lambda events: None,
                 on_request: Callable[[mqtt.MQTTMessage], None] | None = None,
                 in_commit: Callable[[HubStore, list[Envelope]], None] = lambda db, events: None,
                 catalog_version: Callable[[], int] | None = None, backoff: Backoff | None = None,
                 heartbeat: Callable[[], None] = lambda: None,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)):
        """`heartbeat` is called on every turn of the writer, busy or idle (protocol.sdnotify.Watchdog.tick):
        a writer that stops turning is a hung hub (devices' events pile up unacknowledged), and
        systemd restarts it."""
        self.topics = Topics(store_id, topic_prefix)
        self.store_id = store_id
        self.login = login
        self.hub_store = hub_store
        self.version = version
        self.on_stored = on_stored
        self.on_request = on_request
        self.in_commit = in_commit
        self.catalog_version = catalog_version
        self.heartbeat = heartbeat
        self._clock = clock
        self.session = int(clock().timestamp())
        self.client = build_client(
            f"hub-{store_id}", login, will_topic=self.topics.hub_status,
            will_payload=status_payload("offline", session=self.session, version=version, now=clock()),
            manual_ack=True, backoff=backoff)
        # Receipts and answers to twenty kiosks go out while events come in: a wide window.
        self.client.max_inflight_messages_set(200)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.connected = threading.Event()
        self.counters = IngestCounters()
        self._inbox: "queue.Queue[mqtt.MQTTMessage | None]" = queue.Queue()
        self._writer: threading.Thread | None = None
        self._published_catalog_version: int | None = None

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            log.error("broker refused the hub", extra={"reason": str(reason_code)})
            return
        client.backoff.connected()
        # Subscribing again on each connect is harmless with a kept session and needed without one.
        leaves = SUBSCRIBED_LEAVES if self.on_request else tuple(x for x in SUBSCRIBED_LEAVES if x != "requests")
        client.subscribe([(self.topics.all_devices(leaf), 1) for leaf in leaves])
        # Devices deliver only while this says online: publish it after subscribing, so it proves the session.
        client.publish(self.topics.hub_status,
                       status_payload("online", session=self.session, version=self.version, now=self._clock()),
                       qos=1, retain=True)
        self._published_catalog_version = None
        self.announce_catalog()
        self.connected.set()
        log.info("hub connected to broker", extra={"session_present": bool(flags.session_present)})

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        if self.connected.is_set():
            client.backoff.disconnected()
        self.connected.clear()
        log.warning("hub disconnected from broker", extra={"reason": str(reason_code)})

    def _on_message(self, client, userdata, message):
        if self.on_request is not None and message.topic.endswith("/requests"):
            self.on_request(message)
        else:
            self._inbox.put(message)

    def announce_catalog(self) -> None:
        """Publish the catalog version (retained) when it changed; devices behind it ask for the changes."""
        if self.catalog_version is None:
            return
        version = self.catalog_version()
        if version != self._published_catalog_version:
            self.client.publish(self.topics.catalog_version, version_payload(version), qos=1, retain=True)
            self._published_catalog_version = version
            log.info("catalog version announced", extra={"version": version})

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
            self.heartbeat()
            try:
                first = self._inbox.get(timeout=IDLE_TURN_S)
            except queue.Empty:
                continue
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
            outcome = self._write_until_committed(batch)
            self._send_receipts(outcome)
            for message in batch:
                self.client.ack(message.mid, message.qos)
            self.counters.acked += len(batch)
            if outcome.stored:
                try:
                    self.on_stored(outcome.stored)
                except Exception:
                    log.exception("post-commit handler failed")

    def _send_receipts(self, outcome: BatchOutcome) -> None:
        for device in sorted(set(outcome.safe) | set(outcome.refused)):
            for payload in receipt_payload(hub_session=self.session, stored=outcome.safe.get(device, ()),
                                           rejected=outcome.refused.get(device, ())):
                self.client.publish(self.topics.device(device, "receipts"), payload, qos=1)
                self.counters.receipts += 1

    def _write_until_committed(self, batch: list[mqtt.MQTTMessage]) -> BatchOutcome:
        """Retry a failed commit (a locked or full disk) with backoff; the batch stays unacknowledged,
        so if the hub dies meanwhile the broker delivers it again."""
        delay = 0.5
        while True:
            try:
                return self.write_batch(batch)
            except Exception:
                log.exception("ingest commit failed; retrying", extra={"batch": len(batch), "retry_in_s": delay})
                self.heartbeat()  # retrying a locked or full disk, loudly: degraded, not hung
                threading.Event().wait(delay)
                delay = min(delay * 2, 30.0)

    def write_batch(self, batch: list[mqtt.MQTTMessage]) -> BatchOutcome:
        """Validate and commit one batch. Pure of MQTT side effects."""
        received = format_ts(self._clock())
        outcome = BatchOutcome()
        per_device: dict[str, dict[str, int]] = {}
        telemetry = 0
        with self.hub_store.transaction() as db:
            for message in batch:
                where = self.topics.parse_device_topic(message.topic)
                if where is None:
                    self._reject(db, message, "", "bad_topic", "not a device topic of this store", received)
                    continue
                device, leaf = where
                if leaf == "status":
                    status = parse_status(message.payload)
                    if status is None or not _storable(status.get("version", ""), status.get("ts", "")):
                        self._reject(db, message, device, "bad_status", "not a status payload", received)
                    elif db.update_device_status(device, self.store_id, status, received):
                        self.counters.status_updates += 1
                    continue
                if leaf == "telemetry":
                    report = _telemetry(message.payload, device)
                    if report is None:
                        self._reject(db, message, device, "bad_telemetry", "not a telemetry report of this device",
                                     received)
                    else:
                        db.update_device_telemetry(device, self.store_id, report, received)
                        telemetry += 1
                    continue
                if leaf != "events":
                    self._reject(db, message, device, "bad_topic", f"devices do not publish on {leaf}", received)
                    continue
                envelope = parse_envelope(message.payload, topic_store=self.store_id, topic_device=device)
                if not envelope:
                    self._reject(db, message, device, envelope.reason, envelope.detail, received)
                    seq = _claimed_seq(message.payload)
                    if seq is not None:
                        outcome.refused.setdefault(device, []).append(seq)
                    continue
                counts = per_device.setdefault(device, {"events": 0, "duplicates": 0, "max_seq": 0})
                outcome.safe.setdefault(device, []).append(envelope.seq)
                if db.insert_event(envelope, received):
                    outcome.stored.append(envelope)
                    counts["events"] += 1
                    counts["max_seq"] = max(counts["max_seq"], envelope.seq)
                else:
                    counts["duplicates"] += 1
            for device, counts in per_device.items():
                db.update_device_counts(device, self.store_id, last_seen=received, max_seq=counts["max_seq"],
                                        events=counts["events"], duplicates=counts["duplicates"])
            if outcome.stored:
                # Work that must commit with the events or not at all (a queued online cart line).
                self.in_commit(db, outcome.stored)
        self.counters.batches += 1
        self.counters.stored += len(outcome.stored)
        self.counters.telemetry += telemetry
        self.counters.duplicates += sum(c["duplicates"] for c in per_device.values())
        return outcome

    def _reject(self, db: HubStore, message: mqtt.MQTTMessage, device: str, reason: str, detail: str,
                received: str) -> None:
        self.counters.rejected[reason] += 1
        log.warning("rejected message", extra={"topic": message.topic, "reason": reason, "detail": detail,
                                               "size": len(message.payload)})
        db.insert_rejection(topic=message.topic, device=device, reason=reason, detail=detail,
                            size=len(message.payload), received_at=received)


def _claimed_seq(payload: bytes) -> int | None:
    """The seq a refused envelope names, if it names one: receipted as refused so the device stops
    sending it again (its outbox counts it as rejected_by_hub)."""
    if len(payload) > 4 * MAX_ENVELOPE_BYTES:
        return None
    try:
        obj = json.loads(payload)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    seq = obj.get("seq") if isinstance(obj, dict) else None
    return seq if isinstance(seq, int) and not isinstance(seq, bool) and seq >= 1 else None


def _telemetry(payload: bytes, device: str) -> dict | None:
    if len(payload) > MAX_ENVELOPE_BYTES:
        return None
    try:
        report = json.loads(payload)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(report, dict) or report.get("device") != device or not isinstance(report.get("ts"), str):
        return None
    return report if _storable(report["ts"]) else None


def _storable(*values: object) -> bool:
    """SQLite keeps text as UTF-8, and JSON lets a lone surrogate through ("\\ud800", or bytes json.loads
    decodes with surrogatepass): such text cannot be stored, and would fail the batch's commit forever."""
    try:
        for value in values:
            str(value).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
