"""Fuzz targets, defined once: what to generate, what to call, and which refusals are the target's own.

Each `Target` pairs a hypothesis strategy (structured cases that reach deep code, built from real
signing, real envelopes and the real config schemas, then mutated, plus raw bytes and text) with
the call under test. `run_case` calls it and returns None when the input was accepted or the
rejection's code; it raises `Unexpected` for anything else: an exception the target does not
document, a rejection without a reason, or an accepted result that breaks the target's promise.
tests/test_fuzz.py runs every target a few hundred times; bench/fuzz.py runs 100,000 each.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import math
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timezone
from functools import cache
from io import BytesIO
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from firmware_config.inventory import InventoryError
from hub.analytics import QueryError as QueryErrorType
from hub.pos_sales import TooManySales as TooManySalesError
from hub.pos_sales import UnreadableBody as UnreadableBodyError
from hub.stock_import import UnusableFile

ROOT = Path(__file__).resolve().parents[1]
STORE = "s001"
DEVICE = "s001-k01"
NOW = datetime(2026, 11, 22, 10, 15, 3, 120000, tzinfo=timezone.utc)
T = int(NOW.timestamp())


class Unexpected(AssertionError):
    """The target did something its contract does not allow."""


@dataclass(frozen=True)
class Target:
    name: str
    doc: str
    strategy: st.SearchStrategy
    call: Callable[[Any], Any]
    expected: tuple[type[BaseException], ...]         # the exceptions the target raises on purpose
    reason: Callable[[Any], str | None]               # result or expected exception → code, None = accepted


def run_case(target: Target, case: Any) -> str | None:
    """None when `case` was accepted, else the rejection's code; Unexpected when the contract broke."""
    try:
        outcome = target.call(case)
    except target.expected as exc:
        outcome = exc
    code = target.reason(outcome)
    if code is not None and not (isinstance(code, str) and code.strip()):
        raise Unexpected(f"{target.name}: a rejection without a reason: {outcome!r}")
    return code


def _need(condition: bool, what: str) -> None:
    if not condition:
        raise Unexpected(what)


def _gist(message: str, phrases: tuple[str, ...]) -> str:
    """A short code for a rejection that is an exception with a message: the first known phrase in it."""
    _need(bool(message and message.strip()), "an error without a message")
    for phrase in phrases:
        if phrase in message:
            return phrase
    return "other"


# --- shared building blocks --------------------------------------------------------------------

HUGE_INTS = st.sampled_from([2**63 - 1, 2**63, -(2**63) - 1, 2**64, 10**30, 10**400, -1, 0])
TEXTS = st.text(max_size=24)
NASTY = st.sampled_from(["", " ", "\n", "\x00", "\u00a0", "\ufeff", "é", "²", "٣", "８", "İ", "\u202e", "💥",
                         "\r\n", "\t", "%", "%zz", "%C3%28", "\\", '"', "'", "/", "#", "[", "]", "=", ",", ";"])
# A lone surrogate is valid JSON ("\ud800") and a valid Python str, but no UTF-8 text (SQLite's).
SURROGATES = st.sampled_from(["\ud800", "a\udfffb"])
JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(2**40), 2**40), HUGE_INTS,
                         st.floats(allow_nan=True, allow_infinity=True), TEXTS, NASTY, SURROGATES)
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)), max_leaves=6)


def deep_json(n: int, opener: str = "[", closer: str = "]") -> str:
    return opener * n + closer * n


DEEP = st.builds(deep_json, st.integers(1, 100_000).map(lambda n: 900 + n % 3000),
                 st.sampled_from(["[", '{"a":']), st.sampled_from(["]", "}"]))


@st.composite
def mutated_text(draw, text: str) -> str:
    """`text` as is (often) or with one small edit: cut, inserted, dropped, replaced or doubled."""
    how = draw(st.sampled_from(["keep"] * 6 + ["cut", "insert", "drop", "replace", "double", "strip"]))
    if how == "keep" or not text:
        return text
    at = draw(st.integers(0, len(text) - 1))
    if how == "cut":
        return text[:at]
    if how == "insert":
        return text[:at] + draw(NASTY | TEXTS) + text[at:]
    if how == "drop":
        return text[:at] + text[at + 1:]
    if how == "replace":
        return text[:at] + draw(NASTY | st.characters()) + text[at + 1:]
    if how == "double":
        return text + text
    return text.strip()


@st.composite
def mutated_bytes(draw, data: bytes) -> bytes:
    how = draw(st.sampled_from(["keep", "keep", "keep", "cut", "insert", "flip", "pad"]))
    if how == "keep" or not data:
        return data
    at = draw(st.integers(0, len(data) - 1))
    if how == "cut":
        return data[:at]
    if how == "insert":
        return data[:at] + draw(st.binary(max_size=8) | st.sampled_from([b"\xff", b"\xc3(", b"\x00", b"\xed\xa0\x80"])) + data[at:]
    if how == "flip":
        return data[:at] + bytes([data[at] ^ (1 << draw(st.integers(0, 7)))]) + data[at + 1:]
    return data + b" " * draw(st.sampled_from([1, 16 * 1024, 64 * 1024]))


def check_digit(body: str) -> str:
    from protocol.codes import gtin_check_digit
    return str(gtin_check_digit(body))


@st.composite
def gtins(draw) -> str:
    """Mostly valid GTIN-8/12/13/14, sometimes a digit off, too short or long, or with foreign digits."""
    length = draw(st.sampled_from([8, 12, 13, 14, 8, 12, 13, 14, 6, 7, 11, 15, 1]))
    body = draw(st.text("0123456789", min_size=length - 1, max_size=length - 1))
    text = body + check_digit(body) if body else draw(st.text("0123456789", max_size=1))
    if draw(st.integers(0, 3)) == 0:
        text = draw(mutated_text(text))
    return text


def json_bytes(obj: Any, ensure_ascii: bool = True) -> bytes:
    return json.dumps(obj, ensure_ascii=ensure_ascii, allow_nan=True).encode("utf-8", "surrogatepass")


@st.composite
def mutated_dict(draw, base: dict[str, Any], names: list[str], values: st.SearchStrategy) -> dict[str, Any]:
    """`base` with a few fields dropped, replaced by arbitrary or near-valid values, or added."""
    obj, names = dict(base), names or ["x"]
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.sampled_from(names) | st.text(max_size=6))
        action = draw(st.sampled_from(["drop", "set", "set"]))
        if action == "drop":
            obj.pop(name, None)
        else:
            obj[name] = draw(values)
    return obj


