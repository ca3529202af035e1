"""Signed webhooks from the online store: sign a delivery, verify one from its raw body. Pure: time is passed in.

A delivery is a POST whose body is one JSON event `{"id", "type", "created_at", "data"}` with

    X-Omnikiosk-Webhook-Id: <the event id>
    X-Omnikiosk-Timestamp:  <unix seconds when this attempt was signed>
    X-Omnikiosk-Signature:  v1=<hex HMAC-SHA256(secret, f"{timestamp}.".encode() + raw_body)>

The signature covers the timestamp, so an old delivery replayed later is `stale`; several
`v1=` values separated by commas let a sender sign with the old and the new secret while a
secret is being rotated. Deduplicating by event id is the receiver's job (it has the database).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

ID_HEADER = "X-Omnikiosk-Webhook-Id"
TIMESTAMP_HEADER = "X-Omnikiosk-Timestamp"
SIGNATURE_HEADER = "X-Omnikiosk-Signature"
SCHEME = "v1"
MAX_BODY_BYTES = 64 * 1024
DEFAULT_TOLERANCE_S = 300
MAX_ID_LENGTH = 200
# More candidate signatures than a rotation needs is someone making us hash for nothing.
MAX_SIGNATURES = 8

# Event type → the fields its `data` must carry (strings).
EVENT_TYPES: dict[str, tuple[str, ...]] = {
    "customer.updated": ("customer_id",),
    "customer.erased": ("customer_id",),
    "order.updated": ("customer_id", "order_id"),
    "catalog.updated": (),
}
# Every way a delivery can be refused; each is a metric label.
REASONS = ("not_configured", "missing_signature", "bad_signature", "stale", "too_large", "not_json",
           "bad_event", "unknown_type")

Secret = str | bytes | Sequence[str | bytes]


@dataclass(frozen=True)
class WebhookEvent:
    """A delivery that is genuine, fresh and well formed."""

    id: str
    type: str
    created_at: str | None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class WebhookRejection:
    """A delivery refused: `reason` is one of REASONS, `detail` says what was wrong (never a secret)."""

    reason: str
    detail: str


def signature(secret: str | bytes, raw_body: bytes, timestamp: int) -> str:
    """The hex HMAC-SHA256 of one secret over `"{timestamp}." + raw_body`."""
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, f"{int(timestamp)}.".encode() + raw_body, hashlib.sha256).hexdigest()


def sign(secret: Secret, raw_body: bytes, timestamp: int | float, *, event_id: str | None = None) -> dict[str, str]:
    """The three headers of a delivery of `raw_body` signed at `timestamp` (unix seconds).

    `secret` may be a list of secrets (old and new, while rotating): one `v1=` value each.
    The id header is the body's `id` unless `event_id` is given."""
    secrets = _secrets(secret)
    if not secrets:
        raise ValueError("sign needs a non-empty webhook secret")
    if event_id is None:
        event_id = _body_id(raw_body)
    stamp = int(timestamp)
    values = ",".join(f"{SCHEME}={signature(s, raw_body, stamp)}" for s in secrets)
    return {ID_HEADER: event_id, TIMESTAMP_HEADER: str(stamp), SIGNATURE_HEADER: values}


