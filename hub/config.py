"""The hub's settings, declared once."""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Mapping

from protocol.settings import Config, ConfigError, Setting, parse

SETTINGS = [
    Setting("store", None, "store id, e.g. s001", kind=str),
    Setting("store_name", "Omnikiosk store", "store name shown to staff"),
    Setting("demo", False, "demo mode: allows plain HTTP and the demo staff login; refused on a non-loopback address"),
    Setting("topic_prefix", "omnikiosk", "first level of every MQTT topic"),
    Setting("mqtt.host", "127.0.0.1", "broker host"),
    Setting("mqtt.port", 1883, "broker port", minimum=1),
    Setting("mqtt.username", "", "MQTT username; empty means hub-{store}"),
    Setting("mqtt.password_file", None, "file holding the hub's MQTT password", kind=str),
    Setting("mqtt.keepalive_s", 30, "MQTT keepalive in seconds", minimum=5),
    Setting("mqtt.session_expiry_s", 604800, "how long the broker queues events for the hub while it is down", minimum=0),
    Setting("mqtt.tls_ca", "", "CA certificate file; set it to use TLS (required outside loopback)"),
    Setting("mqtt.reconnect_min_s", 1.0, "shortest wait before reconnecting (jittered, doubling per failure)", minimum=0.1),
    Setting("mqtt.reconnect_max_s", 60.0, "longest wait before reconnecting", minimum=1),
    Setting("db.path", "/var/lib/omnikiosk/hub.db", "the hub's SQLite database"),
    Setting("web.host", "127.0.0.1", "address the staff web app listens on"),
    Setting("web.port", 8000, "port of the staff web app", minimum=1),
    Setting("web.secret_key_file", "", "file with the session signing key (required outside demo mode)"),
    Setting("web.tls_cert", "", "TLS certificate for the staff web app (required outside demo mode)"),
    Setting("web.tls_key", "", "TLS private key for the staff web app"),
    Setting("web.idle_timeout_min", 15, "sign staff out after this many idle minutes", minimum=1),
    Setting("online.base_url", None, "base URL of the online store API, e.g. https://shop.example/", kind=str),
    Setting("online.api_key_file", None, "file holding the online store API key", kind=str),
    Setting("online.timeout_s", 0.8, "time budget for fetching a profile on arrival", minimum=0.05),
    Setting("online.background_timeout_s", 10.0, "time budget of a background call (changes feeds, pushes)",
            minimum=0.5),
    Setting("online.webhook_secret_file", "", "file with the secret the online store signs webhooks with "
            "(empty: webhooks refused)"),
    Setting("online.breaker_failures", 5, "consecutive failures that open the circuit to the online store",
            minimum=1),
    Setting("online.breaker_cooldown_s", 30.0, "how long an open circuit answers at once before trying again",
            minimum=1),
    Setting("sync.interval_s", 60.0, "how often to pull the online store's customer and catalog changes",
            minimum=1),
    Setting("sync.reconcile_every_s", 21600.0, "how often to read both feeds from the start (webhooks get lost)",
            minimum=60),
    Setting("sync.prefetch_days", 30, "prefetch the profiles of members seen here in this many days", minimum=0),
    Setting("visits.gap_s", 1800.0, "a visit ends when its member did nothing at a kiosk for this long", minimum=60),
    Setting("offers.rules_file", "", "offer rules (TOML, docs/offers.md); empty: the bundled rules"),
    Setting("fleet.file", "", "the store's expected devices (fleet.toml, rendered by firmware_config; docs/hub.md); "
            "empty: none expected, the fleet view lists what reports"),
    Setting("stock.source", "online", "where this store's own stock comes from: the online store's feed, or "
            "the till (pos: python -m hub import-stock) — then the feed's rows for this store are ignored",
            choices=("online", "pos")),
    Setting("timezone", "UTC", "the store's IANA time zone (e.g. Europe/Amsterdam): the days and hours of the "
            "analytics, and the local time of a till's sale without an offset"),
    Setting("analytics.window_days", 30, "attribution window: a sale is credited to the customer's touches in this "
            "many days before it (docs/analytics.md); the manager page can ask for another (1 to 365)", minimum=1),
    Setting("analytics.currency", "EUR", "the store's currency (ISO 4217, e.g. EUR): a POS sale in another is refused"),
    Setting("pos.api_key_file", "", "file with the key the till sends as Authorization: Bearer to "
            "POST /api/v1/pos/sales (docs/pos.md); empty: POS import over HTTP is off"),
    Setting("profile.ttl_s", 900, "a cached profile younger than this is used without asking the online store", minimum=0),
    Setting("arrivals.late_after_s", 120, "a check-in older than this when it reaches the hub is shown as late", minimum=1),
    Setting("requests.rate_per_s", 20.0, "requests a device may make per second (bursts up to requests.burst)",
            minimum=0.1),
    Setting("requests.burst", 40, "requests a device may make at once before the rate applies", minimum=1),
    Setting("requests.workers", 4, "threads answering devices' requests", minimum=1),
    Setting("requests.profile_budget_s", 0.2, "time to fetch a member's profile for a kiosk's answer", minimum=0.05),
    Setting("log.level", "INFO", "log level", choices=("DEBUG", "INFO", "WARNING", "ERROR")),
]

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def load_config(path: str | Path | None, environ: Mapping[str, str] | None = None) -> Config:
    document = tomllib.loads(Path(path).read_text()) if path else {}
    config = parse(SETTINGS, document, os.environ if environ is None else environ,
                   source=str(path or "<defaults>"))
    check_values(config)
    check_security(config)
    return config


def check_values(config: Config) -> None:
    """Values a Setting's type and choices cannot check: the time zone and the currency."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
    problems = []
    try:
        ZoneInfo(config["timezone"])
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: "America" is a folder, a name too long
        problems.append(f"timezone = {config['timezone']!r} is not a time zone; use an IANA name such as "
                        "Europe/Amsterdam or America/New_York")
    if not re.fullmatch(r"[A-Z]{3}", config["analytics.currency"]):
        problems.append(f"analytics.currency = {config['analytics.currency']!r} is not a currency code; "
                        "use three capital letters such as EUR")
    if config["analytics.window_days"] > 365:
        problems.append(f"analytics.window_days = {config['analytics.window_days']} is over a year; use 1 to 365")
    if problems:
        raise ConfigError("\n".join(f"{config.source}: {p}" for p in problems))


def check_security(config: Config) -> None:
    """Refuse demo-only shortcuts outside demo mode, and demo mode outside loopback."""
    problems = []
    if config["demo"] and config["web.host"] not in LOOPBACK:
        problems.append(f"demo mode serves plain HTTP with a known login: web.host must be loopback, "
                        f"not {config['web.host']!r}")
    if not config["demo"]:
        if not config["web.secret_key_file"]:
            problems.append("web.secret_key_file is required outside demo mode")
        if not (config["web.tls_cert"] and config["web.tls_key"]):
            problems.append("web.tls_cert and web.tls_key are required outside demo mode (staff log in over HTTPS)")
        if config["mqtt.host"] not in LOOPBACK and not config["mqtt.tls_ca"]:
            problems.append("mqtt.tls_ca is required when the broker is not on loopback")
    if problems:
        raise ConfigError("\n".join(f"{config.source}: {p}" for p in problems))
