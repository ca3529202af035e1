"""Typed settings declared once as data: parsed from TOML and `OMNIKIOSK_*` overrides, pure.

Each process declares its settings (key, default, help); the same list drives parsing,
`--check-config`, `--help` text and docs/configuration.md, so none can drift.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

ENV_PREFIX = "OMNIKIOSK_"


@dataclass(frozen=True)
class Setting:
    key: str                      # dotted: "mqtt.host"
    default: Any                  # its type is the setting's type; None means required
    help: str
    kind: type | None = None      # needed when default is None
    choices: tuple[Any, ...] = ()
    minimum: float | None = None

    @property
    def type(self) -> type:
        return self.kind or type(self.default)

    @property
    def env_name(self) -> str:
        return ENV_PREFIX + self.key.upper().replace(".", "_")


class ConfigError(ValueError):
    """A config problem a person can fix: says where, which key and what is allowed."""


class Config(Mapping[str, Any]):
    """Validated settings, read as `config["mqtt.host"]`."""

    def __init__(self, values: Mapping[str, Any], source: str = "<defaults>"):
        self._values = dict(values)
        self.source = source

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self):
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Config({self.source})"


def parse(settings: Iterable[Setting], document: Mapping[str, Any], environ: Mapping[str, str],
          source: str = "<config>") -> Config:
    """Merge defaults, a TOML document (already parsed) and environment overrides; validate."""
    declared = {s.key: s for s in settings}
    flat = _flatten(document, source)
    errors = [f"{source}: unknown key {key!r}; known keys: see docs/configuration.md"
              for key in flat if key not in declared]
    values: dict[str, Any] = {}
    for key, setting in declared.items():
        raw, origin = flat.get(key, setting.default), source
        if setting.env_name in environ:
            raw, origin = environ[setting.env_name], f"environment {setting.env_name}"
            raw = _from_env(raw, setting, origin, errors)
        if raw is None:
            errors.append(f"{source}: {key} is required ({setting.help})")
            continue
        value = _coerce(raw, setting, origin, errors)
        if value is not None:
            values[key] = value
    if errors:
        raise ConfigError("\n".join(errors))
    return Config(values, source)


def _flatten(document: Mapping[str, Any], source: str, prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for name, value in document.items():
        key = f"{prefix}{name}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, source, key + "."))
        else:
            flat[key] = value
    return flat


def _from_env(raw: str, setting: Setting, origin: str, errors: list[str]) -> Any:
    kind = setting.type
    if kind is bool:
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        errors.append(f"{origin}: {setting.key} must be true or false, got {raw!r}")
        return None
    if kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            errors.append(f"{origin}: {setting.key} must be a number, got {raw!r}")
            return None
    if kind is list:
        return [part.strip() for part in raw.split(",") if part.strip()]
    return raw


def _coerce(raw: Any, setting: Setting, origin: str, errors: list[str]) -> Any:
    kind = setting.type
    ok = isinstance(raw, kind) and not (kind is int and isinstance(raw, bool))
    if kind is float and isinstance(raw, int) and not isinstance(raw, bool):
        raw, ok = float(raw), True
    if not ok:
        errors.append(f"{origin}: {setting.key} must be {kind.__name__}, got {type(raw).__name__} {raw!r}")
        return None
    if kind is float and not math.isfinite(raw):   # nan passes every comparison with a minimum
        errors.append(f"{origin}: {setting.key} = {raw!r} must be a finite number")
        return None
    if setting.choices and raw not in setting.choices:
        allowed = ", ".join(map(str, setting.choices))
        errors.append(f"{origin}: {setting.key} = {raw!r} is not allowed; choose one of: {allowed}")
        return None
    if setting.minimum is not None and raw < setting.minimum:
        errors.append(f"{origin}: {setting.key} = {raw!r} is below the minimum {setting.minimum}")
        return None
    return raw


def describe(settings: Iterable[Setting]) -> str:
    """A Markdown table of settings (used by --help epilogs and the docs check)."""
    rows = ["| key | default | environment | meaning |", "| --- | --- | --- | --- |"]
    for s in settings:
        default = "(required)" if s.default is None else f"`{s.default!r}`"
        rows.append(f"| `{s.key}` | {default} | `{s.env_name}` | {s.help} |")
    return "\n".join(rows)


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    """{"scan.fps": 8} → {"scan": {"fps": 8}}: the shape a TOML file has."""
    document: dict[str, Any] = {}
    for key, value in flat.items():
        *tables, name = key.split(".")
        node = document
        for table in tables:
            node = node.setdefault(table, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{key}: {table} is a value, not a table")
        node[name] = value
    return document


def merge(document: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """A TOML document with dotted `changes` applied (a config.update)."""
    flat = _flatten(document, "<document>")
    flat.update(changes)
    return unflatten(flat)


def to_toml(document: Mapping[str, Any], prefix: str = "") -> str:
    """Enough TOML for our configs: scalars and lists first, then one table per nested dict.
    JSON strings, numbers, booleans and arrays of them are valid TOML values."""
    import json
    scalars = [f"{_toml_key(k)} = {json.dumps(v, ensure_ascii=False)}" for k, v in document.items()
               if not isinstance(v, Mapping)]
    tables = [f"\n[{prefix}{_toml_key(k)}]\n" + to_toml(v, f"{prefix}{_toml_key(k)}.")
              for k, v in document.items() if isinstance(v, Mapping)]
    return "\n".join(scalars) + ("\n" if scalars else "") + "".join(tables)


def _toml_key(key: str) -> str:
    import json
    import re
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)
