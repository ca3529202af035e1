"""A store's inventory file: its schema (declared once, as data), loading, and errors that name file, line and key.

One TOML file per store describes the store, its online store, its network, its hub and its
kiosks. `load_inventory(path)` returns a typed, frozen `Inventory` or raises `InventoryError`
listing every problem at once, each as `FILE:LINE: key.path: what is wrong; what is allowed`.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

REQUIRED = object()
ID_RULE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
PREFIX_RULE = re.compile(r"[A-Za-z0-9_-]+(?:/[A-Za-z0-9_-]+)*")
SSH_KEY_RULE = re.compile(r"(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com"
                          r"|sk-ecdsa-sha2-nistp256@openssh\.com) [A-Za-z0-9+/=]{16,}( .*)?")
SECRET_NAME_RULE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# What the live scan loop can decode at its frame rate on a Raspberry Pi 4 (docs/decoders.md:
# zxing-cpp reads a 640x480 frame in ~1-4 ms on x86, pyzbar in 12-26 ms; 1280x720 costs 2-3x,
# ARM 3-6x more). Past these sizes the loop falls below scan.fps and codes are missed.
MAX_PIXELS = {"zxing": (1920, 1080), "pyzbar": (1280, 720)}
MIN_RESOLUTION = (320, 240)
DECODERS = tuple(MAX_PIXELS)
ROTATIONS = (0, 90, 180, 270)


class InventoryError(ValueError):
    """Every problem of an inventory, one per line: `FILE:LINE: key.path: problem`."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass(frozen=True)
class Field:
    key: str
    kind: type
    default: Any
    help: str
    choices: tuple[Any, ...] = ()
    minimum: float | None = None
    check: Callable[[Any], str | None] | None = None   # returns what is wrong and what is allowed


# --- value rules (pure; each returns a problem or None) ------------------------------------------

def _id(value: str) -> str | None:
    if not ID_RULE.fullmatch(value):
        return ("must be usable as an MQTT topic level and a hostname: lowercase a-z, 0-9 and '-', "
                "starting and ending with a letter or digit, at most 63 characters (e.g. s001-k01)")
    return None


def _prefix(value: str) -> str | None:
    return None if PREFIX_RULE.fullmatch(value) else (
        "must be letters, digits, '_' or '-' in levels separated by '/', without MQTT wildcards (e.g. omnikiosk)")


def _timezone(value: str) -> str | None:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: "America" is a folder, a name too long
        return "is not a time zone; use an IANA name such as Europe/Amsterdam or America/New_York"
    return None


def _hostname(value: str) -> str | None:
    labels = value.split(".")
    if len(value) > 253 or not all(ID_RULE.fullmatch(label.lower()) for label in labels):
        return "must be a DNS name such as hub-s001.store.example (letters, digits, '-', dots between labels)"
    return None


def _ip(value: str) -> str | None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return "must be an IPv4 or IPv6 address such as 10.20.1.10"
    return None


def _optional_ip(value: str) -> str | None:
    return _ip(value) if value else None


def _url(value: str) -> str | None:
    if re.fullmatch(r"https://[^\s/]+(/\S*)?", value):
        return None
    if re.fullmatch(r"http://(127\.0\.0\.1|localhost)(:\d+)?(/\S*)?", value):
        return None
    return "must be an https:// URL (plain http only for a server on this machine's loopback)"


def _ssh_keys(value: list) -> str | None:
    if not value:
        return "is empty; give at least one public key (devices have no password login)"
    bad = [i for i, key in enumerate(value) if not (isinstance(key, str) and SSH_KEY_RULE.fullmatch(key.strip()))]
    if bad:
        return (f"entry {bad[0]} is not an OpenSSH public key; paste a line of ~/.ssh/id_ed25519.pub "
                "(ssh-ed25519 AAAA... comment)")
    return None


def _secret_name(value: str) -> str | None:
    return None if SECRET_NAME_RULE.fullmatch(value) else (
        "must be a file name inside the secrets folder (letters, digits, '.', '_', '-'), not a path")