# --- 1. product codes ----------------------------------------------------------------------------

SYMBOLOGIES = ["ean13", "ean8", "upca", "upce", "itf14", "code128", "qr", "QR", "EAN13", "pdf417", "", "i25"]


@st.composite
def digital_links(draw) -> str:
    scheme = draw(st.sampled_from(["https", "http", "HTTPS", "hTtP", "ftp", "https:", "file"]))
    host = draw(st.sampled_from(["id.gs1.org", "example.com", "", "a b", "ex\tample.com", "xn--bcher-kva.ch"]) | TEXTS)
    prefix = draw(st.lists(st.sampled_from(["", "01", "gtin", "p", "10"]) | TEXTS, max_size=2))
    qualifiers = draw(st.lists(st.tuples(
        st.sampled_from(["22", "10", "21", "99", "01", "", "10"]),
        st.sampled_from(["LOT1", "%41", "%zz", "%", "%C3%A9", "%C3%28", "A" * 21, "", "01", "ok-._"]) | TEXTS),
        max_size=4))
    segments = [*prefix, "01", draw(gtins()), *itertools.chain.from_iterable(qualifiers)]
    tail = draw(st.sampled_from(["", "/", "?linkType=all", "#x", "?a=%zz", "\n", " "]))
    return draw(mutated_text(f"{scheme}://{host}/" + "/".join(segments) + tail))


@st.composite
def jws_like(draw) -> str:
    from protocol.tokens import b64url_encode
    header = b64url_encode(json_bytes(draw(JSON_VALUES | st.just({"alg": "EdDSA", "kid": "k1"}))))
    parts = [header, b64url_encode(draw(st.binary(max_size=40))), b64url_encode(draw(st.binary(max_size=64)))]
    return draw(mutated_text(".".join(parts)))


@st.composite
def gs1_128(draw) -> str:
    prefix = draw(st.sampled_from(["", "]C1", "\x1d", "]C2", "]c1"]))
    body = draw(st.text("0123456789", min_size=13, max_size=13))
    gtin = draw(st.sampled_from([body + check_digit(body), body + "0", body]))
    return draw(mutated_text(prefix + "01" + gtin + draw(st.sampled_from(["", "10LOT", "\x1d10ABC", "17261231"]))))


CODE_TEXTS = st.one_of(gtins(), digital_links(), jws_like(), gs1_128(), st.text(max_size=40), NASTY,
                       st.integers(4090, 4200).map(lambda n: "4" * n), st.builds(str, JSON_SCALARS))


def _classify(case):
    from protocol.codes import classify, parse_digital_link
    symbology, text, as_link = case
    return parse_digital_link(text) if as_link else classify(symbology, text)


def _code_reason(result) -> str | None:
    from protocol.codes import (
        REASONS,
        MemberCandidate,
        Product,
        Unrecognised,
        is_valid_gtin,
    )
    if isinstance(result, Product):
        _need(len(result.gtin) == 14 and is_valid_gtin(result.gtin), f"a product with a bad GTIN: {result!r}")
        return None
    if isinstance(result, MemberCandidate):
        _need(bool(result.token), "an empty member candidate")
        return None
    _need(isinstance(result, Unrecognised), f"classify returned {result!r}")
    _need(result.reason in REASONS, f"unknown reason {result.reason!r}")
    return result.reason


CODES = Target(
    "codes", "protocol.codes.classify / parse_digital_link",
    st.one_of(
        st.tuples(st.sampled_from(["ean13", "ean8", "upca", "upce", "itf14"]), gtins(), st.just(False)),
        st.tuples(st.just("qr"), digital_links() | jws_like() | gtins(), st.booleans()),
        st.tuples(st.just("code128"), gs1_128(), st.just(False)),
        st.tuples(st.sampled_from(SYMBOLOGIES + [None, 5]) | st.text(max_size=8), CODE_TEXTS, st.booleans())),
    _classify, (), _code_reason)


# --- 2. member tokens ----------------------------------------------------------------------------

@cache
def _token_keys():
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from protocol.tokens import KeySet
    signer = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    stranger = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
    return signer, stranger, KeySet({"k1": signer.public_key(), "k2": stranger.public_key()})


TIME_VALUES = st.one_of(st.integers(T - 400, T + 400), st.floats(T - 400, T + 400), HUGE_INTS,
                        st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -1e308, True, "1", None]))
CLAIM_VALUES = st.one_of(JSON_VALUES, TIME_VALUES, st.sampled_from(["app", "card", "m1", "M-0001.x", "a" * 65]))


@st.composite
def member_tokens(draw) -> tuple[str, str | None, tuple[str, ...]]:
    from protocol.tokens import b64url_encode
    signer, stranger, _ = _token_keys()
    if draw(st.integers(0, 9)) == 0:
        return draw(st.text(max_size=60) | NASTY | jws_like()), None, ()
    iat = draw(st.integers(T - 200, T + 60))
    claims = {"iss": "https://shop.example", "sub": "M0001", "iat": iat, "exp": iat + draw(st.sampled_from([60, 120, 121, 86400 * 365])),
              "jti": "j1", "typ": draw(st.sampled_from(["app", "card"]))}
    if draw(st.booleans()):
        claims.update(given_name="Ann", tier="gold", points=draw(st.integers(0, 10**6)))
    if draw(st.booleans()):
        claims = draw(mutated_dict(claims, [*claims, "nbf", "points", "given_name"], CLAIM_VALUES))
    header = {"alg": "EdDSA", "kid": "k1", "typ": "JWT"}
    if draw(st.integers(0, 2)) == 0:
        header = draw(mutated_dict({"alg": "EdDSA", "kid": "k1", "typ": "JWT"}, ["alg", "kid", "crit"],
                               st.sampled_from(["EdDSA", "none", "HS256", "k2", "k9", "", None, 5, ["x"]]) | JSON_VALUES))
    signing = f"{b64url_encode(json_bytes(header))}.{b64url_encode(json_bytes(claims))}"
    key = draw(st.sampled_from(["signer"] * 6 + ["stranger", "none", "garbage"]))
    if key in ("signer", "stranger"):
        sig = b64url_encode((signer if key == "signer" else stranger).sign(signing.encode()))
    else:
        sig = "" if key == "none" else draw(st.text("ABCxyz-_019", min_size=1, max_size=90))
    token = f"{signing}.{sig}"
    if draw(st.integers(0, 2)) == 0:
        token = draw(mutated_text(token))
    issuer = draw(st.sampled_from([None, "https://shop.example", "https://other.example"]))
    revoked = draw(st.sampled_from([(), ("j1",), ("x",)]))
    return token, issuer, revoked


