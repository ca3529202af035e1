"""The edge agent: the device's only MQTT client. Delivers the outbox, announces presence, reports
health, carries out IT's commands, relays the kiosk's requests and keeps the catalog in sync.

Delivery rule (docs/edge-agent.md): a row is sent in `pos` order with a window of messages in
flight; an event leaves the outbox only when the hub's receipt covers its `seq` (the hub
sends one after each commit), never on the broker's PUBACK alone, because Mosquitto
acknowledges from memory. Events acknowledged but not receipted go again after a reconnect
or a timeout; the hub keeps one copy per event id. The outbox is sent only while the hub's
retained status says `online`: while the hub is away, events wait on this device's disk
(synchronous, bounded) rather than in the broker's memory.

Threads: paho's network thread (callbacks only record and wake), the drain thread (owns the
ledger and every outbox write of delivery), and the worker thread (commands, catalog sync,
telemetry: work that may wait on the kiosk or the hub).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections import Counter
from datetime import datetime, timezone
from typing import Any, Callable

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge_agent import storage, telemetry
from edge_agent.catalog import CatalogCache
from edge_agent.catalog_sync import CatalogSync, CatalogSyncFailed
from edge_agent.hub_clock import HubClock
from edge_agent.hub_clock import measure as measure_clock
from edge_agent.commands import CommandDesk, CommandFailed
from edge_agent.delivery import Ledger
from edge_agent.kiosk_link import KioskLink
from edge_agent.outbox import TELEMETRY, Outbox
from edge_agent.relay import RequestRelay
from protocol.backoff import Backoff
from protocol.catalog import parse_version
from protocol.mqtt import BrokerLogin, build_client, connect
from protocol.presence import parse_status, status_payload
from protocol.receipts import parse_receipt
from protocol.topics import Topics

log = logging.getLogger("edge_agent")

REFUSED_BACKOFF_S = 5.0
EXPIRY_EVERY_S = 60.0
RESPONSE_EXPIRY_S = 10
CATALOG_RETRY_S = (5.0, 300.0)
CLOCK_EVERY_S, CLOCK_RETRY_S = 600.0, 30.0   # measure the hub's clock this often; sooner after a failure


class EdgeAgent:
    def __init__(self, *, store: str, device: str, login: BrokerLogin, outbox: Outbox, version: str,
                 topic_prefix: str = "omnikiosk", window: int = 100, unconfirmed_max: int = 1000,
                 receipt_timeout_s: float = 30.0, poll_s: float = 0.05, catalog: CatalogCache | None = None,
                 kiosk: KioskLink | None = None, telemetry_interval_s: float = 30.0,
                 backoff: Backoff | None = None, config_path: str | None = None,
                 on_restart: Callable[[], None] = lambda: None, heartbeat: Callable[[], None] = lambda: None,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
                 hub_clock: HubClock | None = None):
        """`heartbeat` is called on every turn of the drain loop, broker or not (protocol.sdnotify.Watchdog.tick):
        a drain that stops turning is a hung agent, and systemd restarts it."""
        self.topics = Topics(store, topic_prefix)
        self.store = store
        self.device = device
        self.outbox = outbox
        self.version = version
        self.poll_s = poll_s
        self.login = login
        self.kiosk = kiosk
        self.telemetry_interval_s = telemetry_interval_s
        self.heartbeat = heartbeat
        self._clock = clock
        self.hub_clock = hub_clock
        self._started = time.monotonic()
        self.session = outbox.next_counter("agent_session")
        self.ledger = Ledger(window=window, unconfirmed_max=unconfirmed_max, receipt_timeout_s=receipt_timeout_s)
        self.backoff = backoff or Backoff()
        self.client = build_client(
            device, login, backoff=self.backoff, will_topic=self.topics.status(device),
            will_payload=status_payload("offline", session=self.session, version=version, now=clock()))
        # Room above the drain window, so a status, a request or a live telemetry never queues behind events.
        self.client.max_inflight_messages_set(window + 20)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message
        self.connected = threading.Event()
        self.hub_online = threading.Event()
        self._hub_session: int | None = None
        self._hub_online_since: float | None = None
        self._acks: "queue.Queue[tuple[int, bool, str]]" = queue.Queue()
        self._receipts: "queue.Queue[bytes]" = queue.Queue()
        self._reconnected = threading.Event()
        self._overdue_checked = 0.0
        self._jobs: "queue.Queue[tuple[str, bytes]]" = queue.Queue()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._reported_broken = False
        self.counters: Counter = Counter()
        self.relay = RequestRelay(self._publish_request)
        self.catalog_sync = CatalogSync(catalog, self.relay.ask) if catalog is not None else None
        self.commands = CommandDesk(outbox=outbox, kiosk=kiosk or KioskLink("http://127.0.0.1:8080", ""),
                                    resync_catalog=self._resync_catalog, restart_agent=on_restart,
                                    config_path=config_path, clock=clock)

    @property
    def hub_seen(self) -> threading.Event:
        """The hub is online on this broker (its retained status): events may flow."""
        return self.hub_online

    # --- paho callbacks (paho's network thread): record and wake, never touch the database
    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            self.counters["refused_connects"] += 1
            log.error("broker refused the connection; retrying with backoff", extra={"reason": str(reason_code)})
            return
        self.backoff.connected()
        self.counters["connects"] += 1
        client.subscribe([(self.topics.device(self.device, leaf), 1) for leaf in ("receipts", "responses", "commands")]
                         + [(self.topics.hub_status, 1), (self.topics.catalog_version, 1)])
        # Re-announce on every connect, not only at start: a restarted broker may have lost the retained one.
        client.publish(self.topics.status(self.device),
                       status_payload("online", session=self.session, version=self.version, now=self._clock()),
                       qos=1, retain=True)
        log.info("connected to broker", extra={"session_present": bool(flags.session_present),
                                               "host": self.login.host, "port": self.login.port})
        if self.counters["connects"] > 1:
            self._reconnected.set()
        self.connected.set()
        self._wake.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        was_connected = self.connected.is_set()
        self.connected.clear()
        # What we knew of the hub came through this connection: a broker that restarted may have lost
        # the hub's session and its retained status, and events sent before the hub is back would be
        # acknowledged to nobody (resent only after receipt_timeout_s). Wait for its status again.
        self.hub_online.clear()
        self._hub_online_since = None
        if was_connected:
            self.backoff.disconnected()
            self.counters["disconnects"] += 1
        if not self._stop.is_set():
            log.warning("disconnected from broker", extra={"reason": str(reason_code)})

    def _on_message(self, client, userdata, message):
        topic = message.topic
        if topic == self.topics.hub_status:
            self._hub_status(message.payload)
        elif topic == self.topics.device(self.device, "receipts"):
            self._receipts.put(message.payload)
            self._wake.set()
        elif topic == self.topics.device(self.device, "responses"):
            correlation = getattr(message.properties, "CorrelationData", None) if message.properties else None
            self.relay.deliver(correlation, message.payload)
        elif topic == self.topics.device(self.device, "commands"):
            self._jobs.put(("command", message.payload))
        elif topic == self.topics.catalog_version:
            version = parse_version(message.payload)
            if version is not None and self.catalog_sync is not None:
                self.catalog_sync.announce(version)
                self._jobs.put(("catalog", b""))

    def _hub_status(self, payload: bytes) -> None:
        status = parse_status(payload)
        online = bool(status) and status["state"] == "online"
        if online and (not self.hub_online.is_set() or status["session"] != self._hub_session):
            log.info("the hub is online; delivering", extra={"hub_session": status["session"]})
            self._hub_online_since = time.monotonic()
            self.hub_online.set()
            self._jobs.put(("catalog", b""))
            self._jobs.put(("clock", b""))
        elif not online and self.hub_online.is_set():
            log.warning("the hub is away; events wait in the outbox",
                        extra={"state": status["state"] if status else "unreadable"})
            self._hub_online_since = None
            self.hub_online.clear()
        self._hub_session = status["session"] if status else None
        self._wake.set()

    def _on_publish(self, client, userdata, mid, reason_code, properties):
        self._acks.put((mid, not reason_code.is_failure, str(reason_code)))
        self._wake.set()

    def _publish_request(self, payload: bytes, correlation: bytes, expiry_s: int) -> bool:
        if not (self.connected.is_set() and self.hub_online.is_set()):
            return False
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = self.topics.device(self.device, "responses")
        props.CorrelationData = correlation
        props.MessageExpiryInterval = expiry_s
        info = self.client.publish(self.topics.device(self.device, "requests"), payload, qos=1, properties=props)
        return info.rc == mqtt.MQTT_ERR_SUCCESS

    # --- lifecycle
    def start(self) -> "EdgeAgent":
        connect(self.client, self.login)
        self.client.loop_start()
        for name, target in (("outbox-drain", self._drain_forever), ("agent-worker", self._work_forever)):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Clean exit: announce `stopped` (retained), then disconnect. Undelivered rows stay on disk."""
        self._stop.set()
        self._wake.set()
        self._jobs.put(("stop", b""))
        for thread in self._threads:
            thread.join(timeout)
        if self.connected.is_set():
            info = self.client.publish(
                self.topics.status(self.device),
                status_payload("stopped", session=self.session, version=self.version, now=self._clock()),
                qos=1, retain=True)
            info.wait_for_publish(timeout=2.0)
        self.client.disconnect()
        self.client.loop_stop()

    # --- the drain thread
    def _drain_forever(self) -> None:
        last_expiry = 0.0
        while not self._stop.is_set():
            # Clear before the step, not after: a PUBACK or receipt arriving during the step must wake
            # the next wait at once, or the drain idles for poll_s with work waiting.
            self._wake.clear()
            try:
                now = time.monotonic()
                if now - last_expiry >= EXPIRY_EVERY_S:
                    last_expiry = now
                    expired = self.outbox.expire()
                    if expired:
                        log.warning("events expired in the outbox before delivery", extra={"expired": expired})
                self.drain_once()
            except Exception:  # a bad row or a database hiccup must not end delivery
                log.exception("drain step failed; retrying")
                self._stop.wait(1.0)
            # Broker or hub away is a waiting agent (events stay on disk), not a hung one; a dead
            # network or worker thread is a broken one: stop feeding the watchdog so systemd restarts us.
            if self.healthy():
                self.heartbeat()
            elif not self._reported_broken:
                self._reported_broken = True
                log.error("a delivery thread died; no longer telling systemd all is well, so it restarts the agent")
            self._wake.wait(self.poll_s)

    def healthy(self) -> bool:
        """The threads delivery depends on are alive: paho's network loop (it reconnects; if it died, the
        agent would never reconnect again) and the agent's worker (commands, receipts, requests)."""
        network = getattr(self.client, "_thread", None)  # paho 2.x (pinned <3) keeps loop_start's thread here
        workers = [t for t in self._threads if t is not threading.current_thread()]
        return network is not None and network.is_alive() and all(t.is_alive() for t in workers)

    def drain_once(self) -> None:
        self._settle()
        if not (self.connected.is_set() and self.hub_online.is_set()):
            return
        now = time.monotonic()
        if now - self._overdue_checked >= 1.0:  # a scan of everything awaiting: once a second is plenty
            self._overdue_checked = now
            self.ledger.overdue(now, self._hub_online_since)
        self._send_again()
        self._send_new()

    def _settle(self) -> None:
        now = time.monotonic()
        if self._reconnected.is_set():
            self._reconnected.clear()
            self.ledger.reconnected()
        forget: list[int] = []
        while True:
            try:
                mid, ok, reason = self._acks.get_nowait()
            except queue.Empty:
                break
            acked = self.ledger.acked(mid, ok, now, reason)
            if acked is None:
                continue  # a status, a request or a live telemetry
            if not acked.ok:
                # The broker refused it (ACL, quota): keep the row, say so loudly, try again later.
                self.counters["refused"] += 1
                log.error("broker refused a message; it stays in the outbox",
                          extra={"seq": acked.row.seq, "reason": acked.reason})
                self._stop.wait(REFUSED_BACKOFF_S)
            elif acked.row.leaf == TELEMETRY:
                forget.append(acked.row.pos)
            else:
                self.counters["acked"] += 1
        if forget:
            self.outbox.forget_positions(forget)
        stored: list[tuple[int, int]] = []
        rejected: list[tuple[int, int]] = []
        while True:
            try:
                payload = self._receipts.get_nowait()
            except queue.Empty:
                break
            receipt = parse_receipt(payload)
            if not receipt:
                self.counters["bad_receipts"] += 1
                log.warning("unreadable receipt from the hub", extra={"reason": receipt.reason})
                continue
            stored += receipt.stored
            rejected += receipt.rejected
        if stored or rejected:
            # Every receipt waiting now, forgotten in one transaction.
            self.ledger.receipted(stored + rejected)
            deleted, refused = self.outbox.settle(stored, rejected)
            self.counters["receipted"] += deleted
            if refused:
                self.counters["rejected_by_hub"] += refused
                log.error("the hub refused events for good; they are dropped and counted",
                          extra={"events": refused, "ranges": rejected[:5]})

    def _send_again(self) -> None:
        seqs = self.ledger.take_resend(self.ledger.room())
        if not seqs:
            return
        rows = self.outbox.rows_with_seq(seqs)
        self.ledger.forget_unsent(set(seqs) - {row.seq for row in rows})
        for row in rows:
            if not self._publish_row(row):
                self.ledger.queue_resend([r.seq for r in rows if r.pos >= row.pos])
                return
            self.counters["resent"] += 1
        if rows:
            log.info("sent again what the hub has not receipted", extra={"events": len(rows)})

    def _send_new(self) -> None:
        room = self.ledger.room()
        while room > 0:
            rows = self.outbox.peek(self.ledger.next_pos, max(room, 50))
            if not rows:
                return
            for row in rows:
                if room <= 0:
                    return
                if not self.ledger.wanted(row):
                    self.ledger.next_pos = max(self.ledger.next_pos, row.pos)
                    continue
                if not self._publish_row(row):
                    return
                room -= 1

    def _publish_row(self, row) -> bool:
        topic = self.topics.device(self.device, "telemetry" if row.leaf == TELEMETRY else "events")
        info = self.client.publish(topic, row.body, qos=1)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            log.warning("publish not queued", extra={"seq": row.seq, "rc": info.rc})
            return False
        # Queued in paho (NO_CONN included): paho sends it after reconnecting.
        self.ledger.handed(info.mid, row)
        self.counters["published"] += 1
        return True

    def idle(self) -> bool:
        """True when nothing waits, flies or awaits a receipt (tests and a clean shutdown use it)."""
        return self.ledger.idle and self._acks.empty() and self._receipts.empty() and self.outbox.stats()["depth"] == 0

    # --- the worker thread: commands, catalog, telemetry
    def _work_forever(self) -> None:
        next_telemetry = time.monotonic() + min(5.0, self.telemetry_interval_s)
        catalog_retry_at: float | None = None
        catalog_delay = CATALOG_RETRY_S[0]
        next_clock = time.monotonic() + CLOCK_EVERY_S
        while not self._stop.is_set():
            timeout = max(0.05, min(next_telemetry, next_clock, catalog_retry_at or next_telemetry) - time.monotonic())
            try:
                kind, payload = self._jobs.get(timeout=timeout)
            except queue.Empty:
                kind, payload = "tick", b""
            try:
                if kind == "stop":
                    return
                if kind == "command":
                    self.commands.handle(payload)
                now = time.monotonic()
                wants_catalog = kind == "catalog" or (catalog_retry_at is not None and now >= catalog_retry_at)
                if wants_catalog and self._catalog_due():
                    try:
                        self.catalog_sync.sync()
                        catalog_retry_at, catalog_delay = None, CATALOG_RETRY_S[0]
                    except CatalogSyncFailed as exc:
                        log.warning("catalog sync failed; will retry", extra={"error": str(exc),
                                                                              "retry_in_s": catalog_delay})
                        catalog_retry_at = now + catalog_delay
                        catalog_delay = min(catalog_delay * 2, CATALOG_RETRY_S[1])
                if self.hub_clock is not None and (kind == "clock" or now >= next_clock):
                    next_clock = now + (CLOCK_EVERY_S if self.sync_clock() else CLOCK_RETRY_S)
                if time.monotonic() >= next_telemetry:
                    next_telemetry = time.monotonic() + self.telemetry_interval_s
                    self.report_health()
            except Exception:
                log.exception("agent work failed; continuing", extra={"job": kind})

    def sync_clock(self) -> bool:
        """Measure this device's clock against the hub's and record it for the kiosk (edge_agent/hub_clock.py)."""
        if not (self.connected.is_set() and self.hub_online.is_set()):
            return False
        measured = measure_clock(self.relay.ask, self._clock)
        if measured is None:
            return False
        offset_s, rtt_s = measured
        self.hub_clock.record(offset_s, rtt_s)
        if abs(offset_s) >= 30:
            log.warning("this device's clock is off from the hub's; tokens and event times use the hub's",
                        extra={"offset_s": round(offset_s, 1), "rtt_s": round(rtt_s, 3)})
        return True

    def _catalog_due(self) -> bool:
        return (self.catalog_sync is not None and self.connected.is_set() and self.hub_online.is_set()
                and self.catalog_sync.behind)

    def _resync_catalog(self) -> dict[str, Any]:
        if self.catalog_sync is None:
            raise CommandFailed("failed", "this agent keeps no catalog")
        try:
            return self.catalog_sync.resync()
        except CatalogSyncFailed as exc:
            raise CommandFailed("failed", str(exc)) from None

    def health_snapshot(self) -> dict[str, Any]:
        outbox = self.outbox.stats()
        return telemetry.snapshot(
            device=self.device, now=self._clock(), uptime_s=time.monotonic() - self._started,
            agent_version=self.version, kiosk=self.kiosk.health() if self.kiosk else None, outbox=outbox,
            awaiting_receipt=len(self.ledger.awaiting), in_flight=len(self.ledger.in_flight),
            mqtt={"connected": self.connected.is_set(), "hub_online": self.hub_online.is_set(),
                  "connects": self.counters["connects"], "disconnects": self.counters["disconnects"]},
            catalog_version=self.catalog_sync.cache.version if self.catalog_sync else 0,
            disk_free_bytes=storage.disk_free_bytes(self.outbox_path) if self.outbox_path else None,
            cpu_temp_c=storage.cpu_temperature_c(), rss_mb=telemetry.rss_mb())

    @property
    def outbox_path(self) -> str | None:
        row = self.outbox.db.execute("PRAGMA database_list").fetchone()
        return row[2] if row and row[2] else None

    def report_health(self) -> None:
        """Telemetry: live at QoS 0 while connected; otherwise kept in the outbox (low priority, short TTL)."""
        report = self.health_snapshot()
        if self.connected.is_set():
            self.client.publish(self.topics.device(self.device, "telemetry"),
                                json.dumps(report, separators=(",", ":")), qos=0)
            self.counters["telemetry_sent"] += 1
        elif self.outbox.append_telemetry(report):
            self.counters["telemetry_kept"] += 1
