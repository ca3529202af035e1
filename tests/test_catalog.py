"""The versioned catalog on the hub and its sync, page by page, into a device's catalog.db (real SQLite files)."""

from __future__ import annotations

import copy
import random
import sqlite3

import pytest

from demo import seed
from demo.catalog_feed import catalog_feed
from edge_agent.catalog import CatalogCache
from edge_agent.outbox import open_device_db
from hub.catalog import PAGE_BYTES, HubCatalog
from hub.store import HubStore, open_hub_db
from protocol.catalog import ONLINE, check_page, product_view, stock_key
from protocol.requests import CURSOR, MAX_RESPONSE_BYTES, encode, ok

# The catalog.db schema before generations (git history): files like this exist on kiosks.
OLD_SCHEMA = [
    "CREATE TABLE products (gtin TEXT PRIMARY KEY, name TEXT NOT NULL, brand TEXT, category TEXT,"
    " description TEXT, image_url TEXT, price REAL, currency TEXT, compare_at_price REAL, promotion TEXT,"
    " rating_average REAL, rating_count INTEGER, reviews TEXT, online_url TEXT, updated_at TEXT)",
    "CREATE TABLE stock (gtin TEXT NOT NULL, store TEXT NOT NULL, quantity INTEGER NOT NULL,"
    " location TEXT, updated_at TEXT, PRIMARY KEY (gtin, store))",
    "CREATE TABLE stores (id TEXT PRIMARY KEY, name TEXT NOT NULL)",
    "CREATE TABLE catalog_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
]


@pytest.fixture(scope="module")
def demo_feed():
    return catalog_feed(seed.build())


@pytest.fixture
def feed(demo_feed):
    return copy.deepcopy(demo_feed)


@pytest.fixture
def hub(tmp_path):
    path = tmp_path / "hub.db"
    HubStore(open_hub_db(path))  # runs the migrations, 002_catalog among them
    catalog = HubCatalog(open_hub_db(path))
    yield catalog
    catalog.db.conn.close()


@pytest.fixture
def device(tmp_path):
    cache = CatalogCache(open_device_db(tmp_path / "catalog.db"))
    yield cache
    cache.db.conn.close()


def sync(hub: HubCatalog, device: CatalogCache, *, limit: int = 200, between=None) -> list[dict]:
    """What the agent does on a newer retained version: page from the resume point to the end."""
    since, cursor = device.resume_point()
    pages = []
    while True:
        page = hub.changes(since, cursor, limit)
        device.apply_page(page, since=since)
        pages.append(page)
        cursor = page["next_cursor"]
        if cursor is None:
            return pages
        if between:
            between()


def gtins_of(feed: dict) -> list[str]:
    return [p["gtin"] for p in feed["products"]]


def store_ids(feed: dict) -> list[str]:
    return [s["id"] for s in feed["stores"]]


def assert_same_catalog(hub: HubCatalog, device: CatalogCache, gtins, stores) -> None:
    for store in stores:
        for gtin in gtins:
            assert device.product(gtin, store) == hub.product(gtin, store), (gtin, store)


def device_stores(device: CatalogCache) -> dict[str, str]:
    return dict(device.db.execute("SELECT id, name FROM stores").fetchall())


def without_product(feed: dict, gtin: str) -> dict:
    return {**feed, "products": [p for p in feed["products"] if p["gtin"] != gtin],
            "stock": [s for s in feed["stock"] if s["gtin"] != gtin]}


# --- product_view ---------------------------------------------------------------------------

