"""The analytics feeds over real HTTP: members' online sessions and orders per home store, read from cursors."""

from __future__ import annotations

import re
import threading
from collections import Counter
from datetime import timedelta

import pytest
import requests
from flask import Flask
from werkzeug.serving import make_server

from demo import seed
from demo.online_store import create_app as create_online_store
from hub.connector import ONLINE_CHANNELS, ORDER_CHANNELS, OnlineStore, OnlineStoreRefused
from hub.online import CursorRejected, OnlineStoreError, RestOnlineStore

KEY = "feeds-test-key-" + "k" * 16
DATA = seed.build()
NOW = seed.REFERENCE_NOW
LATER = NOW + timedelta(hours=1)  # the demo store's clock
ADMIN = "/api/v1/_admin"
HOMES = DATA.home_stores
PROFILES = {c["id"]: c for c in DATA.customers}


class Served:
    """A WSGI app on a real socket, on a free port."""

    def __init__(self, app):
        self.http = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.http.server_port}"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()


class DemoShop(Served):
    def __init__(self):
        self.app = create_online_store(DATA, KEY, clock=lambda: LATER)
        super().__init__(self.app)

    def request(self, method: str, path: str, body: dict | None = None, **params) -> requests.Response:
        return requests.request(method, self.url + path, json=body, params=params,
                                headers={"Authorization": f"Bearer {KEY}"}, timeout=5)

    def admin(self, method: str, path: str, body: dict | None = None) -> dict:
        response = self.request(method, ADMIN + path, body)
        assert response.status_code == 200, response.text
        return response.json()

    def close(self) -> None:
        self.app.extensions["omnikiosk_online_store"].webhooks.stop()
        super().close()


@pytest.fixture
def shop():
    served = DemoShop()
    yield served
    served.close()


@pytest.fixture
def store(shop) -> RestOnlineStore:
    return RestOnlineStore(shop.url, KEY)


def walk(feed, cursor=None, *, store="s001", limit=500) -> tuple[list[dict], str, int]:
    """Every item from `cursor` to the end: (items, the cursor to ask next, pages)."""
    items, pages = [], 0
    while True:
        page = feed(cursor, store=store, limit=limit)
        assert set(page) == {"items", "next_cursor", "has_more"}
        assert isinstance(page["next_cursor"], str) and isinstance(page["has_more"], bool)
        items += page["items"]
        pages += 1
        cursor = page["next_cursor"]
        if not page["has_more"]:
            return items, cursor, pages


def seeded_sessions(store_id: str) -> list[dict]:
    return [s for s in DATA.sessions if HOMES[s["customer_id"]] == store_id]


def seeded_orders(store_id: str) -> list[dict]:
    """The orders feed's items from the seeded profiles, in feed order (placed_at, then id)."""
    orders = [{"id": o["id"], "customer_id": c["id"], "channel": o["channel"], "status": o["status"],
               "placed_at": o["placed_at"], "total": o["total"], "currency": o["currency"],
               "lines": [{"gtin": line["gtin"], "quantity": line["quantity"],
                          "amount": round(line["price"] * line["quantity"], 2)} for line in o["items"]]}
              for c in DATA.customers if HOMES[c["id"]] == store_id for o in c["orders"]]
    return sorted(orders, key=lambda o: (o["placed_at"], o["id"]))


def member_of(store_id: str, *, with_orders: bool = False) -> str:
    return next(cid for cid, home in HOMES.items()
                if home == store_id and (PROFILES[cid]["orders"] or not with_orders))


# --- the interface ---------------------------------------------------------------------------

def test_the_rest_connector_reads_the_analytics_feeds():
    assert isinstance(RestOnlineStore("http://127.0.0.1:1", KEY), OnlineStore)
    assert ORDER_CHANNELS == (*ONLINE_CHANNELS, "store")
    assert ONLINE_CHANNELS == ("web", "app", "social", "email", "search", "marketplace")


# --- paging ----------------------------------------------------------------------------------

