"""Tests for the demo online store: its seeded data and the REST API of docs/online-api.md."""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from demo.catalog_feed import catalog_feed
from demo.online_store import FAULTS_OFF, create_app
from demo.seed import REFERENCE_NOW, build, gtin_check_digit
from hub.connector import ACTIVITY_TYPES
from hub.webhooks import EVENT_TYPES, REASONS

API_KEY = "test-online-store-key"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
JWKS = {"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "demo-2026-11",
                  "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "use": "sig", "alg": "EdDSA"}]}

PROFILE_KEYS = {"id", "first_name", "last_name", "email", "phone", "tier", "points", "lifetime_value",
                "currency", "member_since", "birthday", "consent", "preferences", "orders", "wishlist", "cart",
                "recently_viewed", "loyalty", "updated_at"}
ORDER_KEYS = {"id", "number", "channel", "status", "placed_at", "total", "currency", "pickup", "items"}
LINE_KEYS = {"gtin", "name", "quantity", "price"}


@pytest.fixture(scope="module")
def data():
    return build()


@pytest.fixture(scope="module")
def app(data):
    return create_app(data, API_KEY, jwks=JWKS)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def get(client):
    """GET with the API key, returning (status, json)."""
    def _get(path, **params):
        response = client.get(path, query_string=params, headers=AUTH)
        return response.status_code, response.get_json()
    return _get


def parse(stamp: str) -> datetime:
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


def valid_gs1(code: str) -> bool:
    """GS1 check, written independently of seed.py: weights 3,1,3,… from the left of a GTIN-14."""
    digits = [int(d) for d in code]
    weighted = sum(d * (3 if i % 2 == 0 else 1) for i, d in enumerate(digits[:13]))
    return (weighted + digits[13]) % 10 == 0


# --- auth -------------------------------------------------------------------------------

@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Bearer wrong-key"},
    {"Authorization": f"Basic {API_KEY}"},
    {"Authorization": f"Bearer {API_KEY}x"},
    {"Authorization": "Bearer"},
], ids=["missing", "wrong-key", "wrong-scheme", "key-with-suffix", "empty-bearer"])
def test_api_refuses_requests_without_the_right_key(client, headers):
    response = client.get("/api/v1/customers/M0001", headers=headers)
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "unauthorized"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_healthz_and_jwks_are_public(client):
    assert client.get("/healthz").get_json() == {"ok": True}
    response = client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    assert response.get_json() == JWKS


def test_jwks_is_404_when_the_store_has_no_keys(data):
    response = create_app(data, API_KEY).test_client().get("/.well-known/jwks.json")
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"


def test_create_app_refuses_an_empty_api_key(data):
    with pytest.raises(ValueError, match="api_key"):
        create_app(data, "")


# --- the hero and consent ---------------------------------------------------------------

def test_hero_jane_cooper_has_order_1043_ready_at_s001(get):
    status, jane = get("/api/v1/customers/M0001")
    assert status == 200
    assert (jane["first_name"], jane["last_name"], jane["tier"]) == ("Jane", "Cooper", "Gold")
    assert jane["consent"]["clienteling"] is True
    pickup_order = next(o for o in jane["orders"] if o["id"] == "1043")
    assert pickup_order["number"] == "#1043"
    assert pickup_order["status"] == "ready_for_pickup"
    assert pickup_order["pickup"]["store"] == "s001"
    assert pickup_order["pickup"]["shelf"] == "B"
    assert parse(pickup_order["pickup"]["ready_since"]) < REFERENCE_NOW
    assert len(pickup_order["items"]) == 2


def test_hero_has_a_cart_from_two_days_ago_a_wishlist_and_browsing(get):
    _, jane = get("/api/v1/customers/M0001")
    assert jane["cart"]["items"]
    assert parse(jane["cart"]["updated_at"]) == REFERENCE_NOW - timedelta(days=2)
    assert len(jane["wishlist"]) >= 2
    assert jane["recently_viewed"]


def test_m0002_has_not_consented_to_clienteling(get):
    _, member = get("/api/v1/customers/M0002")
    assert member["consent"]["clienteling"] is False


