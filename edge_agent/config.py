"""The edge agent's settings, declared once."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Mapping

from protocol.settings import Config, Setting, parse

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
    Setting("outbox.path", "/var/lib/omnikiosk/outbox.db", "the device outbox shared with the kiosk"),
    Setting("drain.window", 20, "events in flight to the broker at once", minimum=1),
    Setting("drain.poll_s", 0.2, "how often to look for new events when idle", minimum=0.01),
    Setting("log.level", "INFO", "log level", choices=("DEBUG", "INFO", "WARNING", "ERROR")),
]


def load_config(path: str | Path | None, environ: Mapping[str, str] | None = None) -> Config:
    document = tomllib.loads(Path(path).read_text()) if path else {}
    return parse(SETTINGS, document, os.environ if environ is None else environ, source=str(path or "<defaults>"))
