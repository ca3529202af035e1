"""Fuzzing in the normal suite: every target of fuzz_targets.py never raises and rejects with a reason.

A few hundred generated cases per target here (FUZZ_CASES=N for more; derandomized so CI is
stable); bench/fuzz.py runs 100,000 each. Every input the fuzzer once broke the code with is
kept below as an `@example`, so the fix stays fixed; and one test throws garbage at a real
Ingest through a real Mosquitto.
"""

from __future__ import annotations

import json
import os
import random
from datetime import datetime, timezone

import fuzz_targets as F
from conftest import DEVICES, STORE, login_for, raw_client, wait_for
from hypothesis import HealthCheck, example, given, settings

from protocol.tokens import b64url_encode

CASES = int(os.environ.get("FUZZ_CASES", "300"))
FUZZ = settings(max_examples=CASES, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))


def _envelope(**changes) -> bytes:
    obj = {"v": 1, "id": "0196b3a1-0000-7000-8000-000000000000", "seq": 1, "ts": "2026-11-22T10:15:03.120Z",
           "store": STORE, "device": DEVICES[0], "type": "session.started", "data": {"session": "x"}}
    return json.dumps({**obj, **changes}).encode()


def _token(**claims) -> str:
    signer = F._token_keys()[0]
    body = {"iss": "https://shop.example", "sub": "M0001", "iat": F.T - 10, "exp": F.T + 60, "jti": "j1",
            "typ": "app", **claims}
    signing = (f"{b64url_encode(json.dumps({'alg': 'EdDSA', 'kid': 'k1'}).encode())}."
               f"{b64url_encode(json.dumps(body).encode())}")
    return f"{signing}.{b64url_encode(signer.sign(signing.encode()))}"


