"""The kiosk's settings, declared once."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Mapping

from kiosk.decode import SUPPORTED_SYMBOLOGIES, SYMBOLOGIES
from kiosk.decoders import BACKENDS, DEFAULT_BACKEND
from protocol.settings import Config, ConfigError, Setting, parse

SETTINGS = [
    Setting("store", None, "store id, e.g. s001", kind=str),
    Setting("device", None, "this kiosk's id, e.g. s001-k01", kind=str),
    Setting("outbox.path", "/var/lib/omnikiosk/outbox.db", "the device outbox shared with the edge agent"),
    Setting("catalog.path", "/var/lib/omnikiosk/catalog.db", "the product catalog cache the edge agent keeps in sync"),
    Setting("agent.url", "http://127.0.0.1:8090", "the edge agent's local request API (personal offers)"),
    Setting("agent.timeout_s", 0.3, "how long to wait for the hub's answer before falling back", minimum=0.05),
    Setting("camera.source", "camera:0", "frame source: camera:INDEX, picamera:INDEX, video:PATH or folder:PATH"),
    Setting("camera.width", 640, "camera capture width in pixels", minimum=160),
    Setting("camera.height", 480, "camera capture height in pixels", minimum=120),
    Setting("camera.fps", 30.0, "frame rate asked of the camera (0: the camera's default)", minimum=0),
    Setting("camera.fourcc", "MJPG", "pixel format asked of a USB camera (MJPG, YUYV, or empty for its default)"),
    Setting("scan.fps", 10.0, "frames decoded per second at most", minimum=0.5),
    Setting("scan.debounce_s", 3.0, "the same code again within this many seconds is the same scan", minimum=0),
    Setting("scan.confirm_window_s", 1.0, "a barcode acts once read twice within this many seconds", minimum=0.05),
    Setting("scan.symbologies", list(SYMBOLOGIES), "barcode types to read (fewer is faster)"),
    Setting("scan.decoder", DEFAULT_BACKEND, "decoder backend: zxing or pyzbar (see docs/decoders.md)",
            choices=BACKENDS),
    Setting("scan.try_inverted", True, "also read light-on-dark codes (phones in dark mode)"),
    Setting("session.idle_timeout_s", 30.0, "a shopper session ends after this long without a scan", minimum=3),
    Setting("tokens.jwks_file", None, "the online store's public keys (JWKS) for member tokens", kind=str),
    Setting("tokens.issuer", "", "expected `iss` of member tokens; empty accepts any issuer the keys sign for"),
    Setting("tokens.leeway_s", 30, "clock tolerance for token times, in seconds", minimum=0),
    Setting("web.port", 8080, "port of the shopper page on 127.0.0.1", minimum=1),
    Setting("brand.name", "Omnikiosk", "store name on the shopper screen"),
    Setting("brand.primary", "#0b5fff", "main colour (CSS hex)"),
    Setting("brand.accent", "#ffb300", "accent colour (CSS hex)"),
    Setting("brand.logo_url", "", "logo image URL served on the store LAN (optional)"),
    Setting("log.level", "INFO", "log level", choices=("DEBUG", "INFO", "WARNING", "ERROR")),
]


def load_config(path: str | Path | None, environ: Mapping[str, str] | None = None) -> Config:
    document = tomllib.loads(Path(path).read_text()) if path else {}
    config = parse(SETTINGS, document, os.environ if environ is None else environ, source=str(path or "<defaults>"))
    unknown = [name for name in config["scan.symbologies"] if name not in SUPPORTED_SYMBOLOGIES]
    if unknown:
        raise ConfigError(f"{config.source}: scan.symbologies has {', '.join(unknown)}; "
                          f"choose from {', '.join(SUPPORTED_SYMBOLOGIES)}")
    if config["camera.source"].split(":", 1)[0] not in ("camera", "picamera", "video", "folder"):
        raise ConfigError(f"{config.source}: camera.source must start with camera:, picamera:, video: or folder:")
    if config["camera.fourcc"] and len(config["camera.fourcc"]) != 4:
        raise ConfigError(f"{config.source}: camera.fourcc must be four characters such as MJPG, or empty")
    return config