def test_the_sessions_feed_pages_through_the_stores_sessions_exactly_once(store):
    items, cursor, pages = walk(store.online_sessions, limit=37)
    expected = seeded_sessions("s001")
    assert items == expected  # every field as seeded, oldest first
    assert pages == -(-len(expected) // 37)
    assert len({s["id"] for s in items}) == len(items)
    assert store.online_sessions(cursor, store="s001") == {"items": [], "next_cursor": cursor, "has_more": False}


def test_the_orders_feed_pages_through_the_stores_orders_exactly_once(store):
    items, cursor, pages = walk(store.orders, limit=29)
    expected = seeded_orders("s001")
    assert items == expected
    assert pages == -(-len(expected) // 29)
    assert store.orders(cursor, store="s001") == {"items": [], "next_cursor": cursor, "has_more": False}


def test_a_page_of_the_limit_exactly_then_the_rest(store):
    expected = seeded_sessions("s003")
    first = store.online_sessions(None, store="s003", limit=len(expected) - 1)
    assert first["has_more"] is True and first["items"] == expected[:-1]
    last = store.online_sessions(first["next_cursor"], store="s003", limit=1)
    assert last["items"] == expected[-1:] and last["has_more"] is False


def test_the_store_filter_gives_each_member_to_their_home_store_only(store):
    by_store = {sid: walk(store.online_sessions, store=sid)[0] for sid in ("s001", "s002", "s003")}
    orders = {sid: walk(store.orders, store=sid)[0] for sid in ("s001", "s002", "s003")}
    for sid, sessions in by_store.items():
        assert sessions and {HOMES[s["customer_id"]] for s in sessions} == {sid}
        assert orders[sid] and {HOMES[o["customer_id"]] for o in orders[sid]} == {sid}
    everyone = [s["id"] for items in by_store.values() for s in items]
    assert sorted(everyone) == sorted(s["id"] for s in DATA.sessions)  # each session in exactly one feed
    all_orders = [o["id"] for items in orders.values() for o in items]
    assert sorted(all_orders) == sorted(o["id"] for c in DATA.customers for o in c["orders"])
    elsewhere = member_of("s002", with_orders=True)
    assert not any(s["customer_id"] == elsewhere for s in by_store["s001"])
    assert not any(o["customer_id"] == elsewhere for o in orders["s001"])


# --- what changes after a cursor ---------------------------------------------------------------

def test_a_session_added_by_the_admin_comes_once_after_the_last_cursor(shop, store):
    _, cursor, _ = walk(store.online_sessions)
    jane = shop.admin("POST", "/sessions", {"customer_id": "m0001", "channel": "social", "source": "instagram",
                                            "added_to_cart": True})
    assert jane == {"id": f"S{len(DATA.sessions) + 1:06d}", "customer_id": "M0001", "channel": "social",
                    "source": "instagram", "started_at": "2026-11-22T10:00:00Z", "added_to_cart": True,
                    "asked_for_help": False}
    elsewhere = shop.admin("POST", "/sessions", {"customer_id": member_of("s002"), "channel": "web"})
    items, cursor, _ = walk(store.online_sessions, cursor)
    assert items == [jane]
    assert store.online_sessions(cursor, store="s001")["items"] == []
    assert walk(store.online_sessions, store="s002")[0][-1] == elsewhere


def test_a_session_posted_again_with_its_id_is_replaced_and_comes_again(shop, store):
    first = shop.admin("POST", "/sessions", {"id": "S-web-1", "customer_id": "M0001", "channel": "web",
                                             "started_at": "2026-11-22T09:30:00Z"})
    _, cursor, _ = walk(store.online_sessions)
    changed = shop.admin("POST", "/sessions", {**first, "asked_for_help": True})
    assert changed == {**first, "asked_for_help": True}
    items, _, _ = walk(store.online_sessions, cursor)
    assert items == [changed]
    everything, _, _ = walk(store.online_sessions)
    assert [s["id"] for s in everything].count("S-web-1") == 1 and everything[-1] == changed


def test_an_order_added_by_the_admin_is_in_the_feed_once_and_in_the_profile(shop, store):
    _, cursor, _ = walk(store.orders)
    product = DATA.products[0]
    order = shop.admin("POST", "/orders", {"customer_id": "M0001", "channel": "social", "lines": [
        {"gtin": product["gtin"], "quantity": 2, "amount": round(product["price"] * 2, 2)}]})
    assert order == {"id": "10000", "customer_id": "M0001", "channel": "social", "status": "placed",
                     "placed_at": "2026-11-22T10:00:00Z", "total": round(product["price"] * 2, 2), "currency": "EUR",
                     "lines": [{"gtin": product["gtin"], "quantity": 2, "amount": round(product["price"] * 2, 2)}]}
    items, cursor, _ = walk(store.orders, cursor)
    assert items == [order]
    assert store.orders(cursor, store="s001")["items"] == []
    profile = store.customer("M0001")
    newest = profile["orders"][0]
    assert newest == {"id": "10000", "number": "#10000", "channel": "social", "status": "placed",
                      "placed_at": "2026-11-22T10:00:00Z", "total": order["total"], "currency": "EUR", "pickup": None,
                      "items": [{"gtin": product["gtin"], "name": product["name"], "quantity": 2,
                                 "price": product["price"]}]}
    assert profile["updated_at"] == "2026-11-22T10:00:00Z"
    # The same id again is a conflict: a change of status goes through PATCH.
    again = shop.request("POST", ADMIN + "/orders", {"id": "10000", "customer_id": "M0001", "channel": "web",
                                                     "lines": order["lines"]})
    assert again.status_code == 409 and "PATCH" in again.json()["error"]["message"]


def test_a_click_and_collect_order_can_be_added_ready_for_pickup(shop, store):
    product = DATA.products[5]
    order = shop.admin("POST", "/orders", {"id": "W-77", "customer_id": "M0001", "channel": "app",
                                           "status": "ready_for_pickup", "placed_at": "2026-11-21T18:00:00Z",
                                           "pickup": {"store": "s001", "shelf": "C"},
                                           "lines": [{"gtin": product["gtin"], "quantity": 1,
                                                      "amount": product["price"]}]})
    kept = next(o for o in store.customer("M0001")["orders"] if o["id"] == "W-77")
    assert kept["pickup"] == {"store": "s001", "shelf": "C", "ready_since": "2026-11-22T10:00:00Z"}
    assert (kept["status"], kept["placed_at"]) == (order["status"], order["placed_at"]) == \
        ("ready_for_pickup", "2026-11-21T18:00:00Z")


def test_an_order_whose_status_changes_comes_again_as_it_is_now(shop, store):
    items, cursor, _ = walk(store.orders)
    first = items[0]
    shop.admin("PATCH", f"/customers/{first['customer_id']}/orders/{first['id']}", {"status": "returned"})
    again, cursor, _ = walk(store.orders, cursor)
    assert again == [{**first, "status": "returned"}]
    assert store.orders(cursor, store="s001")["items"] == []
    everything, _, _ = walk(store.orders)  # from the start: still once, now at the end
    assert [o["id"] for o in everything].count(first["id"]) == 1 and everything[-1]["status"] == "returned"


def test_an_erased_members_sessions_and_orders_leave_the_feeds(shop, store):
    member = member_of("s001", with_orders=True)
    shop.admin("POST", f"/customers/{member}/erase")
    sessions, _, _ = walk(store.online_sessions)
    orders, _, _ = walk(store.orders)
    assert sessions and not any(s["customer_id"] == member for s in sessions)
    assert orders and not any(o["customer_id"] == member for o in orders)
    gone = shop.request("POST", ADMIN + "/sessions", {"customer_id": member, "channel": "web"})
    assert gone.status_code == 404


# --- refusals --------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/api/v1/sessions/changes", "/api/v1/orders/changes"])
def test_the_store_is_required_and_must_be_known(shop, path):
    missing = shop.request("GET", path)
    assert missing.status_code == 400
    assert missing.json()["error"]["code"] == "bad_request" and "store is required" in missing.json()["error"]["message"]
    unknown = shop.request("GET", path, store="s999")
    assert unknown.status_code == 400 and "s999" in unknown.json()["error"]["message"]
    too_many = shop.request("GET", path, store="s001", limit="1001")
    assert too_many.status_code == 400 and "limit" in too_many.json()["error"]["message"]


def test_the_client_refuses_an_empty_store_and_the_store_refuses_a_missing_one(store):
    with pytest.raises(ValueError, match="store"):
        store.online_sessions(None, store="")
    with pytest.raises(OnlineStoreRefused, match="store"):
        store.orders(None, store="s999")
    assert store.breaker_state == "closed"


def test_a_cursor_the_feed_did_not_issue_for_this_store_is_rejected(store):
    s001_sessions = store.online_sessions(None, store="s001", limit=1)["next_cursor"]
    s001_orders = store.orders(None, store="s001", limit=1)["next_cursor"]
    customers = store.customer_changes(None, limit=1)["next_cursor"]
    for cursor in ("bogus", "1.2", s001_orders, customers):
        with pytest.raises(CursorRejected):
            store.online_sessions(cursor, store="s001")
    with pytest.raises(CursorRejected):
        store.online_sessions(s001_sessions, store="s002")  # another store's cursor
    with pytest.raises(CursorRejected):
        store.orders(s001_sessions, store="s001")  # another feed's cursor
    other = DemoShop()
    try:
        foreign = RestOnlineStore(other.url, KEY).orders(None, store="s001", limit=1)["next_cursor"]
    finally:
        other.close()
    with pytest.raises(CursorRejected):
        store.orders(foreign, store="s001")  # a restarted store's cursor
    assert store.breaker_state == "closed"


GOOD_LINE = {"gtin": DATA.products[0]["gtin"], "quantity": 1, "amount": DATA.products[0]["price"]}


@pytest.mark.parametrize("path,body,expected", [
    ("/sessions", [], "JSON object"),
    ("/sessions", {"customer_id": "M0001", "channel": "tv"}, "channel"),
    ("/sessions", {"channel": "web"}, "customer_id"),
    ("/sessions", {"customer_id": None, "channel": "web"}, "customer_id"),
    ("/sessions", {"customer_id": "M0001", "channel": "web", "source": 7}, "source"),
    ("/sessions", {"customer_id": "M0001", "channel": "web", "started_at": "2026-11-22 10:00"}, "started_at"),
    ("/sessions", {"customer_id": "M0001", "channel": "web", "added_to_cart": "yes"}, "added_to_cart"),
    ("/sessions", {"customer_id": "M0001", "channel": "web", "id": "has space"}, "id"),
    ("/sessions", {"customer_id": "M0001", "channel": "web", "store": "s001"}, "Unknown fields store"),
    ("/orders", None, "JSON object"),
    ("/orders", {"customer_id": "M0001", "channel": "fax", "lines": [GOOD_LINE]}, "channel"),
    ("/orders", {"customer_id": "M0001", "channel": "web", "lines": []}, "lines"),
    ("/orders", {"customer_id": "M0001", "channel": "web", "status": "lost", "lines": [GOOD_LINE]}, "status"),
    ("/orders", {"customer_id": "M0001", "channel": "web", "lines": [{**GOOD_LINE, "gtin": "123"}]}, "GTIN-14"),
    ("/orders", {"customer_id": "M0001", "channel": "web", "lines": [{**GOOD_LINE, "quantity": 0}]}, "quantity"),
    ("/orders", {"customer_id": "M0001", "channel": "web", "lines": [{**GOOD_LINE, "quantity": 3, "amount": 10.0}]},
     "unit price"),
    ("/orders", {"customer_id": "M0001", "channel": "web", "total": 1.0, "lines": [GOOD_LINE]}, "total"),
    ("/orders", {"customer_id": "M0001", "channel": "web", "currency": "USD", "lines": [GOOD_LINE]}, "currency"),
    ("/orders", {"customer_id": "M0001", "channel": "web", "status": "picked_up", "lines": [GOOD_LINE]}, "pickup"),
    ("/orders", {"customer_id": "M0001", "channel": "store", "pickup": {"store": "s001"}, "lines": [GOOD_LINE]},
     "click & collect"),
])
def test_admin_bodies_are_checked_with_a_clear_400(shop, path, body, expected):
    response = shop.request("POST", ADMIN + path, body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "bad_request" and expected in response.json()["error"]["message"]


def test_admin_adds_for_unknown_members_or_products_are_404(shop):
    assert shop.request("POST", ADMIN + "/sessions", {"customer_id": "M9999", "channel": "web"}).status_code == 404
    assert shop.request("POST", ADMIN + "/orders", {"customer_id": "M9999", "channel": "web",
                                                     "lines": [GOOD_LINE]}).status_code == 404
    unknown = {**GOOD_LINE, "gtin": "00000000000017"}
    assert shop.request("POST", ADMIN + "/orders", {"customer_id": "M0001", "channel": "web",
                                                     "lines": [unknown]}).status_code == 404


# --- the client checks every item --------------------------------------------------------------

SESSION = {"id": "S1", "customer_id": "M0001", "channel": "web", "source": None, "started_at": "2026-11-22T10:00:00Z",
           "added_to_cart": False, "asked_for_help": False}
ORDER = {"id": "1", "customer_id": None, "channel": "store", "status": "delivered", "placed_at": "2026-11-22T10:00:00Z",
         "total": 10.0, "currency": "EUR", "lines": [{"gtin": "04009114002005", "quantity": 2, "amount": 10.0}]}


class Feeds(Served):
    """A stand-in online store that serves one given item on each analytics feed."""

    def __init__(self):
        self.session, self.order = dict(SESSION), dict(ORDER)
        app = Flask(__name__)

        @app.get("/api/v1/sessions/changes")
        def sessions():
            return {"items": [self.session], "next_cursor": "c1", "has_more": False}

        @app.get("/api/v1/orders/changes")
        def orders():
            return {"items": [self.order], "next_cursor": "c1", "has_more": False}

        super().__init__(app)


@pytest.fixture
def feeds():
    served = Feeds()
    yield served
    served.close()


def test_well_formed_items_pass_as_they_are_unknown_fields_included(feeds):
    client = RestOnlineStore(feeds.url, KEY)
    feeds.session = {**SESSION, "device": "tablet"}
    assert client.online_sessions(None, store="s001")["items"] == [feeds.session]
    assert client.orders(None, store="s001")["items"] == [ORDER]


@pytest.mark.parametrize("change", [
    {"id": None}, {"id": ""}, {"customer_id": 7}, {"channel": "store"}, {"channel": "tv"}, {"source": 3},
    {"started_at": "2026-11-22"}, {"started_at": "2026-11-22T10:00:00+01:00"}, {"added_to_cart": 1},
    {"asked_for_help": None},
], ids=lambda change: next(iter(change.items())).__repr__())
def test_a_malformed_session_raises_naming_the_endpoint(feeds, change):
    feeds.session = {**SESSION, **change}
    with pytest.raises(OnlineStoreError, match="GET /api/v1/sessions/changes"):
        RestOnlineStore(feeds.url, KEY).online_sessions(None, store="s001")


def test_a_session_without_a_source_field_is_malformed(feeds):
    feeds.session = {k: v for k, v in SESSION.items() if k != "source"}
    with pytest.raises(OnlineStoreError, match="source"):
        RestOnlineStore(feeds.url, KEY).online_sessions(None, store="s001")


@pytest.mark.parametrize("change", [
    {"channel": "tv"}, {"status": ""}, {"total": "10.00"}, {"total": True}, {"currency": "euro"},
    {"placed_at": None}, {"lines": None}, {"lines": [{"gtin": "4009114002005", "quantity": 1, "amount": 1.0}]},
    {"lines": [{"gtin": "04009114002005", "quantity": 0, "amount": 1.0}]},
    {"lines": [{"gtin": "04009114002005", "quantity": 1}]}, {"lines": ["04009114002005"]},
], ids=lambda change: next(iter(change.items())).__repr__())
def test_a_malformed_order_raises_naming_the_endpoint(feeds, change):
    feeds.order = {**ORDER, **change}
    with pytest.raises(OnlineStoreError, match="GET /api/v1/orders/changes"):
        RestOnlineStore(feeds.url, KEY).orders(None, store="s001")


# --- the seeded data ---------------------------------------------------------------------------

def test_seeded_sessions_and_home_stores_are_deterministic():
    again = seed.build()
    assert again.sessions == DATA.sessions and again.home_stores == DATA.home_stores
    other = seed.build(seed=7)
    assert other.sessions != DATA.sessions


def test_every_member_has_a_home_store_mostly_s001():
    assert set(HOMES) == set(PROFILES)
    counts = Counter(HOMES.values())
    assert counts["s001"] > counts["s002"] > counts["s003"] > 0
    assert HOMES[seed.HERO_ID] == HOMES[seed.NO_CONSENT_ID] == "s001"


def test_seeded_sessions_have_the_contract_shape_and_plausible_values():
    sessions = DATA.sessions
    assert [s["id"] for s in sessions] == [f"S{n:06d}" for n in range(1, len(sessions) + 1)]
    assert [s["started_at"] for s in sessions] == sorted(s["started_at"] for s in sessions)
    for session in sessions:
        assert set(session) == {"id", "customer_id", "channel", "source", "started_at", "added_to_cart",
                                "asked_for_help"}
        assert session["customer_id"] in PROFILES and session["channel"] in ONLINE_CHANNELS
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", session["started_at"])
        assert (NOW - timedelta(days=366)).strftime("%Y-%m-%dT%H:%M:%SZ") <= session["started_at"] \
            <= NOW.strftime("%Y-%m-%dT%H:%M:%SZ")
        source, channel = session["source"], session["channel"]
        if channel == "search":
            assert source in ("google", "bing")
        elif channel == "social":
            assert source in ("instagram", "facebook", "tiktok")
        elif channel == "email":
            assert source == f"newsletter-{session['started_at'][:7]}"
    share = Counter(s["channel"] for s in sessions)
    assert share["web"] > share["app"] > share["search"] > share["marketplace"] > 0
    assert 0.25 < sum(s["added_to_cart"] for s in sessions) / len(sessions) < 0.5
    assert 0.01 < sum(s["asked_for_help"] for s in sessions) / len(sessions) < 0.06
    assert 2000 < len(sessions) < 8000


def test_every_online_order_of_the_year_has_the_session_it_was_placed_in():
    window = (NOW - timedelta(days=365)).strftime("%Y-%m-%dT%H:%M:%SZ")
    by_member: dict[str, list[dict]] = {}
    for session in DATA.sessions:
        by_member.setdefault(session["customer_id"], []).append(session)
    orders = [(c["id"], o) for c in DATA.customers for o in c["orders"]
              if o["channel"] != "store" and o["placed_at"] >= window]
    assert orders
    for cid, order in orders:
        before = [s for s in by_member.get(cid, []) if s["channel"] == order["channel"] and s["added_to_cart"]
                  and s["started_at"] < order["placed_at"]]
        assert before, order["id"]
        latest = max(before, key=lambda s: s["started_at"])
        placed = seed._parse(order["placed_at"])
        assert placed - seed._parse(latest["started_at"]) <= timedelta(minutes=41)


def test_feed_channels_are_the_documented_ones(store):
    sessions = [s for sid in ("s001", "s002", "s003") for s in walk(store.online_sessions, store=sid)[0]]
    orders = [o for sid in ("s001", "s002", "s003") for o in walk(store.orders, store=sid)[0]]
    assert {s["channel"] for s in sessions} == set(ONLINE_CHANNELS)
    assert {o["channel"] for o in orders} <= set(ORDER_CHANNELS) and "store" in {o["channel"] for o in orders}
    assert all(re.fullmatch(r"\d{14}", line["gtin"]) for o in orders for line in o["lines"])