def _verify_token(case):
    from protocol.tokens import verify_member_token
    token, issuer, revoked = case
    return verify_member_token(token, _token_keys()[2], now=NOW, issuer=issuer, revoked=revoked)


def _token_reason(result) -> str | None:
    from protocol.tokens import REASONS, MemberClaims, TokenRejection
    if isinstance(result, MemberClaims):
        _need(bool(result.member and result.jti) and result.exp > result.iat, f"accepted odd claims {result!r}")
        return None
    _need(isinstance(result, TokenRejection), f"verify returned {result!r}")
    _need(result.reason in REASONS and bool(result.detail), f"rejection without reason/detail: {result!r}")
    return result.reason


TOKENS = Target("tokens", "protocol.tokens.verify_member_token", member_tokens(), _verify_token, (), _token_reason)


# --- 3. envelopes --------------------------------------------------------------------------------

DATA_FOR = {
    "session.started": {"session": "x1"},
    "session.ended": {"session": "x1", "reason": "idle"},
    "scan.product": {"session": "x1", "gtin": "04006381333931", "source": "ean13"},
    "scan.member": {"session": "x1", "member": "M0001", "jti": "j", "typ": "app"},
    "scan.rejected": {"reason": "bad_check_digit"},
    "assist.requested": {"session": "x1"},
    "offer.shown": {"session": "x1", "offer": "o1"},
    "cart.sent": {"session": "x1", "gtin": "04006381333931"},
    "command.result": {"command_id": "c1", "ok": True},
}
NEAR_FIELDS = {
    "ts": ["2026-11-22T10:15:03.120Z", "2026-11-22T10:15:03Z", "2026-11-22T10:15:03.120Z\n",
           "２０２６-11-22T10:15:03.120Z", "2026-13-45T25:61:61.000Z", "2026-11-22 10:15:03Z", "2026-11-22T10:15:03.120+01:00"],
    "store": ["s001", "s002", "S001", "s001\n", "-s001", "s" * 64, ""],
    "device": ["s001-k01", "s001-k02", "s001-k01\n", "K01", "s001_k01", ""],
    "id": ["0196b3a1-0000-7000-8000-000000000000", "0196B3A1-0000-7000-8000-000000000000", "not-a-uuid",
           "{0196b3a1-0000-7000-8000-000000000000}", "0196b3a100007000800000000000000 0"],
    "seq": [1, 0, -1, 2**31, 2**63 - 1, 2**63, 10**30, True, 1.0],
    "v": [1, 2, 0, True, "1", 1.0],
    "type": [*DATA_FOR, "scan.unknown", "", "Scan.product"],
}


@st.composite
def envelope_objects(draw, store: str = STORE, device: str = DEVICE) -> dict[str, Any]:
    kind = draw(st.sampled_from(list(DATA_FOR)))
    obj = {"v": 1, "id": "0196b3a1-%04x-7000-8000-000000000000" % draw(st.integers(0, 0xFFFF)),
           "seq": draw(st.integers(1, 10**6)), "ts": "2026-11-22T10:15:03.120Z", "store": store, "device": device,
           "type": kind, "data": dict(DATA_FOR[kind])}
    if draw(st.integers(0, 2)) == 0:   # a third stay valid, to reach the checks after parsing
        return obj
    for _ in range(draw(st.integers(0, 2))):
        name = draw(st.sampled_from(list(NEAR_FIELDS)))
        obj[name] = draw(st.sampled_from(NEAR_FIELDS[name]))
    if draw(st.booleans()):
        obj = draw(mutated_dict(obj, list(obj), JSON_VALUES))
    if isinstance(obj.get("data"), dict) and draw(st.booleans()):
        obj["data"] = draw(mutated_dict(obj["data"], list(obj["data"]), JSON_VALUES))
    return obj


def envelope_payloads(store: str = STORE, device: str = DEVICE) -> st.SearchStrategy:
    structured = st.builds(json_bytes, envelope_objects(store, device), st.booleans()).flatmap(mutated_bytes)
    return st.one_of(structured, structured, structured, st.binary(max_size=64), DEEP.map(str.encode),
                     st.builds(json_bytes, JSON_VALUES))


def _parse_envelope(case):
    from protocol.envelope import parse_envelope
    payload, topic_store, topic_device = case
    return parse_envelope(payload, topic_store=topic_store, topic_device=topic_device)


def _envelope_reason(result) -> str | None:
    from protocol.envelope import (
        ID_PATTERN,
        REJECTION_REASONS,
        Envelope,
        parse_envelope,
        parse_ts,
    )
    if isinstance(result, Envelope):
        # What was accepted must be what the wire format promises, and survive a round trip.
        _need(bool(ID_PATTERN.fullmatch(result.store) and ID_PATTERN.fullmatch(result.device)),
              f"accepted store/device ids outside the id pattern: {result.store!r} {result.device!r}")
        try:
            parse_ts(result.ts)
        except ValueError:
            raise Unexpected(f"accepted a ts that is not a timestamp: {result.ts!r}") from None
        _need(parse_envelope(result.to_json().encode()) == result, "an accepted envelope does not round-trip")
        return None
    _need(result.__class__.__name__ == "Rejection", f"parse_envelope returned {result!r}")
    _need(result.reason in REJECTION_REASONS and bool(result.detail), f"rejection without reason/detail: {result!r}")
    return result.reason


ENVELOPES = Target(
    "envelope", "protocol.envelope.parse_envelope",
    st.tuples(envelope_payloads(), st.sampled_from([None, STORE, STORE, STORE, "s002"]),
              st.sampled_from([None, DEVICE, DEVICE, DEVICE, "s001-k02"])),
    _parse_envelope, (), _envelope_reason)


# --- 4. the hub's MQTT ingest --------------------------------------------------------------------

LEAVES = ["events", "status", "telemetry", "requests", "responses", "commands", "receipts", "other", ""]


