"""Arrival cards from online profiles, fetched over real HTTP, with the cache when the online store fails."""

from __future__ import annotations

import threading
from datetime import datetime, timezone

import pytest
from flask import Flask, jsonify
from werkzeug.serving import make_server

from demo import seed
from demo.online_store import create_app as create_online_store
from hub.arrivals import ArrivalDesk, arrival_card
from hub.online import OnlineStoreUnavailable, RestOnlineStore
from hub.store import HubStore, open_hub_db
from protocol.envelope import make_envelope

NOW = seed.REFERENCE_NOW
DATA = seed.build()
PROFILES = {c["id"]: c for c in DATA.customers}


def member_event(member="M0001", device="s001-k01", jti="j-1", at=NOW):
    return make_envelope(store="s001", device=device, type="scan.member", seq=1, now=at,
                         data={"session": "s", "member": member, "jti": jti, "typ": "app"})


class Server:
    def __init__(self, app):
        self.http = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.http.server_port}"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def close(self):
        self.http.shutdown()
        self.http.server_close()


@pytest.fixture
def online():
    server = Server(create_online_store(DATA, "k" * 32))
    yield server
    server.close()


def test_card_puts_the_pickup_ready_here_first():
    card = arrival_card(member_event(), PROFILES["M0001"], store="s001", now=NOW, profile_source="online",
                        profile_age_s=0, late=False)
    assert card["flags"][0] == {"kind": "pickup", "text": "Pickup ready: order #1043, 2 items, shelf B"}
    assert any(f["kind"] == "cart" and "2 days ago" in f["text"] for f in card["flags"])
    assert [o["number"] for o in card["orders"] if o["ready_here"]] == ["#1043"]


def test_card_without_clienteling_consent_says_only_member_checked_in():
    card = arrival_card(member_event("M0002"), PROFILES["M0002"], store="s001", now=NOW, profile_source="online",
                        profile_age_s=0, late=False)
    assert card["customer"] is None and card["orders"] == [] and card["wishlist"] == []
    assert card["flags"] == [{"kind": "member", "text": "Member checked in"}]


def test_fresh_profile_is_fetched_then_served_from_cache(online, tmp_path):
    store = HubStore(open_hub_db(tmp_path / "hub.db"))
    cards: list[dict] = []
    desk = ArrivalDesk(store="s001", hub_store=store, online=RestOnlineStore(online.url, "k" * 32),
                       emit=cards.append, clock=lambda: NOW)
    desk.handle(member_event(jti="a"))
    desk.handle(member_event(jti="b"))
    assert [c["profile_source"] for c in cards] == ["online", "cache"]
    assert cards[0]["customer"]["last_name"] == "Cooper"


def test_online_store_down_falls_back_to_the_cached_profile_with_its_age(online, tmp_path):
    store = HubStore(open_hub_db(tmp_path / "hub.db"))
    store.cache_profile("M0001", PROFILES["M0001"], "2026-11-22T08:00:00.000Z")  # an hour old: past the TTL
    online.close()
    cards: list[dict] = []
    desk = ArrivalDesk(store="s001", hub_store=store, online=RestOnlineStore(online.url, "k" * 32, timeout_s=0.3),
                       emit=cards.append, clock=lambda: NOW)
    desk.handle(member_event())
    assert cards[0]["profile_source"] == "cache" and cards[0]["profile_age_s"] == 3600
    assert cards[0]["customer"]["first_name"] == "Jane"


def test_same_app_token_on_a_second_kiosk_is_a_replay_not_an_arrival(online, tmp_path):
    store = HubStore(open_hub_db(tmp_path / "hub.db"))
    cards: list[dict] = []
    desk = ArrivalDesk(store="s001", hub_store=store, online=RestOnlineStore(online.url, "k" * 32),
                       emit=cards.append, clock=lambda: NOW)
    desk.handle(member_event(device="s001-k01", jti="same"))
    desk.handle(member_event(device="s001-k02", jti="same"))
    assert len(cards) == 1 and desk.counters["replays"] == 1


def test_a_check_in_replayed_after_an_outage_is_marked_late(online, tmp_path):
    store = HubStore(open_hub_db(tmp_path / "hub.db"))
    cards: list[dict] = []
    desk = ArrivalDesk(store="s001", hub_store=store, online=RestOnlineStore(online.url, "k" * 32),
                       emit=cards.append, late_after_s=120,
                       clock=lambda: datetime(2026, 11, 22, 9, 10, tzinfo=timezone.utc))
    desk.handle(member_event(at=NOW))
    assert cards[0]["late"] is True


def flaky_app(failures: list[tuple[int, dict]]):
    """Answers with the queued failures first, then a profile."""
    app = Flask("flaky")
    calls = []

    @app.get("/api/v1/customers/<member>")
    def customer(member):
        calls.append(member)
        if failures:
            status, headers = failures.pop(0)
            return jsonify(error={"code": "x", "message": "x"}), status, headers
        return jsonify(PROFILES[member])
    return app, calls


def test_connector_retries_5xx_and_respects_retry_after_within_its_budget():
    app, calls = flaky_app([(503, {}), (429, {"Retry-After": "0.1"})])
    server = Server(app)
    slept: list[float] = []
    try:
        client = RestOnlineStore(server.url, "k", timeout_s=2.0, sleep=lambda s: slept.append(s))
        assert client.customer("M0001")["id"] == "M0001"
    finally:
        server.close()
    assert len(calls) == 3 and slept[1] == 0.1


def test_connector_gives_up_when_retry_after_exceeds_the_budget():
    app, calls = flaky_app([(429, {"Retry-After": "30"})])
    server = Server(app)
    try:
        with pytest.raises(OnlineStoreUnavailable):
            RestOnlineStore(server.url, "k", timeout_s=0.5).customer("M0001")
    finally:
        server.close()
    assert len(calls) == 1
