"""Assembles a running hub from its config: database, MQTT ingest, answers to devices, arrival desk,
the cart pusher, the web app."""

from __future__ import annotations

import logging
import secrets
from collections import Counter
import threading
import time
from datetime import datetime, timedelta, timezone
from importlib.metadata import version as dist_version
from typing import Any, Callable
from zoneinfo import ZoneInfo

from hub.activity import ActivityPusher, close_visits, track
from hub.answers import Answers, RequestDesk, offers_secret
from hub.arrivals import ArrivalDesk
from hub.catalog import HubCatalog
from hub.floor import Floor, it_room
from hub.ingest import Ingest
from hub.online import RestOnlineStore
from hub.offers import OfferEngine
from hub.online_updates import CartPusher, OnlineUpdates
from hub.pos_api import pos_api_key, register_pos_api
from hub.profiles import ProfileSource
from hub.store import HubStore, open_hub_db
from hub.sync import OnlineSync
from hub.webhooks import WebhookRejection
from hub.web import STAFF_NAMESPACE, Metric, create_app
from protocol.backoff import Backoff
from protocol.cli import read_secret
from protocol.envelope import Envelope, format_ts
from protocol.mqtt import BrokerLogin
from protocol.settings import Config
from protocol.topics import Topics

log = logging.getLogger("hub")

HOUSEKEEPING_EVERY_S = 10.0
# Webhook refusals that mean "this did not come from the online store" (401); the rest are malformed (400).
UNAUTHENTIC = ("not_configured", "missing_signature", "bad_signature", "stale")
DONE_CART_LINES_KEPT_DAYS = 35