@st.composite
def ingest_messages(draw) -> tuple[str, bytes]:
    if draw(st.integers(0, 9)) == 0:
        return draw(st.text(max_size=40)), draw(st.binary(max_size=40))
    if draw(st.integers(0, 3)):
        device = draw(st.sampled_from([DEVICE, "s001-k02"]))
        leaf = draw(st.sampled_from(["events"] * 4 + ["status", "telemetry"]))
        return f"omnikiosk/{STORE}/devices/{device}/{leaf}", draw(ingest_payloads(device, leaf, STORE))
    prefix = draw(st.sampled_from(["omnikiosk"] * 6 + ["Omnikiosk", "", "omnikiosk/extra"]))
    store = draw(st.sampled_from([STORE] * 6 + ["s002", ""]))
    device = draw(st.sampled_from([DEVICE] * 4 + ["s001-k02"] * 3 + ["", "+", "#", "s001-k01\n", "K01"]))
    leaf = draw(st.sampled_from(["events"] * 6 + ["status"] * 3 + ["telemetry"] * 2 + LEAVES))
    topic = f"{prefix}/{store}/devices/{device}/{leaf}"
    if draw(st.integers(0, 7)) == 0:
        topic = draw(mutated_text(topic))
    return topic, draw(ingest_payloads(device, leaf, store))


@st.composite
def ingest_payloads(draw, device: str, leaf: str, store: str) -> bytes:
    if leaf == "status":
        status = draw(mutated_dict({"state": draw(st.sampled_from(["online", "offline", "stopped", "away"])),
                                    "session": draw(st.integers(0, 2**40) | HUGE_INTS), "version": "1", "ts": "x"},
                                   ["state", "session", "version", "ts"], JSON_VALUES))
        payload = draw(st.builds(json_bytes, st.just(status)).flatmap(mutated_bytes) | DEEP.map(str.encode))
    elif leaf == "telemetry":
        report = draw(mutated_dict({"device": device, "ts": "2026-11-22T10:15:03.120Z", "outbox": {"rows": 3}},
                                   ["device", "ts", "outbox"], JSON_VALUES))
        payload = draw(st.builds(json_bytes, st.just(report)).flatmap(mutated_bytes) | DEEP.map(str.encode))
    else:
        payload = draw(envelope_payloads(store or STORE, device))
    return payload


@cache
def _ingest():
    import sqlite_utils

    from hub.ingest import Ingest
    from hub.store import HubStore
    from protocol.mqtt import BrokerLogin
    hub_store = HubStore(sqlite_utils.Database(memory=True))
    login = BrokerLogin(host="127.0.0.1", port=1, username="hub-s001", password="x", keepalive=10)
    return Ingest(store_id=STORE, login=login, hub_store=hub_store, version="fuzz", clock=lambda: NOW)


def _write_one(case):
    import paho.mqtt.client as mqtt
    topic, payload = case
    ingest = _ingest()
    # A topic is UTF-8 on the wire: a lone surrogate the text mutations insert cannot be sent.
    message = mqtt.MQTTMessage(mid=1, topic=topic.encode("utf-8", "ignore"))
    message.payload = payload
    before = sum(ingest.counters.rejected.values())
    ingest.write_batch([message])
    if sum(ingest.counters.rejected.values()) == before:
        return None
    (reason, detail), = ingest.hub_store.db.execute(
        "SELECT reason, detail FROM rejected_events ORDER BY rowid DESC LIMIT 1").fetchall()
    _need(bool(reason) and bool(detail), f"a rejection stored without reason or detail: {reason!r} {detail!r}")
    return reason


INGEST = Target("ingest", "hub.ingest.Ingest.write_batch (one message: topic + payload bytes)",
                ingest_messages(), _write_one, (), lambda reason: reason)


# --- 5. requests and answers ---------------------------------------------------------------------

PARAM_VALUES = st.one_of(JSON_VALUES, st.sampled_from(
    ["M0001", "04006381333931", "0400638133393", "0196b3a1-0000-7000-8000-000000000000", "v1:abc", 0, 2**53,
     2**53 + 1, -1, True, "x" * 65, "M0001\n", "٠٤٠٠٦٣٨١٣٣٣٩٣١"]))


@st.composite
def request_payloads(draw) -> bytes:
    from protocol.requests import METHODS
    if draw(st.integers(0, 5)) == 0:
        return draw(st.binary(max_size=60) | DEEP.map(str.encode) | st.just(b"{" + b" " * 5000 + b"}"))
    method = draw(st.sampled_from(list(METHODS)) if draw(st.integers(0, 4)) else JSON_VALUES)
    spec = METHODS.get(method, {}) if isinstance(method, str) else {}
    params = {name: "M0001" if kind == "member" else "04006381333931" if kind == "gtin" else 1
              for name, (kind, _) in spec.items()}
    body = {"method": method, "params": params}
    if draw(st.integers(0, 2)) == 0:   # a third stay valid, to reach the answers
        return json_bytes(body)
    body["params"] = draw(mutated_dict(params, list(spec) or ["x"], PARAM_VALUES))
    body = draw(mutated_dict(body, ["method", "params"], JSON_VALUES))
    return draw(mutated_bytes(json_bytes(body, draw(st.booleans()))))


def _request_reason(result) -> str | None:
    from protocol.requests import ERROR_CODES, Request, RequestError
    if isinstance(result, Request):
        return None
    _need(isinstance(result, RequestError), f"returned {result!r}")
    _need(result.code in ERROR_CODES and bool(result.message), f"error without code/message: {result!r}")
    return result.code


def _parse_request(payload):
    from protocol.requests import parse_request
    return parse_request(payload)


REQUESTS = Target("requests", "protocol.requests.parse_request", request_payloads(), _parse_request, (),
                  _request_reason)


@st.composite
def response_payloads(draw) -> bytes:
    from protocol.requests import ERROR_CODES
    body = draw(st.sampled_from([{"ok": True, "result": {"a": 1}},
                                 {"ok": False, "error": {"code": "not_found", "message": "no"}}]))
    body = draw(mutated_dict(body, ["ok", "result", "error"], JSON_VALUES | st.fixed_dictionaries(
        {"code": st.sampled_from(ERROR_CODES) | JSON_VALUES, "message": JSON_VALUES})))
    return draw(mutated_bytes(json_bytes(body)) | st.binary(max_size=40) | DEEP.map(str.encode))


def _parse_response(payload):
    from protocol.requests import parse_response
    return parse_response(payload)


def _response_reason(result) -> str | None:
    from protocol.requests import ERROR_CODES, RequestError
    if isinstance(result, dict):
        _need(isinstance(result.get("ok"), bool), f"an answer without ok: {result!r}")
        if not result["ok"]:
            _need(result["error"]["code"] in ERROR_CODES, f"an error answer with a foreign code: {result!r}")
        return None
    _need(isinstance(result, RequestError) and result.code in ERROR_CODES and bool(result.message), f"{result!r}")
    return result.code


