"""The hub reads the online store's sessions and orders for analytics: from cursors, once, over real HTTP
against the demo online store, into a real hub database; changed orders replace their row."""

from __future__ import annotations

from datetime import date, timedelta
from zoneinfo import ZoneInfo

import pytest
from test_connector import DATA, KEY, NOW, DemoShop

from hub.analytics import Query, report
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
    last = {r["channel"]: r["last_sales"] for r in got["attribution"].rows}
    assert last["email"] >= 1 or session["started_at"] > order["placed_at"]
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
