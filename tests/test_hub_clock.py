"""A kiosk whose clock is minutes off still checks 120-second member tokens right: it uses the hub's time."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from demo.issuer import Issuer
from edge_agent.hub_clock import MAX_AGE, HubClock, measure, offset_from
from edge_agent.outbox import open_device_db
from protocol.envelope import format_ts
from protocol.tokens import KeySet, MemberClaims, TokenRejection, verify_member_token

REAL = datetime(2026, 11, 29, 10, 0, tzinfo=timezone.utc)
JANE = {"id": "M0001", "first_name": "Jane", "tier": "Gold", "points": 10}


class Clocks:
    """The store's real time, and a device clock `skew` away from it."""

    def __init__(self, skew: timedelta):
        self.real, self.skew = REAL, skew

    def device(self) -> datetime:
        return self.real + self.skew

    def hub_answer(self, method, params, timeout_s):
        assert method == "clock.now" and params == {}
        self.real += timedelta(milliseconds=20)       # the request's way there
        answer = {"ok": True, "result": {"now": format_ts(self.real)}}
        self.real += timedelta(milliseconds=20)       # and back
        return answer


def test_the_offset_is_taken_at_the_middle_of_the_round_trip():
    before = REAL
    assert offset_from(before, REAL + timedelta(seconds=300.05), before + timedelta(milliseconds=100)) == \
        pytest.approx(300.0)


@pytest.mark.parametrize("skew_min", [-5, 5])
def test_a_kiosk_minutes_off_accepts_a_fresh_app_token_with_the_hubs_time(tmp_path, skew_min):
    issuer = Issuer(Ed25519PrivateKey.generate())
    keys = KeySet.from_jwks(issuer.jwks())
    clocks = Clocks(timedelta(minutes=skew_min))
    hub_clock = HubClock(open_device_db(tmp_path / "outbox.db"), wall=clocks.device)
    token = issuer.mint(JANE, now=clocks.real)

    on_its_own = verify_member_token(token, keys, now=clocks.device(), issuer=issuer.issuer)
    assert isinstance(on_its_own, TokenRejection)
    assert on_its_own.reason == ("not_yet_valid" if skew_min < 0 else "expired")

    offset_s, rtt_s = measure(clocks.hub_answer, clocks.device)
    assert offset_s == pytest.approx(-skew_min * 60, abs=0.001) and rtt_s == pytest.approx(0.04)
    hub_clock.record(offset_s, rtt_s)
    assert abs((hub_clock.now() - clocks.real).total_seconds()) < 0.01
    assert isinstance(verify_member_token(token, keys, now=hub_clock.now(), issuer=issuer.issuer), MemberClaims)
    # ...and a token that really expired is still refused on the corrected clock
    clocks.real += timedelta(minutes=3)
    later = verify_member_token(token, keys, now=HubClock(hub_clock.db, wall=clocks.device).now(),
                                issuer=issuer.issuer)
    assert isinstance(later, TokenRejection) and later.reason == "expired"


def test_the_kiosk_process_reads_what_the_agent_process_recorded(tmp_path):
    clocks = Clocks(timedelta(minutes=-5))
    agent_side = HubClock(open_device_db(tmp_path / "outbox.db"), wall=clocks.device)
    kiosk_side = HubClock(open_device_db(tmp_path / "outbox.db"), wall=clocks.device)
    assert kiosk_side.now() == clocks.device()           # nothing measured yet: its own clock
    agent_side.record(300.0, 0.02)
    fresh_reader = HubClock(open_device_db(tmp_path / "outbox.db"), wall=clocks.device)
    assert fresh_reader.now() == clocks.device() + timedelta(seconds=300)


def test_an_old_or_tiny_measurement_is_not_used(tmp_path):
    clocks = Clocks(timedelta(0))
    db = open_device_db(tmp_path / "outbox.db")
    HubClock(db, wall=clocks.device).record(0.4, 0.02)
    assert HubClock(db, wall=clocks.device).offset_s() == 0.0           # within the round trip's noise
    HubClock(db, wall=clocks.device).record(120.0, 0.02)
    clocks.real += MAX_AGE + timedelta(minutes=1)
    assert HubClock(db, wall=clocks.device).offset_s() == 0.0           # a day old: the device may have been reset


def test_no_answer_from_the_hub_measures_nothing():
    clocks = Clocks(timedelta(0))
    assert measure(lambda m, p, t: {"ok": False, "error": {"code": "not_connected"}}, clocks.device) is None
    assert measure(lambda m, p, t: {"ok": True, "result": {"now": "yesterday"}}, clocks.device) is None