RESPONSES = Target("responses", "protocol.requests.parse_response", response_payloads(), _parse_response, (),
                   _response_reason)


class _StubAnswers:
    """Answers without a catalog or an online store: enough to drive RequestDesk.handle end to end."""

    def __init__(self):
        from hub.answers import AnswerError
        from protocol.requests import METHODS

        def answer(device, params):
            if str(params.get("member", "")).startswith("X"):
                raise AnswerError("not_found", "no such member")
            if params.get("limit") == 0:
                raise ValueError("a bug in an answer")  # the desk must turn it into `internal`
            return {"device": device, "params": params}
        self.methods = {name: answer for name in METHODS}


@cache
def _desk():
    from hub.answers import RequestDesk
    from protocol.topics import Topics
    clock = itertools.count(0.0, 0.02)
    return RequestDesk(topics=Topics(STORE), answers=_StubAnswers(), rate_per_s=20.0, burst=40.0,
                       monotonic=lambda: next(clock))


@st.composite
def desk_messages(draw):
    device = draw(st.sampled_from([DEVICE] * 8 + ["s001-k02", "", "+"]))
    leaf = draw(st.sampled_from(["requests"] * 16 + ["events", "responses"]))
    topic = f"omnikiosk/{STORE}/devices/{device}/{leaf}"
    if draw(st.integers(0, 7)) == 0:
        topic = draw(mutated_text(topic))
    response = draw(st.sampled_from([f"omnikiosk/{STORE}/devices/{device}/responses"] * 12 + [
                                     f"omnikiosk/{STORE}/devices/s001-k02/responses", None, "", "x/#"]))
    correlation = draw(st.sampled_from([b"c1"] * 12 + [b"", None, b"x" * 64, b"x" * 65, b"\xff" * 8]))
    return topic, response, correlation, draw(request_payloads())


def _handle_request(case):
    import paho.mqtt.client as mqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties
    topic, response, correlation, payload = case
    message = mqtt.MQTTMessage(mid=1, topic=topic.encode("utf-8", "ignore"))  # UTF-8 on the wire
    message.payload = payload
    props = Properties(PacketTypes.PUBLISH)
    if response is not None:
        props.ResponseTopic = response
    if correlation is not None:
        props.CorrelationData = correlation
    message.properties = props
    desk = _desk()
    before = dict(desk.counters)
    answer = desk.handle(message)
    if answer is None:
        grown = [code for code, n in desk.counters.items() if n > before.get(code, 0)]
        _need(len(grown) == 1, f"a request refused without a counted reason: {case!r}")
        return ("refused", grown[0])
    return answer


def _desk_reason(result) -> str | None:
    from protocol.requests import ERROR_CODES
    if isinstance(result, tuple):
        return result[1]
    _need(isinstance(result, dict) and isinstance(result.get("ok"), bool), f"answer {result!r}")
    if result["ok"]:
        return None
    _need(result["error"]["code"] in ERROR_CODES and bool(result["error"]["message"]), f"answer {result!r}")
    return result["error"]["code"]


REQUEST_DESK = Target("request_desk", "hub.answers.RequestDesk.handle (topic, response topic, correlation, payload)",
                      desk_messages(), _handle_request, (), _desk_reason)


# --- 6. webhooks ---------------------------------------------------------------------------------

WEBHOOK_SECRET = "whsec-fuzz"


@st.composite
def webhook_deliveries(draw):
    from hub.webhooks import EVENT_TYPES, ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER
    kind = draw(st.sampled_from(list(EVENT_TYPES)))
    body = {"id": "evt_1", "type": kind, "created_at": "2026-11-22T10:15:03Z",
            "data": {name: "c1" for name in EVENT_TYPES[kind]}}
    tamper = draw(st.integers(0, 2)) == 0   # else a genuine delivery, signed as the online store signs
    if tamper:
        body = draw(mutated_dict(body, ["id", "type", "created_at", "data"], JSON_VALUES | st.sampled_from(["", "x" * 201])))
    if tamper and isinstance(body.get("data"), dict) and draw(st.booleans()):
        body["data"] = draw(mutated_dict(body["data"], ["customer_id", "order_id"], JSON_VALUES))
    raw = json_bytes(body)
    if tamper:
        raw = draw(mutated_bytes(raw) | st.binary(max_size=40) | DEEP.map(str.encode))
    stamp = draw(st.integers(T - 400, T + 400).map(str) if not tamper else st.integers(T - 400, T + 400).map(str) | HUGE_INTS.filter(lambda n: n >= 0).map(str)
                 | st.integers(1, 5000).map(lambda n: "9" * n) | st.sampled_from(["０", "1e9", "-5", " 1"]))
    secret = draw(st.sampled_from([WEBHOOK_SECRET, WEBHOOK_SECRET, "other"])) if tamper else WEBHOOK_SECRET
    # The sender's HMAC over the timestamp as sent (signature() takes an int, which caps the digits).
    mac = hmac.new(secret.encode(), stamp.encode() + b"." + raw, hashlib.sha256).hexdigest()
    values = [f"v1={mac}"]
    if draw(st.booleans()):
        values.insert(0, draw(st.sampled_from(["v1=00", "v0=abc", "v1=", "", "v2=x", "v1=" + "f" * 64])))
    headers = {ID_HEADER: str(body.get("id")), TIMESTAMP_HEADER: stamp, SIGNATURE_HEADER: ",".join(values)}
    if tamper:
        headers = {ID_HEADER: draw(st.sampled_from([str(body.get("id")), "evt_1", ""])),
                   TIMESTAMP_HEADER: draw(mutated_text(stamp)),
                   SIGNATURE_HEADER: draw(mutated_text(",".join(values)))}
        headers = draw(mutated_dict(headers, [ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER, ID_HEADER.lower()],
                                    st.text(max_size=20) | NASTY))
    configured = draw(st.sampled_from([WEBHOOK_SECRET] * 12 + [["old", WEBHOOK_SECRET], None, "", []]))
    return raw, headers, configured


def _verify_webhook(case):
    from hub.webhooks import verify
    raw, headers, configured = case
    return verify(raw, headers, secret=configured, now=float(T))


