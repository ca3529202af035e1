"""The connector to the online store over real HTTP: changes feeds, activity, circuit breaker, signed webhooks."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta

import pytest
import requests
from conftest import wait_for
from flask import Flask, request
from werkzeug.serving import make_server

from demo import seed
from demo.online_store import create_app as create_online_store
from hub import connector, online
from hub.catalog import PRODUCT_FIELDS, HubCatalog
from hub.connector import OnlineStore
from hub.online import (
    CircuitBreaker,
    CircuitOpen,
    CursorRejected,
    CustomerNotFound,
    OnlineStoreUnavailable,
    RestOnlineStore,
)
from hub.store import HubStore, open_hub_db
from hub.webhooks import (
    ID_HEADER,
    MAX_BODY_BYTES,
    REASONS,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookEvent,
    WebhookRejection,
    sign,
    verify,
)
from protocol.catalog import stock_key

KEY = "connector-test-key-" + "k" * 16
SECRET = "whsec-" + "s" * 32
DATA = seed.build()
NOW = seed.REFERENCE_NOW
CUSTOMER_IDS = [c["id"] for c in DATA.customers]
STORE_IDS = [s["id"] for s in DATA.stores]
ADMIN = "/api/v1/_admin"


class Served:
    """A WSGI app on a real socket (a free port unless told)."""

    def __init__(self, app, port: int = 0):
        self.http = make_server("127.0.0.1", port, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.http.server_port}"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()


class DemoShop(Served):
    """The demo online store, counting the API requests that reach it (admin calls left out)."""

    def __init__(self, **options):
        self.app = create_online_store(DATA, KEY, clock=lambda: NOW + timedelta(hours=1), **options)
        self.requests: list[str] = []
        inner = self.app.wsgi_app

        def counting(environ, start_response):
            if not environ["PATH_INFO"].startswith(ADMIN):
                self.requests.append(f"{environ['REQUEST_METHOD']} {environ['PATH_INFO']}")
            return inner(environ, start_response)

        self.app.wsgi_app = counting
        super().__init__(self.app)

    def admin(self, method: str, path: str, body: dict | None = None) -> dict:
        response = requests.request(method, self.url + ADMIN + path, json=body,
                                    headers={"Authorization": f"Bearer {KEY}"}, timeout=5)
        assert response.status_code == 200, response.text
        return response.json()

    def api(self, path: str, **params) -> dict:
        response = requests.get(self.url + path, params=params, headers={"Authorization": f"Bearer {KEY}"}, timeout=5)
        assert response.status_code == 200, response.text
        return response.json()

    def close(self) -> None:
        self.admin("DELETE", "/faults")  # releases requests a `down` fault still holds
        self.app.extensions["omnikiosk_online_store"].webhooks.stop()
        super().close()


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def shop():
    served = DemoShop()
    yield served
    served.close()


def connect(shop: DemoShop, **options) -> RestOnlineStore:
    return RestOnlineStore(shop.url, KEY, **options)


def walk(feed, cursor=None, limit=100) -> tuple[list[dict], str, int]:
    """Every item from `cursor` to the end: (items, the cursor to ask next, pages)."""
    items, pages = [], 0
    while True:
        page = feed(cursor, limit=limit)
        items += page["items"]
        pages += 1
        assert isinstance(page["next_cursor"], str)
        cursor = page["next_cursor"]
        if not page["has_more"]:
            return items, cursor, pages


# --- the interface ---------------------------------------------------------------------------

def test_the_rest_connector_is_an_online_store_with_exactly_the_interfaces_methods():
    methods = {name for name in vars(OnlineStore) if not name.startswith("_") and callable(getattr(OnlineStore, name))}
    assert methods == {"customer", "customer_changes", "catalog_changes", "online_sessions", "orders",
                       "push_activity", "add_to_cart",
                       "add_to_wishlist", "search_customers", "verify_webhook"}
    assert isinstance(RestOnlineStore("http://127.0.0.1:1", KEY), OnlineStore)


def test_errors_moved_to_the_connector_and_stay_importable_from_hub_online():
    for name in ("OnlineStoreError", "CustomerNotFound", "OnlineStoreUnavailable", "OnlineStoreRefused",
                 "OnlineStoreUnauthorized", "CircuitOpen"):
        assert getattr(online, name) is getattr(connector, name)
    assert issubclass(CircuitOpen, OnlineStoreUnavailable) and CircuitOpen.code == "circuit_open"
    assert issubclass(CursorRejected, connector.OnlineStoreRefused)


def test_the_connector_never_shows_its_key_or_webhook_secret():
    store = RestOnlineStore("http://127.0.0.1:1", KEY, webhook_secret=SECRET)
    assert KEY not in repr(store) and SECRET not in repr(store)


# --- customers changes feed ------------------------------------------------------------------

def test_the_customer_feed_pages_through_every_customer_exactly_once(shop):
    store = connect(shop)
    items, cursor, pages = walk(store.customer_changes, limit=37)
    assert [item["id"] for item in items] == CUSTOMER_IDS
    assert pages == -(-len(CUSTOMER_IDS) // 37)
    jane = items[0]
    assert jane["profile"] == store.customer("M0001") and jane["updated_at"] == jane["profile"]["updated_at"]
    last = store.customer_changes(cursor)
    assert last == {"items": [], "next_cursor": cursor, "has_more": False}


def test_the_customer_feed_continues_with_only_what_changed_since_the_cursor(shop):
    store = connect(shop)
    _, cursor, _ = walk(store.customer_changes)
    shop.admin("PATCH", "/customers/M0002", {"points": 100})
    shop.admin("PATCH", "/customers/M0001", {"consent": {"clienteling": False}})
    shop.admin("PATCH", "/customers/M0002", {"tier": "Silver"})
    items, cursor, _ = walk(store.customer_changes, cursor)
    # A member changed twice comes once, as they are now, in the order of their last change.
    assert [item["id"] for item in items] == ["M0001", "M0002"]
    assert items[0]["profile"]["consent"] == {"clienteling": False, "marketing": True}
    assert (items[1]["profile"]["points"], items[1]["profile"]["tier"]) == (100, "Silver")
    assert store.customer_changes(cursor)["items"] == []
    again, _, _ = walk(store.customer_changes)  # from the beginning: still every customer once
    assert sorted(item["id"] for item in again) == CUSTOMER_IDS


def test_a_cart_line_added_online_is_a_customer_change(shop):
    store = connect(shop)
    _, cursor, _ = walk(store.customer_changes)
    cart = store.add_to_cart("M0003", DATA.products[0]["gtin"], 1, "tap-1")
    items = store.customer_changes(cursor)["items"]
    assert [item["id"] for item in items] == ["M0003"] and items[0]["profile"]["cart"] == cart


def test_an_erased_member_is_an_erasure_in_the_feed_and_unknown_afterwards(shop):
    store = connect(shop)
    _, cursor, _ = walk(store.customer_changes)
    shop.admin("POST", "/customers/M0007/erase")
    page = store.customer_changes(cursor)
    assert page["items"] == [{"id": "M0007", "erased": True, "erased_at": "2026-11-22T10:00:00Z"}]
    with pytest.raises(CustomerNotFound):
        store.customer("M0007")
    everyone, _, _ = walk(store.customer_changes)
    erased = [item for item in everyone if item["id"] == "M0007"]
    assert erased == page["items"] and "profile" not in erased[0]  # a new reader never sees the profile
    assert len(everyone) == len(CUSTOMER_IDS)


def test_a_cursor_the_store_did_not_issue_is_rejected_so_the_hub_starts_over(shop):
    store = connect(shop)
    catalog_cursor = store.catalog_changes(None, limit=1)["next_cursor"]
    other = DemoShop()
    try:
        foreign = connect(other).customer_changes(None, limit=1)["next_cursor"]
    finally:
        other.close()
    for cursor in ("bogus", catalog_cursor, foreign):
        with pytest.raises(CursorRejected):
            store.customer_changes(cursor)
    assert store.breaker_state == "closed"  # a refusal is an answer: the store is up


# --- catalog changes feed --------------------------------------------------------------------

def test_the_catalog_feed_walks_the_whole_catalog_once_and_the_hub_catalog_takes_it(shop, tmp_path):
    items, _, _ = walk(connect(shop).catalog_changes, limit=500)
    keys = [(item["kind"], item["key"]) for item in items]
    assert len(keys) == len(set(keys)) == len(STORE_IDS) + len(DATA.products) * (len(STORE_IDS) + 2)
    products = [item["data"] for item in items if item["kind"] == "product"]
    assert all(set(p) == set(PRODUCT_FIELDS) and len(p["reviews"]) <= 3 for p in products)
    on_sale = [p for p in products if p["compare_at_price"]]
    assert on_sale and all(p["promotion"]["label"] == f"-{p['promotion']['percent']}%" for p in on_sale)
    stock = [item for item in items if item["kind"] == "stock"]
    assert {row["data"]["store"] for row in stock} == {*STORE_IDS, "online"}
    assert all(row["key"] == stock_key(row["data"]["gtin"], row["data"]["store"]) for row in stock)

    HubStore(open_hub_db(tmp_path / "hub.db"))  # the migrations
    hub = HubCatalog(open_hub_db(tmp_path / "hub.db"))
    feed = {"stores": [], "products": [], "stock": []}
    for item in items:
        feed[{"store": "stores", "product": "products", "stock": "stock"}[item["kind"]]].append(item["data"])
    assert hub.apply_feed(feed) == 1
    sale = on_sale[0]
    assert hub.product(sale["gtin"], "s001")["promotion"] == sale["promotion"]


def test_a_price_and_stock_change_reaches_the_catalog_feed_alone(shop):
    store = connect(shop)
    _, cursor, _ = walk(store.catalog_changes, limit=1000)
    gtin = next(p["gtin"] for p in DATA.products if not p["compare_at_price"])
    old_price = next(p["price"] for p in DATA.products if p["gtin"] == gtin)
    shop.admin("PATCH", f"/products/{gtin}", {"price": 9.95, "compare_at_price": old_price, "stock": {"s002": 0}})
    items = store.catalog_changes(cursor)["items"]
    assert [(item["kind"], item["key"]) for item in items] == [("product", gtin), ("stock", stock_key(gtin, "s002"))]
    product, stock = items[0]["data"], items[1]["data"]
    assert (product["price"], product["promotion"]["percent"]) == (9.95, round(100 * (1 - 9.95 / old_price)))
    assert product["updated_at"] == "2026-11-22T10:00:00Z" and stock["quantity"] == 0
    assert shop.api(f"/api/v1/products/{gtin}")["price"] == 9.95  # the web shop shows the same price


# --- activity ---------------------------------------------------------------------------------

def activity(n: int, customer: str | None = "M0001", kind: str = "scan.product") -> dict:
    return {"id": f"evt-{n}", "type": kind, "customer_id": customer, "store": "s001",
            "ts": "2026-11-22T10:15:03.120Z", "data": {"gtin": DATA.products[0]["gtin"]}}


def test_pushed_activity_is_accepted_again_but_stored_once(shop):
    store = connect(shop)
    items = [activity(1, kind="visit"), activity(2), activity(3, customer=None, kind="assist.requested")]
    first = store.push_activity(items)
    again = store.push_activity(items[:2])
    assert first == {"accepted": ["evt-1", "evt-2", "evt-3"], "rejected": []}
    assert again == {"accepted": ["evt-1", "evt-2"], "rejected": []}
    kept = shop.api("/api/v1/activity", customer_id="M0001")["items"]
    assert [(item["id"], item["times_received"]) for item in kept] == [("evt-1", 2), ("evt-2", 2)]
    assert [item["id"] for item in shop.api("/api/v1/activity")["items"]] == ["evt-1", "evt-2", "evt-3"]


def test_each_bad_activity_item_is_rejected_with_its_reason_and_the_rest_kept(shop):
    store = connect(shop)
    store.push_activity([activity(1)])
    result = store.push_activity([
        activity(2, kind="scan.member"), activity(3, customer="M9999"), {**activity(4), "ts": "yesterday"},
        {**activity(1), "data": {"other": True}}, "not an item", activity(5, kind="offer.shown"),
    ])
    assert result["accepted"] == ["evt-5"]
    assert [(r["id"], r["code"]) for r in result["rejected"]] == [
        ("evt-2", "invalid"), ("evt-3", "not_found"), ("evt-4", "invalid"), ("evt-1", "conflict"), (None, "invalid")]
    assert all(r["message"] for r in result["rejected"])


def test_activity_goes_out_in_posts_of_at_most_500(shop):
    store = connect(shop)
    result = store.push_activity([activity(n, kind="cart.sent") for n in range(1200)])
    assert len(result["accepted"]) == 1200 and shop.requests == ["POST /api/v1/activity"] * 3


def test_an_erasure_also_forgets_the_members_activity(shop):
    store = connect(shop)
    store.push_activity([activity(1, customer="M0009"), activity(2, customer="M0001")])
    shop.admin("POST", "/customers/M0009/erase")
    assert [item["id"] for item in shop.api("/api/v1/activity")["items"]] == ["evt-2"]
    assert store.push_activity([activity(3, customer="M0009")])["rejected"][0]["code"] == "not_found"


# --- the circuit breaker -----------------------------------------------------------------------

def test_the_breaker_opens_after_n_failures_and_then_fails_fast_without_asking_the_store(shop):
    clock = FakeClock()
    store = connect(shop, timeout_s=0.2, failure_threshold=3, cooldown_s=30, clock=clock)
    shop.admin("POST", "/faults", {"status": 503})
    for _ in range(3):
        with pytest.raises(OnlineStoreUnavailable) as failure:
            store.customer("M0001")
        assert not isinstance(failure.value, CircuitOpen)
    assert store.breaker_state == "open"
    reached = len(shop.requests)
    assert reached >= 3
    for call in (lambda: store.customer("M0001"), lambda: store.customer_changes(None),
                 lambda: store.push_activity([activity(1)])):
        with pytest.raises(CircuitOpen):
            call()
    assert len(shop.requests) == reached
    assert store.counters["opened"] == 1 and store.counters["short_circuited"] == 3


def test_after_the_cooldown_one_trial_goes_through_and_its_success_closes_the_breaker(shop):
    clock = FakeClock()
    store = connect(shop, timeout_s=0.2, failure_threshold=2, cooldown_s=30, clock=clock)
    shop.admin("POST", "/faults", {"down": True})
    for _ in range(2):
        with pytest.raises(OnlineStoreUnavailable):
            store.customer("M0001")
    clock.now += 29
    with pytest.raises(CircuitOpen):
        store.customer("M0001")
    clock.now += 1
    assert store.breaker_state == "half_open"
    shop.admin("DELETE", "/faults")
    reached = len(shop.requests)
    assert store.customer("M0001")["id"] == "M0001"
    assert store.breaker_state == "closed" and len(shop.requests) == reached + 1


def test_a_failed_trial_opens_the_breaker_for_another_cooldown(shop):
    clock = FakeClock()
    store = connect(shop, timeout_s=0.2, failure_threshold=1, cooldown_s=30, clock=clock)
    shop.admin("POST", "/faults", {"status": 502})
    with pytest.raises(OnlineStoreUnavailable):
        store.customer("M0001")
    clock.now += 30
    with pytest.raises(OnlineStoreUnavailable) as trial:
        store.customer("M0001")
    assert not isinstance(trial.value, CircuitOpen) and store.breaker_state == "open"
    reached = len(shop.requests)
    clock.now += 29
    with pytest.raises(CircuitOpen):
        store.customer("M0001")
    assert len(shop.requests) == reached and store.counters["opened"] == 2


def test_refusals_are_answers_and_any_success_resets_the_count(shop):
    store = connect(shop, timeout_s=0.2, failure_threshold=2, clock=FakeClock())
    for _ in range(3):
        with pytest.raises(CustomerNotFound):
            store.customer("M9999")
    assert store.breaker_state == "closed"
    shop.admin("POST", "/faults", {"status": 500})
    with pytest.raises(OnlineStoreUnavailable):
        store.customer("M0001")
    shop.admin("DELETE", "/faults")
    store.customer("M0001")
    shop.admin("POST", "/faults", {"status": 500})
    with pytest.raises(OnlineStoreUnavailable):
        store.customer("M0001")
    assert store.breaker_state == "closed" and store.counters["consecutive_failures"] == 1


def test_while_half_open_only_one_trial_is_let_through():
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, cooldown_s=10, clock=clock)
    breaker.admit()
    breaker.failed()
    clock.now += 10
    breaker.admit()  # the trial
    with pytest.raises(CircuitOpen):
        breaker.admit()
    breaker.succeeded()
    assert breaker.state == "closed"
    breaker.admit()
    breaker.admit()


def test_429_retry_after_is_waited_for_within_the_budget(shop):
    shop.admin("POST", "/faults", {"status": 429, "retry_after_s": 0.25})
    slept: list[float] = []

    def sleep(seconds):
        slept.append(seconds)
        shop.admin("DELETE", "/faults")  # the store has room again when the wait is over

    store = connect(shop, timeout_s=2.0, sleep=sleep)
    assert store.customer("M0001")["id"] == "M0001"
    assert slept == [0.25] and shop.requests == ["GET /api/v1/customers/M0001"] * 2


def test_a_retry_after_beyond_the_budget_gives_up_without_waiting(shop):
    shop.admin("POST", "/faults", {"status": 429, "retry_after_s": 5})
    slept: list[float] = []
    store = connect(shop, timeout_s=1.0, sleep=slept.append)
    with pytest.raises(OnlineStoreUnavailable):
        store.customer("M0001")
    assert slept == [] and len(shop.requests) == 1


def test_a_slow_store_costs_a_waiting_kiosk_its_budget_not_the_stores_delay(shop):
    shop.admin("POST", "/faults", {"latency_ms": 5000})
    store = connect(shop, timeout_s=0.4)
    started = time.monotonic()
    with pytest.raises(OnlineStoreUnavailable):
        store.customer("M0001")
    assert time.monotonic() - started < 2.5  # the store would have taken 5 s


def test_background_calls_have_their_own_longer_budget(shop):
    shop.admin("POST", "/faults", {"latency_ms": 700})
    store = connect(shop, timeout_s=0.3, background_timeout_s=5.0)
    with pytest.raises(OnlineStoreUnavailable):
        store.customer("M0001")
    assert store.customer_changes(None, limit=1)["items"][0]["id"] == "M0001"
    assert store.push_activity([activity(1)])["accepted"] == ["evt-1"]


# --- webhooks, pure ----------------------------------------------------------------------------

def event_body(event_id="evt-1", kind="customer.updated", data=None) -> bytes:
    return json.dumps({"id": event_id, "type": kind, "created_at": "2026-11-22T10:00:00Z",
                       "data": {"customer_id": "M0001"} if data is None else data}).encode()


def test_a_signed_delivery_verifies_to_its_event():
    body = event_body()
    headers = sign(SECRET, body, 1_800_000_000)
    assert headers[ID_HEADER] == "evt-1" and headers[TIMESTAMP_HEADER] == "1800000000"
    assert headers[SIGNATURE_HEADER].startswith("v1=")
    event = verify(body, {k.lower(): v for k, v in headers.items()}, secret=SECRET, now=1_800_000_100)
    assert event == WebhookEvent("evt-1", "customer.updated", "2026-11-22T10:00:00Z", {"customer_id": "M0001"})


def test_during_a_rotation_any_of_several_signatures_may_match():
    body = event_body()
    headers = sign(["old-secret", SECRET], body, 1_800_000_000)
    assert headers[SIGNATURE_HEADER].count("v1=") == 2
    assert isinstance(verify(body, headers, secret=SECRET, now=1_800_000_000), WebhookEvent)
    assert isinstance(verify(body, headers, secret="old-secret", now=1_800_000_000), WebhookEvent)


def _forged(body, headers):
    return body, {**headers, SIGNATURE_HEADER: "v1=" + "0" * 64}


def _tampered(body, headers):
    return body.replace(b"M0001", b"M0002"), headers


def _other_id(body, headers):
    return body, {**headers, ID_HEADER: "evt-2"}


def _no_signature(body, headers):
    return body, {k: v for k, v in headers.items() if k != SIGNATURE_HEADER}


def _resigned(new_body, event_id="evt-1"):
    return lambda body, headers: (new_body, sign(SECRET, new_body, int(headers[TIMESTAMP_HEADER]), event_id=event_id))


@pytest.mark.parametrize("change, secret, now_offset, reason", [
    (_forged, SECRET, 0, "bad_signature"),
    (None, "wrong-secret", 0, "bad_signature"),
    (_tampered, SECRET, 0, "bad_signature"),
    (None, SECRET, 301, "stale"),
    (None, SECRET, -301, "stale"),
    (_other_id, SECRET, 0, "bad_event"),
    (_no_signature, SECRET, 0, "missing_signature"),
    (None, None, 0, "not_configured"),
    (_resigned(b"\x00garbage{"), SECRET, 0, "not_json"),
    (_resigned(b"[1, 2]"), SECRET, 0, "bad_event"),
    (_resigned(event_body(data={})), SECRET, 0, "bad_event"),
    (_resigned(json.dumps({"id": "evt-1", "type": "customer.updated"}).encode()), SECRET, 0, "bad_event"),
    (_resigned(event_body(kind="order.shipped")), SECRET, 0, "unknown_type"),
    (_resigned(event_body(data={"customer_id": "M0001", "pad": "x" * MAX_BODY_BYTES})), SECRET, 0, "too_large"),
], ids=["forged", "wrong-secret", "tampered-body", "stale", "future", "id-mismatch", "missing-signature",
        "not-configured", "garbage", "not-an-object", "missing-customer-id", "missing-data", "unknown-type",
        "oversized"])
def test_every_bad_delivery_is_rejected_with_its_reason(change, secret, now_offset, reason):
    body = event_body()
    headers = sign(SECRET, body, 1_800_000_000)
    if change:
        body, headers = change(body, headers)
    result = verify(body, headers, secret=secret, now=1_800_000_000 + now_offset)
    assert isinstance(result, WebhookRejection) and result.reason == reason and result.detail
    assert reason in REASONS and SECRET not in result.detail


def test_the_edge_of_the_tolerance_is_still_fresh():
    body = event_body()
    headers = sign(SECRET, body, 1_800_000_000)
    assert isinstance(verify(body, headers, secret=SECRET, now=1_800_000_300), WebhookEvent)
    assert isinstance(verify(body, headers, secret=SECRET, now=1_799_999_700), WebhookEvent)


def test_the_connector_verifies_with_its_own_secret_and_without_one_refuses_all():
    body = event_body(kind="order.updated", data={"customer_id": "M0001", "order_id": "1043"})
    headers = sign(SECRET, body, 1_800_000_000)
    event = RestOnlineStore("http://127.0.0.1:1", KEY, webhook_secret=SECRET).verify_webhook(
        body, headers, now=1_800_000_001)
    assert isinstance(event, WebhookEvent) and event.data["order_id"] == "1043"
    refused = RestOnlineStore("http://127.0.0.1:1", KEY).verify_webhook(body, headers, now=1_800_000_001)
    assert refused.reason == "not_configured"


# --- webhooks from the demo store ---------------------------------------------------------------

class HubReceiver(Served):
    """A stand-in for the hub's webhook endpoint: answers with the next scripted status (then 200)."""

    def __init__(self, statuses=(), port: int = 0):
        self.statuses = list(statuses)
        self.deliveries: list[tuple[bytes, dict]] = []
        receiver = Flask(__name__)

        @receiver.post("/webhooks/online-store")
        def webhook():
            self.deliveries.append((request.get_data(), dict(request.headers)))
            return "", self.statuses.pop(0) if self.statuses else 200

        super().__init__(receiver, port)

    def events(self) -> list[WebhookEvent | WebhookRejection]:
        return [verify(body, headers, secret=SECRET, now=time.time()) for body, headers in list(self.deliveries)]