class Hub:
    def __init__(self, config: Config, *, heartbeat: Callable[[], None] = lambda: None):
        """`heartbeat`: called on every turn of the ingest writer (see Ingest), for systemd's watchdog."""
        self.config = config
        self.version = dist_version("omnikiosk")
        store = config["store"]
        path = config["db.path"]
        # The ingest writer and the web app each get their own connection (WAL: readers never wait).
        self.writer_store = HubStore(open_hub_db(path))
        self.web_store = HubStore(open_hub_db(path))
        self.catalog = HubCatalog(open_hub_db(path))
        self.updates = OnlineUpdates(open_hub_db(path))
        secret_key = (read_secret(config["web.secret_key_file"], "session key") if config["web.secret_key_file"]
                      else secrets.token_urlsafe(32))  # demo only (config check refuses this otherwise)
        self.online = RestOnlineStore(
            config["online.base_url"], read_secret(config["online.api_key_file"], "online store API key"),
            timeout_s=config["online.timeout_s"], background_timeout_s=config["online.background_timeout_s"],
            webhook_secret=(read_secret(config["online.webhook_secret_file"], "webhook secret")
                            if config["online.webhook_secret_file"] else None),
            failure_threshold=config["online.breaker_failures"], cooldown_s=config["online.breaker_cooldown_s"])
        self.pusher = CartPusher(self.updates, self.online)
        self.activity_pusher = ActivityPusher(self.updates, self.online)
        self.sync = OnlineSync(hub_store=HubStore(open_hub_db(path)), catalog=self.catalog, online=self.online,
                               store=store, on_catalog_changed=self._catalog_changed,
                               interval_s=config["sync.interval_s"], reconcile_every_s=config["sync.reconcile_every_s"],
                               prefetch_days=config["sync.prefetch_days"], profile_ttl_s=config["profile.ttl_s"],
                               own_stock_from_feed=config["stock.source"] == "online",
                               currency=config["analytics.currency"])
        self.webhook_counts: Counter = Counter()
        self.desk = ArrivalDesk(store=store, hub_store=self.web_store, online=self.online, emit=self._emit_arrival,
                                profile_ttl_s=config["profile.ttl_s"], late_after_s=config["arrivals.late_after_s"],
                                stock_here=self.catalog.stock_here)
        engine = OfferEngine.from_file(config["offers.rules_file"])
        profiles = ProfileSource(hub_store=self.web_store, online=self.online, ttl_s=config["profile.ttl_s"])
        answers = Answers(store=store, catalog=self.catalog, updates=self.updates, pusher=self.pusher,
                          engine=engine, profiles=profiles, offers_secret=offers_secret(secret_key),
                          profile_budget_s=config["requests.profile_budget_s"])
        self.floor = Floor(store=store, hub_store=self.web_store, catalog=self.catalog, online=self.online,
                           updates=self.updates, pusher=self.pusher, profiles=profiles, engine=engine,
                           offers_secret=offers_secret(secret_key), emit=self._socket_emit,
                           publish_command=self._publish_command)
        self.app, self.socketio = create_app(config, hub_store=self.web_store, secret_key=secret_key,
                                             metrics=self.metrics, health=self.health, on_webhook=self._webhook,
                                             floor=self.floor)
        # The till's sales (docs/pos.md): a machine API with its own bearer key, off without one.
        self.pos_api = register_pos_api(self.app, open_db=self.web_store, api_key=pos_api_key(config),
                                        tz=ZoneInfo(config["timezone"]), currency=config["analytics.currency"],
                                        store=store)
        self.requests = RequestDesk(topics=Topics(store, config["topic_prefix"]), answers=answers,
                                    rate_per_s=config["requests.rate_per_s"], burst=config["requests.burst"],
                                    workers=config["requests.workers"])
        login = BrokerLogin(host=config["mqtt.host"], port=config["mqtt.port"],
                            username=config["mqtt.username"] or f"hub-{store}",
                            password=read_secret(config["mqtt.password_file"], "MQTT password"),
                            keepalive=config["mqtt.keepalive_s"], session_expiry_s=config["mqtt.session_expiry_s"],
                            tls_ca=config["mqtt.tls_ca"])
        self.ingest = Ingest(store_id=store, login=login, hub_store=self.writer_store, version=self.version,
                             backoff=Backoff(min_s=config["mqtt.reconnect_min_s"], max_s=config["mqtt.reconnect_max_s"]),
                             topic_prefix=config["topic_prefix"], on_stored=self._on_stored,
                             on_request=self.requests.submit, in_commit=self._in_commit,
                             catalog_version=lambda: self.catalog.version, heartbeat=heartbeat)
        self.requests.bind(self.ingest.client)
        self._stopping = threading.Event()
        self._housekeeping: threading.Thread | None = None
        self.activity_counts: Counter = Counter()

    def _in_commit(self, db: HubStore, events: list[Envelope]) -> None:
        """Inside the ingest transaction: sessions, visits, anonymity, and what goes online (activity and
        cart lines, keyed by event id), so no crash keeps an event and loses what it queued."""
        done = track(db.db, events, store=self.config["store"], now=datetime.now(timezone.utc),
                     gap_s=self.config["visits.gap_s"])
        self.activity_counts.update(done)

    def _on_stored(self, events: list[Envelope]) -> None:
        """After commit: arrivals, calls for help and members' activity to staff; the pushers look at what was queued."""
        self.desk.on_stored(events)
        self.floor.on_stored(events)
        if any(e.type == "cart.sent" for e in events):
            self.pusher.wake()

    def _socket_emit(self, event: str, payload: dict[str, Any], room: str) -> None:
        self.socketio.emit(event, payload, namespace=STAFF_NAMESPACE, to=room)

    def _publish_command(self, device: str, payload: bytes) -> bool:
        """IT's command to a device, QoS 1 on its `commands` topic (the broker keeps it while the device is away)."""
        if not self.ingest.connected.is_set():
            return False
        info = self.ingest.client.publish(self.ingest.topics.device(device, "commands"), payload, qos=1)
        return info.rc == 0

    def _catalog_changed(self) -> None:
        if self.ingest.connected.is_set():
            self.ingest.announce_catalog()

    def _webhook(self, raw: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """POST /webhooks/online: verify the signature and age, deduplicate by event id, then let sync look."""
        verdict = self.online.verify_webhook(raw, headers, now=time.time())
        if isinstance(verdict, WebhookRejection):
            self.webhook_counts[verdict.reason] += 1
            log.warning("webhook refused", extra={"reason": verdict.reason, "detail": verdict.detail,
                                                  "remote_id": str(headers.get("X-Omnikiosk-Webhook-Id", ""))[:80]})
            status = 401 if verdict.reason in UNAUTHENTIC else 400
            return status, {"ok": False, "error": {"code": verdict.reason, "message": verdict.detail}}
        if not self.web_store.first_webhook(verdict.id, verdict.type, format_ts(datetime.now(timezone.utc))):
            # Answered 2xx all the same: the sender retries until it hears one, and it was handled before.
            self.webhook_counts["duplicate"] += 1
            log.info("webhook delivered again; already handled", extra={"id": verdict.id, "type": verdict.type})
            return 200, {"ok": True, "duplicate": True}
        self.webhook_counts["accepted"] += 1
        self.sync.webhook(verdict.type, verdict.data)
        return 200, {"ok": True}

    def _emit_arrival(self, card: dict[str, Any]) -> None:
        """A new arrival goes on the floor feed: stored (resumable by id) and emitted live as "floor"."""
        self.floor.arrival(card)

    def health(self) -> dict[str, Any]:
        return {"mqtt_ok": self.ingest.connected.is_set(), "store": self.config["store"], "version": self.version,
                "catalog_version": self.catalog.version}

    def metrics(self) -> list[Metric]:
        c = self.ingest.counters
        rows: list[Metric] = [
            ("omnikiosk_hub_mqtt_connected", "1 when the hub holds its broker session", {}, int(self.ingest.connected.is_set())),
            ("omnikiosk_hub_events_stored_total", "device events committed", {}, c.stored),
            ("omnikiosk_hub_events_duplicate_total", "redelivered events already stored", {}, c.duplicates),
            ("omnikiosk_hub_ingest_batches_total", "ingest transactions committed", {}, c.batches),
            ("omnikiosk_hub_receipts_total", "receipts sent to devices after commits", {}, c.receipts),
            ("omnikiosk_hub_status_updates_total", "device presence updates", {}, c.status_updates),
            ("omnikiosk_hub_telemetry_total", "device health reports stored", {}, c.telemetry),
            ("omnikiosk_hub_catalog_version", "the catalog version devices sync to", {}, self.catalog.version),
        ]
        rows += [("omnikiosk_hub_events_rejected_total", "messages refused by ingest", {"reason": reason}, n)
                 for reason, n in sorted(c.rejected.items())]
        rows += [("omnikiosk_hub_requests_total", "device requests by outcome", {"outcome": k}, v)
                 for k, v in sorted(self.requests.counters.items())]
        rows += [("omnikiosk_hub_arrivals_total", "arrival desk outcomes", {"outcome": k}, v)
                 for k, v in sorted(self.desk.counters.items())]
        rows += [("omnikiosk_hub_online_updates", "updates for the online store by state", {"state": k}, v)
                 for k, v in sorted(self.updates.counts().items())]
        rows += [("omnikiosk_hub_cart_pushes_total", "cart lines pushed to the online store", {"outcome": k}, v)
                 for k, v in sorted(self.pusher.counters.items())]
        rows += [("omnikiosk_hub_activity_pushes_total", "in-store activity pushed to the online store",
                  {"outcome": k}, v) for k, v in sorted(self.activity_pusher.counters.items())]
        rows += [("omnikiosk_hub_webhooks_total", "webhook deliveries by outcome", {"outcome": k}, v)
                 for k, v in sorted(self.webhook_counts.items())]
        rows += [("omnikiosk_hub_sync_total", "online sync outcomes", {"outcome": k}, v)
                 for k, v in sorted(self.sync.counters.items())]
        rows += [("omnikiosk_hub_activity_total", "in-store activity tracked at ingest", {"outcome": k}, v)
                 for k, v in sorted(self.activity_counts.items())]
        rows += self.pos_api.metrics()
        rows.append(("omnikiosk_hub_online_circuit_open", "1 while calls to the online store fail fast", {},
                     int(self.online.breaker_state != "closed")))
        return rows

    def start(self) -> "Hub":
        self.desk.start()
        self.requests.start()
        self.pusher.start()
        self.activity_pusher.start()
        self.ingest.start()
        self.sync.start()
        self._housekeeping = threading.Thread(target=self._housekeep, name="hub-housekeeping", daemon=True)
        self._housekeeping.start()
        return self

    def _housekeep(self) -> None:
        """The catalog may change under the hub (an import into the same database): announce new versions.
        Done cart lines are kept longer than a kiosk keeps an event (30 days), so a late resend of a
        cart.sent still finds its key and adds no second line."""
        last_sweep = 0.0
        while not self._stopping.wait(HOUSEKEEPING_EVERY_S):
            try:
                if self.ingest.connected.is_set():
                    self.ingest.announce_catalog()
                with self.web_store.transaction() as db:
                    if close_visits(db.db, now=datetime.now(timezone.utc), gap_s=self.config["visits.gap_s"]):
                        self.activity_pusher.wake()
                self._socket_emit("devices", {"devices": self.floor.devices()}, it_room(self.config["store"]))
                if time.monotonic() - last_sweep > 3600:
                    last_sweep = time.monotonic()
                    self.updates.forget_done(datetime.now(timezone.utc) - timedelta(days=DONE_CART_LINES_KEPT_DAYS))
            except Exception:
                log.exception("housekeeping failed")

    def serve(self) -> None:
        """Serve the web app (blocks)."""
        c = self.config
        ssl_context = (c["web.tls_cert"], c["web.tls_key"]) if c["web.tls_cert"] else None
        self.socketio.run(self.app, host=c["web.host"], port=c["web.port"], ssl_context=ssl_context,
                          allow_unsafe_werkzeug=True, log_output=False, use_reloader=False)

    def url(self) -> str:
        c = self.config
        host = c["web.host"] if c["web.host"] not in ("0.0.0.0", "::") else "127.0.0.1"
        scheme = "https" if c["web.tls_cert"] else "http"
        return f"{scheme}://{host}:{c['web.port']}/"

    def stop(self) -> None:
        self._stopping.set()
        self.sync.stop()
        self.ingest.stop()
        self.requests.stop()
        self.pusher.stop()
        self.activity_pusher.stop()
        self.desk.stop()
