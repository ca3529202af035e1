"""The store's expected devices, read from the fleet file firmware_config renders from the inventory.

The file (`fleet.file`, usually /etc/omnikiosk/fleet.toml) names every device the store should
have, where it stands, and where the hub keeps each device's rendered configs:

    store = "s001"
    [[devices]]
    id = "s001-k01"
    role = "kiosk"
    location = "Entrance, left of the doors"
    kiosk_config = "devices/s001-k01/kiosk.toml"   # relative to the fleet file
    agent_config = "devices/s001-k01/agent.toml"

`parse_roster` checks a parsed document (pure); `load_roster_file` and `load_roster` read it.
Every problem is reported at once, each naming the file and the key.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from protocol.settings import ConfigError

ROLES = ("kiosk",)
# As firmware_config's inventory: a device id is an MQTT topic level, a broker username and a hostname.
DEVICE_ID = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
TOP_KEYS = ("store", "devices")
DEVICE_KEYS = ("id", "role", "location", "kiosk_config", "agent_config")
CONFIG_KEYS = {"kiosk": "kiosk_config", "agent": "agent_config"}


class RosterError(ConfigError):
    """The fleet file cannot be used: one line per problem, `FILE: key: what is wrong; what to do`."""


@dataclass(frozen=True)
class ExpectedDevice:
    id: str
    role: str
    location: str
    kiosk_config: Path | None    # absolute, or None when the file names none
    agent_config: Path | None

    def config_file(self, target: str) -> Path | None:
        """The rendered config of `target` ("kiosk" or "agent")."""
        return self.kiosk_config if target == "kiosk" else self.agent_config


@dataclass(frozen=True)
class Roster:
    source: str
    store: str
    devices: tuple[ExpectedDevice, ...]

    def device(self, device_id: str) -> ExpectedDevice | None:
        return next((d for d in self.devices if d.id == device_id), None)

    def __contains__(self, device_id: object) -> bool:
        return any(d.id == device_id for d in self.devices)

    @property
    def ids(self) -> list[str]:
        return [d.id for d in self.devices]


def parse_roster(document: Mapping[str, Any], *, source: str, base: Path, store: str | None = None) -> Roster:
    """A parsed fleet file as a Roster. `base` is the folder relative config paths start from; `store`,
    when given, is the hub's own store id, which the file must name."""
    problems: list[str] = []

    def problem(key: str, message: str) -> None:
        problems.append(f"{source}: {key}: {message}")

    for key in document:
        if key not in TOP_KEYS:
            problem(key, f"unknown key; a fleet file has {', '.join(TOP_KEYS)}")
    file_store = document.get("store")
    if not isinstance(file_store, str) or not file_store:
        problem("store", "required: the store id the file was rendered for, e.g. \"s001\"")
    elif store is not None and file_store != store:
        problem("store", f"{file_store!r} but this hub is store {store!r}; render the fleet file of this store "
                         "or point fleet.file at it")
    entries = document.get("devices", [])
    if not isinstance(entries, list) or not all(isinstance(e, Mapping) for e in entries):
        problem("devices", "must be an array of tables: one [[devices]] per device")
        entries = []
    devices: list[ExpectedDevice] = []
    first_at: dict[str, int] = {}
    for index, entry in enumerate(entries):
        device = _device(entry, f"devices[{index}]", base, problem)
        if device is None:
            continue
        if device.id in first_at:
            problem(f"devices[{index}].id", f"{device.id!r} is listed twice (first as devices[{first_at[device.id]}]); "
                                            "every device needs its own id")
            continue
        first_at[device.id] = index
        devices.append(device)
    if problems:
        raise RosterError("\n".join(problems))
    return Roster(source, file_store, tuple(devices))


def _device(entry: Mapping[str, Any], where: str, base: Path, problem) -> ExpectedDevice | None:
    ok = True
    for key in entry:
        if key not in DEVICE_KEYS:
            problem(f"{where}.{key}", f"unknown key; a device has {', '.join(DEVICE_KEYS)}")
            ok = False
    device_id = entry.get("id")
    if not isinstance(device_id, str) or not DEVICE_ID.fullmatch(device_id):
        problem(f"{where}.id", f"{device_id!r} is not a device id: lowercase a-z, 0-9 and '-', starting and ending "
                               "with a letter or digit, at most 63 characters (e.g. s001-k01)")
        ok = False
    else:
        where = f"{where} ({device_id})"
    role = entry.get("role", "kiosk")
    if role not in ROLES:
        problem(f"{where}.role", f"{role!r} is not a role the hub knows; choose one of: {', '.join(ROLES)}")
        ok = False
    location = entry.get("location")
    if not isinstance(location, str) or not location.strip():
        problem(f"{where}.location", "required: where the device stands, as staff say it (e.g. \"Shoes, aisle 4\")")
        ok = False
    paths: dict[str, Path | None] = {}
    for key in CONFIG_KEYS.values():
        value = entry.get(key)
        if value is None:
            paths[key] = None
        elif not isinstance(value, str) or not value.strip():
            problem(f"{where}.{key}", "must be a file path (relative to the fleet file), e.g. "
                                      f"\"devices/{device_id or 's001-k01'}/{key.split('_')[0]}.toml\"")
            ok = False
        else:
            paths[key] = base / value
    if not ok:
        return None
    return ExpectedDevice(device_id, role, location.strip(), paths["kiosk_config"], paths["agent_config"])


def load_roster_file(path: str | Path, *, store: str | None = None) -> Roster:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RosterError(f"{path}: cannot read the fleet file: {exc.strerror or exc}; check fleet.file, or "
                          "set it to \"\" to run without one") from None
    except UnicodeDecodeError:
        raise RosterError(f"{path}: the fleet file is not UTF-8 text; render it again") from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RosterError(f"{path}: not valid TOML ({exc}); render it again with firmware_config") from None
    return parse_roster(document, source=str(path), base=path.resolve().parent, store=store)


def load_roster(config: Mapping[str, Any]) -> Roster | None:
    """The hub's roster from `fleet.file`, checked against its `store`; None when no fleet file is set."""
    path = config.get("fleet.file", "")
    if not path:
        return None
    return load_roster_file(path, store=config["store"])