def test_product_view_shows_stock_here_the_best_stocked_nearby_stores_and_online():
    product = {"gtin": "04009114002005", "name": "Runner", "price": 89.95, "currency": "EUR",
               "promotion": {}, "rating": {"average": None, "count": 0},
               "reviews": [{"id": str(n)} for n in range(5)]}
    stock = [{"gtin": product["gtin"], "store": "s001", "quantity": 2, "location": "aisle 4"},
             {"gtin": product["gtin"], "store": "s002", "quantity": 1, "location": None, "store_name": "Kalverstraat"},
             {"gtin": product["gtin"], "store": "s003", "quantity": 7, "location": None},
             {"gtin": product["gtin"], "store": "s004", "quantity": 0, "location": None},
             {"gtin": product["gtin"], "store": "s005", "quantity": 4, "location": None, "store_name": "Utrecht"},
             {"gtin": product["gtin"], "store": "s006", "quantity": 4, "location": None},
             {"gtin": product["gtin"], "store": ONLINE, "quantity": 50, "location": None}]
    view = product_view(product, stock, "s001")
    assert view["stock"]["here"] == {"quantity": 2, "location": "aisle 4"}
    assert view["stock"]["nearby"] == [{"store": "s003", "name": "s003", "quantity": 7},
                                       {"store": "s005", "name": "Utrecht", "quantity": 4},
                                       {"store": "s006", "name": "s006", "quantity": 4}]
    assert view["stock"]["online"] == {"available": True}
    assert view["promotion"] is None and view["rating"] is None and len(view["reviews"]) == 3
    elsewhere = product_view(product, stock[1:3], "s009")
    assert elsewhere["stock"]["here"] == {"quantity": 0, "location": None}
    assert elsewhere["stock"]["online"] == {"available": False}


# --- the hub --------------------------------------------------------------------------------

def test_an_empty_catalog_is_version_zero_and_has_no_changes(hub):
    assert hub.version == 0
    assert hub.changes(0) == {"version": 0, "next_cursor": None, "changes": []}


def test_a_feed_is_version_one_and_a_device_syncing_from_zero_ends_equal_to_the_hub(hub, device, feed):
    assert hub.apply_feed(feed) == 1 == hub.version
    pages = sync(hub, device)
    assert len(pages) > 1 and device.version == 1 and device.resume_point() == (1, None)
    assert_same_catalog(hub, device, gtins_of(feed), store_ids(feed))
    assert device_stores(device) == {s["id"]: s["name"] for s in feed["stores"]}
    sample = feed["products"][0]
    assert device.product(sample["gtin"], "s001")["name"] == sample["name"]


def test_the_device_answers_exactly_as_a_catalog_seeded_whole(hub, device, feed, tmp_path):
    seeded = CatalogCache(open_device_db(tmp_path / "seeded.db"))
    seeded.replace_all(**feed)
    hub.apply_feed(feed)
    sync(hub, device)
    for gtin in gtins_of(feed):
        assert device.product(gtin, "s001") == seeded.product(gtin, "s001")


def test_reapplying_the_same_feed_keeps_the_version_and_writes_nothing(hub, feed):
    hub.apply_feed(feed)
    written = hub.db.conn.total_changes
    assert hub.apply_feed(copy.deepcopy(feed)) == 1
    assert hub.db.conn.total_changes == written
    assert hub.changes(1)["changes"] == []


def test_fields_the_device_does_not_show_change_nothing(hub, feed):
    hub.apply_feed(feed)
    for product in feed["products"]:
        product["sizes"] = ["One Size"]  # not a wire field
    assert hub.apply_feed(feed) == 1


def test_a_price_change_bumps_the_version_and_an_incremental_sync_carries_only_that_product(hub, device, feed):
    hub.apply_feed(feed)
    sync(hub, device)
    product = feed["products"][7]
    product["price"] = round(product["price"] + 5, 2)
    assert hub.apply_feed(feed) == 2
    pages = sync(hub, device)
    assert [(c["kind"], c["key"], c["version"]) for p in pages for c in p["changes"]] == \
        [("product", product["gtin"], 2)]
    assert device.version == 2 and device.product(product["gtin"], "s001")["price"] == product["price"]


def test_a_product_removed_from_a_full_feed_is_deleted_on_the_device(hub, device, feed):
    hub.apply_feed(feed)
    sync(hub, device)
    gone = feed["products"][3]["gtin"]
    assert hub.apply_feed(without_product(feed, gone)) == 2
    changes = [c for p in sync(hub, device) for c in p["changes"]]
    assert {(c["kind"], c["key"].split("/")[0]) for c in changes} == {("product", gone), ("stock", gone)}
    assert all(c["data"] is None and c["version"] == 2 for c in changes)
    assert device.product(gone, "s001") is None and hub.product(gone, "s001") is None
    assert device.db.execute("SELECT count(*) FROM stock WHERE gtin = ?", [gone]).fetchone()[0] == 0