def test_customer_profile_has_exactly_the_documented_shape(get):
    _, jane = get("/api/v1/customers/m0001")  # ids are case-insensitive
    assert set(jane) == PROFILE_KEYS
    assert jane["currency"] == "EUR"
    assert set(jane["consent"]) == {"clienteling", "marketing"}
    assert {"sizes", "favourite_categories"} <= set(jane["preferences"])
    for order in jane["orders"]:
        assert set(order) == ORDER_KEYS
        assert all(set(line) == LINE_KEYS for line in order["items"])
    assert all(set(w) == {"gtin", "name", "price", "added_at"} for w in jane["wishlist"])
    assert set(jane["cart"]) == {"updated_at", "items"}
    assert all(set(line) == LINE_KEYS for line in jane["cart"]["items"])
    assert all(set(v) == {"gtin", "name", "viewed_at", "channel"} for v in jane["recently_viewed"])
    assert set(jane["loyalty"]) == {"tier", "points", "history"}
    assert all(set(h) == {"ts", "points", "reason"} for h in jane["loyalty"]["history"])


def test_unknown_customer_is_a_json_404(get):
    status, body = get("/api/v1/customers/M9999")
    assert status == 404
    assert body["error"]["code"] == "not_found"
    assert "M9999" in body["error"]["message"]


# --- seeded data ------------------------------------------------------------------------

def test_seed_has_at_least_240_customers_and_600_products(data):
    assert len(data.customers) >= 240
    assert len(data.products) >= 600
    assert [c["id"] for c in data.customers[:3]] == ["M0001", "M0002", "M0003"]
    assert data.customers[239]["id"] == "M0240"


def test_build_is_deterministic_per_seed():
    assert build() == build()
    assert build(seed=7) != build()


def test_every_product_gtin_is_14_digits_with_a_valid_check_digit(data):
    gtins = [p["gtin"] for p in data.products]
    assert len(set(gtins)) == len(gtins)
    for gtin in gtins:
        assert len(gtin) == 14 and gtin.isdigit(), gtin
        assert gtin[0] == "0" and (400 <= int(gtin[1:4]) <= 440 or gtin[1:3] == "50"), gtin
        assert valid_gs1(gtin), gtin


@pytest.mark.parametrize("code", ["4006381333931", "73513537", "036000291452"])
def test_gtin_check_digit_agrees_with_published_codes(code):
    assert gtin_check_digit(code[:-1]) == int(code[-1])


def test_order_lines_and_lists_reference_real_products(data):
    catalog = {p["gtin"]: p for p in data.products}
    for customer in data.customers:
        lines = [line for o in customer["orders"] for line in o["items"]] + customer["cart"]["items"]
        lines += customer["wishlist"] + customer["recently_viewed"]
        for line in lines:
            assert catalog[line["gtin"]]["name"] == line["name"]


def test_orders_use_documented_channels_and_statuses(data):
    orders = [o for c in data.customers for o in c["orders"]]
    assert {o["channel"] for o in orders} == {"web", "app", "marketplace", "store"}
    assert {o["status"] for o in orders} == {"placed", "shipped", "delivered", "ready_for_pickup",
                                             "picked_up", "cancelled", "returned"}
    assert all(0 <= len(c["orders"]) <= 8 for c in data.customers)
    assert len({o["id"] for o in orders}) == len(orders)
    for order in orders:
        assert order["number"] == f"#{order['id']}"
        if order["status"] in ("ready_for_pickup", "picked_up"):
            assert order["pickup"] is not None, order["id"]
        if order["channel"] in ("store", "marketplace"):  # neither is click & collect
            assert order["pickup"] is None, order["id"]
        if order["status"] == "ready_for_pickup":
            assert order["pickup"]["shelf"] and order["pickup"]["ready_since"]


