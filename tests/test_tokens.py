"""Member tokens: every way a token can be wrong is refused with its own reason."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from demo.issuer import Issuer
from protocol.tokens import KeySet, MemberClaims, b64url_encode, verify_member_token

NOW = datetime(2026, 11, 22, 10, 0, 0, tzinfo=timezone.utc)
JANE = {"id": "M0001", "first_name": "Jane", "tier": "Gold", "points": 4088}


@pytest.fixture(scope="module")
def issuer():
    return Issuer(Ed25519PrivateKey.generate())


@pytest.fixture(scope="module")
def keys(issuer):
    return KeySet.from_jwks(issuer.jwks())


def forge(issuer, claims=None, header=None, key=None):
    """A token with chosen claims and header, signed by `key` (the issuer's by default)."""
    base = {"iss": issuer.issuer, "sub": "M0001", "iat": int(NOW.timestamp()), "exp": int(NOW.timestamp()) + 60,
            "jti": "j-1", "typ": "app"}
    base.update(claims or {})
    base = {k: v for k, v in base.items() if v is not None}
    return jwt.encode(base, key or issuer.private_key, algorithm="EdDSA", headers={"kid": issuer.kid, **(header or {})})


def test_valid_app_token_gives_member_and_display_claims(issuer, keys):
    claims = verify_member_token(issuer.mint(JANE, now=NOW), keys, now=NOW + timedelta(seconds=5),
                                 issuer=issuer.issuer)
    assert isinstance(claims, MemberClaims)
    assert (claims.member, claims.typ, claims.given_name, claims.tier, claims.points) == ("M0001", "app", "Jane", "Gold", 4088)


def test_card_token_is_long_lived(issuer, keys):
    claims = verify_member_token(issuer.mint(JANE, now=NOW, typ="card"), keys, now=NOW + timedelta(days=300))
    assert isinstance(claims, MemberClaims) and claims.typ == "card"


def _none_alg_token(issuer):
    header = b64url_encode(json.dumps({"alg": "none", "kid": issuer.kid}).encode())
    body = b64url_encode(json.dumps({"sub": "M0001"}).encode())
    return f"{header}.{body}."


@pytest.mark.parametrize("make, reason", [
    (lambda i: "not-a-token", "malformed"),
    (lambda i: "a.b.c.d", "malformed"),
    (lambda i: "eyJ!!!.eyJ.sig", "malformed"),
    (lambda i: b64url_encode(b"[]") + "." + b64url_encode(b"{}") + ".", "malformed"),
    (lambda i: "x" * 5000, "malformed"),
    (_none_alg_token, "unsupported_alg"),
    (lambda i: jwt.encode({"sub": "M0001"}, "a-shared-secret-of-at-least-32-bytes!", algorithm="HS256", headers={"kid": i.kid}),
     "unsupported_alg"),
    (lambda i: jwt.encode({"sub": "M0001"}, i.private_key, algorithm="EdDSA"), "missing_kid"),
    (lambda i: forge(i, header={"kid": "someone-else"}), "unknown_kid"),
    (lambda i: forge(i, key=Ed25519PrivateKey.generate()), "bad_signature"),
    (lambda i: forge(i)[:-4] + ("AAAA" if not forge(i).endswith("AAAA") else "BBBB"), "bad_signature"),
    (lambda i: forge(i, {"jti": None}), "missing_claim"),
    (lambda i: forge(i, {"exp": None}), "missing_claim"),
    (lambda i: forge(i, {"sub": None}), "missing_claim"),
    (lambda i: forge(i, {"typ": "guest"}), "bad_claim"),
    (lambda i: forge(i, {"exp": "soon"}), "bad_claim"),
    (lambda i: forge(i, {"sub": "M0001/../admin"}), "bad_claim"),
    (lambda i: forge(i, {"iss": "https://evil.example"}), "wrong_issuer"),
    (lambda i: forge(i, {"iat": int(NOW.timestamp()) - 600, "exp": int(NOW.timestamp()) - 500}), "expired"),
    (lambda i: forge(i, {"iat": int(NOW.timestamp()) + 600, "exp": int(NOW.timestamp()) + 660}), "not_yet_valid"),
    (lambda i: forge(i, {"nbf": int(NOW.timestamp()) + 600}), "not_yet_valid"),
    (lambda i: forge(i, {"exp": int(NOW.timestamp()) + 121}), "lifetime_too_long"),
])
def test_each_bad_token_is_refused_with_its_reason(issuer, keys, make, reason):
    result = verify_member_token(make(issuer), keys, now=NOW, issuer=issuer.issuer)
    assert not result and result.reason == reason


def test_revoked_card_is_refused(issuer, keys):
    token = forge(issuer, {"typ": "card", "exp": int(NOW.timestamp()) + 86400, "jti": "card-7"})
    assert verify_member_token(token, keys, now=NOW, revoked={"card-7"}).reason == "revoked"


def test_leeway_tolerates_a_slightly_skewed_clock(issuer, keys):
    token = issuer.mint(JANE, now=NOW)
    assert verify_member_token(token, keys, now=NOW + timedelta(seconds=120 + 20), leeway_s=30)
    assert verify_member_token(token, keys, now=NOW + timedelta(seconds=120 + 40), leeway_s=30).reason == "expired"


def test_rejection_detail_never_contains_the_token(issuer, keys):
    token = forge(issuer, key=Ed25519PrivateKey.generate())
    result = verify_member_token(token, keys, now=NOW)
    assert token not in result.detail and token.split(".")[1] not in result.detail


@pytest.mark.parametrize("jwks", [{}, {"keys": "x"}, {"keys": [{"kty": "RSA", "kid": "a"}]},
                                  {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "AA"}]},
                                  {"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "a", "x": "!!"}]}])
def test_bad_jwks_is_refused_with_a_message(jwks):
    with pytest.raises(ValueError):
        KeySet.from_jwks(jwks)
