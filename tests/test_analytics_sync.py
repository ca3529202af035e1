"""The hub reads the online store's sessions and orders for analytics: from cursors, once, over real HTTP
against the demo online store, into a real hub database; changed orders replace their row."""

from __future__ import annotations

from datetime import date, timedelta
from zoneinfo import ZoneInfo

import pytest
from test_connector import DATA, KEY, NOW, DemoShop

from hub.analytics import Query, attributed_sales, report, span_of
from hub.catalog import HubCatalog
from hub.online import RestOnlineStore
from hub.store import HubStore, open_hub_db
from hub.sync import OnlineSync

STORE = "s001"
LATER = NOW + timedelta(hours=1)


@pytest.fixture
def shop():
    served = DemoShop()
    yield served
    served.close()


@pytest.fixture
def hub(tmp_path):
    return HubStore(open_hub_db(tmp_path / "hub.db"))


@pytest.fixture
def sync(shop, hub, tmp_path):
    return OnlineSync(hub_store=hub, catalog=HubCatalog(open_hub_db(tmp_path / "hub.db")),
                      online=RestOnlineStore(shop.url, KEY), store=STORE, clock=lambda: LATER)


def rows(hub, sql):
    return hub.db.execute(sql).fetchall()


def expected_feed():
    members = {m for m, home in DATA.home_stores.items() if home == STORE}
    sessions = [s for s in DATA.sessions if s["customer_id"] in members]
    orders = [o for c in DATA.customers if c["id"] in members for o in c["orders"]]
    return sessions, orders


def test_sessions_and_orders_arrive_once_from_cursors(shop, hub, sync):
    sessions, orders = expected_feed()
    done = sync.sync_analytics()
    assert rows(hub, "SELECT count(*) FROM online_sessions")[0][0] == len(sessions) > 100
    online_orders = [o for o in orders if o["channel"] != "store"]
    assert done["orders_skipped_store"] == len(orders) - len(online_orders) > 0  # the till is the truth for those
    assert rows(hub, "SELECT count(*) FROM sales WHERE origin = 'online'")[0][0] == len(online_orders)
    assert rows(hub, "SELECT count(*) FROM touches WHERE ref LIKE 'online:%'")[0][0] == len(sessions)
    # the cursors are kept: a second round reads nothing again
    assert {k: v for k, v in sync.sync_analytics().items() if v} == {}
    assert rows(hub, "SELECT count(*) FROM online_sessions")[0][0] == len(sessions)
    # a session of another store's member never arrives
    other = next(m for m, home in DATA.home_stores.items() if home != STORE)
    assert rows(hub, f"SELECT count(*) FROM online_sessions WHERE customer = '{other}'")[0][0] == 0


def test_a_new_order_and_a_cancelled_one_follow(shop, hub, sync):
    sync.sync_analytics()
    product = DATA.products[3]
    order = shop.admin("POST", "/orders", {"customer_id": "M0001", "channel": "app", "lines": [
        {"gtin": product["gtin"], "quantity": 1, "amount": product["price"]}]})
    session = shop.admin("POST", "/sessions", {"customer_id": "M0001", "channel": "email", "source": "newsletter"})
    done = sync.sync_analytics()
    assert (done["orders_stored"], done["online_sessions_stored"]) == (1, 1)
    day = date.fromisoformat(order["placed_at"][:10])
    utc = ZoneInfo("UTC")
    got = report(hub.db, Query(day, day), tz=utc)
    app = next(r for r in got["channels"].rows if r["channel"] == "app")
    assert app["sales"] >= 1
    # The email session was opened at the order's own moment (the demo store's clock): the last touch.
    assert session["started_at"] == order["placed_at"]
    credited = {sale: (first, last) for sale, _, first, last in
                attributed_sales(hub.db, Query(day, day), span_of(Query(day, day), utc))}
    assert credited[f"online:{order['id']}"][1] == "email"
    shop.admin("PATCH", f"/customers/M0001/orders/{order['id']}", {"status": "cancelled"})
    assert sync.sync_analytics()["orders_stored"] == 1
    assert rows(hub, f"SELECT status FROM sales WHERE id = 'online:{order['id']}'") == [("cancelled",)]
    after = report(hub.db, Query(day, day), tz=utc)
    assert next(r for r in after["channels"].rows if r["channel"] == "app")["sales"] == app["sales"] - 1