def verify(raw_body: bytes, headers: Mapping[str, str], *, secret: Secret | None, now: float,
           tolerance_s: float = DEFAULT_TOLERANCE_S) -> WebhookEvent | WebhookRejection:
    """Check a delivery exactly as received (raw bytes, before any JSON parsing) at unix time `now`."""
    secrets = _secrets(secret)
    if not secrets:
        return WebhookRejection("not_configured", "no webhook secret is configured; every delivery is refused")
    if len(raw_body) > MAX_BODY_BYTES:
        return WebhookRejection("too_large", f"body of {len(raw_body)} bytes; at most {MAX_BODY_BYTES}")
    lower = {str(name).lower(): str(value) for name, value in headers.items()}
    stamp_text = lower.get(TIMESTAMP_HEADER.lower(), "").strip()
    offered = lower.get(SIGNATURE_HEADER.lower(), "").strip()
    if not stamp_text or not offered:
        return WebhookRejection("missing_signature", f"{TIMESTAMP_HEADER} and {SIGNATURE_HEADER} are both required")
    problem = _signature_problem(secrets, raw_body, stamp_text, offered)
    if problem:
        return WebhookRejection("bad_signature", problem)
    # Checked after the signature: a stale delivery is then a genuine one that came late (or a replay).
    skew = now - int(stamp_text)
    if abs(skew) > tolerance_s:
        when = "old" if skew > 0 else "in the future"
        return WebhookRejection("stale", f"signed {abs(skew):.0f} s {when}; tolerance is {tolerance_s:g} s")
    return _event(raw_body, lower.get(ID_HEADER.lower(), "").strip())


def _signature_problem(secrets: list[bytes], raw_body: bytes, stamp_text: str, offered: str) -> str | None:
    # At most 15 digits: int() refuses more than 4300, and `now - stamp` overflows a float long before.
    if not (stamp_text.isascii() and stamp_text.isdigit()) or len(stamp_text) > 15:
        return f"{TIMESTAMP_HEADER} is not unix seconds"
    candidates = [value for scheme, _, value in (part.strip().partition("=") for part in offered.split(","))
                  if scheme == SCHEME][:MAX_SIGNATURES]
    if not candidates:
        return f"{SIGNATURE_HEADER} has no {SCHEME}= value"
    expected = [signature(s, raw_body, int(stamp_text)) for s in secrets]
    # compare_digest on every pair: how long this takes says nothing about how much matched.
    matched = False
    for candidate in candidates:
        for wanted in expected:
            matched |= hmac.compare_digest(candidate.encode(), wanted.encode())
    return None if matched else "no signature matches the configured secret"


def _event(raw_body: bytes, header_id: str) -> WebhookEvent | WebhookRejection:
    try:
        body = json.loads(raw_body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return WebhookRejection("not_json", "the body is not JSON")
    if not isinstance(body, dict):
        return WebhookRejection("bad_event", "the body is not a JSON object")
    event_id, kind, data, created_at = body.get("id"), body.get("type"), body.get("data"), body.get("created_at")
    if not isinstance(event_id, str) or not 0 < len(event_id) <= MAX_ID_LENGTH:
        return WebhookRejection("bad_event", f"id must be a string of 1 to {MAX_ID_LENGTH} characters")
    if event_id != header_id:
        return WebhookRejection("bad_event", f"the body's id differs from {ID_HEADER}")
    if not isinstance(kind, str) or not isinstance(data, dict):
        return WebhookRejection("bad_event", "type (a string) and data (an object) are required")
    if created_at is not None and not isinstance(created_at, str):
        return WebhookRejection("bad_event", "created_at must be a timestamp string")
    if kind not in EVENT_TYPES:
        return WebhookRejection("unknown_type", f"event type {kind[:60]!r} is not one of {', '.join(EVENT_TYPES)}")
    missing = [name for name in EVENT_TYPES[kind] if not (isinstance(data.get(name), str) and data[name])]
    if missing:
        return WebhookRejection("bad_event", f"{kind} needs data.{' and data.'.join(missing)}")
    return WebhookEvent(event_id, kind, created_at, data)


def _secrets(secret: Secret | None) -> list[bytes]:
    if secret is None:
        return []
    values = [secret] if isinstance(secret, (str, bytes)) else list(secret)
    return [v.encode() if isinstance(v, str) else bytes(v) for v in values if v]


def _body_id(raw_body: bytes) -> str:
    try:
        event_id = json.loads(raw_body).get("id")
    except (ValueError, UnicodeDecodeError, AttributeError):
        event_id = None
    if not isinstance(event_id, str) or not event_id:
        raise ValueError("the body has no string id; pass event_id= to sign it anyway")
    return event_id