def _webhook_reason(result) -> str | None:
    from hub.webhooks import REASONS, WebhookEvent, WebhookRejection
    if isinstance(result, WebhookEvent):
        _need(bool(result.id) and isinstance(result.data, dict), f"accepted {result!r}")
        return None
    _need(isinstance(result, WebhookRejection), f"verify returned {result!r}")
    _need(result.reason in REASONS and bool(result.detail), f"rejection without reason/detail: {result!r}")
    return result.reason


WEBHOOKS = Target("webhooks", "hub.webhooks.verify", webhook_deliveries(), _verify_webhook, (), _webhook_reason)


# --- 7. inventory and config ---------------------------------------------------------------------

def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, (int, datetime, date, time)):
        return value.isoformat() if not isinstance(value, int) else str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    return json.dumps(str(value))


def toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def toml_text(document: dict[str, Any]) -> str:
    """A document as TOML: top-level scalars, then tables, then arrays of tables."""
    lines = [f"{toml_key(k)} = {toml_value(v)}" for k, v in document.items()
             if not isinstance(v, dict) and not (isinstance(v, list) and v and all(isinstance(x, dict) for x in v))]
    for name, table in document.items():
        if isinstance(table, dict):
            lines.append(f"[{toml_key(name)}]")
            lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in table.items()]
    for name, blocks in document.items():
        if isinstance(blocks, list) and blocks and all(isinstance(x, dict) for x in blocks):
            for block in blocks:
                lines.append(f"[[{toml_key(name)}]]")
                lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in block.items()]
    return "\n".join(lines) + "\n"


TOML_SCALARS = st.one_of(st.booleans(), st.integers(-(2**40), 2**40), HUGE_INTS.filter(lambda n: abs(n) < 2**63),
                         st.floats(allow_nan=True, allow_infinity=True), TEXTS, NASTY,
                         st.dates(), st.times(), st.datetimes(timezones=st.none() | st.just(timezone.utc)))
TOML_VALUES = st.recursive(TOML_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.from_regex(r"[a-z_]{1,6}", fullmatch=True), inner, max_size=2)),
    max_leaves=5)
INVENTORY_EXAMPLE = ROOT / "firmware_config" / "examples" / "s001.toml"
NEAR_INVENTORY = st.sampled_from([
    "s001", "S001", "-s001", "s" * 64, "Europe/Amsterdam", "America", "Mars/Base", "a" * 300, "../etc", "UTC",
    "10.20.1.10", "10.20.1.300", "::1", "https://shop.example/", "http://localhost:8080/", "http://shop.example/",
    "1280x720", "1920x1080", "2560x1440", "321x241", "１２８０x７２０", "online-jwks.json", "missing.json", "x" * 300,
    "central-ca.crt", "wifi", "ethernet", "pos", "pyzbar", "zxing", "usb", 90, 45, 0, -1, 2**31, 3.4, ["qr", "ean13"],
    ["code39"], [], ["10.20.1.1", "dns"], "NL", "nl", "hub-s001", "bridge-x", "s001-hub", "s001-k01"])


@st.composite
def inventory_texts(draw) -> str:
    if draw(st.integers(0, 9)) == 0:
        return draw(st.text(max_size=80) | DEEP.map(lambda s: "a = " + s) | st.just("a = " + "9" * 5000))
    document = tomllib.loads(INVENTORY_EXAMPLE.read_text())
    for _ in range(draw(st.integers(0, 4))):
        section = draw(st.sampled_from(["store", "online", "network", "hub", "install", "bridge", "kiosk_defaults",
                                        "devices", "extra"]))
        devices = document.get("devices")
        if section == "devices" and not (isinstance(devices, list) and devices):
            continue
        table = document.setdefault(section, {}) if section != "devices" else draw(st.sampled_from(devices))
        if not isinstance(table, dict):
            document[section] = draw(TOML_VALUES)
            continue
        from firmware_config.inventory import DEVICE, SECTIONS
        keys = [f.key for f in SECTIONS.get(section, DEVICE)] + ["unknown"]
        action = draw(st.sampled_from(["near", "near", "any", "drop", "drop_table", "device"]))
        key = draw(st.sampled_from(keys))
        if action == "near":
            table[key] = draw(NEAR_INVENTORY)
        elif action == "any":
            table[key] = draw(TOML_VALUES)
        elif action == "drop":
            table.pop(key, None)
        elif action == "drop_table":
            document.pop(section, None)
        elif isinstance(document.get("devices"), list):
            document["devices"].append({"id": draw(NEAR_INVENTORY), "location": "x"})
    return draw(mutated_text(toml_text(document)))


INVENTORY_PATH = ROOT / "firmware_config" / "examples" / "fuzz.toml"   # next to the example JWKS and CA


def _parse_inventory(text):
    from firmware_config.inventory import parse_inventory
    return parse_inventory(text, INVENTORY_PATH)


def _inventory_reason(outcome) -> str | None:
    from firmware_config.inventory import Inventory, InventoryError
    if isinstance(outcome, Inventory):
        return None
    _need(isinstance(outcome, InventoryError) and bool(outcome.problems)
          and all(p.strip() for p in outcome.problems), f"a refusal without problems: {outcome!r}")
    return _gist(outcome.problems[0], ("not valid TOML", "unknown key", "unknown section", "is required",
                                        "must be", "is not allowed", "below the minimum", "not found", "twice",
                                        "reserved", "needs", "is not a", "is more than", "is too small", "is empty"))


INVENTORY = Target("inventory", "firmware_config.inventory.parse_inventory(text, path)", inventory_texts(),
                   _parse_inventory, (InventoryError,), _inventory_reason)


CONFIG_PHRASES = ("unknown key", "is required", "must be", "is not allowed", "below the minimum", "finite",
                  "has ", "is empty", "tls", "loopback", "must not exceed", "go together", "demo")
REQUIRED_VALUES = {"store": "s001", "device": "s001-k01", "tokens.jwks_file": "/etc/omnikiosk/jwks.json",
                   "mqtt.password_file": "/etc/omnikiosk/mqtt", "online.base_url": "https://shop.example/",
                   "online.api_key_file": "/etc/omnikiosk/api-key", "web.secret_key_file": "/etc/omnikiosk/web-key",
                   "web.tls_cert": "/etc/omnikiosk/web.crt", "web.tls_key": "/etc/omnikiosk/web.key"}
