"""IT's config.update on a running kiosk: which settings change live, and changing them without a restart.

The pure parts (which keys are live, what differs between two configs, what to answer) are
plain functions; `KioskControl` does the file and the running objects, one update at a time.
"""

from __future__ import annotations

import logging
import stat
import threading
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from kiosk.camera import open_source
from kiosk.config import DECLARED, check_document, load_keys
from kiosk.decoders import make_live_decoder
from protocol.cli import write_atomically
from protocol.settings import Config, ConfigError, merge, to_toml

log = logging.getLogger("kiosk.control")

# Settings the running kiosk takes over at once. Anything else (store, device, outbox.path,
# catalog.path, web.port, agent.url, local_api.token_file, and any setting added later) is
# written and waits for a restart: those are wired into open files, sockets and other processes.
DECODER_KEYS = ("scan.symbologies", "scan.decoder", "scan.try_inverted")
CAMERA_KEYS = ("camera.source", "camera.width", "camera.height", "camera.fps", "camera.fourcc", "camera.rotation")
TOKEN_KEYS = ("tokens.jwks_file", "tokens.issuer", "tokens.leeway_s")
BRAND_KEYS = ("brand.name", "brand.primary", "brand.accent", "brand.logo_url")
# The page reads these when it loads (colours, name, its own idle fallback timer): it reloads.
PAGE_KEYS = BRAND_KEYS + ("session.idle_timeout_s",)
LIVE_KEYS = frozenset(("scan.fps", "scan.debounce_s", "scan.confirm_window_s", *DECODER_KEYS, *CAMERA_KEYS,
                       "session.idle_timeout_s", *TOKEN_KEYS, "agent.timeout_s", *BRAND_KEYS, "log.level"))


def is_live(key: str) -> bool:
    return key in LIVE_KEYS


