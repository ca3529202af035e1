"""The kiosk's settings, declared once, and the rules a config document must pass (at start and on config.update)."""

from __future__ import annotations

import json
import math
import os
import tomllib
from pathlib import Path
from typing import Any, Callable, Mapping

from kiosk.camera import ROTATIONS
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
    Setting("local_api.token_file", "/var/lib/omnikiosk/local-api.token",
            "token shared with the edge agent for the local APIs both ways (created, mode 0600, if missing)"),
    Setting("camera.source", "camera:0", "frame source: camera:INDEX, picamera:INDEX, video:PATH or folder:PATH"),
    Setting("camera.width", 640, "camera capture width in pixels", minimum=160),
    Setting("camera.height", 480, "camera capture height in pixels", minimum=120),
    Setting("camera.fps", 30.0, "frame rate asked of the camera (0: the camera's default)", minimum=0),
    Setting("camera.fourcc", "MJPG", "pixel format asked of a USB camera (MJPG, YUYV, or empty for its default)"),
    Setting("camera.rotation", 0, "degrees clockwise to turn every frame so codes read upright (the camera is "
            "mounted turned)", choices=ROTATIONS),
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
DECLARED = {s.key: s for s in SETTINGS}
SOURCE_KINDS = ("camera", "picamera", "video", "folder")


def load_config(path: str | Path | None, environ: Mapping[str, str] | None = None) -> Config:
    document = tomllib.loads(Path(path).read_text()) if path else {}
    return check_document(document, os.environ if environ is None else environ, source=str(path or "<defaults>"))


def check_document(document: Mapping[str, Any], environ: Mapping[str, str], source: str) -> Config:
    """A parsed TOML document plus environment overrides as a Config, or a ConfigError listing every problem."""
    problems: list[str] = []
    try:
        config: Config | None = parse(SETTINGS, document, environ, source=source)
    except ConfigError as exc:
        problems.extend(str(exc).splitlines())
        config = None
    # When parsing failed the rules below still look at the values that have the right type,
    # so one answer lists every problem instead of one per attempt.
    values = dict(config) if config is not None else _typed_values(document)
    for key, rule in RULES.items():
        problem = rule(values[key]) if key in values else None
        if problem:
            problems.append(f"{source}: {key} {problem}")
    problems += [f"{source}: {key} = {value!r} must be a finite number" for key, value in _flat(document).items()
                 if isinstance(value, float) and not math.isfinite(value)]
    if problems:
        raise ConfigError("\n".join(problems))
    assert config is not None
    return config


def load_keys(path: str):
    """The online store's public keys for member tokens, from `tokens.jwks_file`."""
    from protocol.tokens import KeySet
    try:
        return KeySet.from_jwks(json.loads(Path(path).read_text()))
    except OSError as exc:
        raise ConfigError(f"cannot read tokens.jwks_file {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise ConfigError(f"tokens.jwks_file {path}: {exc}") from None


def _symbologies(value: list) -> str | None:
    unknown = [str(name) for name in value if name not in SUPPORTED_SYMBOLOGIES]
    if unknown:
        return f"has {', '.join(unknown)}; choose from {', '.join(SUPPORTED_SYMBOLOGIES)}"
    if not value:
        return "is empty; name at least one barcode type"
    return None


def _camera_source(value: str) -> str | None:
    kind, _, target = value.partition(":")
    if kind not in SOURCE_KINDS:
        return "must start with camera:, picamera:, video: or folder:"
    if kind in ("camera", "picamera") and not target.isdigit():
        return f"needs a camera index, e.g. {kind}:0"
    if not target:
        return f"needs a path after {kind}:"
    return None


def _fourcc(value: str) -> str | None:
    return "must be four characters such as MJPG, or empty" if value and len(value) != 4 else None


RULES: dict[str, Callable[[Any], str | None]] = {
    "scan.symbologies": _symbologies,
    "camera.source": _camera_source,
    "camera.fourcc": _fourcc,
}


def _flat(document: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for name, value in document.items():
        if isinstance(value, Mapping):
            flat.update(_flat(value, f"{prefix}{name}."))
        else:
            flat[f"{prefix}{name}"] = value
    return flat


def _typed_values(document: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in _flat(document).items()
            if key in DECLARED and isinstance(value, DECLARED[key].type)}