def test_seeded_shares_match_what_the_demo_promises(data):
    customers = data.customers
    share = lambda predicate: sum(map(predicate, customers)) / len(customers)  # noqa: E731
    assert 0.80 <= share(lambda c: c["consent"]["clienteling"]) <= 0.90
    assert 0.06 <= share(lambda c: any(o["status"] == "ready_for_pickup" and o["pickup"]["store"] == "s001"
                                       for o in c["orders"])) <= 0.10
    assert 0.25 <= share(lambda c: bool(c["cart"]["items"])) <= 0.35
    tiers = [c["tier"] for c in customers]
    assert max(set(tiers), key=tiers.count) == "Bronze"
    assert set(tiers) == {"Bronze", "Silver", "Gold", "Platinum"}


def test_loyalty_history_adds_up_to_the_points_balance(data):
    for customer in data.customers:
        assert customer["points"] == sum(h["points"] for h in customer["loyalty"]["history"])
        assert customer["points"] == customer["loyalty"]["points"] >= 0


def test_timestamps_are_utc_and_not_after_the_reference_time(data):
    for customer in data.customers:
        stamps = [o["placed_at"] for o in customer["orders"]] + [customer["updated_at"]]
        stamps += [w["added_at"] for w in customer["wishlist"]] + [v["viewed_at"] for v in customer["recently_viewed"]]
        stamps += [h["ts"] for h in customer["loyalty"]["history"]]
        for stamp in stamps:
            assert stamp.endswith("Z")
            assert parse(stamp) <= REFERENCE_NOW, (customer["id"], stamp)


def test_reference_time_moves_every_timestamp(data):
    later = build(now=REFERENCE_NOW + timedelta(days=10))
    assert later.customers[0]["cart"]["updated_at"] == "2026-11-30T09:00:00Z"
    with pytest.raises(ValueError, match="timezone-aware"):
        build(now=datetime(2026, 11, 22, 9, 0))


# --- orders over the API ----------------------------------------------------------------

def test_orders_are_newest_first_and_totals_match_their_items(get, data):
    for summary in data.customers:
        _, profile = get(f"/api/v1/customers/{summary['id']}")
        placed = [o["placed_at"] for o in profile["orders"]]
        assert placed == sorted(placed, reverse=True), summary["id"]
        for order in profile["orders"]:
            expected = sum(line["price"] * line["quantity"] for line in order["items"])
            assert order["items"] and abs(order["total"] - expected) < 0.005, order["id"]
            assert order["currency"] == "EUR"


# --- search -----------------------------------------------------------------------------

def test_search_finds_a_member_by_email(get, data):
    member = data.customers[41]
    status, body = get("/api/v1/customers", q=member["email"].upper())
    assert status == 200
    assert member["id"] in [c["id"] for c in body["items"]]


def test_search_finds_members_by_partial_last_name(get):
    _, body = get("/api/v1/customers", q="coop")
    assert [c["id"] for c in body["items"]] == ["M0001"]
    assert set(body["items"][0]) == {"id", "first_name", "last_name", "email", "phone", "tier", "points",
                                     "consent", "updated_at"}


def test_search_finds_a_phone_written_nationally(get):
    _, body = get("/api/v1/customers", q="06 1234 5678")
    assert [c["id"] for c in body["items"]] == ["M0001"]


def test_search_respects_limit_and_rejects_a_bad_one(get):
    _, body = get("/api/v1/customers", q="e", limit=5)
    assert len(body["items"]) == 5
    for bad in ("0", "101", "ten", "-1"):
        status, error = get("/api/v1/customers", q="e", limit=bad)
        assert status == 400 and error["error"]["code"] == "bad_request", bad


# --- products ---------------------------------------------------------------------------