def test_an_erased_member_stays_anonymous(shop, hub, sync):
    sync.sync_analytics()
    assert rows(hub, "SELECT count(*) FROM online_sessions WHERE customer = 'M0001'")[0][0] > 0
    shop.admin("POST", "/customers/M0001/erase")
    sync.sync_customers()
    assert rows(hub, "SELECT count(*) FROM online_sessions WHERE customer = 'M0001'")[0][0] == 0
    assert rows(hub, "SELECT count(*) FROM touches WHERE customer = 'M0001'")[0][0] == 0
    sync.sync_analytics()
    assert rows(hub, "SELECT count(*) FROM sales WHERE customer = 'M0001'")[0][0] == 0


def test_the_online_store_down_only_delays_it(shop, hub, sync):
    shop.admin("POST", "/faults", {"status": 503, "rate": 1.0})
    sync._round(full=False)
    assert sync.counters["analytics_unavailable"] == 1
    assert rows(hub, "SELECT count(*) FROM online_sessions")[0][0] == 0
    shop.admin("DELETE", "/faults")
    sync._round(full=False)
    assert rows(hub, "SELECT count(*) FROM online_sessions")[0][0] > 0


def test_malformed_feed_items_are_counted_and_skipped_not_fatal(hub):
    from datetime import datetime, timezone

    from hub.analytics_data import record_online_sessions, record_orders
    good = {"id": "o-1", "customer_id": "M0001", "channel": "web", "status": "delivered", "currency": "EUR",
            "placed_at": "2026-06-01T10:00:00Z", "total": 10.0,
            "lines": [{"gtin": "4006381333931", "quantity": 1, "amount": 10.0}]}
    bad = ["not an object", None, {**good, "id": "o-nan", "total": float("nan")},
           {**good, "id": "o-inf", "lines": [{"gtin": "4006381333931", "quantity": 1, "amount": float("inf")}]},
           {**good, "id": "o-gtin", "lines": [{"gtin": "4006381333932", "quantity": 1, "amount": 10.0}]},
           {**good, "id": "o-ts", "placed_at": "yesterday"}, {**good, "id": "o-usd", "currency": "USD"}]
    with hub.transaction():
        done = record_orders(hub.db, [*bad, good], currency="EUR", now=datetime.now(timezone.utc))
        sessions = record_online_sessions(hub.db, [7, {"id": "s-1", "channel": "web"},
                                                   {"id": "s-2", "channel": "web", "started_at": "2026-06-01T09:00:00Z",
                                                    "customer_id": "M0001"}])
    assert done == {"stored": 1, "skipped_store": 0, "skipped_currency": 1, "malformed": 6}
    assert rows(hub, "SELECT id, total FROM sales") == [("online:o-1", 10.0)]
    assert rows(hub, "SELECT gtin FROM sale_lines") == [("04006381333931",)]  # as a GTIN-14, like kiosk scans
    assert sessions == {"stored": 1, "malformed": 2}


class EndlessFeed:
    """An online store whose feeds say "more" without a new cursor (a platform bug): the round must end."""

    def __init__(self):
        self.calls = 0

    def online_sessions(self, cursor, *, store, limit):
        self.calls += 1
        return {"items": [], "next_cursor": cursor or "c0", "has_more": True}

    orders = online_sessions


def test_a_feed_that_never_ends_does_not_spin(hub, tmp_path):
    feed = EndlessFeed()
    sync = OnlineSync(hub_store=hub, catalog=HubCatalog(open_hub_db(tmp_path / "hub.db")), online=feed, store=STORE,
                      clock=lambda: LATER)
    sync.sync_analytics()
    assert feed.calls <= 4 and sync.counters["online_sessions_stuck_cursor"] == 1