@pytest.fixture
def receiver():
    served = HubReceiver()
    yield served
    served.close()


def shop_sending_to(receiver: HubReceiver, **options) -> DemoShop:
    return DemoShop(webhook_url=receiver.url + "/webhooks/online-store", webhook_secret=SECRET,
                    webhook_retry_s=0.05, **options)


def test_the_demo_store_sends_a_signed_event_for_every_kind_of_change(receiver):
    shop = shop_sending_to(receiver)
    try:
        shop.admin("PATCH", "/customers/M0001", {"consent": {"marketing": False}})
        shop.admin("PATCH", "/customers/M0001/orders/1043", {"status": "picked_up"})
        shop.admin("POST", "/customers/M0004/erase")
        shop.admin("PATCH", f"/products/{DATA.products[0]['gtin']}", {"price": 12.5})
        wait_for(lambda: len(receiver.deliveries) == 4, timeout=10, what="four webhooks")
        events = sorted(receiver.events(), key=lambda e: e.type)
        assert all(isinstance(e, WebhookEvent) for e in events)
        assert [(e.type, e.data) for e in events] == [
            ("catalog.updated", {}), ("customer.erased", {"customer_id": "M0004"}),
            ("customer.updated", {"customer_id": "M0001"}),
            ("order.updated", {"customer_id": "M0001", "order_id": "1043"})]
        assert len({e.id for e in events}) == 4
    finally:
        shop.close()