def test_a_partial_feed_changes_rows_but_deletes_nothing(hub, device, feed):
    hub.apply_feed(feed)
    first = feed["products"][0]
    first["name"] = "Renamed"
    assert hub.apply_feed({"products": [first]}, full=False) == 2
    sync(hub, device)
    assert device.product(first["gtin"], "s001")["name"] == "Renamed"
    assert device.product(feed["products"][1]["gtin"], "s001") is not None


def test_a_product_that_comes_back_is_served_again(hub, device, feed):
    gtin = feed["products"][5]["gtin"]
    hub.apply_feed(without_product(feed, gtin))
    sync(hub, device)
    assert hub.apply_feed(feed) == 2
    sync(hub, device)
    assert device.product(gtin, "s001") == hub.product(gtin, "s001") is not None


def test_the_hub_keeps_only_the_newest_three_reviews(hub, feed):
    product = next(p for p in feed["products"] if len(p["reviews"]) > 3)
    product["reviews"] = list(reversed(product["reviews"]))  # the online store sent them oldest first
    hub.apply_feed(feed)
    newest = sorted(product["reviews"], key=lambda r: r["date"], reverse=True)[:3]
    assert hub.product(product["gtin"], "s001")["reviews"] == newest


def test_pages_stay_under_the_byte_budget_and_a_device_pages_through_the_whole_demo_catalog(hub, device, feed):
    hub.apply_feed(feed)
    pages = sync(hub, device, limit=1000)
    sizes = [len(encode(ok(page))) for page in pages]
    assert max(sizes) <= PAGE_BYTES < MAX_RESPONSE_BYTES
    assert max(sizes) > PAGE_BYTES - 4096  # pages are cut by bytes, not by a tiny count
    keys = [(c["kind"], c["key"]) for p in pages for c in p["changes"]]
    assert len(keys) == len(set(keys)) == len(feed["products"]) + len(feed["stock"]) + len(feed["stores"])
    assert all(CURSOR.match(p["next_cursor"]) for p in pages[:-1])


def test_a_page_holds_at_most_limit_changes_and_at_least_one(hub, feed):
    hub.apply_feed(feed)
    assert len(hub.changes(0, limit=5)["changes"]) == 5
    assert len(hub.changes(0, limit=0)["changes"]) == 1


