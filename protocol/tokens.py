"""Member tokens: verify a JWT signed EdDSA/Ed25519 by the online store, offline, with a reason for every refusal.

The kiosk holds only public keys (a JWKS), so a stolen kiosk can verify but never mint.
Time is passed in, so tests and a skewed kiosk clock are explicit.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable, Mapping

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

MAX_APP_LIFETIME_S = 120
DEFAULT_LEEWAY_S = 30
MAX_TOKEN_CHARS = 4096
TOKEN_TYPES = ("app", "card")
REQUIRED_CLAIMS = ("iss", "sub", "iat", "exp", "jti", "typ")

# Why a token was refused; each is a metric label and the `reason` of a scan.rejected event.
REASONS = (
    "malformed",
    "unsupported_alg",
    "missing_kid",
    "unknown_kid",
    "bad_signature",
    "missing_claim",
    "bad_claim",
    "wrong_issuer",
    "expired",
    "not_yet_valid",
    "lifetime_too_long",
    "revoked",
)

_SEGMENT = re.compile(r"^[A-Za-z0-9_-]+$")
_MEMBER_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


@dataclass(frozen=True)
class MemberClaims:
    """What a verified token says. Optional display claims stay minimal by design."""

    member: str
    jti: str
    typ: str
    iss: str
    kid: str
    iat: int
    exp: int
    given_name: str | None = None
    tier: str | None = None
    points: int | None = None


@dataclass(frozen=True)
class TokenRejection:
    reason: str
    detail: str = ""

    def __bool__(self) -> bool:
        return False


class KeySet:
    """Ed25519 public keys by `kid`, usually read from the online store's JWKS."""

    def __init__(self, keys: Mapping[str, Ed25519PublicKey]):
        self._keys = dict(keys)

    @classmethod
    def from_jwks(cls, jwks: Mapping[str, Any]) -> "KeySet":
        """Parse a JWKS document; raises ValueError naming the bad key."""
        keys: dict[str, Ed25519PublicKey] = {}
        entries = jwks.get("keys") if isinstance(jwks, Mapping) else None
        if not isinstance(entries, list):
            raise ValueError("JWKS must be an object with a 'keys' list")
        for index, jwk in enumerate(entries):
            if not isinstance(jwk, Mapping) or jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
                raise ValueError(f"JWKS key #{index}: only OKP/Ed25519 keys are accepted")
            kid = jwk.get("kid")
            if not isinstance(kid, str) or not kid:
                raise ValueError(f"JWKS key #{index}: missing kid")
            try:
                raw = b64url_decode(jwk.get("x", ""))
                keys[kid] = Ed25519PublicKey.from_public_bytes(raw)
            except (ValueError, TypeError) as exc:
                raise ValueError(f"JWKS key {kid!r}: bad 'x' ({exc})") from None
        return cls(keys)

    def get(self, kid: str) -> Ed25519PublicKey | None:
        return self._keys.get(kid)

    @property
    def kids(self) -> list[str]:
        return sorted(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


def b64url_decode(text: str) -> bytes:
    if not isinstance(text, str) or not _SEGMENT.match(text):
        raise ValueError("not base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("not base64url") from None


def b64url_encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def verify_member_token(token: str, keys: KeySet, *, now: datetime, issuer: str | None = None,
                        leeway_s: int = DEFAULT_LEEWAY_S, revoked: Iterable[str] = ()) -> MemberClaims | TokenRejection:
    """Verify signature, algorithm, claims and times. Never raises; details never echo the token."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS:
        return TokenRejection("malformed", "not a token of acceptable size")
    parts = token.strip().split(".")
    if len(parts) != 3 or not all(_SEGMENT.match(p) for p in parts[:2]) or (parts[2] and not _SEGMENT.match(parts[2])):
        return TokenRejection("malformed", "not a compact JWS (three base64url segments)")
    try:
        header = json.loads(b64url_decode(parts[0]))
        claims = json.loads(b64url_decode(parts[1]))
    except (ValueError, UnicodeDecodeError, RecursionError):
        return TokenRejection("malformed", "header or claims are not base64url JSON")
    if not isinstance(header, dict) or not isinstance(claims, dict):
        return TokenRejection("malformed", "header and claims must be JSON objects")
    # Decide the algorithm ourselves: a token saying "none" or "HS256" is refused before any key is used.
    if header.get("alg") != "EdDSA":
        return TokenRejection("unsupported_alg", f"alg {str(header.get('alg'))[:20]!r}; only EdDSA is accepted")
    if "crit" in header:
        return TokenRejection("malformed", "critical header extensions are not supported")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        return TokenRejection("missing_kid", "header has no kid")
    key = keys.get(kid)
    if key is None:
        return TokenRejection("unknown_kid", f"kid {kid[:40]!r} is not in the key set")
    try:
        key.verify(b64url_decode(parts[2]), f"{parts[0]}.{parts[1]}".encode("ascii"))
    except (InvalidSignature, ValueError):
        return TokenRejection("bad_signature", "signature does not verify")
    return _check_claims(claims, kid, now=now, issuer=issuer, leeway_s=leeway_s, revoked=revoked)


def _check_claims(claims: dict[str, Any], kid: str, *, now: datetime, issuer: str | None,
                  leeway_s: int, revoked: Iterable[str]) -> MemberClaims | TokenRejection:
    for name in REQUIRED_CLAIMS:
        if name not in claims:
            return TokenRejection("missing_claim", name)
    for name in ("iat", "exp") + (("nbf",) if "nbf" in claims else ()):
        if not isinstance(claims[name], (int, float)) or isinstance(claims[name], bool):
            return TokenRejection("bad_claim", f"{name} must be a number")
        # Also refuses NaN and infinities (JSON "NaN" parses) and integers no float can hold.
        if not -(2**53) <= claims[name] <= 2**53:
            return TokenRejection("bad_claim", f"{name} is out of range")
    for name in ("iss", "sub", "jti", "typ"):
        if not isinstance(claims[name], str) or not claims[name]:
            return TokenRejection("bad_claim", f"{name} must be a non-empty string")
    if not _MEMBER_ID.match(claims["sub"]):
        return TokenRejection("bad_claim", "sub is not a member id")
    if claims["typ"] not in TOKEN_TYPES:
        return TokenRejection("bad_claim", f"typ must be one of {', '.join(TOKEN_TYPES)}")
    if issuer is not None and claims["iss"] != issuer:
        return TokenRejection("wrong_issuer", "iss is not the configured issuer")
    t = now.timestamp()
    iat, exp = int(claims["iat"]), int(claims["exp"])
    if exp <= iat:
        return TokenRejection("bad_claim", "exp must be after iat")
    if t >= exp + leeway_s:
        return TokenRejection("expired", f"expired {int(t - exp)} s ago")
    if iat > t + leeway_s or claims.get("nbf", iat) > t + leeway_s:
        return TokenRejection("not_yet_valid", f"valid only in {int(max(iat, claims.get('nbf', iat)) - t)} s")
    if claims["typ"] == "app" and exp - iat > MAX_APP_LIFETIME_S:
        return TokenRejection("lifetime_too_long", f"app token lives {exp - iat} s > {MAX_APP_LIFETIME_S} s")
    if claims["jti"] in set(revoked):
        return TokenRejection("revoked", "card revoked by the online store")
    points = claims.get("points")
    return MemberClaims(
        member=claims["sub"], jti=claims["jti"], typ=claims["typ"], iss=claims["iss"], kid=kid, iat=iat, exp=exp,
        given_name=_short_str(claims.get("given_name")), tier=_short_str(claims.get("tier")),
        points=points if isinstance(points, int) and not isinstance(points, bool) else None,
    )


def _short_str(value: Any) -> str | None:
    return value[:40] if isinstance(value, str) and value else None
