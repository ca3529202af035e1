"""Assembles a running hub from its config: database, MQTT ingest, arrival desk, web app."""

from __future__ import annotations

import logging
import secrets
from importlib.metadata import version as dist_version
from typing import Any

from hub.arrivals import ArrivalDesk
from hub.ingest import Ingest
from hub.online import RestOnlineStore
from hub.store import HubStore, open_hub_db
from hub.web import STAFF_NAMESPACE, Metric, create_app, store_room
from protocol.cli import read_secret
from protocol.mqtt import BrokerLogin
from protocol.settings import Config

log = logging.getLogger("hub")


class Hub:
    def __init__(self, config: Config):
        self.config = config
        self.version = dist_version("omnikiosk")
        store = config["store"]
        # The ingest writer and the web app each get their own connection (WAL: readers never wait).
        self.writer_store = HubStore(open_hub_db(config["db.path"]))
        self.web_store = HubStore(open_hub_db(config["db.path"]))
        secret_key = (read_secret(config["web.secret_key_file"], "session key") if config["web.secret_key_file"]
                      else secrets.token_urlsafe(32))  # demo only (config check refuses this otherwise)
        self.app, self.socketio = create_app(config, hub_store=self.web_store, secret_key=secret_key,
                                             metrics=self.metrics, health=self.health)
        self.online = RestOnlineStore(config["online.base_url"],
                                      read_secret(config["online.api_key_file"], "online store API key"),
                                      timeout_s=config["online.timeout_s"])
        self.desk = ArrivalDesk(store=store, hub_store=self.web_store, online=self.online, emit=self._emit_arrival,
                                profile_ttl_s=config["profile.ttl_s"], late_after_s=config["arrivals.late_after_s"])
        login = BrokerLogin(host=config["mqtt.host"], port=config["mqtt.port"],
                            username=config["mqtt.username"] or f"hub-{store}",
                            password=read_secret(config["mqtt.password_file"], "MQTT password"),
                            keepalive=config["mqtt.keepalive_s"], session_expiry_s=config["mqtt.session_expiry_s"],
                            tls_ca=config["mqtt.tls_ca"])
        self.ingest = Ingest(store_id=store, login=login, hub_store=self.writer_store, version=self.version,
                             topic_prefix=config["topic_prefix"], on_stored=self.desk.on_stored)

    def _emit_arrival(self, card: dict[str, Any]) -> None:
        self.socketio.emit("arrival", card, namespace=STAFF_NAMESPACE, to=store_room(self.config["store"]))

    def health(self) -> dict[str, Any]:
        return {"mqtt_ok": self.ingest.connected.is_set(), "store": self.config["store"], "version": self.version}

    def metrics(self) -> list[Metric]:
        c = self.ingest.counters
        rows: list[Metric] = [
            ("omnikiosk_hub_mqtt_connected", "1 when the hub holds its broker session", {}, int(self.ingest.connected.is_set())),
            ("omnikiosk_hub_events_stored_total", "device events committed", {}, c.stored),
            ("omnikiosk_hub_events_duplicate_total", "redelivered events already stored", {}, c.duplicates),
            ("omnikiosk_hub_ingest_batches_total", "ingest transactions committed", {}, c.batches),
            ("omnikiosk_hub_status_updates_total", "device presence updates", {}, c.status_updates),
        ]
        rows += [("omnikiosk_hub_events_rejected_total", "messages refused by ingest", {"reason": reason}, n)
                 for reason, n in sorted(c.rejected.items())]
        rows += [("omnikiosk_hub_arrivals_total", "arrival desk outcomes", {"outcome": k}, v)
                 for k, v in sorted(self.desk.counters.items())]
        return rows

    def start(self) -> "Hub":
        self.desk.start()
        self.ingest.start()
        return self

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
        self.ingest.stop()
        self.desk.stop()