def changed_keys(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """Keys whose value differs between two configs, in a stable order."""
    return sorted(key for key in set(before) | set(after) if before.get(key) != after.get(key))


def overridden_keys(keys: Iterable[str], environ: Mapping[str, str]) -> list[str]:
    """Keys an OMNIKIOSK_* variable sets: the file may say otherwise, the environment wins."""
    return sorted(key for key in keys if key in DECLARED and DECLARED[key].env_name in environ)


@dataclass(frozen=True)
class UpdatePlan:
    applied: list[str]           # live keys now in effect
    restart_required: list[str]  # written; the running kiosk still uses the value it started with
    overridden: list[str]        # written, but an environment variable decides the value

    def as_result(self) -> dict[str, list[str]]:
        return {"applied": self.applied, "restart_required": self.restart_required, "overridden": self.overridden}


def plan_update(running: Mapping[str, Any], new: Mapping[str, Any], requested: Iterable[str],
                environ: Mapping[str, str]) -> UpdatePlan:
    """What a config.update does: `running` is what the kiosk runs with, `new` the config of the updated file."""
    requested = set(requested)
    overridden = overridden_keys(requested, environ)
    changed = changed_keys(running, new)
    # A key changed by hand in the file since the start takes effect too, so it is reported.
    applied = sorted(key for key in requested | set(changed) if is_live(key) and key not in overridden)
    return UpdatePlan(applied, [key for key in changed if not is_live(key)], overridden)


def running_after(running: Config, new: Config) -> Config:
    """The config a kiosk runs with after an update: live keys from `new`, the rest as started."""
    return Config({key: new[key] if is_live(key) else running[key] for key in new}, new.source)


class ControlError(Exception):
    """Why a local API call was refused: an HTTP status, an error code and a message IT can act on."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def check_values(settings: Mapping[str, Any]) -> list[str]:
    """Settings arrive as dotted keys with plain values; a table would replace a whole section."""
    problems = []
    for key, value in settings.items():
        plain = isinstance(value, (str, int, float, bool)) or (
            isinstance(value, list) and all(isinstance(v, (str, int, float, bool)) for v in value))
        if not plain:
            problems.append(f"{key}: give a string, number, boolean or list of them (use dotted keys for tables)")
    return problems


class KioskControl:
    """Applies config.update to the running kiosk: validate, write the file atomically, then change what runs.

    `loop` is the ScanLoop, `shopper` the Shopper, `screen` the web.Screen. A failed update
    changes neither the file nor the running kiosk.
    """

    def __init__(self, config: Config, *, path: str | Path | None, environ: Mapping[str, str], loop, shopper,
                 screen, open_source: Callable[..., Any] = open_source,
                 load_keys: Callable[[str], Any] = load_keys,
                 make_decoder: Callable[..., Any] = make_live_decoder):
        self.config = config
        self.path = Path(path) if path else None
        self.environ = environ
        self.loop, self.shopper, self.screen = loop, shopper, screen
        self._open_source, self._load_keys, self._make_decoder = open_source, load_keys, make_decoder
        self._lock = threading.Lock()

    def update(self, settings: Mapping[str, Any]) -> dict[str, list[str]]:
        """Raises ControlError (and changes nothing) on any problem."""
        with self._lock:
            if self.path is None:
                raise ControlError(409, "failed", "this kiosk was started without --config, so there is no file "
                                                  "to update; start it with a config file")
            merged, text, new = self._checked(self._read_document(), settings)
            plan = plan_update(self.config, new, settings, self.environ)
            changed = set(changed_keys(self.config, new))
            keys = self._keys_for(new, changed | set(settings))
            decoder = self._decoder_for(new) if changed & set(DECODER_KEYS) else None
            swapped = bool(changed & set(CAMERA_KEYS))
            if swapped:
                self._swap_camera(new, fallback=self.config)
            try:
                write_atomically(self.path, text, stat.S_IMODE(self.path.stat().st_mode))
            except OSError as exc:
                if swapped:
                    self._swap_camera(self.config, fallback=None)
                raise ControlError(500, "failed", f"cannot write {self.path}: {exc.strerror or exc}") from None
            self._apply(new, keys, decoder, page_changed=bool(changed & set(PAGE_KEYS)),
                        log_level="log.level" in changed | set(settings))
            self.config = running_after(self.config, new)
            log.info("config updated", extra={"applied": plan.applied, "restart_required": plan.restart_required,
                                              "overridden": plan.overridden})
            return plan.as_result()

    def _read_document(self) -> dict[str, Any]:
        try:
            return tomllib.loads(self.path.read_text())
        except OSError as exc:
            raise ControlError(409, "failed", f"cannot read {self.path}: {exc.strerror or exc}") from None
        except ValueError as exc:  # tomllib.TOMLDecodeError: someone edited the file by hand
            raise ControlError(409, "failed", f"{self.path} is not valid TOML ({exc}); fix it first") from None

    def _checked(self, document: dict[str, Any], settings: Mapping[str, Any]) -> tuple[dict[str, Any], str, Config]:
        problems = check_values(settings)
        if problems:
            raise ControlError(400, "bad_args", "\n".join(problems))
        try:
            merged = merge(document, settings)
            new = check_document(merged, self.environ, source=str(self.path))
        except ConfigError as exc:
            raise ControlError(400, "bad_args", str(exc)) from None
        text = to_toml(merged)
        # What is written must load again at the next start, or systemd would restart a kiosk that cannot run.
        try:
            same = tomllib.loads(text) == merged
        except ValueError:
            same = False
        if not same:
            raise ControlError(400, "bad_args", "these values cannot be written as TOML (control characters?)")
        return merged, text, new

    def _keys_for(self, new: Config, touched: set[str]):
        """Member token keys, read again whenever a tokens.* key is sent: that is how IT reloads a rotated JWKS."""
        if not touched & set(TOKEN_KEYS):
            return None
        try:
            return self._load_keys(new["tokens.jwks_file"])
        except ConfigError as exc:
            raise ControlError(400, "bad_args", str(exc)) from None

    def _decoder_for(self, new: Config):
        return self._make_decoder(new["scan.decoder"], tuple(new["scan.symbologies"]),
                                  try_inverted=new["scan.try_inverted"])

    def _swap_camera(self, config: Mapping[str, Any], fallback: Mapping[str, Any] | None) -> None:
        try:
            self.loop.replace_source(lambda: self._source_for(config))
        # Camera drivers (Picamera2 above all) raise their own exception types.
        except Exception as exc:
            if fallback is not None:
                self._swap_camera(fallback, fallback=None)
                raise ControlError(400, "bad_args", f"camera.source {config['camera.source']}: {exc}; "
                                                    "the camera in use before was kept") from None
            log.exception("cannot reopen the camera", extra={"source": config["camera.source"]})

    def _source_for(self, config: Mapping[str, Any]):
        return self._open_source(config["camera.source"], width=config["camera.width"],
                                 height=config["camera.height"], fps=config["camera.fps"],
                                 fourcc=config["camera.fourcc"], rotation=config["camera.rotation"])

    def _apply(self, new: Config, keys, decoder, *, page_changed: bool, log_level: bool) -> None:
        """Only assignments here: nothing can fail once the file is written."""
        loop, shopper = self.loop, self.shopper
        loop.set_fps(new["scan.fps"])
        loop.set_windows(debounce_s=new["scan.debounce_s"], confirm_window_s=new["scan.confirm_window_s"])
        if decoder is not None:
            loop.decoder = decoder
        shopper.idle_timeout_s = new["session.idle_timeout_s"]
        if keys is not None:
            shopper.keys = keys
        shopper.issuer = new["tokens.issuer"] or None
        shopper.leeway_s = new["tokens.leeway_s"]
        if shopper.hub is not None:
            shopper.hub.timeout_s = new["agent.timeout_s"]
        if log_level:
            set_log_level(new["log.level"])
        if page_changed:
            self.screen.reload()


def set_log_level(level: str) -> None:
    root = logging.getLogger()
    root.setLevel(level)
    # as protocol.jsonlog.setup: Werkzeug's request log stays at warnings
    logging.getLogger("werkzeug").setLevel(max(logging.WARNING, root.level))