def _webhook(stamp: str):
    import hashlib
    import hmac
    body = b'{"id":"evt_1","type":"catalog.updated","data":{}}'
    mac = hmac.new(F.WEBHOOK_SECRET.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return body, {"X-Omnikiosk-Webhook-Id": "evt_1", "X-Omnikiosk-Timestamp": stamp,
                  "X-Omnikiosk-Signature": f"v1={mac}"}, F.WEBHOOK_SECRET


def _inventory(old: str, new: str) -> str:
    text = F.INVENTORY_EXAMPLE.read_text()
    assert old in text
    return text.replace(old, new, 1)


_STATUS = f"omnikiosk/{STORE}/devices/{DEVICES[0]}/status"
_EVENTS = f"omnikiosk/{STORE}/devices/{DEVICES[0]}/events"
_TELEMETRY = f"omnikiosk/{STORE}/devices/{DEVICES[0]}/telemetry"

# Inputs that once broke a target (found by this fuzzer), by target: each is replayed on every run.
REGRESSIONS: dict[str, list] = {
    "envelope": [
        (_envelope(ts="2026-11-22T10:15:03.120Z\n"), None, None),   # `$` let a trailing newline through
        (_envelope(store="s001\n"), None, None),
        (_envelope(ts="2026-13-45T25:61:61.000Z"), STORE, DEVICES[0]),  # matched the pattern, not a moment
        (_envelope(ts="２０２６-11-22T10:15:03.120Z"), STORE, DEVICES[0]),  # \d matched full-width digits
        (_envelope(seq=2**63), STORE, DEVICES[0]),
        (_envelope(data={"session": "\ud800"}), STORE, DEVICES[0]),  # accepted, yet not UTF-8 text
    ],
    "ingest": [
        (_STATUS, ("[" * 1993 + "]" * 1993).encode()),  # RecursionError: the writer retried it forever
        (_STATUS, b'{"state":"online","session":9223372036854775808,"version":"1","ts":"x"}'),  # SQLite overflow
        (_EVENTS, _envelope(seq=2**63)),  # SQLite overflow: the writer retried the batch forever
        # Lone surrogates: UnicodeEncodeError from SQLite, the batch retried forever.
        (_TELEMETRY, b'{"device": "s001-k01", "ts": "\xed\xa0\x802026-11-22T10:15:03.120Z", "outbox": {"rows": 3}}'),
        (_TELEMETRY, b'{"device":"s001-k01","ts":"\\ud800"}'),
        (_STATUS, b'{"state":"online","session":1,"version":"\\ud800","ts":"x"}'),
        (_EVENTS, _envelope(data={"session": "x1", "n": float("inf")})),  # SQLite: malformed JSON, retried forever
    ],
    "tokens": [
        (_token(nbf=10**400), None, ()),     # OverflowError formatting "valid only in … s"
        (_token(iat=float("nan")), None, ()),  # ValueError: int(NaN)
        (_token(exp=float("inf")), None, ()),
    ],
    "webhooks": [
        _webhook("9" * 5000),  # ValueError: int() of more than 4300 digits
        _webhook("9" * 400),   # OverflowError: now - stamp as a float
    ],
    "inventory": [
        "a = " + "9" * 5000,                       # tomllib's ValueError escaped as a bare ValueError
        "a = " + "[" * 2000 + "]" * 2000,          # tomllib's RecursionError
        _inventory('timezone = "Europe/Amsterdam"', 'timezone = "America"'),   # IsADirectoryError
        _inventory('jwks_file = "online-jwks.json"', f'jwks_file = "{"x" * 300}"'),  # OSError: name too long
    ],
    "stock_import": [
        b"gtin,quan\rtity\n4006381333931,5\n",   # csv.Error from the header line
    ],
    "pos_sales_csv": [
        # an amount of 400 digits: decimal.InvalidOperation from quantize (found by bench/fuzz.py)
        b"amount,gtin,ts,quantity,sale_id\n" + b"9" * 400 + b",00000000,2026-03-14T15:04:05+01:00,1,T1",
    ],
    "analytics_query": [
        {"to": "9999-12-31"}, {"from": "0001-01-01", "to": "0001-01-05"},  # OverflowError (found in review)
    ],
}


def _fuzz_test(target: F.Target):
    @FUZZ
    @given(case=target.strategy)
    def test(case):
        F.run_case(target, case)

    for case in reversed(REGRESSIONS.get(target.name, [])):
        test = example(case=case)(test)
    test.__doc__ = f"{target.doc}: never raises, every rejection has a reason"
    return test


for _name, _target in F.TARGETS.items():
    globals()[f"test_fuzz_{_name}"] = _fuzz_test(_target)


def test_every_regression_names_a_target():
    assert set(REGRESSIONS) <= set(F.TARGETS)


def test_regressions_are_now_refused_with_their_reason():
    """What each fix decided, not only that nothing raised."""
    assert F.run_case(F.TARGETS["envelope"], REGRESSIONS["envelope"][0]) == "bad_field"
    assert F.run_case(F.TARGETS["envelope"], REGRESSIONS["envelope"][4]) == "bad_field"
    assert F.run_case(F.TARGETS["envelope"], REGRESSIONS["envelope"][5]) == "bad_data"
    assert F.run_case(F.TARGETS["ingest"], REGRESSIONS["ingest"][0]) == "bad_status"
    assert F.run_case(F.TARGETS["ingest"], REGRESSIONS["ingest"][2]) == "bad_field"
    assert [F.run_case(F.TARGETS["ingest"], case) for case in REGRESSIONS["ingest"][3:]] == [
        "bad_telemetry", "bad_telemetry", "bad_status", "bad_data"]
    assert {F.run_case(F.TARGETS["tokens"], case) for case in REGRESSIONS["tokens"]} == {"bad_claim"}
    assert {F.run_case(F.TARGETS["webhooks"], case) for case in REGRESSIONS["webhooks"]} == {"bad_signature"}
    assert [F.run_case(F.TARGETS["inventory"], case) for case in REGRESSIONS["inventory"]] == [
        "not valid TOML", "not valid TOML", "is not a", "not found"]
    assert F.run_case(F.TARGETS["stock_import"], REGRESSIONS["stock_import"][0]) == "unreadable"


def _garbage(count: int) -> list[tuple[str, bytes]]:
    """(leaf, payload) pairs no hub may accept: random bytes, deep nesting, out-of-range numbers."""
    rnd = random.Random(8)
    shaped = [("status", b"[" * 5000), ("status", b'{"state":"online","session":1e999}'),
              ("events", _envelope(seq=2**63)), ("events", _envelope(ts="2026-11-22T10:15:03.120Z\n")),
              ("events", b" " * (16 * 1024 + 1)), ("telemetry", b'{"device":"someone-else","ts":"x"}'),
              ("events", b"\xff\xfe"), ("events", b"[]"), ("telemetry", b"{" * 3000)]
    out = list(shaped)
    while len(out) < count:
        out.append((rnd.choice(["events", "status", "telemetry"]), rnd.randbytes(rnd.randint(0, 300))))
    return out


def test_ingest_survives_garbage_from_a_real_broker_and_still_stores_a_valid_event(broker, tmp_path):
    from hub.ingest import Ingest
    from hub.store import HubStore, open_hub_db
    from protocol.envelope import make_envelope
    from protocol.topics import Topics

    hub_store = HubStore(open_hub_db(tmp_path / "hub.db"))
    ingest = Ingest(store_id=STORE, login=login_for(broker, broker.hub_user), hub_store=hub_store,
                    version="test").start()
    wait_for(ingest.connected.is_set, what="hub connected")
    device = DEVICES[0]
    client = raw_client(broker, device)
    garbage = _garbage(300)
    for leaf, payload in garbage:
        client.publish(f"{Topics(STORE).store_root}/devices/{device}/{leaf}", payload, qos=1).wait_for_publish(5)
    wait_for(lambda: sum(ingest.counters.rejected.values()) == len(garbage), what="every garbage message rejected")
    valid = make_envelope(store=STORE, device=device, type="session.started", seq=1, data={"session": "x"},
                          now=datetime.now(timezone.utc))
    client.publish(Topics(STORE).events(device), valid.to_json(), qos=1).wait_for_publish(5)
    wait_for(lambda: hub_store.count_events(id=valid.id) == 1, what="the valid event stored after the garbage")

    assert ingest._writer is not None and ingest._writer.is_alive()
    counted = hub_store.rejection_counts()
    assert counted == dict(ingest.counters.rejected) and sum(counted.values()) == len(garbage)
    assert all(reason for reason in counted), counted
    assert {"bad_status", "bad_telemetry", "not_utf8", "too_large", "bad_field"} <= set(counted)
    assert hub_store.db.execute("SELECT count(*) FROM rejected_events WHERE detail = ''").fetchone()[0] == 0
    client.loop_stop()
    ingest.stop()