def test_a_product_nearly_as_large_as_a_page_travels_alone(hub, device, feed):
    big = feed["products"][0]
    big["description"] = ""
    room = PAGE_BYTES - 500 - len(encode(big))  # leaves less than any other product needs
    big["description"] = "Long story. " * (room // 12)
    hub.apply_feed(feed)
    pages = sync(hub, device, limit=1000)
    alone = next(p for p in pages if any(c["key"] == big["gtin"] for c in p["changes"]))
    assert len(alone["changes"]) == 1 and len(encode(ok(alone))) <= PAGE_BYTES
    assert device.product(big["gtin"], "s001")["description"] == big["description"]


def test_a_product_too_large_for_any_page_is_refused_and_nothing_is_written(hub, feed):
    feed["products"][0]["description"] = "x" * PAGE_BYTES
    with pytest.raises(ValueError, match="too large"):
        hub.apply_feed(feed)
    assert hub.version == 0


@pytest.mark.parametrize("spoil, message", [
    (lambda f: f["products"][0].update(gtin="123"), "GTIN-14"),
    (lambda f: f["products"][0].pop("name"), "needs gtin and name"),
    (lambda f: f["stock"][0].update(quantity="3"), "quantity"),
    (lambda f: f["stock"][0].update(store="Store 1"), "store id"),
    (lambda f: f["stores"][0].update(id="S 1"), "store id"),
])
def test_a_malformed_feed_is_refused_with_the_row_named_and_nothing_is_written(hub, feed, spoil, message):
    hub.apply_feed(feed)
    spoil(feed)
    with pytest.raises(ValueError, match=message):
        hub.apply_feed(feed)
    assert hub.version == 1 and hub.changes(1)["changes"] == []


@pytest.mark.parametrize("cursor", ["garbage", "deadbeef:1:product:04009114002005", "::", "x" * 121])
def test_a_cursor_this_hub_did_not_issue_is_refused(hub, feed, cursor):
    hub.apply_feed(feed)
    with pytest.raises(ValueError, match="cursor"):
        hub.changes(0, cursor)


def test_a_cursor_is_refused_for_another_since_or_a_version_the_hub_never_reached(hub, feed):
    hub.apply_feed(feed)
    cursor = hub.changes(0, limit=3)["next_cursor"]
    assert hub.changes(0, cursor)["changes"]
    with pytest.raises(ValueError, match="cursor"):
        hub.changes(1, cursor)
    ahead = cursor.replace(":1:", ":9:", 1)
    with pytest.raises(ValueError, match="cursor"):
        hub.changes(0, ahead)


def test_a_cursor_from_a_rebuilt_catalog_is_refused(hub, feed, tmp_path):
    hub.apply_feed(feed)
    cursor = hub.changes(0, limit=3)["next_cursor"]
    path = tmp_path / "rebuilt.db"
    HubStore(open_hub_db(path))
    rebuilt = HubCatalog(open_hub_db(path))
    rebuilt.apply_feed(feed)
    with pytest.raises(ValueError, match="cursor"):
        rebuilt.changes(0, cursor)


def test_hub_product_is_none_for_an_unknown_or_deleted_gtin(hub, feed):
    gone = feed["products"][0]["gtin"]
    hub.apply_feed(without_product(feed, gone))
    assert hub.product(gone, "s001") is None
    assert hub.product("00000000000000", "s001") is None


def test_stock_here_lists_the_products_in_stock_in_that_store_only(hub, feed):
    hub.apply_feed(feed)
    here = {s["gtin"]: s for s in feed["stock"] if s["store"] == "s001"}
    names = {p["gtin"]: p["name"] for p in feed["products"]}
    in_stock = [g for g, s in here.items() if s["quantity"] > 0][:3]
    sold_out = [g for g, s in here.items() if s["quantity"] == 0][:2]
    found = hub.stock_here([*in_stock, *sold_out, "00000000000000", in_stock[0]], "s001")
    assert found == {g: {"quantity": here[g]["quantity"], "location": here[g]["location"], "name": names[g]}
                     for g in in_stock}
    assert hub.stock_here([], "s001") == {}


def test_a_page_deep_in_a_large_catalog_costs_no_more_than_the_first(hub):
    products = [{"gtin": f"{n:014d}", "name": f"Product {n}"} for n in range(6000)]
    hub.apply_feed({"stores": [], "products": products, "stock": []})
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0

    def cost(cursor):
        steps[0] = 0
        hub.db.conn.set_progress_handler(count, 100)
        try:
            page = hub.changes(0, cursor, 50)
        finally:
            hub.db.conn.set_progress_handler(None, 0)
        return steps[0], page["next_cursor"]

    first, cursor = cost(None)
    for _ in range(100):
        cursor = hub.changes(0, cursor, 50)["next_cursor"]
    deep, _ = cost(cursor)
    # A scan from the start of the table would cost about a hundred first pages here.
    assert deep <= 3 * first + 5


# --- the device -----------------------------------------------------------------------------

def test_a_change_made_while_a_device_is_half_way_through_paging_is_still_picked_up(hub, device, feed):
    hub.apply_feed(feed)
    target = feed["products"][-1]  # its rows come last in the page order of version 1
    changed = [False]

    def reprice():
        if not changed[0]:
            target["price"] = 1.0
            feed["products"][0]["price"] = 2.0  # already behind the device's cursor
            hub.apply_feed(feed)
            changed[0] = True

    sync(hub, device, between=reprice)
    assert device.product(target["gtin"], "s001")["price"] == 1.0
    assert device.product(feed["products"][0]["gtin"], "s001")["price"] == 2.0
    assert device.version == hub.version == 2


def mutate(feed: dict, rng: random.Random, removed: dict) -> None:
    """One random change the online store might send: price, stock, a product gone or back, a store renamed."""
    choice = rng.randrange(6)
    if choice == 0:
        product = rng.choice(feed["products"])
        product["price"] = round(rng.uniform(5, 300), 2)
    elif choice == 1:
        rng.choice(feed["stock"])["quantity"] = rng.randrange(0, 15)
    elif choice == 2 and len(feed["products"]) > 5:
        product = feed["products"].pop(rng.randrange(len(feed["products"])))
        rows = [s for s in feed["stock"] if s["gtin"] == product["gtin"]]
        feed["stock"] = [s for s in feed["stock"] if s["gtin"] != product["gtin"]]
        removed[product["gtin"]] = (product, rows)
    elif choice == 3 and removed:
        product, rows = removed.pop(rng.choice(sorted(removed)))
        feed["products"].append(product)
        feed["stock"] += rows
    elif choice == 4:
        store = rng.choice(feed["stores"])
        store["name"] = f"Store {rng.randrange(1000)}"
    else:
        feed["stock"] = [s for s in feed["stock"] if rng.random() > 0.02]


@pytest.mark.parametrize("seed_value", [1, 2, 3])
def test_random_changes_between_pages_never_leave_the_device_behind(hub, device, feed, seed_value):
    rng = random.Random(seed_value)
    feed = {**feed, "products": feed["products"][:60],
            "stock": [s for s in feed["stock"] if s["gtin"] <= feed["products"][59]["gtin"]]}
    every_gtin = gtins_of(feed)
    removed: dict = {}
    hub.apply_feed(feed)

    def hub_changes_maybe():
        if rng.random() < 0.4:
            for _ in range(rng.randrange(1, 6)):
                mutate(feed, rng, removed)
            hub.apply_feed(feed)

    for _ in range(6):
        sync(hub, device, limit=rng.choice([1, 3, 17, 200]), between=hub_changes_maybe)
        if device.version == hub.version:  # nothing changed after the last page was read
            assert_same_catalog(hub, device, every_gtin, [*store_ids(feed), "s009"])
        hub_changes_maybe()
    sync(hub, device)
    assert device.version == hub.version
    assert_same_catalog(hub, device, every_gtin, [*store_ids(feed), "s009"])
    assert device_stores(device) == {s["id"]: s["name"] for s in feed["stores"]}


def test_a_device_killed_between_pages_resumes_where_it_stopped_and_ends_equal(hub, feed, tmp_path):
    hub.apply_feed(feed)
    path = tmp_path / "catalog.db"
    before = CatalogCache(open_device_db(path))
    page = hub.changes(0, None, 50)
    before.apply_page(page, since=0)
    page = hub.changes(0, page["next_cursor"], 50)
    before.apply_page(page, since=0)
    before.db.conn.close()  # the agent was killed here

    after = CatalogCache(open_device_db(path))
    assert after.resume_point() == (0, page["next_cursor"])
    assert after.version == 0  # the kiosk does not believe a half-synced catalog is current
    pages = sync(hub, after, limit=50)
    seen = {c["key"] for p in pages for c in p["changes"]}
    assert not seen & {c["key"] for c in page["changes"]}  # nothing fetched twice
    assert after.version == 1 and after.resume_point() == (1, None)
    assert_same_catalog(hub, after, gtins_of(feed), store_ids(feed))


def test_a_resync_keeps_old_rows_readable_until_the_last_page_then_sweeps_what_the_hub_no_longer_has(
        hub, device, feed):
    stale = feed["products"][0]["gtin"]
    device.replace_all(**feed)  # seeded whole, with a product the hub will never send
    hub.apply_feed(without_product(feed, stale))
    device.start_resync()
    assert device.version == 0 and device.resume_point() == (0, None)
    assert device.product(stale, "s001") is not None

    page = hub.changes(0, None, 20)
    counts = device.apply_page(page, since=0)
    assert counts["swept"] == 0 and device.product(stale, "s001") is not None
    assert device.resume_point() == (0, page["next_cursor"])
    since, cursor = device.resume_point()
    swept = 0
    while cursor:
        page = hub.changes(since, cursor, 200)
        swept += device.apply_page(page, since=since)["swept"]
        cursor = page["next_cursor"]
    assert swept == 1 + sum(1 for s in feed["stock"] if s["gtin"] == stale)
    assert device.product(stale, "s001") is None and device.version == 1
    assert_same_catalog(hub, device, gtins_of(feed), store_ids(feed))


def test_a_device_mid_resync_refuses_an_incremental_page(hub, device, feed):
    hub.apply_feed(feed)
    sync(hub, device)
    feed["products"][0]["price"] = 1.0
    hub.apply_feed(feed)
    device.start_resync()
    with pytest.raises(ValueError, match="since=0"):
        device.apply_page(hub.changes(1), since=1)
    assert device.product(feed["products"][0]["gtin"], "s001")["price"] != 1.0


def test_a_catalog_db_from_the_old_schema_is_reset_to_version_zero_and_syncs(hub, feed, tmp_path):
    path = tmp_path / "catalog.db"
    old = sqlite3.connect(path)
    for statement in OLD_SCHEMA:
        old.execute(statement)
    old.execute("INSERT INTO products (gtin, name) VALUES ('04009114002005', 'Old shoe')")
    old.execute("INSERT INTO catalog_meta VALUES ('version', '7')")
    old.commit()
    old.close()

    cache = CatalogCache(open_device_db(path))
    assert cache.version == 0 and cache.resume_point() == (0, None)
    assert cache.product("04009114002005", "s001") is None
    hub.apply_feed(feed)
    sync(hub, cache)
    assert_same_catalog(hub, cache, gtins_of(feed)[:50], ["s001"])


def test_opening_a_current_catalog_db_again_keeps_it(hub, device, feed, tmp_path):
    hub.apply_feed(feed)
    sync(hub, device)
    again = CatalogCache(open_device_db(tmp_path / "catalog.db"))
    assert again.version == 1 and again.product(feed["products"][0]["gtin"], "s001") is not None


@pytest.mark.parametrize("spoil, problem", [
    (lambda page: page["changes"][-1]["data"].pop("quantity"), "stock row needs"),
    (lambda page: page["changes"][-1].update(kind="price"), "no kind and key"),
    (lambda page: page["changes"][-1].update(key="04009114002005/s999"), "does not match"),
    (lambda page: page.update(version=-1), "no version"),
])
def test_a_malformed_page_is_rejected_and_nothing_of_it_is_applied(hub, device, feed, spoil, problem):
    feed["products"][0]["name"] = "First of the page"
    hub.apply_feed(feed)
    page = hub.changes(0, None, 3)
    row = feed["stock"][0]
    page["changes"].append({"kind": "stock", "key": stock_key(row["gtin"], row["store"]), "version": 1,
                            "data": {k: row[k] for k in ("gtin", "store", "quantity", "location", "updated_at")}})
    spoil(page)
    with pytest.raises(ValueError, match=problem):
        device.apply_page(page, since=0)
    assert device.product(feed["products"][0]["gtin"], "s001") is None
    assert device.resume_point() == (0, None) and device.version == 0


def test_check_page_accepts_what_the_hub_serves(hub, feed):
    hub.apply_feed(feed)
    page = hub.changes(0)
    assert check_page(page) is None and page["version"] == 1


def test_product_view_gives_the_same_answer_from_the_hub_and_the_device(hub, device, feed):
    hub.apply_feed(feed)
    sync(hub, device)
    promoted = next(p for p in feed["products"] if p["promotion"])
    unrated = next((p for p in feed["products"] if not p["rating"]["count"]), feed["products"][1])
    for product in (promoted, unrated):
        for store in ("s001", "s002", "s009"):
            view = hub.product(product["gtin"], store)
            assert view == device.product(product["gtin"], store)
            assert view["name"] == product["name"] and view["promotion"] == product["promotion"]


# --- incremental changes from the online store ------------------------------------------------

def product_change(product: dict, **changes) -> dict:
    return {"kind": "product", "key": product["gtin"], "data": {**product, **changes}}


def stock_change(row: dict, **changes) -> dict:
    return {"kind": "stock", "key": stock_key(row["gtin"], row["store"]), "data": {**row, **changes}}


def test_incremental_changes_and_deletions_reach_a_device_paging_with_since(hub, device, feed):
    hub.apply_feed(feed)
    sync(hub, device)
    repriced, gone = feed["products"][1], feed["products"][2]
    counted = next(s for s in feed["stock"] if s["store"] == "s001" and s["gtin"] == feed["products"][4]["gtin"])
    closed = feed["stores"][-1]
    version = hub.apply_changes([
        product_change(repriced, price=1.5),
        stock_change(counted, quantity=counted["quantity"] + 7, location="Back wall"),
        {"kind": "product", "key": gone["gtin"], "data": None},
        {"kind": "store", "key": "s077", "data": {"id": "s077", "name": "Zwolle"}},
        {"kind": "store", "key": closed["id"], "data": None},
    ])
    assert version == 2 == hub.version
    changes = [c for p in sync(hub, device, limit=3) for c in p["changes"]]
    gone_stock = {stock_key(s["gtin"], s["store"]) for s in feed["stock"] if s["gtin"] == gone["gtin"]}
    assert {(c["kind"], c["key"]) for c in changes} == {
        ("product", repriced["gtin"]), ("stock", stock_key(counted["gtin"], "s001")), ("product", gone["gtin"]),
        ("store", "s077"), ("store", closed["id"]), *(("stock", key) for key in gone_stock)}
    assert all(c["version"] == 2 for c in changes)
    assert device.version == 2
    assert device.product(repriced["gtin"], "s001")["price"] == 1.5
    assert device.product(counted["gtin"], "s001")["stock"]["here"] == {"quantity": counted["quantity"] + 7,
                                                                        "location": "Back wall"}
    assert device.product(gone["gtin"], "s001") is None is hub.product(gone["gtin"], "s001")
    assert device.db.execute("SELECT count(*) FROM stock WHERE gtin = ?", [gone["gtin"]]).fetchone()[0] == 0
    assert device_stores(device) == {**{s["id"]: s["name"] for s in feed["stores"][:-1]}, "s077": "Zwolle"}
    assert_same_catalog(hub, device, gtins_of(feed)[:10], ["s001", "s002"])


def test_changes_equal_to_what_the_hub_holds_move_nothing(hub, feed):
    hub.apply_feed(feed)
    written = hub.db.conn.total_changes
    same = [product_change(p) for p in feed["products"][:5]] + [stock_change(s) for s in feed["stock"][:5]]
    never_held = {"kind": "product", "key": "00000000000000", "data": None}
    assert hub.apply_changes([*same, never_held]) == 1
    assert hub.db.conn.total_changes == written
    assert hub.changes(1)["changes"] == []


def test_only_the_rows_that_changed_get_the_new_version(hub, feed):
    hub.apply_feed(feed)
    first, second = feed["products"][:2]
    assert hub.apply_changes([product_change(first), product_change(second, name="Renamed")]) == 2
    assert [(c["key"], c["version"]) for c in hub.changes(1)["changes"]] == [(second["gtin"], 2)]


def test_of_several_changes_to_one_row_in_a_batch_the_last_counts(hub, feed):
    hub.apply_feed(feed)
    product = feed["products"][0]
    hub.apply_changes([product_change(product, price=1.0), {"kind": "product", "key": product["gtin"], "data": None},
                       product_change(product, price=3.0)])
    assert hub.product(product["gtin"], "s001")["price"] == 3.0


def test_a_product_deleted_by_one_batch_and_sent_again_by_a_later_one_comes_back(hub, device, feed):
    hub.apply_feed(feed)
    product = feed["products"][0]
    hub.apply_changes([{"kind": "product", "key": product["gtin"], "data": None}])
    sync(hub, device)
    stock = [s for s in feed["stock"] if s["gtin"] == product["gtin"]]
    assert hub.apply_changes([product_change(product), *(stock_change(s) for s in stock)]) == 3
    sync(hub, device)
    assert device.product(product["gtin"], "s001") == hub.product(product["gtin"], "s001") is not None
    assert device.product(product["gtin"], "s001")["stock"]["here"]["quantity"] == next(
        s["quantity"] for s in stock if s["store"] == "s001")


@pytest.mark.parametrize("change, message", [
    ({"kind": "product", "key": "04009114002005", "data": {"gtin": "04009114002012", "name": "X"}},
     "does not match its data"),
    ({"kind": "price", "key": "04009114002005", "data": None}, "needs a kind"),
    ({"kind": "product", "key": "123", "data": None}, "GTIN-14"),
    ({"kind": "stock", "key": "04009114002005", "data": None}, "neither a store id"),
    ({"kind": "product", "key": None, "data": None}, "needs the key"),
    ({"kind": "product", "key": "04009114002005", "data": "gone"}, "data must be an object"),
    ({"kind": "stock", "key": "04009114002005/s001",
      "data": {"gtin": "04009114002005", "store": "s001", "quantity": "3"}}, "quantity"),
])
def test_a_malformed_change_is_refused_with_its_position_and_nothing_is_written(hub, feed, change, message):
    hub.apply_feed(feed)
    fine = product_change(feed["products"][0], name="Would change")
    with pytest.raises(ValueError, match=message) as refused:
        hub.apply_changes([fine, change])
    assert "catalog change #1" in str(refused.value)
    assert hub.version == 1 and hub.changes(1)["changes"] == []


# --- stock counts ---------------------------------------------------------------------------------

def test_update_stock_moves_only_the_rows_whose_quantity_or_location_changed(hub, device, feed):
    hub.apply_feed(feed)
    sync(hub, device)
    here = [s for s in feed["stock"] if s["store"] == "s001"][:4]
    counts = [{**here[0], "location": None},                                   # as held: location kept
              {**here[1], "quantity": here[1]["quantity"] + 1, "location": None},  # new quantity
              {**here[2], "location": "Window"},                               # new location
              {"gtin": here[3]["gtin"], "store": "s042", "quantity": 2, "location": None}]  # a new row
    version, changed = hub.update_stock(counts, now=seed.REFERENCE_NOW)
    assert (version, changed) == (2, 3)
    changes = [c for p in sync(hub, device) for c in p["changes"]]
    assert sorted(c["key"] for c in changes) == sorted(
        [stock_key(here[1]["gtin"], "s001"), stock_key(here[2]["gtin"], "s001"), stock_key(here[3]["gtin"], "s042")])
    assert {c["data"]["updated_at"] for c in changes} == {"2026-11-22T09:00:00Z"}
    assert device.product(here[1]["gtin"], "s001")["stock"]["here"] == {
        "quantity": here[1]["quantity"] + 1, "location": here[1]["location"]}
    assert device.product(here[2]["gtin"], "s001")["stock"]["here"]["location"] == "Window"
    assert hub.update_stock(counts) == (2, 0)


def test_update_stock_skips_products_the_catalog_does_not_have_and_a_dry_run_writes_nothing(hub, feed):
    hub.apply_feed(feed)
    row = next(s for s in feed["stock"] if s["store"] == "s001")
    unknown = []
    counts = [{**row, "quantity": row["quantity"] + 1}, {"gtin": "00000000000017", "store": "s001", "quantity": 1,
                                                         "location": None}]
    written = hub.db.conn.total_changes
    assert hub.update_stock(counts, dry_run=True, on_unknown=unknown.append) == (1, 1)
    assert hub.db.conn.total_changes == written and hub.version == 1
    assert [u["gtin"] for u in unknown] == ["00000000000017"]
    assert hub.update_stock(counts) == (2, 1)


def test_products_and_new_products_read_product_screens_for_offers(hub, feed):
    hub.apply_feed(feed)
    gtins = gtins_of(feed)[:3]
    assert hub.products([*gtins, "00000000000017", gtins[0]], "s001") == {g: hub.product(g, "s001") for g in gtins}
    new = hub.new_products(["shoes", "bags"], since="2026-10-01T00:00:00Z", store="s001", limit=5)
    assert 0 < len(new) <= 5
    assert all(p["category"] in ("shoes", "bags") and p["updated_at"] >= "2026-10-01T00:00:00Z"
               and p["stock"]["here"]["quantity"] > 0 for p in new.values())
    assert [p["updated_at"] for p in new.values()] == sorted((p["updated_at"] for p in new.values()), reverse=True)
    assert hub.new_products([], since="2026-10-01T00:00:00Z", store="s001") == {}
