"""The hub keeps its copy of the online store fresh and pushes what happens here back: against the real demo
online store over HTTP and a real hub database."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone

import pytest
from test_connector import KEY, NOW, SECRET, DemoShop

from hub.activity import ActivityPusher, close_visits, track
from hub.arrivals import ArrivalDesk
from hub.catalog import HubCatalog
from hub.online import RestOnlineStore
from hub.online_updates import OnlineUpdates
from hub.store import HubStore, open_hub_db
from hub.sync import OnlineSync, ready_for_pickup_here
from hub.webhooks import sign
from protocol.envelope import format_ts, make_envelope

STORE = "s001"
LATER = NOW + timedelta(hours=1)   # the demo shop's clock


@pytest.fixture
def shop():
    served = DemoShop()
    yield served
    served.close()


@pytest.fixture
def hub(tmp_path):
    return HubStore(open_hub_db(tmp_path / "hub.db"))


def syncer(shop, hub, tmp_path, **kwargs):
    announced = []
    sync = OnlineSync(hub_store=hub, catalog=HubCatalog(open_hub_db(tmp_path / "hub.db")),
                      online=RestOnlineStore(shop.url, KEY), store=STORE,
                      on_catalog_changed=lambda: announced.append(1), clock=lambda: LATER, **kwargs)
    return sync, announced


def kiosk_events(member="M0001", session="s1", device="s001-k01", seq=1, at=LATER):
    data = {"session": session}
    events = [make_envelope(store=STORE, device=device, type="session.started", seq=seq, data=data, now=at),
              make_envelope(store=STORE, device=device, type="scan.member", seq=seq + 1, now=at,
                            data={**data, "member": member, "jti": f"j-{session}", "typ": "app"}),
              make_envelope(store=STORE, device=device, type="scan.product", seq=seq + 2, now=at,
                            data={**data, "gtin": "04006381333931", "source": "ean13"})]
    return events


def ingest(hub, events, now=LATER):
    with hub.transaction() as db:
        for event in events:
            db.insert_event(event, format_ts(now))
        track(db.db, events, store=STORE, now=now)


def linked_events(hub, member):
    return hub.db.execute("SELECT count(*) FROM events WHERE json_extract(data, '$.member') = ?", [member]).fetchone()[0]


def test_the_first_sync_keeps_the_customers_this_store_needs_and_skips_the_rest(shop, hub, tmp_path):
    hub.cache_profile("M0001", {"id": "M0001", "consent": {"clienteling": True}}, format_ts(NOW))
    sync, _ = syncer(shop, hub, tmp_path)
    done = sync.sync_customers(full=True)
    cached = {row[0] for row in hub.db.execute("SELECT id FROM customers")}
    pickups = {c["id"] for c in shop.api("/api/v1/customers", limit=100)["items"]}  # a sample to check against
    assert "M0001" in cached and done["updated"] == len(cached) and done["skipped"] > 100
    for member in cached:
        profile, _ = hub.cached_profile(member)
        assert member == "M0001" or ready_for_pickup_here(profile, STORE)
    assert pickups - cached, "members without a reason to be here are not copied"
    assert hub.cached_profile("M0001")[0]["first_name"] == "Jane"   # the online profile replaced the stub


def test_a_delta_brings_changes_and_a_withdrawn_consent_unlinks_what_was_kept(shop, hub, tmp_path):
    sync, _ = syncer(shop, hub, tmp_path)
    hub.cache_profile("M0001", {"id": "M0001", "consent": {"clienteling": True}}, format_ts(NOW))
    sync.sync_customers()
    ingest(hub, kiosk_events("M0001"))
    assert linked_events(hub, "M0001") == 1
    shop.admin("PATCH", "/customers/M0001", {"points": 5000})
    assert sync.sync_customers() == {"updated": 1}
    assert hub.cached_profile("M0001")[0]["points"] == 5000
    shop.admin("PATCH", "/customers/M0001", {"consent": {"clienteling": False}})
    sync.sync_customers()
    assert linked_events(hub, "M0001") == 0
    assert hub.db.execute("SELECT sum(count) FROM anonymous_counts").fetchone()[0] == 1


def test_an_erasure_online_erases_the_member_here(shop, hub, tmp_path):
    sync, _ = syncer(shop, hub, tmp_path)
    sync.sync_customers()
    hub.cache_profile("M0001", {"id": "M0001", "consent": {"clienteling": True}}, format_ts(NOW))
    ingest(hub, kiosk_events("M0001"))
    shop.admin("POST", "/customers/M0001/erase")
    assert sync.sync_customers()["erased"] == 1
    assert hub.cached_profile("M0001") is None and linked_events(hub, "M0001") == 0
    assert sync.counters["erasures"] == 1


def test_the_catalog_follows_the_online_store_and_devices_get_only_what_changed(shop, hub, tmp_path):
    sync, announced = syncer(shop, hub, tmp_path)
    first = sync.sync_catalog()
    assert first >= 1 and announced == [1]
    assert sync.sync_catalog() == first and announced == [1]   # nothing new: no new version, no announcement
    gtin = shop.api("/api/v1/products", limit=1)["items"][0]["gtin"]
    shop.admin("PATCH", f"/products/{gtin}", {"price": 9.99})
    second = sync.sync_catalog()
    assert second == first + 1 and announced == [1, 1]
    page = sync.catalog.changes(first, None, 100)
    assert [c["key"] for c in page["changes"] if c["kind"] == "product"] == [gtin]
    assert sync.catalog.product(gtin, STORE)["price"] == 9.99


def test_a_till_fed_store_keeps_its_own_stock_when_the_feed_says_otherwise(shop, hub, tmp_path):
    sync, _ = syncer(shop, hub, tmp_path, own_stock_from_feed=False)
    sync.sync_catalog()
    stores, cursor = set(), None
    while True:
        page = sync.catalog.changes(0, cursor, 1000)
        stores |= {c["data"]["store"] for c in page["changes"] if c["kind"] == "stock"}
        if not (cursor := page["next_cursor"]):
            break
    assert STORE not in stores and {"s002", "s003", "online"} <= stores


def test_members_seen_here_lately_are_prefetched(shop, hub, tmp_path):
    sync, _ = syncer(shop, hub, tmp_path, prefetch_days=30)
    hub.add_arrival(event_id="e1", store=STORE, device="s001-k01", customer_id="M0003", jti="j1",
                    scanned_at=format_ts(LATER), late=False, payload={})
    hub.db.execute("UPDATE arrivals SET created_at = ?", [format_ts(LATER - timedelta(days=5))])
    assert sync.prefetch() == 1 and hub.cached_profile("M0003") is not None
    assert sync.prefetch() == 0  # fresh now


def test_with_the_online_store_down_arrivals_show_the_cached_profile_with_its_age(shop, hub, tmp_path):
    online = RestOnlineStore(shop.url, KEY, timeout_s=0.5, failure_threshold=2, cooldown_s=60)
    hub.cache_profile("M0001", shop.api("/api/v1/customers/M0001"), format_ts(LATER - timedelta(minutes=20)))
    cards = []
    desk = ArrivalDesk(store=STORE, hub_store=hub, online=online, emit=cards.append, profile_ttl_s=900,
                       clock=lambda: LATER)
    shop.admin("POST", "/faults", {"down": True})
    for n in range(3):
        event = make_envelope(store=STORE, device="s001-k01", type="scan.member", seq=n + 1, now=LATER,
                              data={"session": f"s{n}", "member": "M0001", "jti": f"j{n}", "typ": "app"})
        started = time.monotonic()
        desk.handle(event)
        assert time.monotonic() - started < 2.0   # within the budget; once the circuit is open, at once
    assert [c["profile_source"] for c in cards] == ["cache"] * 3
    assert cards[0]["profile_age_s"] == 1200 and cards[0]["customer"]["first_name"] == "Jane"
    assert online.breaker_state == "open"


def test_activity_queued_while_the_store_is_down_arrives_once_after_it_returns(shop, hub, tmp_path):
    hub.cache_profile("M0001", shop.api("/api/v1/customers/M0001"), format_ts(LATER))
    ingest(hub, kiosk_events("M0001"))
    with hub.transaction() as db:
        close_visits(db.db, now=LATER + timedelta(hours=1), gap_s=1800)
    updates = OnlineUpdates(open_hub_db(tmp_path / "hub.db"))
    clock = [datetime.now(timezone.utc)]
    pusher = ActivityPusher(updates, RestOnlineStore(shop.url, KEY, background_timeout_s=1.0),
                            clock=lambda: clock[0])
    shop.admin("POST", "/faults", {"status": 503, "rate": 1.0})
    assert pusher.run_once() == 2 and pusher.counters["failed"] == 2      # the scan and the visit
    shop.admin("DELETE", "/faults")
    assert pusher.run_once() == 0                                          # not due yet: backing off
    clock[0] += timedelta(minutes=20)
    assert pusher.run_once() == 2 and pusher.counters["accepted"] == 2
    clock[0] += timedelta(minutes=20)
    assert pusher.run_once() == 0
    arrived = shop.api("/api/v1/activity", customer_id="M0001")["items"]
    assert sorted(item["type"] for item in arrived) == ["scan.product", "visit"]
    assert all(item["times_received"] == 1 for item in arrived)
    visit = next(item for item in arrived if item["type"] == "visit")
    assert visit["data"]["kiosks"] == ["s001-k01"]


# --- webhooks, through the hub's own web app

@pytest.fixture
def hub_app(tmp_path, shop):
    from hub.config import load_config
    from hub.service import Hub
    for name, text in (("api_key", KEY), ("webhook_secret", SECRET), ("mqtt", "unused")):
        (tmp_path / name).write_text(text + "\n")
    config = tmp_path / "hub.toml"
    config.write_text(f'store = "{STORE}"\ndemo = true\n[mqtt]\npassword_file = "{tmp_path / "mqtt"}"\n'
                      f'[db]\npath = "{tmp_path / "hub.db"}"\n'
                      f'[online]\nbase_url = "{shop.url}"\napi_key_file = "{tmp_path / "api_key"}"\n'
                      f'webhook_secret_file = "{tmp_path / "webhook_secret"}"\n')
    return Hub(load_config(config, environ={}))


def deliver(client, body: dict, *, secret=SECRET, at=None, tamper=None):
    raw = json.dumps(body).encode()
    headers = sign(secret, raw, at if at is not None else time.time())
    return client.post("/webhooks/online", data=tamper or raw, headers=headers, content_type="application/json")


def test_signed_webhooks_are_handled_once_and_forged_or_stale_ones_refused(hub_app):
    client = hub_app.app.test_client()
    event = {"id": "wh-1", "type": "customer.erased", "created_at": format_ts(LATER), "data": {"customer_id": "M0001"}}
    assert deliver(client, event).status_code == 200
    duplicate = deliver(client, event)
    assert duplicate.status_code == 200 and duplicate.get_json() == {"ok": True, "duplicate": True}
    forged = deliver(client, {**event, "id": "wh-2"}, secret="not-the-secret")
    stale = deliver(client, {**event, "id": "wh-3"}, at=time.time() - 3600)
    tampered = deliver(client, {**event, "id": "wh-4"}, tamper=json.dumps({**event, "id": "wh-4",
                                                                           "data": {"customer_id": "M0009"}}).encode())
    unsigned = client.post("/webhooks/online", data=json.dumps(event), content_type="application/json")
    assert [r.status_code for r in (forged, stale, tampered, unsigned)] == [401, 401, 401, 401]
    assert [r.get_json()["error"]["code"] for r in (forged, stale, tampered, unsigned)] == [
        "bad_signature", "stale", "bad_signature", "missing_signature"]
    assert dict(hub_app.webhook_counts) == {"accepted": 1, "duplicate": 1, "bad_signature": 2, "stale": 1,
                                            "missing_signature": 1}
    assert hub_app.sync._webhooks.qsize() == 1   # only the first delivery reaches sync
    csrf_free = client.get("/login")
    assert csrf_free.status_code == 200           # the rest of the app still wants its CSRF and sign-in