def test_product_pages_walk_every_product_exactly_once(get, data):
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 97} | ({"cursor": cursor} if cursor else {})
        status, page = get("/api/v1/products", **params)
        assert status == 200
        seen += [p["gtin"] for p in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(p["gtin"] for p in data.products)
    assert pages == -(-len(data.products) // 97)


def test_product_list_defaults_to_100_and_leaves_out_reviews(get):
    _, page = get("/api/v1/products")
    assert len(page["items"]) == 100
    assert all("reviews" not in p for p in page["items"])
    status, error = get("/api/v1/products", limit=501)
    assert status == 400 and error["error"]["code"] == "bad_request"
    status, error = get("/api/v1/products", cursor="not-a-cursor")
    assert status == 400


def test_product_detail_normalises_a_13_digit_gtin_and_includes_reviews(get, data):
    product = next(p for p in data.products if p["reviews"])
    status, body = get(f"/api/v1/products/{product['gtin'][1:]}")
    assert status == 200
    assert body["gtin"] == product["gtin"]
    assert body["reviews"] == product["reviews"]
    assert body["rating"]["count"] == len(body["reviews"])
    assert all(1 <= r["rating"] <= 5 and r["title"] and r["text"] and r["author"] for r in body["reviews"])


def test_unknown_or_malformed_gtins_are_json_errors(get):
    status, body = get("/api/v1/products/96385074")  # a valid EAN-8 the catalog does not carry
    assert status == 404 and body["error"]["code"] == "not_found"
    status, body = get("/api/v1/products/12345")
    assert status == 400 and body["error"]["code"] == "bad_request"


def test_stores_include_s001_and_two_nearby_stores(get):
    _, body = get("/api/v1/stores")
    assert [s["id"] for s in body["items"]][:3] == ["s001", "s002", "s003"]


# --- adding to the online cart ---------------------------------------------------------------

CART_NOW = datetime(2026, 11, 22, 10, 15, 4, tzinfo=timezone.utc)
BOMBER = "04280753005576"  # on M0001's wishlist, not in her cart


@pytest.fixture
def cart_client(data):
    """A fresh app per test: carts changed through the API live in the app."""
    return create_app(data, API_KEY, clock=lambda: CART_NOW).test_client()


def add_line(client, member="M0001", **body):
    response = client.post(f"/api/v1/customers/{member}/cart/items", json=body, headers=AUTH)
    return response.status_code, response.get_json()


def test_adding_a_product_appends_a_line_and_the_profile_shows_the_new_cart(cart_client, data):
    seeded = data.customers[0]["cart"]["items"]
    status, body = add_line(cart_client, gtin=BOMBER[1:], quantity=1, idempotency_key="tap-1")
    assert status == 200
    assert body["cart"]["updated_at"] == "2026-11-22T10:15:04Z"
    assert body["cart"]["items"] == seeded + [{"gtin": BOMBER, "name": "Recycled Nylon Bomber, Sand",
                                               "quantity": 1, "price": 45.95}]
    jane = cart_client.get("/api/v1/customers/M0001", headers=AUTH).get_json()
    assert jane["cart"] == body["cart"]
    assert jane["updated_at"] == "2026-11-22T10:15:04Z"
    summary = cart_client.get("/api/v1/customers", query_string={"q": "coop"}, headers=AUTH).get_json()
    assert summary["items"][0]["updated_at"] == "2026-11-22T10:15:04Z"


def test_adding_a_product_already_in_the_cart_raises_its_quantity(cart_client, data):
    line = data.customers[0]["cart"]["items"][1]
    _, body = add_line(cart_client, gtin=line["gtin"], quantity=2, idempotency_key="tap-1")
    assert len(body["cart"]["items"]) == len(data.customers[0]["cart"]["items"])
    assert body["cart"]["items"][1] == dict(line, quantity=line["quantity"] + 2)


def test_quantity_defaults_to_one(cart_client):
    _, body = add_line(cart_client, gtin=BOMBER, idempotency_key="tap-1")
    assert body["cart"]["items"][-1]["quantity"] == 1


def test_the_same_idempotency_key_adds_once_and_answers_the_same(cart_client):
    first = add_line(cart_client, gtin=BOMBER, quantity=1, idempotency_key="tap-1")
    again = add_line(cart_client, gtin=BOMBER, quantity=1, idempotency_key="tap-1")
    assert first == again
    jane = cart_client.get("/api/v1/customers/M0001", headers=AUTH).get_json()
    assert [line["quantity"] for line in jane["cart"]["items"] if line["gtin"] == BOMBER] == [1]
    _, another_tap = add_line(cart_client, gtin=BOMBER, quantity=1, idempotency_key="tap-2")
    assert [line["quantity"] for line in another_tap["cart"]["items"] if line["gtin"] == BOMBER] == [2]


def test_a_key_reused_for_another_line_is_a_409(cart_client):
    add_line(cart_client, gtin=BOMBER, quantity=1, idempotency_key="tap-1")
    status, body = add_line(cart_client, gtin=BOMBER, quantity=3, idempotency_key="tap-1")
    assert status == 409 and body["error"]["code"] == "conflict"
    status, _ = add_line(cart_client, member="M0003", gtin=BOMBER, quantity=1, idempotency_key="tap-1")
    assert status == 409


@pytest.mark.parametrize("member, gtin", [("M9999", BOMBER), ("M0001", "96385074")],
                         ids=["unknown-customer", "unknown-product"])
def test_unknown_customer_or_product_is_a_json_404_and_changes_nothing(cart_client, data, member, gtin):
    status, body = add_line(cart_client, member=member, gtin=gtin, quantity=1, idempotency_key="tap-1")
    assert status == 404 and body["error"]["code"] == "not_found"
    jane = cart_client.get("/api/v1/customers/M0001", headers=AUTH).get_json()
    assert jane["cart"] == data.customers[0]["cart"]


@pytest.mark.parametrize("body", [
    None, [], {"quantity": 1, "idempotency_key": "k"}, {"gtin": 4280753005576, "idempotency_key": "k"},
    {"gtin": "12345", "idempotency_key": "k"}, {"gtin": BOMBER, "quantity": 0, "idempotency_key": "k"},
    {"gtin": BOMBER, "quantity": 100, "idempotency_key": "k"},
    {"gtin": BOMBER, "quantity": "1", "idempotency_key": "k"},
    {"gtin": BOMBER, "quantity": True, "idempotency_key": "k"},
    {"gtin": BOMBER, "quantity": 1.5, "idempotency_key": "k"},
    {"gtin": BOMBER}, {"gtin": BOMBER, "idempotency_key": ""}, {"gtin": BOMBER, "idempotency_key": "k" * 101},
    {"gtin": BOMBER, "idempotency_key": 7},
], ids=["no-json", "list", "no-gtin", "gtin-number", "gtin-short", "quantity-0", "quantity-100", "quantity-text",
        "quantity-bool", "quantity-fraction", "no-key", "key-empty", "key-too-long", "key-number"])
def test_a_malformed_cart_request_is_a_json_400(cart_client, data, body):
    kwargs = {"data": "not json", "content_type": "application/json"} if body is None else {"json": body}
    response = cart_client.post("/api/v1/customers/M0001/cart/items", headers=AUTH, **kwargs)
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "bad_request"
    jane = cart_client.get("/api/v1/customers/M0001", headers=AUTH).get_json()
    assert jane["cart"] == data.customers[0]["cart"]


def test_adding_to_a_cart_needs_the_api_key_and_post(cart_client):
    response = cart_client.post("/api/v1/customers/M0001/cart/items",
                                json={"gtin": BOMBER, "quantity": 1, "idempotency_key": "k"})
    assert response.status_code == 401
    response = cart_client.get("/api/v1/customers/M0001/cart/items", headers=AUTH)
    assert response.status_code == 405 and "POST" in response.headers["Allow"]


def test_cart_changes_leave_the_seeded_data_alone_and_stay_in_their_app(data):
    before = build().customers[0]["cart"]
    first = create_app(data, API_KEY, clock=lambda: CART_NOW).test_client()
    add_line(first, gtin=BOMBER, quantity=1, idempotency_key="tap-1")
    assert data.customers[0]["cart"] == before
    other = create_app(data, API_KEY).test_client()
    assert other.get("/api/v1/customers/M0001", headers=AUTH).get_json()["cart"] == before


def test_concurrent_adds_with_distinct_keys_all_count(data):
    app = create_app(data, API_KEY, clock=lambda: CART_NOW)

    def tap(n):
        add_line(app.test_client(), gtin=BOMBER, quantity=1, idempotency_key=f"tap-{n}")

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(tap, range(40)))
    jane = app.test_client().get("/api/v1/customers/M0001", headers=AUTH).get_json()
    assert [line["quantity"] for line in jane["cart"]["items"] if line["gtin"] == BOMBER] == [40]


# --- birthdays and promotions -----------------------------------------------------------------

def test_every_member_has_a_birthday_and_janes_is_in_the_month_of_the_reference_time(data):
    assert all(re.fullmatch(r"(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])", c["birthday"]) for c in data.customers)
    assert data.customers[0]["birthday"] == "11-28"
    assert build(now=datetime(2027, 3, 2, 12, 0, tzinfo=timezone.utc)).customers[0]["birthday"] == "03-28"
    assert len({c["birthday"][:2] for c in data.customers}) == 12


def test_a_birthday_bonus_is_paid_on_the_members_birthday(data):
    for customer in data.customers:
        for entry in customer["loyalty"]["history"]:
            if entry["reason"] == "Birthday bonus":
                assert entry["ts"][5:10] == customer["birthday"], customer["id"]


def test_birthdays_moved_no_other_seeded_value(data):
    """Birthdays come from their own generator: the profile without them is what it was before."""
    jane = {k: v for k, v in data.customers[0].items() if k not in ("birthday", "loyalty")}
    assert jane["points"] == 4088 and jane["lifetime_value"] == 4740.34
    assert data.customers[0]["loyalty"]["points"] == 4088


def test_a_sale_promotion_carries_its_percent_and_the_web_shop_shows_it(get, data):
    feed = catalog_feed(data)
    on_sale = [p for p in feed["products"] if p["compare_at_price"]]
    assert on_sale and all(p["promotion"]["label"] == f"-{p['promotion']['percent']}%" for p in on_sale)
    assert all(p["promotion"] is None for p in feed["products"] if not p["compare_at_price"])
    _, product = get(f"/api/v1/products/{on_sale[0]['gtin']}")
    assert product["promotion"] == on_sale[0]["promotion"]


# --- the admin API -----------------------------------------------------------------------------

@pytest.fixture
def admin_client(data):
    """A fresh app per test: admin changes live in the app."""
    return create_app(data, API_KEY, clock=lambda: CART_NOW).test_client()


def call(client, method, path, body=None):
    response = client.open(path, method=method, json=body, headers=AUTH)
    return response.status_code, response.get_json()


def test_an_admin_change_of_consent_and_points_shows_in_the_profile_and_loyalty(admin_client):
    status, jane = call(admin_client, "PATCH", "/api/v1/_admin/customers/m0001",
                        {"consent": {"clienteling": False}, "points": 100})
    assert status == 200
    assert jane["consent"] == {"clienteling": False, "marketing": True}
    assert jane["points"] == jane["loyalty"]["points"] == 100 == sum(h["points"] for h in jane["loyalty"]["history"])
    assert jane["loyalty"]["history"][0]["reason"] == "Points adjusted"
    assert jane["updated_at"] == "2026-11-22T10:15:04Z"
    assert call(admin_client, "GET", "/api/v1/customers/M0001")[1] == jane


@pytest.mark.parametrize("body", [None, {}, {"email_verified": True}, {"points": -1}, {"points": "100"},
                                  {"consent": {"clienteling": "no"}}, {"consent": {"newsletter": True}},
                                  {"tier": "Diamond"}, {"birthday": "2-30"}, {"first_name": " "}],
                         ids=["no-json", "empty", "unknown-field", "negative-points", "points-text", "consent-text",
                              "consent-unknown", "tier", "birthday", "blank-name"])
def test_a_malformed_admin_change_is_a_400_and_changes_nothing(admin_client, data, body):
    status, error = call(admin_client, "PATCH", "/api/v1/_admin/customers/M0001", body)
    assert status == 400 and error["error"]["code"] == "bad_request" and error["error"]["message"]
    assert call(admin_client, "GET", "/api/v1/customers/M0001")[1] == data.customers[0]


def test_an_order_made_ready_for_pickup_gets_a_shelf_and_one_that_is_not_collected_cannot(admin_client, data):
    jane = data.customers[0]
    collect = next(o for o in jane["orders"] if o["pickup"] and o["status"] == "picked_up")
    status, order = call(admin_client, "PATCH", f"/api/v1/_admin/customers/M0001/orders/{collect['id']}",
                         {"status": "ready_for_pickup", "shelf": "D"})
    assert status == 200 and order["status"] == "ready_for_pickup"
    assert order["pickup"]["shelf"] == "D" and order["pickup"]["ready_since"] == "2026-11-22T10:15:04Z"
    delivered = next(o for c in data.customers for o in c["orders"] if o["pickup"] is None)
    owner = next(c["id"] for c in data.customers if delivered in c["orders"])
    status, error = call(admin_client, "PATCH", f"/api/v1/_admin/customers/{owner}/orders/{delivered['id']}",
                         {"status": "ready_for_pickup"})
    assert status == 409 and error["error"]["code"] == "conflict"
    assert call(admin_client, "PATCH", "/api/v1/_admin/customers/M0001/orders/9", {"status": "shipped"})[0] == 404


def test_an_erased_member_is_gone_from_every_endpoint(admin_client):
    status, erased = call(admin_client, "POST", "/api/v1/_admin/customers/M0001/erase")
    assert status == 200 and erased == {"id": "M0001", "erased": True, "erased_at": "2026-11-22T10:15:04Z"}
    assert call(admin_client, "GET", "/api/v1/customers/M0001")[0] == 404
    assert call(admin_client, "GET", "/api/v1/customers?q=coop")[1] == {"items": []}
    status, _ = call(admin_client, "POST", "/api/v1/customers/M0001/cart/items",
                     {"gtin": BOMBER, "idempotency_key": "k"})
    assert status == 404
    assert call(admin_client, "POST", "/api/v1/_admin/customers/M0001/erase")[0] == 404
    assert call(admin_client, "PATCH", "/api/v1/_admin/customers/M0001", {"points": 1})[0] == 404


def test_a_product_change_is_checked_and_an_explicit_promotion_wins(admin_client, data):
    gtin = data.products[0]["gtin"]
    promotion = {"label": "2 for 1", "text": "Members only", "percent": None}
    status, product = call(admin_client, "PATCH", f"/api/v1/_admin/products/{gtin}",
                           {"price": 20.0, "compare_at_price": 40.0, "promotion": promotion})
    assert status == 200 and product["promotion"] == promotion and product["updated_at"] == "2026-11-22T10:15:04Z"
    status, product = call(admin_client, "PATCH", f"/api/v1/_admin/products/{gtin}", {"compare_at_price": None})
    assert product["promotion"] is None
    for bad in ({"price": 0}, {"price": 50.0, "compare_at_price": 40.0}, {"stock": {"s999": 1}},
                {"stock": {"s001": -1}}, {"promotion": {"label": "x", "percent": 120}}, {"name": "Renamed"}):
        status, error = call(admin_client, "PATCH", f"/api/v1/_admin/products/{gtin}", bad)
        assert status == 400 and error["error"]["code"] == "bad_request", bad
    assert call(admin_client, "PATCH", "/api/v1/_admin/products/96385074", {"price": 1.0})[0] == 404


def test_faults_are_validated_switched_and_cleared(admin_client):
    assert call(admin_client, "GET", "/api/v1/_admin/faults")[1] == FAULTS_OFF
    for bad in ({"status": 404}, {"rate": 2}, {"latency_ms": -5}, {"down": "yes"}, {"slow": True}, []):
        status, error = call(admin_client, "POST", "/api/v1/_admin/faults", bad)
        assert status == 400 and error["error"]["code"] == "bad_request", bad
    status, faults = call(admin_client, "POST", "/api/v1/_admin/faults", {"status": 429, "retry_after_s": 3})
    assert status == 200 and faults == {**FAULTS_OFF, "status": 429, "retry_after_s": 3}
    response = admin_client.get("/api/v1/customers/M0001", headers=AUTH)
    assert response.status_code == 429 and response.headers["Retry-After"] == "3"
    assert response.get_json()["error"]["code"] == "rate_limited"
    # The admin API and /healthz stay reachable, or nobody could switch the fault off again.
    assert admin_client.get("/healthz").status_code == 200
    assert call(admin_client, "GET", "/api/v1/_admin/faults")[0] == 200
    assert call(admin_client, "DELETE", "/api/v1/_admin/faults")[1] == FAULTS_OFF
    assert admin_client.get("/api/v1/customers/M0001", headers=AUTH).status_code == 200


def test_a_fault_rate_of_zero_fails_nothing_and_a_fault_still_needs_no_key_to_show(admin_client):
    call(admin_client, "POST", "/api/v1/_admin/faults", {"status": 503, "rate": 0})
    assert admin_client.get("/api/v1/stores", headers=AUTH).status_code == 200
    call(admin_client, "POST", "/api/v1/_admin/faults", {"status": 503})
    assert admin_client.get("/api/v1/stores").status_code == 503  # the failing store fails before it checks keys


def test_the_admin_api_needs_the_key(admin_client):
    response = admin_client.post("/api/v1/_admin/faults", json={"down": True})
    assert response.status_code == 401
    assert admin_client.get("/api/v1/customers/M0001", headers=AUTH).status_code == 200


def test_without_a_webhook_url_changes_are_recorded_as_not_sent(admin_client):
    call(admin_client, "PATCH", "/api/v1/_admin/customers/M0001", {"tier": "Platinum"})
    status, hooks = call(admin_client, "GET", "/api/v1/_admin/webhooks")
    assert status == 200 and hooks["url"] is None
    assert [(d["type"], d["data"], d["status"]) for d in hooks["deliveries"]] == [
        ("customer.updated", {"customer_id": "M0001"}, "not_sent")]


def test_a_webhook_url_without_a_secret_is_refused(data):
    with pytest.raises(ValueError, match="webhook_secret"):
        create_app(data, API_KEY, webhook_url="http://127.0.0.1:1/webhooks")


@pytest.mark.parametrize("body", [None, {}, {"items": []}, {"items": "x"}, {"items": [{}] * 501}],
                         ids=["no-json", "no-items", "empty", "not-a-list", "too-many"])
def test_a_malformed_activity_push_is_a_400(admin_client, body):
    status, error = call(admin_client, "POST", "/api/v1/activity", body)
    assert status == 400 and error["error"]["code"] == "bad_request"


# --- errors -----------------------------------------------------------------------------

def test_unknown_route_is_a_json_404_not_html(client):
    response = client.get("/api/v1/nothing-here", headers=AUTH)
    assert response.status_code == 404
    assert response.is_json
    assert response.get_json()["error"]["code"] == "not_found"


def test_wrong_method_is_a_json_405(client):
    response = client.post("/api/v1/stores", headers=AUTH)
    assert response.status_code == 405
    assert response.get_json()["error"]["code"] == "method_not_allowed"


# --- the contract document ----------------------------------------------------------------

DOCS = Path(__file__).resolve().parent.parent / "docs" / "online-api.md"


def test_every_route_is_documented(app):
    text = re.sub(r"<[^>]+>", "<>", DOCS.read_text(encoding="utf-8"))
    for rule in app.url_map.iter_rules():
        if rule.endpoint != "static":
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                assert f"{method} {re.sub(r'<[^>]+>', '<>', rule.rule)}" in text, (method, rule.rule)


def test_the_docs_name_every_webhook_type_rejection_reason_and_activity_type():
    text = DOCS.read_text(encoding="utf-8")
    for name in (*EVENT_TYPES, *REASONS, *ACTIVITY_TYPES, *FAULTS_OFF):
        assert f"`{name}`" in text, name


def test_documented_hero_profile_matches_the_seed(get):
    blocks = re.findall(r"```json\n(.*?)```", DOCS.read_text(encoding="utf-8"), flags=re.S)
    documented = next(json.loads(b) for b in blocks if '"id": "M0001"' in b and '"orders"' in b)
    _, jane = get("/api/v1/customers/M0001")
    scalars = [key for key, value in documented.items() if not isinstance(value, (list, dict))]
    assert {k: documented[k] for k in scalars} == {k: jane[k] for k in scalars}
    assert documented["orders"] == jane["orders"][:len(documented["orders"])]
    assert documented["cart"]["updated_at"] == jane["cart"]["updated_at"]