def _resolution(value: str) -> str | None:
    match = re.fullmatch(r"(\d{3,4})x(\d{3,4})", value)
    if not match:
        return "must be WIDTHxHEIGHT in pixels, e.g. 1280x720"
    width, height = int(match[1]), int(match[2])
    if width < MIN_RESOLUTION[0] or height < MIN_RESOLUTION[1]:
        return f"is too small to read a code from arm's length; at least {MIN_RESOLUTION[0]}x{MIN_RESOLUTION[1]}"
    if width % 2 or height % 2:
        return "must have an even width and height (camera pixel formats pack pixel pairs)"
    return None


def _country(value: str) -> str | None:
    return None if value == "" or re.fullmatch(r"[A-Z]{2}", value) else (
        "must be a two-letter ISO 3166 country code in capitals, e.g. NL (the Wi-Fi regulatory domain)")


def _symbologies(value: list) -> str | None:
    from kiosk.decode import SUPPORTED_SYMBOLOGIES
    unknown = [str(name) for name in value if name not in SUPPORTED_SYMBOLOGIES]
    if unknown:
        return f"has {', '.join(unknown)}; choose from {', '.join(SUPPORTED_SYMBOLOGIES)}"
    return "is empty; name at least one barcode type" if not value else None


# --- the schema --------------------------------------------------------------------------------

STORE = [
    Field("id", str, REQUIRED, "store id: first topic level after the prefix and part of every device id", check=_id),
    Field("name", str, REQUIRED, "the store's name as staff and shoppers see it"),
    Field("timezone", str, REQUIRED, "IANA time zone of the store, e.g. Europe/Amsterdam", check=_timezone),
    Field("topic_prefix", str, "omnikiosk", "first level of every MQTT topic", check=_prefix),
    Field("hub_host", str, REQUIRED, "the hub's DNS name on the store network (in its TLS certificate)",
          check=_hostname),
    Field("hub_ip", str, REQUIRED, "the hub's fixed address on the store network (in its TLS certificate)",
          check=_ip),
    Field("admin_user", str, "it", "login for IT on every device (SSH keys only, no password)", check=_id),
    Field("ssh_keys", list, REQUIRED, "OpenSSH public keys allowed to log in as admin_user", check=_ssh_keys),
]
ONLINE = [
    Field("base_url", str, REQUIRED, "base URL of the online store's API", check=_url),
    Field("jwks_file", str, REQUIRED, "the online store's public keys for member QR codes (JWKS), "
          "relative to this inventory"),
    Field("api_key_file", str, "online-api-key", "file in the secrets folder holding the API key the online "
          "store issued (you put it there)", check=_secret_name),
    Field("webhook_secret_file", str, "webhook-secret", "file in the secrets folder with the webhook signing secret "
          "(generated; give it to the online store)", check=_secret_name),
]
NETWORK = [
    Field("mode", str, "ethernet", "how kiosks reach the store network", choices=("ethernet", "wifi")),
    Field("ssid", str, "", "Wi-Fi network name (mode = wifi)"),
    Field("psk_file", str, "wifi-psk", "file in the secrets folder holding the Wi-Fi passphrase (you put it there)",
          check=_secret_name),
    Field("country", str, "", "Wi-Fi regulatory country (mode = wifi), e.g. NL", check=_country),
    Field("gateway", str, "", "default gateway for kiosks with a fixed ip (empty: DHCP everywhere)",
          check=_optional_ip),
    Field("dns", list, [], "DNS servers for kiosks with a fixed ip"),
    Field("prefix_length", int, 24, "network prefix length for fixed addresses", minimum=8),
]
HUB = [
    Field("id", str, "", "the hub's device id and hostname (default: STORE-hub)", check=lambda v: _id(v) if v else None),
    Field("web_port", int, 443, "HTTPS port of the staff web app", minimum=1),
    Field("stock_source", str, "online", "where the store's own stock comes from", choices=("online", "pos")),
    Field("idle_timeout_min", int, 15, "sign staff out after this many idle minutes", minimum=1),
    Field("max_message_kb", int, 32, "largest MQTT message the broker accepts (an event is at most 16 KiB)",
          minimum=17),
]
INSTALL = [
    Field("package", str, "omnikiosk", "pip requirement installed into /opt/omnikiosk/venv "
          "(a name, name==version, or a wheel URL on the store network)"),
    Field("index_url", str, "", "pip index to install from (empty: pip's default)",
          check=lambda v: _url(v) if v else None),
]
BRIDGE = [
    Field("address", str, REQUIRED, "the central broker's DNS name", check=_hostname),
    Field("port", int, 8883, "the central broker's TLS port", minimum=1),
    Field("ca_file", str, REQUIRED, "the central broker's CA certificate, relative to this inventory"),
    Field("username", str, "", "this store's login at the central broker (default: bridge-STORE)",
          check=lambda v: _id(v) if v else None),
]
KIOSK = [
    Field("role", str, "kiosk", "what the device is", choices=("kiosk",)),
    Field("location", str, REQUIRED, "where it stands, as staff say it, e.g. \"Shoes, aisle 4\""),
    Field("camera", str, "picamera", "camera module through Picamera2, or a USB camera", choices=("picamera", "usb")),
    Field("camera_index", int, 0, "which camera: Picamera2 index or /dev/videoN", minimum=0),
    Field("resolution", str, "1280x720", "camera capture size WIDTHxHEIGHT", check=_resolution),
    Field("camera_rotation", int, 0, "degrees the camera image is turned to read upright", choices=ROTATIONS),
    Field("display_inches", float, 7.0, "touchscreen diagonal in inches (7 or 10.1 for the official ones)",
          minimum=3.5),
    Field("display_rotation", int, 0, "degrees the screen is turned (portrait kiosks: 90 or 270)",
          choices=ROTATIONS),
    Field("decoder", str, "zxing", "barcode decoder (docs/decoders.md)", choices=DECODERS),
    Field("symbologies", list, ["qr", "ean13", "ean8", "upca", "upce"], "barcode types to read (fewer is faster)",
          check=_symbologies),
    Field("scan_fps", float, 10.0, "frames decoded per second at most", minimum=0.5),
    Field("idle_timeout_s", float, 30.0, "a shopper session ends after this long without a scan", minimum=3),
    Field("pi_model", str, "pi5", "Raspberry Pi model (boot config)", choices=("pi4", "pi5")),
    Field("ip", str, "", "fixed address (empty: DHCP)", check=_optional_ip),
]
DEVICE = [Field("id", str, REQUIRED, "device id: its MQTT username and hostname, e.g. s001-k01", check=_id), *KIOSK]
SECTIONS: dict[str, list[Field]] = {"store": STORE, "online": ONLINE, "network": NETWORK, "hub": HUB,
                                    "install": INSTALL, "bridge": BRIDGE}
