"""The online store's member-token issuer (demo stand-in): Ed25519 keys, app and card tokens, QR images."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import jwt
import segno
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol.tokens import MAX_APP_LIFETIME_S, b64url_encode

ISSUER = "https://shop.omnikiosk.example"
CARD_LIFETIME_S = 3 * 365 * 24 * 3600


class Issuer:
    def __init__(self, private_key: Ed25519PrivateKey, issuer: str = ISSUER):
        self.private_key = private_key
        self.issuer = issuer
        raw = private_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.public_jwk = {"kty": "OKP", "crv": "Ed25519", "x": b64url_encode(raw)}
        # RFC 7638 thumbprint as kid: stable for a key, different after a rotation.
        canonical = json.dumps(self.public_jwk, sort_keys=True, separators=(",", ":")).encode()
        self.kid = b64url_encode(hashlib.sha256(canonical).digest())[:16]

    @classmethod
    def load_or_create(cls, path: Path) -> "Issuer":
        if path.exists():
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
            if not isinstance(key, Ed25519PrivateKey):
                raise ValueError(f"{path} is not an Ed25519 private key")
            return cls(key)
        key = Ed25519PrivateKey.generate()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
        path.chmod(0o600)
        return cls(key)

    def jwks(self) -> dict[str, Any]:
        return {"keys": [{**self.public_jwk, "kid": self.kid, "use": "sig", "alg": "EdDSA"}]}

    def mint(self, member: dict[str, Any], *, now: datetime, typ: str = "app",
             lifetime_s: int | None = None) -> str:
        """A signed member token. App tokens rotate (at most 120 s); cards are printed and long-lived."""
        lifetime = lifetime_s if lifetime_s is not None else (MAX_APP_LIFETIME_S if typ == "app" else CARD_LIFETIME_S)
        iat = int(now.timestamp())
        claims = {"iss": self.issuer, "sub": member["id"], "iat": iat, "exp": iat + lifetime,
                  "jti": str(uuid.uuid4()), "typ": typ,
                  # Only what the kiosk may show a shopper: first name, tier, points.
                  "given_name": member.get("first_name"), "tier": member.get("tier")}
        if typ == "app":
            claims["points"] = member.get("points")
        return jwt.encode(claims, self.private_key, algorithm="EdDSA", headers={"kid": self.kid, "typ": "JWT"})


def qr_png(text: str, path: Path, *, scale: int = 8) -> Path:
    """A QR code a phone screen would show, as PNG."""
    segno.make_qr(text, error="m").save(str(path), kind="png", scale=scale, border=4)
    return path
