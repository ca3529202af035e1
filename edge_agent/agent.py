"""The edge agent: the device's only MQTT client. Drains the outbox in order and announces presence.

Delivery rule: a row leaves the outbox only when the broker's PUBACK for it arrives with
a success code. Anything in flight when the connection or the process dies is published
again; the hub keeps one copy per event id.

A PUBACK only means the broker has the event; it reaches the hub only if the hub's
persistent session exists there to queue it. So the agent drains only after it has seen
the hub's retained status on this broker: the hub publishes it right after subscribing,
so a status proves the session (a fresh store whose hub never connected yet, or a broker
that lost its data, would otherwise acknowledge events into the void).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from datetime import datetime, timezone
from typing import Callable

import paho.mqtt.client as mqtt

from edge_agent.outbox import Outbox
from protocol.mqtt import BrokerLogin, build_client, connect
from protocol.presence import parse_status, status_payload
from protocol.topics import Topics

log = logging.getLogger("edge_agent")

REFUSED_BACKOFF_S = 5.0


class EdgeAgent:
    def __init__(self, *, store: str, device: str, login: BrokerLogin, outbox: Outbox, version: str,
                 topic_prefix: str = "omnikiosk", window: int = 20, poll_s: float = 0.2,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)):
        self.topics = Topics(store, topic_prefix)
        self.device = device
        self.outbox = outbox
        self.window = window
        self.poll_s = poll_s
        self.version = version
        self._clock = clock
        self.session = outbox.next_counter("agent_session")
        self.login = login
        self.client = build_client(
            device, login, will_topic=self.topics.status(device),
            will_payload=status_payload("offline", session=self.session, version=version, now=clock()))
        self.client.max_inflight_messages_set(window)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message
        self.connected = threading.Event()
        self.hub_seen = threading.Event()
        self._acks: "queue.Queue[tuple[int, bool, str]]" = queue.Queue()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._inflight: dict[int, int] = {}   # mid → seq; touched only by the drain thread
        self._handed = 0                       # highest seq handed to paho
        self._thread: threading.Thread | None = None
        self.counters = {"published": 0, "acked": 0, "refused": 0, "connects": 0, "disconnects": 0}

    # --- paho callbacks (paho's network thread): record and wake, never touch the database.
    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            log.error("broker refused connection", extra={"reason": str(reason_code)})
            return
        self.counters["connects"] += 1
        client.subscribe(self.topics.hub_status, qos=1)
        # Re-announce on every connect, not only at start: a broker restart forgets non-retained state.
        client.publish(self.topics.status(self.device),
                       status_payload("online", session=self.session, version=self.version, now=self._clock()),
                       qos=1, retain=True)
        log.info("connected to broker", extra={"session_present": bool(flags.session_present),
                                               "host": self.login.host, "port": self.login.port})
        self.connected.set()
        self._wake.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self.connected.clear()
        self.counters["disconnects"] += 1
        if not self._stop.is_set():
            log.warning("disconnected from broker; paho reconnects with backoff", extra={"reason": str(reason_code)})

    def _on_message(self, client, userdata, message):
        if message.topic == self.topics.hub_status and parse_status(message.payload) and not self.hub_seen.is_set():
            log.info("hub session seen on the broker; draining the outbox")
            self.hub_seen.set()
            self._wake.set()

    def _on_publish(self, client, userdata, mid, reason_code, properties):
        self._acks.put((mid, not reason_code.is_failure, str(reason_code)))
        self._wake.set()

    # --- the drain thread
    def start(self) -> "EdgeAgent":
        connect(self.client, self.login)
        self.client.loop_start()
        self._thread = threading.Thread(target=self._drain_forever, name="outbox-drain", daemon=True)
        self._thread.start()
        return self

    def _drain_forever(self) -> None:
        while not self._stop.is_set():
            try:
                self.drain_once()
            except Exception:  # a bad row or a database hiccup must not end delivery
                log.exception("drain step failed; retrying")
                self._stop.wait(1.0)
            self._wake.wait(self.poll_s)
            self._wake.clear()

    def drain_once(self) -> None:
        self._settle_acks()
        if not (self.connected.is_set() and self.hub_seen.is_set()) or len(self._inflight) >= self.window:
            return
        in_flight_seqs = set(self._inflight.values())
        for event in self.outbox.peek(self._handed, self.window - len(self._inflight)):
            if event.seq in in_flight_seqs:
                continue
            info = self.client.publish(self.topics.events(self.device), event.body, qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS and info.rc != mqtt.MQTT_ERR_NO_CONN:
                log.warning("publish not queued", extra={"seq": event.seq, "rc": info.rc})
                break
            # Queued in paho (NO_CONN included): paho resends it after reconnecting.
            self._inflight[info.mid] = event.seq
            self._handed = event.seq
            self.counters["published"] += 1

    def _settle_acks(self) -> None:
        done: list[int] = []
        while True:
            try:
                mid, ok, reason = self._acks.get_nowait()
            except queue.Empty:
                break
            seq = self._inflight.pop(mid, None)
            if seq is None:
                continue  # the status birth, or an ack from a previous connection already settled
            if ok:
                done.append(seq)
            else:
                # The broker refused it (ACL, quota): keep the row, say so loudly, try again later.
                self.counters["refused"] += 1
                log.error("broker refused event; it stays in the outbox", extra={"seq": seq, "reason": reason})
                self._handed = min(self._handed, seq - 1)
                self._stop.wait(REFUSED_BACKOFF_S)
        if done:
            self.counters["acked"] += self.outbox.delete(done)

    def idle(self) -> bool:
        """True when nothing is waiting or in flight (used by tests and a clean shutdown)."""
        return not self._inflight and self._acks.empty() and self.outbox.stats()["depth"] == 0

    def stop(self, timeout: float = 5.0) -> None:
        """Clean exit: announce `stopped` (retained), then disconnect. Undelivered rows stay on disk."""
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout)
        if self.connected.is_set():
            info = self.client.publish(
                self.topics.status(self.device),
                status_payload("stopped", session=self.session, version=self.version, now=self._clock()),
                qos=1, retain=True)
            info.wait_for_publish(timeout=2.0)
            self._settle_acks()
        self.client.disconnect()
        self.client.loop_stop()