NEAR_SETTINGS = st.sampled_from([
    "camera:0", "picamera:1", "video:", "folder:/x", "usb:0", "camera:x", "MJPG", "MJPEG", "", ["qr"], ["qr", "bogus"],
    [], "zxing", "pyzbar", "DEBUG", "debug", 90, 45, 0, -5, 0.01, 1e9, math.nan, math.inf, True, "127.0.0.1",
    "10.0.0.1", "/etc/ca.pem", "online", "pos", 1.0, 100.0])
ENV_TEXT = st.sampled_from(["1", "yes", "off", "maybe", "", " ", "nan", "inf", "-1", "1e3", "0x10", "9" * 5000,
                            "qr,ean13", ",", "camera:0", "127.0.0.1", "10.0.0.1"]) | st.text(max_size=12)


def config_documents(settings) -> st.SearchStrategy:
    from protocol.settings import unflatten

    @st.composite
    def documents(draw):
        flat = {s.key: REQUIRED_VALUES.get(s.key, s.default) for s in settings
                if s.default is not None or s.key in REQUIRED_VALUES}
        flat = {key: value for key, value in flat.items() if key in {s.key for s in settings}}
        for _ in range(draw(st.integers(0, 4))):
            key = draw(st.sampled_from([s.key for s in settings] + ["unknown", "mqtt.unknown"]))
            action = draw(st.sampled_from(["near", "any", "drop"]))
            if action == "drop":
                flat.pop(key, None)
            else:
                flat[key] = draw(NEAR_SETTINGS if action == "near" else TOML_VALUES)
        try:
            document = unflatten(flat)
        except Exception:   # a key that is both a value and a table: keep the flat form (also valid TOML)
            document = dict(flat)
        if draw(st.integers(0, 7)) == 0:  # what TOML itself would give for arbitrary text
            try:
                document = tomllib.loads(draw(mutated_text(toml_text(document))))
            except ValueError:
                pass
        environ = {}
        for _ in range(draw(st.integers(0, 2))):
            environ[draw(st.sampled_from(settings)).env_name] = draw(ENV_TEXT)
        return document, environ
    return documents()


def _config_reason(outcome) -> str | None:
    from protocol.settings import Config, ConfigError
    if isinstance(outcome, Config):
        return None
    _need(isinstance(outcome, ConfigError) and bool(str(outcome).strip()), f"{outcome!r}")
    return _gist(str(outcome).splitlines()[0], CONFIG_PHRASES)


def _config_target(name: str, doc: str, settings_module: str, check: Callable[[Any, Any], Any]) -> Target:
    import importlib

    from protocol.settings import ConfigError
    settings = importlib.import_module(settings_module).SETTINGS
    return Target(name, doc, config_documents(settings), lambda case: check(*case), (ConfigError,), _config_reason)


def _kiosk_check(document, environ):
    from kiosk.config import check_document
    return check_document(document, environ, source="kiosk.toml")


def _agent_check(document, environ):
    from edge_agent.config import parse_document
    return parse_document(document, environ, source="agent.toml")


def _hub_check(document, environ):
    from hub.config import SETTINGS, check_security
    from protocol.settings import parse
    config = parse(SETTINGS, document, environ, source="hub.toml")
    check_security(config)
    return config


# --- 8. the CSV stock import ---------------------------------------------------------------------

CELL = {
    "gtin": gtins() | st.sampled_from(["4.0E+12", "", " 4006381333931 "]),
    "quantity": st.sampled_from(["0", "5", "-1", "+3", "10000001", "1.5", "", "٣", "9" * 5000, "0" * 5000 + "1"])
    | st.integers(0, 100).map(str),
    "store": st.sampled_from(["", "s001", "s002", "S001", "s001\n", "s 1", "-x"]),
    "location": st.sampled_from(["", "Aisle 4", "x" * 101, '"quoted, comma"', "tab\there"]) | st.text(max_size=10),
}


@st.composite
def stock_files(draw) -> bytes:
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=80) | st.text(max_size=80).map(str.encode))
    columns = draw(st.permutations(["gtin", "quantity", "store", "location"]))[:draw(st.integers(1, 4))]
    header = list(columns)
    if draw(st.integers(0, 5)) == 0:
        header.append(draw(st.sampled_from(["gtin", "price", "", "GTIN ", "40063813339310"])))
    delimiter = draw(st.sampled_from([",", ",", ";", "\t"]))
    newline = draw(st.sampled_from(["\n", "\n", "\r\n", "\r"]))
    rows = []
    for _ in range(draw(st.integers(0, 6))):
        cells = [draw(CELL[name]) if name in CELL else draw(TEXTS) for name in header]
        if draw(st.integers(0, 5)) == 0:
            cells = cells[:draw(st.integers(0, len(cells)))] + draw(st.lists(TEXTS, max_size=2))
        rows.append(delimiter.join(cells))
    text = (draw(st.sampled_from(["", "\ufeff", "\n\n"])) + delimiter.join(header) + newline
            + newline.join(rows) + draw(st.sampled_from(["", newline])))
    return draw(mutated_bytes(draw(mutated_text(text)).encode("utf-8", "surrogatepass")))


def _read_counts(data: bytes):
    from hub.stock_import import read_counts
    rows = [parsed for parsed, _ in read_counts(BytesIO(data), store=STORE)]
    return rows


def _stock_reason(outcome) -> str | None:
    from hub.stock_import import BadRow, StockCount, UnusableFile
    if isinstance(outcome, UnusableFile):
        _need(bool(str(outcome).strip()), "an unusable file without a reason")
        return _gist(str(outcome), ("no header", "unknown column", "appears twice", "has no", "is empty", "unreadable"))
    for row in outcome:
        if isinstance(row, BadRow):
            _need(bool(row.reason.strip()) and row.line >= 1, f"a bad row without a reason or line: {row!r}")
        else:
            _need(isinstance(row, StockCount) and len(row.gtin) == 14 and row.gtin.isdigit()
                  and 0 <= row.quantity, f"odd stock count {row!r}")
    return None


# --- 9. the till's sales (CSV and JSON) and the manager's analytics query ---------------------------

