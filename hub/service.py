"""Assembles a running hub from its config: database, MQTT ingest, answers to devices, arrival desk,
the cart pusher, the web app."""

from __future__ import annotations

import logging
import secrets
import threading
import time
from datetime import datetime, timedelta, timezone
from importlib.metadata import version as dist_version
from typing import Any

from hub.answers import Answers, RequestDesk, offers_secret
from hub.arrivals import ArrivalDesk
from hub.catalog import HubCatalog
from hub.ingest import Ingest
from hub.online import RestOnlineStore
from hub.online_updates import CartPusher, OnlineUpdates, insert_update
from hub.profiles import ProfileSource
from hub.store import HubStore, open_hub_db
from hub.web import STAFF_NAMESPACE, Metric, create_app, store_room
from protocol.backoff import Backoff
from protocol.cli import read_secret
from protocol.envelope import Envelope
from protocol.mqtt import BrokerLogin
from protocol.settings import Config
from protocol.topics import Topics

log = logging.getLogger("hub")

HOUSEKEEPING_EVERY_S = 10.0
DONE_CART_LINES_KEPT_DAYS = 35


class Hub:
    def __init__(self, config: Config):
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
        self.app, self.socketio = create_app(config, hub_store=self.web_store, secret_key=secret_key,
                                             metrics=self.metrics, health=self.health)
        self.online = RestOnlineStore(config["online.base_url"],
                                      read_secret(config["online.api_key_file"], "online store API key"),
                                      timeout_s=config["online.timeout_s"])
        self.pusher = CartPusher(self.updates, self.online)
        self.desk = ArrivalDesk(store=store, hub_store=self.web_store, online=self.online, emit=self._emit_arrival,
                                profile_ttl_s=config["profile.ttl_s"], late_after_s=config["arrivals.late_after_s"])
        answers = Answers(store=store, catalog=self.catalog, updates=self.updates, pusher=self.pusher,
                          profiles=ProfileSource(hub_store=self.web_store, online=self.online,
                                                 ttl_s=config["profile.ttl_s"]),
                          offers_secret=offers_secret(secret_key),
                          profile_budget_s=config["requests.profile_budget_s"])
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
                             catalog_version=lambda: self.catalog.version)
        self.requests.bind(self.ingest.client)
        self._stopping = threading.Event()
        self._housekeeping: threading.Thread | None = None

    @staticmethod
    def _in_commit(db: HubStore, events: list[Envelope]) -> None:
        """Inside the ingest transaction: an item sent to an online cart is queued for the online store
        together with its event, so no crash keeps one and loses the other. The key is the event id, so
        the kiosk's own cart.add request and this event make one cart line."""
        now = datetime.now(timezone.utc)
        for event in events:
            if event.type == "cart.sent" and isinstance(event.data.get("member"), str):
                insert_update(db.db, event.id, "cart.add", event.data["member"],
                              {"gtin": event.data["gtin"], "quantity": 1, "device": event.device}, now)

    def _on_stored(self, events: list[Envelope]) -> None:
        """After commit: arrivals to staff; the cart pusher looks at what was queued."""
        self.desk.on_stored(events)
        if any(e.type == "cart.sent" for e in events):
            self.pusher.wake()

    def _emit_arrival(self, card: dict[str, Any]) -> None:
        self.socketio.emit("arrival", card, namespace=STAFF_NAMESPACE, to=store_room(self.config["store"]))

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
        return rows

    def start(self) -> "Hub":
        self.desk.start()
        self.requests.start()
        self.pusher.start()
        self.ingest.start()
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
        self.ingest.stop()
        self.requests.stop()
        self.pusher.stop()
        self.desk.stop()
