"""The edge agent's settings, declared once."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Mapping

from edge_agent.outbox import DEFAULT_TTL_S, PRIORITY, OutboxPolicy
from protocol.settings import Config, ConfigError, Setting, parse

SETTINGS = [
    Setting("store", None, "store id, e.g. s001", kind=str),
    Setting("device", None, "this device's id, e.g. s001-k01 (also its MQTT username)", kind=str),
    Setting("topic_prefix", "omnikiosk", "first level of every MQTT topic"),
    Setting("mqtt.host", "127.0.0.1", "broker host"),
    Setting("mqtt.port", 1883, "broker port", minimum=1),
    Setting("mqtt.username", "", "MQTT username; empty means the device id"),
    Setting("mqtt.password_file", None, "file holding this device's MQTT password", kind=str),
    Setting("mqtt.keepalive_s", 30, "MQTT keepalive in seconds", minimum=5),
    Setting("mqtt.session_expiry_s", 604800, "how long the broker keeps this device's session while offline", minimum=0),
    Setting("mqtt.tls_ca", "", "CA certificate file; set it to use TLS (required outside loopback)"),
    Setting("mqtt.tls_cert", "", "client certificate file (optional)"),
    Setting("mqtt.tls_key", "", "client key file (optional)"),
    Setting("mqtt.reconnect_min_s", 1.0, "shortest wait before reconnecting (jittered, doubling per failure)", minimum=0.1),
    Setting("mqtt.reconnect_max_s", 60.0, "longest wait before reconnecting", minimum=1),
    Setting("outbox.path", "/var/lib/omnikiosk/outbox.db", "the device outbox shared with the kiosk"),
    Setting("outbox.max_mb", 256, "the outbox's bound in MiB; the agent refuses to start with less free disk", minimum=1),
    Setting("outbox.max_rows", 500000, "the outbox's bound in rows", minimum=100),
    *[Setting(f"outbox.ttl_s.{row_type}", DEFAULT_TTL_S[row_type],
              f"time-to-live of a waiting {row_type} {'snapshot' if row_type == 'telemetry' else 'event'} "
              f"(priority {PRIORITY[row_type]})", minimum=60) for row_type in DEFAULT_TTL_S],
    Setting("catalog.path", "/var/lib/omnikiosk/catalog.db", "the product catalog cache this agent keeps in sync"),
    Setting("drain.window", 100, "events in flight to the broker at once", minimum=1),
    Setting("drain.unconfirmed_max", 1000, "events acknowledged by the broker but not yet receipted by the hub, at most",
            minimum=1),
    Setting("drain.receipt_timeout_s", 30.0, "send an event again when the hub has not receipted it this long", minimum=1),
    Setting("drain.poll_s", 0.05, "how often to look for events the kiosk appended (it writes from its own process)",
            minimum=0.01),
    Setting("telemetry.interval_s", 30.0, "how often to report health to the hub", minimum=1),
    Setting("api.port", 8090, "port of the local request API the kiosk calls (127.0.0.1 only)", minimum=1),
    Setting("kiosk.url", "http://127.0.0.1:8080", "the kiosk's local page and control API on this device"),
    Setting("local_api.token_file", "/var/lib/omnikiosk/local-api.token",
            "secret shared by kiosk and agent for their local APIs (created by whichever starts first)"),
    Setting("log.level", "INFO", "log level", choices=("DEBUG", "INFO", "WARNING", "ERROR")),
]

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def load_config(path: str | Path | None, environ: Mapping[str, str] | None = None) -> Config:
    document = tomllib.loads(Path(path).read_text()) if path else {}
    return parse_document(document, os.environ if environ is None else environ, source=str(path or "<defaults>"))


def parse_document(document: Mapping[str, Any], environ: Mapping[str, str], source: str) -> Config:
    config = parse(SETTINGS, document, environ, source=source)
    problems = []
    if config["mqtt.host"] not in LOOPBACK and not config["mqtt.tls_ca"]:
        problems.append("mqtt.tls_ca is required when the broker is not on loopback (passwords would cross the "
                        "store network in clear)")
    if config["mqtt.reconnect_min_s"] > config["mqtt.reconnect_max_s"]:
        problems.append("mqtt.reconnect_min_s must not exceed mqtt.reconnect_max_s")
    if bool(config["mqtt.tls_cert"]) != bool(config["mqtt.tls_key"]):
        problems.append("mqtt.tls_cert and mqtt.tls_key go together")
    if problems:
        raise ConfigError("\n".join(f"{source}: {p}" for p in problems))
    return config


def outbox_policy(config: Config) -> OutboxPolicy:
    return OutboxPolicy(max_rows=config["outbox.max_rows"], max_bytes=config["outbox.max_mb"] * 2**20,
                        ttl_s={row_type: config[f"outbox.ttl_s.{row_type}"] for row_type in DEFAULT_TTL_S})