SALE_CELL = {
    "sale_id": st.sampled_from(["T1", "T-1", "T1", "", "x" * 65, "a b", "T/1"]) | TEXTS,
    "ts": st.sampled_from(["2026-03-14T15:04:05+01:00", "2026-03-14 15:04:05", "2026-03-29 02:30:00",
                           "2026-10-25 02:30:00", "2026-03-14T15:04:05Z", "9999-12-31T23:59:59+14:00",
                           "0001-01-01T00:00:00-12:00", "2026-02-30T10:00:00Z", "soon", ""]) | TEXTS,
    "gtin": gtins() | st.sampled_from(["", "4.0E+12"]),
    "quantity": st.sampled_from(["1", "-1", "0", "2", "1.5", "", "9" * 40, "+3"]),
    "amount": st.sampled_from(["1.00", "-1.00", "1,5", "0", "1e308", "nan", "inf", "12.345", "", "9" * 400]),
    "member_id": st.sampled_from(["", "M0001", "m0001", "c-7f3a", "x" * 65, "a b"]),
    "loyalty_number": st.sampled_from(["", "L-1", "x" * 65, "L 1"]),
    "currency": st.sampled_from(["", "EUR", "eur", "USD", "EURO"]),
}
SALE_COLUMNS = list(SALE_CELL)


@st.composite
def sales_files(draw) -> bytes:
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=80) | st.text(max_size=80).map(str.encode))
    header = draw(st.permutations(SALE_COLUMNS))[:draw(st.integers(3, len(SALE_COLUMNS)))]
    delimiter = draw(st.sampled_from([",", ",", ";", "\t"]))
    rows = []
    for _ in range(draw(st.integers(0, 6))):
        cells = [draw(SALE_CELL[name]).replace(delimiter, "") for name in header]
        rows.append(delimiter.join(cells))
    text = delimiter.join(header) + "\n" + "\n".join(rows) + draw(st.sampled_from(["", "\n"]))
    return draw(mutated_bytes(draw(mutated_text(text)).encode("utf-8", "surrogatepass")))


def _read_sales_csv(data: bytes):
    from zoneinfo import ZoneInfo

    from hub.pos_sales import read_sales_csv
    return list(read_sales_csv(BytesIO(data), tz=ZoneInfo("Europe/Amsterdam"), currency="EUR"))


@st.composite
def sales_bodies(draw) -> bytes:
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=80))
    def sale():
        item = {k: draw(SALE_CELL[k]) for k in ("ts", "member_id", "loyalty_number", "currency")}
        item["id"] = draw(SALE_CELL["sale_id"])
        item["lines"] = [{"gtin": draw(SALE_CELL["gtin"]), "quantity": draw(st.integers(-3, 3) | st.just("1")),
                          "amount": draw(st.floats(allow_nan=True) | st.sampled_from([1.0, -1.0, "1.00"]))}
                         for _ in range(draw(st.integers(0, 3)))]
        return draw(mutated_dict(item, ["id", "ts", "lines", "currency"], JSON_VALUES))
    body = {"sales": [sale() for _ in range(draw(st.integers(0, 4)))]}
    return draw(mutated_bytes(json.dumps(body, allow_nan=True).encode()))


def _sales_from_json(data: bytes):
    from zoneinfo import ZoneInfo

    from hub.pos_sales import sales_from_json
    return sales_from_json(data, tz=ZoneInfo("Europe/Amsterdam"), currency="EUR")


def _sales_reason(outcome) -> str | None:
    from hub.pos_sales import BadRow, Sale, TooManySales, UnreadableBody
    if isinstance(outcome, (UnusableFile, UnreadableBody, TooManySales)):
        _need(bool(str(outcome).strip()), "a refused body without a reason")
        return type(outcome).__name__
    for item in outcome:
        if isinstance(item, BadRow):
            _need(bool(item.reason.strip()), f"a bad row without a reason: {item!r}")
        else:
            _need(isinstance(item, Sale) and item.id and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", item.ts)
                  and item.currency == "EUR" and item.lines and math.isfinite(float(item.total))
                  and all(len(line.gtin) == 14 and line.gtin.isdigit() and line.quantity != 0 for line in item.lines),
                  f"an accepted sale that breaks a promise: {item!r}")
    return None


@st.composite
def analytics_args(draw) -> dict[str, str]:
    days = st.dates().map(date.isoformat) | st.sampled_from(["2026-11-29", "2026-02-30", "", "yesterday",
                                                              "9999-12-31", "0001-01-01"]) | TEXTS
    args = {"from": draw(days), "to": draw(days), "channel": draw(st.sampled_from(
        ["", "web", "store", "KIOSK", "fax", "none"]) | TEXTS), "window": draw(st.sampled_from(
            ["", "30", "0", "366", "-1", "1e3", "٣"]) | TEXTS)}
    return {k: v for k, v in args.items() if draw(st.booleans())}


def _analytics_query(args):
    from zoneinfo import ZoneInfo

    from hub.analytics import parse_query, span_of
    query = parse_query(args, today=date(2026, 11, 29))
    return span_of(query, ZoneInfo("Pacific/Kiritimati")), query


def _analytics_reason(outcome) -> str | None:
    from hub.analytics import MAX_RANGE_DAYS, QueryError
    if isinstance(outcome, QueryError):
        _need(bool(str(outcome).strip()), "a refused query without a reason")
        return "bad_query"
    span, query = outcome
    _need(query.start <= query.end and query.days <= MAX_RANGE_DAYS and 1 <= query.window_days <= 365
          and span.start < span.end, f"an accepted query that breaks a promise: {query!r}")
    return None


# --- all of them ---------------------------------------------------------------------------------

TARGETS: dict[str, Target] = {t.name: t for t in [
    CODES,
    TOKENS,
    ENVELOPES,
    INGEST,
    REQUESTS,
    RESPONSES,
    REQUEST_DESK,
    WEBHOOKS,
    INVENTORY,
    _config_target("kiosk_config", "kiosk.config.check_document", "kiosk.config", _kiosk_check),
    _config_target("agent_config", "edge_agent.config.parse_document", "edge_agent.config", _agent_check),
    _config_target("hub_config", "protocol.settings.parse(hub SETTINGS) + hub.config.check_security",
                   "hub.config", _hub_check),
    Target("stock_import", "hub.stock_import.read_counts (CSV bytes)", stock_files(), _read_counts, (UnusableFile,),
           _stock_reason),
    Target("pos_sales_csv", "hub.pos_sales.read_sales_csv (CSV bytes)", sales_files(), _read_sales_csv,
           (UnusableFile,), _sales_reason),
    Target("pos_sales_json", "hub.pos_sales.sales_from_json (a request body)", sales_bodies(), _sales_from_json,
           (UnreadableBodyError, TooManySalesError), _sales_reason),
    Target("analytics_query", "hub.analytics.parse_query + span_of (the manager page's address)", analytics_args(),
           _analytics_query, (QueryErrorType,), _analytics_reason),
]}
