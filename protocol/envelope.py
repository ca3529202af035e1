"""The event envelope of protocol v1: building one, and validating bytes from the wire."""

from __future__ import annotations

import json
import os
import re
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

from protocol import PROTOCOL_VERSION

MAX_ENVELOPE_BYTES = 16 * 1024

# Event types of v1, and the fields their `data` must carry (name → type).
EVENT_TYPES: dict[str, dict[str, type]] = {
    "session.started": {"session": str},
    "session.ended": {"session": str, "reason": str},
    "scan.product": {"session": str, "gtin": str, "source": str},
    "scan.member": {"session": str, "member": str, "jti": str, "typ": str},
    "scan.rejected": {"reason": str},
    "assist.requested": {"session": str},
    "offer.shown": {"session": str, "offer": str},
    "cart.sent": {"session": str, "gtin": str},
    "command.result": {"command_id": str, "ok": bool},
}

# Why an envelope was refused; each is a metric label and a log field.
REJECTION_REASONS = (
    "too_large",
    "not_utf8",
    "not_json",
    "not_an_object",
    "unknown_version",
    "missing_field",
    "bad_field",
    "unknown_type",
    "bad_data",
    "device_mismatch",
    "store_mismatch",
)

# Store and device ids are MQTT topic levels and host names: keep them to this.
# \Z, not $: "$" also matches before a trailing newline, and "s001\n" is not a store id.
ID_PATTERN = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")
# [0-9], not \d: \d also matches "２" and "٣", which no reader of `ts` parses.
_TS_PATTERN = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?Z\Z")
_FIELDS: dict[str, type] = {
    "v": int, "id": str, "seq": int, "ts": str, "store": str, "device": str, "type": str, "data": dict,
}


@dataclass(frozen=True)
class Envelope:
    v: int
    id: str
    seq: int
    ts: str
    store: str
    device: str
    type: str
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class Rejection:
    """Why bytes are not a valid envelope. `detail` never repeats the payload itself."""

    reason: str
    detail: str = ""

    def __bool__(self) -> bool:  # a Rejection is never a usable envelope
        return False


def format_ts(moment: datetime) -> str:
    """UTC timestamp with milliseconds and a Z, as the wire wants it."""
    moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def uuid7(now: datetime, randbytes: Callable[[int], bytes] = os.urandom) -> str:
    """A UUIDv7 (RFC 9562): 48-bit Unix milliseconds, then random bits; sortable by time."""
    ms = int(now.timestamp() * 1000) & ((1 << 48) - 1)
    rand = int.from_bytes(randbytes(10), "big")
    rand_a = rand >> 68 & 0xFFF
    rand_b = rand & ((1 << 62) - 1)
    value = ms << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b
    return str(uuid.UUID(int=value))


def make_envelope(*, store: str, device: str, type: str, seq: int, data: dict[str, Any],
                  now: datetime, event_id: str | None = None) -> Envelope:
    """Build a valid envelope; raises ValueError for a programming error (unknown type, bad data)."""
    envelope = Envelope(v=PROTOCOL_VERSION, id=event_id or uuid7(now), seq=seq, ts=format_ts(now),
                        store=store, device=device, type=type, data=data)
    problem = validate_fields(asdict(envelope))
    if problem is not None:
        raise ValueError(f"invalid envelope: {problem.reason}: {problem.detail}")
    size = len(envelope.to_json().encode())
    if size > MAX_ENVELOPE_BYTES:
        raise ValueError(f"invalid envelope: too_large: {size} bytes > {MAX_ENVELOPE_BYTES}")
    return envelope


def parse_envelope(payload: bytes, *, topic_store: str | None = None,
                   topic_device: str | None = None) -> Envelope | Rejection:
    """Validate bytes from the wire. The topic proves the sender (broker ACL), so the
    envelope's store and device must match it."""
    if len(payload) > MAX_ENVELOPE_BYTES:
        return Rejection("too_large", f"{len(payload)} bytes > {MAX_ENVELOPE_BYTES}")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        return Rejection("not_utf8", "payload is not UTF-8")
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        return Rejection("not_json", "payload is not JSON")
    if not isinstance(obj, dict):
        return Rejection("not_an_object", f"top level is {type(obj).__name__}, not an object")
    problem = validate_fields(obj)
    if problem is not None:
        return problem
    if topic_store is not None and obj["store"] != topic_store:
        return Rejection("store_mismatch", f"envelope store {obj['store']!r} on topic of store {topic_store!r}")
    if topic_device is not None and obj["device"] != topic_device:
        return Rejection("device_mismatch", f"envelope device {obj['device']!r} on topic of device {topic_device!r}")
    return Envelope(**{name: obj[name] for name in _FIELDS})


def validate_fields(obj: dict[str, Any]) -> Rejection | None:
    """Check an envelope as a dict; None when valid."""
    if "v" not in obj:
        return Rejection("missing_field", "v")
    if not _is(obj["v"], int):
        return Rejection("bad_field", "v must be an integer")
    if obj["v"] != PROTOCOL_VERSION:
        return Rejection("unknown_version", f"v={obj['v']}; this hub speaks v{PROTOCOL_VERSION}")
    for name, kind in _FIELDS.items():
        if name not in obj:
            return Rejection("missing_field", name)
        if not _is(obj[name], kind):
            return Rejection("bad_field", f"{name} must be {kind.__name__}")
    unknown = sorted(set(obj) - set(_FIELDS))
    if unknown:
        return Rejection("bad_field", f"unknown field {unknown[0]!r}")
    if not _is_uuid(obj["id"]):
        return Rejection("bad_field", "id must be a UUID")
    if not 1 <= obj["seq"] < 2**63:  # the hub keeps it in an SQLite INTEGER
        return Rejection("bad_field", "seq must be >= 1 and < 2**63")
    if not _TS_PATTERN.match(obj["ts"]) or not _is_ts(obj["ts"]):
        return Rejection("bad_field", "ts must be UTC ISO 8601 ending in Z")
    for name in ("store", "device"):
        if not ID_PATTERN.match(obj[name]):
            return Rejection("bad_field", f"{name} must be lower-case letters, digits and dashes")
    if obj["type"] not in EVENT_TYPES:
        return Rejection("unknown_type", f"type ({len(obj['type'])} chars) is not a v{PROTOCOL_VERSION} event type")
    for name, kind in EVENT_TYPES[obj["type"]].items():
        if not _is(obj["data"].get(name), kind):
            return Rejection("bad_data", f"{obj['type']} needs data.{name} ({kind.__name__})")
    try:
        json.dumps(obj["data"], ensure_ascii=False, allow_nan=False).encode("utf-8")
    except ValueError:  # Python reads NaN, Infinity and "\ud800"; SQLite's JSON and UTF-8 refuse them later
        return Rejection("bad_data", "data holds NaN, Infinity or a lone surrogate escape (\\ud800-\\udfff)")
    return None


def _is(value: Any, kind: type) -> bool:
    # bool is an int in Python; on the wire it is not.
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def _is_ts(text: str) -> bool:
    """A real moment: the pattern alone lets month 13 through, and the hub parses `ts` later (arrivals)."""
    try:
        parse_ts(text)
    except ValueError:
        return False
    return True


def _is_uuid(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) == text
    except ValueError:
        return False