OPTIONAL_SECTIONS = ("network", "hub", "install", "bridge", "kiosk_defaults")


# --- the typed result ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Store:
    id: str
    name: str
    timezone: str
    topic_prefix: str
    hub_host: str
    hub_ip: str
    admin_user: str
    ssh_keys: tuple[str, ...]


@dataclass(frozen=True)
class Online:
    base_url: str
    jwks_file: Path
    api_key_file: str
    webhook_secret_file: str


@dataclass(frozen=True)
class Network:
    mode: str
    ssid: str
    psk_file: str
    country: str
    gateway: str
    dns: tuple[str, ...]
    prefix_length: int


@dataclass(frozen=True)
class Hub:
    id: str
    web_port: int
    stock_source: str
    idle_timeout_min: int
    max_message_kb: int


@dataclass(frozen=True)
class Install:
    package: str
    index_url: str


@dataclass(frozen=True)
class Bridge:
    address: str
    port: int
    ca_file: Path
    username: str


@dataclass(frozen=True)
class Kiosk:
    id: str
    role: str
    location: str
    camera: str
    camera_index: int
    resolution: str
    camera_rotation: int
    display_inches: float
    display_rotation: int
    decoder: str
    symbologies: tuple[str, ...]
    scan_fps: float
    idle_timeout_s: float
    pi_model: str
    ip: str

    @property
    def width(self) -> int:
        return int(self.resolution.split("x")[0])

    @property
    def height(self) -> int:
        return int(self.resolution.split("x")[1])

    @property
    def camera_source(self) -> str:
        """The kiosk's `camera.source` setting."""
        return f"{'picamera' if self.camera == 'picamera' else 'camera'}:{self.camera_index}"


