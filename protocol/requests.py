"""Requests a device asks the hub, and their answers: the payloads of `requests` and `responses`. Pure.

A request travels as an MQTT 5 PUBLISH on the device's own `requests` topic with a
ResponseTopic (the device's own `responses`) and CorrelationData; the hub answers there with
the same CorrelationData. The kiosk never speaks MQTT: it asks the edge agent's local HTTP
API, which relays (docs/protocol.md, "Requests").

Every parse returns a value or a `RequestError`, never raises, and an error's message never
repeats the payload.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

MAX_REQUEST_BYTES = 4 * 1024
# Answers must fit the broker's packet limit (32 KiB with topic and properties): a catalog
# page is cut to stay under this.
MAX_RESPONSE_BYTES = 24 * 1024
MAX_CORRELATION_BYTES = 64
DEFAULT_TIMEOUT_S = 0.3
MAX_TIMEOUT_S = 30.0

MEMBER_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
GTIN14 = re.compile(r"^[0-9]{14}$")
EVENT_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
CURSOR = re.compile(r"^[A-Za-z0-9:/._-]{1,120}$")

# method → {param: (kind, required)}; kinds: "member", "gtin", "event_id", "int", "cursor".
METHODS: dict[str, dict[str, tuple[str, bool]]] = {
    # Check-in: first name, tier, points, offers and wishlist items in stock here.
    "member.welcome": {"member": ("member", True)},
    # The member's offers, for one product when `gtin` is given.
    "member.offers": {"member": ("member", True), "gtin": ("gtin", False)},
    # A product as the hub knows it now: price, promotion, reviews, stock here / nearby / online.
    "product.detail": {"gtin": ("gtin", True)},
    # Put a product in the member's online cart; `event_id` (the cart.sent event) makes it idempotent.
    "cart.add": {"member": ("member", True), "gtin": ("gtin", True), "quantity": ("int", False),
                 "event_id": ("event_id", False)},
    # One page of catalog changes after version `since` (see protocol.catalog).
    "catalog.changes": {"since": ("int", True), "cursor": ("cursor", False), "limit": ("int", False)},
    # The hub's clock: a Raspberry Pi has no clock of its own and a store may block NTP, but
    # 120-second member tokens and event times need the store's time (edge_agent/hub_clock.py).
    "clock.now": {},
}

# Why a request got no result; each is a metric label.
ERROR_CODES = (
    "bad_request",      # the payload or a parameter is malformed
    "unknown_method",
    "rate_limited",     # this device asks too often; try again later
    "not_found",        # the member or product is unknown
    "unavailable",      # the hub cannot answer now (online store down, catalog empty)
    "timeout",          # (edge agent) no answer within the caller's timeout
    "not_connected",    # (edge agent) no broker or no hub right now: answered at once, not after a wait
    "internal",         # a bug; details are in the hub's log
)


@dataclass(frozen=True)
class Request:
    method: str
    params: dict[str, Any]


@dataclass(frozen=True)
class RequestError:
    code: str
    message: str

    def __bool__(self) -> bool:  # an error is never a usable request or answer
        return False

    def as_response(self) -> dict[str, Any]:
        return error(self.code, self.message)


def ok(result: Any) -> dict[str, Any]:
    return {"ok": True, "result": result}


def error(code: str, message: str) -> dict[str, Any]:
    if code not in ERROR_CODES:
        raise ValueError(f"unknown error code {code!r}")
    return {"ok": False, "error": {"code": code, "message": message}}


def encode(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def parse_request(payload: bytes) -> Request | RequestError:
    """Bytes from the `requests` topic (or the agent's HTTP body) → a checked request."""
    if len(payload) > MAX_REQUEST_BYTES:
        return RequestError("bad_request", f"request is {len(payload)} bytes; at most {MAX_REQUEST_BYTES}")
    try:
        obj = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return RequestError("bad_request", "request is not UTF-8 JSON")
    if not isinstance(obj, dict):
        return RequestError("bad_request", "request must be a JSON object")
    return check_request(obj.get("method"), obj.get("params", {}))


def check_request(method: Any, params: Any) -> Request | RequestError:
    if not isinstance(method, str) or method not in METHODS:
        shown = method[:40] if isinstance(method, str) else type(method).__name__
        return RequestError("unknown_method", f"unknown method {shown!r}; known: {', '.join(METHODS)}")
    if not isinstance(params, dict):
        return RequestError("bad_request", "params must be a JSON object")
    spec = METHODS[method]
    unknown = sorted(set(params) - set(spec))
    if unknown:
        return RequestError("bad_request", f"{method}: unknown parameter {str(unknown[0])[:40]!r}")
    clean: dict[str, Any] = {}
    for name, (kind, required) in spec.items():
        value = params.get(name)
        if value is None:
            if required:
                return RequestError("bad_request", f"{method}: parameter {name!r} is required")
            continue
        problem = _check_param(kind, value)
        if problem:
            return RequestError("bad_request", f"{method}: {name} {problem}")
        clean[name] = value
    return Request(method, clean)


def _check_param(kind: str, value: Any) -> str | None:
    if kind == "int":
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 2**53:
            return "must be a whole number >= 0"
        return None
    pattern = {"member": MEMBER_ID, "gtin": GTIN14, "event_id": EVENT_ID, "cursor": CURSOR}[kind]
    if not isinstance(value, str) or not pattern.match(value):
        return {"member": "must be a member id", "gtin": "must be a GTIN-14 (14 digits)",
                "event_id": "must be an event id (UUID)", "cursor": "must be a cursor this hub issued"}[kind]
    return None


def parse_response(payload: bytes) -> dict[str, Any] | RequestError:
    """An answer from `responses`: {"ok": true, "result": …} or {"ok": false, "error": {code, message}}."""
    try:
        obj = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return RequestError("internal", "the hub's answer is not UTF-8 JSON")
    if not isinstance(obj, dict) or not isinstance(obj.get("ok"), bool):
        return RequestError("internal", "the hub's answer has no 'ok'")
    if obj["ok"]:
        return {"ok": True, "result": obj.get("result")}
    err = obj.get("error")
    if not isinstance(err, dict) or err.get("code") not in ERROR_CODES:
        return RequestError("internal", "the hub's error answer is malformed")
    return {"ok": False, "error": {"code": err["code"], "message": str(err.get("message", ""))[:300]}}


def clamp_timeout(value: Any) -> float:
    """The caller's timeout in seconds, within sane bounds (a timeout is an answer, never a hang)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return min(float(value), MAX_TIMEOUT_S)
    return DEFAULT_TIMEOUT_S