def test_the_sender_retries_while_the_hub_answers_500_and_stops_after_success():
    receiver = HubReceiver(statuses=[500, 503])
    shop = shop_sending_to(receiver)
    try:
        shop.admin("PATCH", "/customers/M0002", {"points": 10})
        wait_for(lambda: shop.admin("GET", "/webhooks")["deliveries"][0]["status"] == "delivered", timeout=10,
                 what="the delivery to succeed")
        time.sleep(0.5)  # long enough for several more retries, had it not stopped
        events = receiver.events()
        assert len(events) == 3 and all(isinstance(e, WebhookEvent) for e in events)
        assert len({e.id for e in events}) == 1  # the same event each time: the hub deduplicates by id
        delivery = shop.admin("GET", "/webhooks")["deliveries"][0]
        assert (delivery["attempts"], delivery["last_error"]) == (3, None)
    finally:
        shop.close()
        receiver.close()


def test_the_sender_gives_up_after_its_attempts():
    receiver = HubReceiver(statuses=[500] * 10)
    shop = shop_sending_to(receiver, webhook_attempts=3)
    try:
        shop.admin("PATCH", "/customers/M0002", {"points": 10})
        wait_for(lambda: shop.admin("GET", "/webhooks")["deliveries"][0]["status"] == "failed", timeout=10,
                 what="the sender to give up")
        time.sleep(0.3)
        assert len(receiver.deliveries) == 3
        assert shop.admin("GET", "/webhooks")["deliveries"][0]["last_error"] == "HTTP 500"
    finally:
        shop.close()
        receiver.close()


def test_a_hub_that_is_down_gets_the_event_late_and_still_fresh():
    gone = HubReceiver()
    gone.close()  # the hub's port, with nobody listening
    shop = shop_sending_to(gone)
    late = None
    try:
        shop.admin("POST", "/customers/M0005/erase")
        wait_for(lambda: shop.admin("GET", "/webhooks")["deliveries"][0]["attempts"] >= 2, timeout=10,
                 what="failed attempts while the hub is down")
        late = HubReceiver(port=gone.http.server_port)
        wait_for(lambda: late.deliveries, timeout=15, what="the late delivery")
        [event] = late.events()
        assert isinstance(event, WebhookEvent) and event.type == "customer.erased"
    finally:
        shop.close()
        if late:
            late.close()


def test_switched_off_webhooks_are_recorded_but_not_sent(receiver):
    shop = shop_sending_to(receiver)
    try:
        assert shop.admin("POST", "/webhooks", {"enabled": False})["enabled"] is False
        shop.admin("PATCH", "/customers/M0002", {"points": 10})
        time.sleep(0.3)
        assert receiver.deliveries == []
        assert [d["status"] for d in shop.admin("GET", "/webhooks")["deliveries"]] == ["not_sent"]
    finally:
        shop.close()