@dataclass(frozen=True)
class Inventory:
    path: Path
    store: Store
    online: Online
    network: Network
    hub: Hub
    install: Install
    bridge: Bridge | None
    devices: tuple[Kiosk, ...] = field(default_factory=tuple)

    @property
    def kiosks(self) -> tuple[Kiosk, ...]:
        return tuple(d for d in self.devices if d.role == "kiosk")

    def device(self, device_id: str) -> Kiosk:
        for device in self.devices:
            if device.id == device_id:
                return device
        raise KeyError(device_id)


# --- loading -------------------------------------------------------------------------------------

def load_inventory(path: str | Path) -> Inventory:
    """Read, check and type an inventory file; `InventoryError` lists every problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InventoryError([f"{path}: cannot read the inventory: {exc.strerror}"]) from None
    except UnicodeDecodeError:
        raise InventoryError([f"{path}: not UTF-8 text"]) from None
    return parse_inventory(text, path)


def parse_inventory(text: str, path: Path) -> Inventory:
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InventoryError([f"{path}: {_toml_error(exc)}"]) from None
    except (ValueError, RecursionError) as exc:  # tomllib: an integer past 4300 digits, nesting past the stack
        raise InventoryError([f"{path}: not valid TOML: {str(exc)[:80] or type(exc).__name__}"]) from None
    reader = _Reader(path, _key_lines(text))
    inventory = reader.inventory(document)
    if reader.problems:
        raise InventoryError(reader.problems)
    assert inventory is not None
    return inventory


def _toml_error(exc: tomllib.TOMLDecodeError) -> str:
    # tomllib says "... (at line 12, column 5)": put the line first, like every other problem.
    match = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
    message = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
    return f"{match[1]}: not valid TOML: {message} (column {match[2]})" if match else f"not valid TOML: {exc}"


class _Reader:
    """Walks the parsed document against the schema, collecting problems with their lines."""

    def __init__(self, path: Path, lines: dict[tuple, int]):
        self.path, self.lines, self.problems = path, lines, []

    def problem(self, where: tuple, message: str) -> None:
        line = self._line(where)
        name = _dotted(where)
        self.problems.append(f"{self.path}:{line}: {name}: {message}" if line else f"{self.path}: {name}: {message}")

    def _line(self, where: tuple) -> int | None:
        while where:
            if where in self.lines:
                return self.lines[where]
            where = where[:-1]
        return None

    def table(self, document: Mapping[str, Any], name: str) -> Mapping[str, Any]:
        value = document.get(name, {})
        if not isinstance(value, Mapping):
            self.problem((name,), f"must be a table ([{name}])")
            return {}
        return value

    def fields(self, where: tuple, table: Mapping[str, Any], schema: list[Field],
               defaults: Mapping[str, Any] | None = None) -> dict[str, Any]:
        known = {f.key: f for f in schema}
        for key in table:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                self.problem((*where, key), f"unknown key; {hint}allowed here: {', '.join(known)}")
        values: dict[str, Any] = {}
        for f in schema:
            raw = table.get(f.key, (defaults or {}).get(f.key, f.default))
            if raw is REQUIRED:
                self.problem((*where, f.key), f"is required ({f.help})")
                continue
            value = self.value((*where, f.key), raw, f)
            if value is not None:
                values[f.key] = value
        return values

    def value(self, where: tuple, raw: Any, f: Field) -> Any:
        ok = isinstance(raw, f.kind) and not (f.kind is int and isinstance(raw, bool))
        if f.kind is float and isinstance(raw, int) and not isinstance(raw, bool):
            raw, ok = float(raw), True
        if not ok:
            self.problem(where, f"must be {_kind_name(f.kind)}, got {_kind_name(type(raw))} {raw!r}")
            return None
        if f.kind is list and not all(isinstance(item, str) for item in raw):
            self.problem(where, "must be a list of strings")
            return None
        if f.choices and raw not in f.choices:
            self.problem(where, f"{raw!r} is not allowed; choose one of: {', '.join(map(str, f.choices))}")
            return None
        if f.minimum is not None and raw < f.minimum:
            self.problem(where, f"{raw!r} is below the minimum {f.minimum:g}")
            return None
        if f.check:
            problem = f.check(raw)
            if problem:
                self.problem(where, f"{raw!r} {problem}")
                return None
        return raw

    def inventory(self, document: Mapping[str, Any]) -> Inventory | None:
        for name in document:
            if name not in SECTIONS and name not in ("devices", "kiosk_defaults"):
                close = difflib.get_close_matches(name, [*SECTIONS, "devices", "kiosk_defaults"], n=1)
                hint = f"did you mean [{close[0]}]? " if close else ""
                self.problem((name,), f"unknown section; {hint}allowed: "
                              f"{', '.join([*SECTIONS, 'kiosk_defaults', 'devices'])}")
        base = self.path.parent
        store = self.fields(("store",), self.table(document, "store"), STORE)
        online = self.fields(("online",), self.table(document, "online"), ONLINE)
        network = self.fields(("network",), self.table(document, "network"), NETWORK)
        hub = self.fields(("hub",), self.table(document, "hub"), HUB)
        install = self.fields(("install",), self.table(document, "install"), INSTALL)
        bridge = (self.fields(("bridge",), self.table(document, "bridge"), BRIDGE)
                  if "bridge" in document else None)
        defaults_table = self.table(document, "kiosk_defaults")
        defaults = self.fields(("kiosk_defaults",), defaults_table, [f for f in KIOSK if f.key != "location"] +
                               [Field("location", str, "", "")])
        defaults = {k: v for k, v in defaults.items() if k in defaults_table}
        devices = self.devices(document, defaults)
        self.cross_checks(document, store, online, network, hub, bridge, devices, base)
        if self.problems:
            return None
        store_id = store["id"]
        return Inventory(
            path=self.path,
            store=Store(**{**store, "ssh_keys": tuple(k.strip() for k in store["ssh_keys"])}),
            online=Online(**{**online, "jwks_file": (base / online["jwks_file"]).resolve()}),
            network=Network(**{**network, "dns": tuple(network["dns"])}),
            hub=Hub(**{**hub, "id": hub["id"] or f"{store_id}-hub"}),
            install=Install(**install),
            bridge=(Bridge(**{**bridge, "ca_file": (base / bridge["ca_file"]).resolve(),
                              "username": bridge["username"] or f"bridge-{store_id}"}) if bridge else None),
            devices=tuple(Kiosk(**{**d, "symbologies": tuple(d["symbologies"])}) for d in devices),
        )

    def devices(self, document: Mapping[str, Any], defaults: Mapping[str, Any]) -> list[dict[str, Any]]:
        raw = document.get("devices", [])
        if not isinstance(raw, list) or not all(isinstance(d, Mapping) for d in raw):
            self.problem(("devices",), "must be an array of tables ([[devices]] blocks)")
            return []
        if not raw:
            self.problem(("devices",), "no devices; add a [[devices]] block for each kiosk")
        return [self.fields(("devices", i), table, DEVICE, defaults) for i, table in enumerate(raw)]

    def cross_checks(self, document, store, online, network, hub, bridge, devices, base: Path) -> None:
        seen: dict[str, tuple] = {}
        hub_id = hub.get("id") or (f"{store['id']}-hub" if "id" in store else None)
        if hub_id:
            seen[hub_id] = ("hub", "id")
        for i, device in enumerate(devices):
            device_id = device.get("id")
            if device_id is None:
                pass
            elif device_id in seen:
                first = seen[device_id]
                self.problem(("devices", i, "id"), f"{device_id!r} is used twice (first at line "
                             f"{self._line(first) or '?'}, {_dotted(first)}); every device needs its own id")
            else:
                seen[device_id] = ("devices", i, "id")
            if device_id and (device_id == f"hub-{store.get('id')}" or device_id.startswith("bridge-")):
                self.problem(("devices", i, "id"), f"{device_id!r} is reserved for the hub's or a bridge's "
                             "MQTT login; name kiosks like STORE-k01")
            resolution, decoder = device.get("resolution"), device.get("decoder")
            if resolution and decoder:
                width, height = map(int, resolution.split("x"))
                max_w, max_h = MAX_PIXELS[decoder]
                if width * height > max_w * max_h:
                    self.problem(("devices", i, "resolution"),
                                 f"{resolution!r} is more than decoder {decoder!r} can read at the scan rate "
                                 f"on a Raspberry Pi: at most {max_w}x{max_h} ({max_w * max_h / 1e6:.1f} MP); "
                                 f"choose e.g. 1280x720" + (" or decoder = \"zxing\"" if decoder != "zxing" else ""))
            if device.get("ip") and not network.get("gateway"):
                self.problem(("devices", i, "ip"), "a fixed ip needs network.gateway (and network.dns)")
            if device.get("ip") and device["ip"] == store.get("hub_ip"):
                self.problem(("devices", i, "ip"), f"{device['ip']} is the hub's address (store.hub_ip)")
        if network.get("mode") == "wifi":
            if not network.get("ssid"):
                self.problem(("network", "ssid"), "is required when mode = \"wifi\"")
            if not network.get("country"):
                self.problem(("network", "country"), "is required when mode = \"wifi\" (Wi-Fi stays off "
                             "on a Raspberry Pi until a country is set)")
        for i, server in enumerate(network.get("dns", [])):
            if _ip(server):
                self.problem(("network", "dns"), f"entry {i} {server!r} must be an IP address")
        if "jwks_file" in online and not _is_file(base / online["jwks_file"]):
            self.problem(("online", "jwks_file"), f"{online['jwks_file']!r} not found next to the inventory "
                         f"({(base / online['jwks_file']).resolve()}); ask the online store for its JWKS")
        if bridge and "ca_file" in bridge and not _is_file(base / bridge["ca_file"]):
            self.problem(("bridge", "ca_file"), f"{bridge['ca_file']!r} not found next to the inventory")


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:  # a name too long for the file system (Path.is_file only hides "not found")
        return False


def _kind_name(kind: type) -> str:
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false", list: "a list",
            dict: "a table"}.get(kind, kind.__name__)


def _dotted(where: tuple) -> str:
    out = ""
    for part in where:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


# --- where each key is written --------------------------------------------------------------------

_HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\"-]+)\s*\]\]?")
_KEY = re.compile(r"^\s*([A-Za-z0-9_\"-]+(?:\s*\.\s*[A-Za-z0-9_\"-]+)*)\s*=")
_INLINE_KEY = re.compile(r"([A-Za-z0-9_-]+)\s*=")


def _key_lines(text: str) -> dict[tuple, int]:
    """(table..., key) → line number, for the keys tomllib accepted: enough TOML to point at a line
    (tables, arrays of tables, dotted keys, one-line inline tables)."""
    lines: dict[tuple, int] = {}
    table: tuple = ()
    counts: dict[tuple, int] = {}
    in_multiline = False
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.split("#", 1)[0] if '"' not in line else line
        if in_multiline:
            if "]" in stripped or '"""' in stripped:
                in_multiline = False
            continue
        header = _HEADER.match(line)
        if header:
            name = tuple(part.strip('"') for part in header[2].split("."))
            if header[1] == "[[":
                index = counts.get(name, 0)
                counts[name] = index + 1
                table = (*name, index)
            else:
                table = name
            lines.setdefault(table, number)
            if header[1] != "[[":
                lines.setdefault(name, number)
            else:
                lines.setdefault(name, number)
            continue
        key = _KEY.match(line)
        if key:
            parts = tuple(part.strip().strip('"') for part in key[1].split("."))
            lines[(*table, *parts)] = number
            rest = line[key.end():]
            if rest.strip().startswith("{"):
                for inner in _INLINE_KEY.findall(rest):
                    lines.setdefault((*table, *parts, inner), number)
            if rest.strip().startswith("[") and rest.count("[") > rest.count("]"):
                in_multiline = True
            if rest.strip().startswith('"""') and rest.count('"""') == 1:
                in_multiline = True
    return lines
