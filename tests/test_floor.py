"""The shop floor's data: a resumable feed, claims, help, notes, the audited customer view, search, sending to
the online cart or wishlist, the fleet's health and IT's commands. Real hub database, real demo online store."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from test_connector import KEY, DemoShop

from demo import seed
from demo.catalog_feed import catalog_feed
from hub.activity import track
from hub.catalog import HubCatalog
from hub.floor import Floor, FloorError, device_health, it_room, mask_email, mask_phone, store_room
from hub.offers import OfferEngine
from hub.online import RestOnlineStore
from hub.online_updates import CartPusher, OnlineUpdates
from hub.profiles import ProfileSource
from hub.store import HubStore, open_hub_db
from protocol.envelope import format_ts, make_envelope

STORE = "s001"
NOW = datetime.now(timezone.utc)


@pytest.fixture
def shop():
    served = DemoShop()
    yield served
    served.close()


class Emitted(list):
    def __call__(self, event, payload, room):
        self.append((event, payload, room))


@pytest.fixture
def floor(tmp_path, shop):
    hub = HubStore(open_hub_db(tmp_path / "hub.db"))
    catalog = HubCatalog(open_hub_db(tmp_path / "hub.db"))
    catalog.apply_feed(catalog_feed(seed.build()))
    online = RestOnlineStore(shop.url, KEY)
    updates = OnlineUpdates(open_hub_db(tmp_path / "hub.db"))
    published = []
    floor = Floor(store=STORE, hub_store=hub, catalog=catalog, online=online, updates=updates,
                  pusher=CartPusher(updates, online), profiles=ProfileSource(hub_store=hub, online=online, ttl_s=900),
                  engine=OfferEngine.from_file(None), offers_secret=b"s" * 32, emit=Emitted(),
                  publish_command=lambda device, payload: published.append((device, json.loads(payload))) or True)
    floor.published = published
    return floor


def check_in(floor, member="M0001", device="s001-k01", session="s1"):
    """What the hub does when a member checks in: the events stored and tracked, the profile cached, the card."""
    hub = floor.hub_store
    profile = floor.online.customer(member)
    hub.cache_profile(member, profile, format_ts(NOW))
    events = [make_envelope(store=STORE, device=device, type="session.started", seq=1, data={"session": session},
                            now=NOW),
              make_envelope(store=STORE, device=device, type="scan.member", seq=2, now=NOW,
                            data={"session": session, "member": member, "jti": f"j-{session}", "typ": "app"})]
    ingest(hub, events)
    consent = profile["consent"]["clienteling"]
    arrival_id = hub.add_arrival(event_id=events[1].id, store=STORE, device=device,
                                 customer_id=member if consent else "", jti=f"j-{session}", scanned_at=events[1].ts,
                                 late=False, payload={})
    card = {"id": arrival_id, "event_id": events[1].id, "kiosk": device, "consent": consent,
            "customer": {"id": member, "first_name": profile["first_name"]} if consent else None, "flags": []}
    return floor.arrival(card), events


def ingest(hub, events):
    with hub.transaction() as db:
        for event in events:
            db.insert_event(event, format_ts(NOW))
        track(db.db, events, store=STORE, now=NOW)


def kiosk_event(event_type, data, device="s001-k01", seq=10):
    return make_envelope(store=STORE, device=device, type=event_type, seq=seq, data=data, now=NOW)


def test_the_feed_resumes_after_the_last_id_with_every_item_once(floor):
    arrival, _ = check_in(floor)
    claim = floor.claim(arrival["arrival_id"], "maria")
    served = floor.serve(arrival["arrival_id"], "maria")
    assert [item["kind"] for item in floor.feed()] == ["arrival", "claim", "served"]
    assert [item["id"] for item in floor.feed(after=arrival["id"])] == [claim["id"], served["id"]]
    assert floor.feed(after=served["id"]) == []
    assert floor.feed(limit=2)[0]["id"] == claim["id"]       # the newest two, oldest first
    # What a tablet sees of the arrival now includes who helped.
    assert floor.feed()[0]["data"]["state"] == {"claimed_by": "maria", "served_by": "maria"}
    rooms = {room for _, _, room in floor.emit}
    assert rooms == {store_room(STORE)}


def test_a_claim_by_someone_else_is_refused(floor):
    arrival, _ = check_in(floor)
    floor.claim(arrival["arrival_id"], "maria")
    floor.claim(arrival["arrival_id"], "maria")          # claiming again yourself is fine
    with pytest.raises(FloorError) as refused:
        floor.claim(arrival["arrival_id"], "tom")
    assert refused.value.status == 409 and "maria" in refused.value.message
    with pytest.raises(FloorError) as missing:
        floor.claim(99999, "tom")
    assert missing.value.status == 404


def test_a_call_for_help_reaches_the_floor_once_with_the_members_first_name_and_can_be_answered(floor):
    arrival, _ = check_in(floor)
    help_call = kiosk_event("assist.requested", {"session": "s1", "gtin": seed.build().products[0]["gtin"],
                                                 "member": "M0001"})
    ingest(floor.hub_store, [help_call])
    floor.on_stored([help_call])
    floor.on_stored([help_call])   # a redelivery adds nothing
    assists = [i for i in floor.feed() if i["kind"] == "assist"]
    assert len(assists) == 1
    data = assists[0]["data"]
    assert (data["kiosk"], data["first_name"], data["arrival_id"]) == ("s001-k01", "Jane", arrival["arrival_id"])
    assert data["product"]["name"] == seed.build().products[0]["name"]
    answered = floor.answer_assist(data["assist_id"], "tom")
    assert answered["data"] == {"assist_id": data["assist_id"], "by": "tom"}
    assert [i for i in floor.feed() if i["kind"] == "assist"][0]["data"]["answered_by"] == "tom"


def test_what_a_checked_in_member_scans_shows_on_their_visit_but_nothing_of_a_member_without_consent(floor):
    arrival, _ = check_in(floor, "M0001", session="s1")
    check_in(floor, "M0002", device="s001-k02", session="s2")     # M0002 has no clienteling consent
    gtin = seed.build().products[1]["gtin"]
    scans = [kiosk_event("scan.product", {"session": "s1", "gtin": gtin, "source": "ean13"}),
             kiosk_event("scan.product", {"session": "s2", "gtin": gtin, "source": "ean13"}, device="s001-k02")]
    ingest(floor.hub_store, scans)
    floor.on_stored(scans)
    activity = [i for i in floor.feed() if i["kind"] == "activity"]
    assert [(i["customer_id"], i["data"]["product"]["gtin"]) for i in activity] == [("M0001", gtin)]
    visit = floor.customer("M0001", viewer="maria", device="Tablet A")["visit"]
    assert visit["arrival_id"] == arrival["arrival_id"] and visit["activity"][0]["type"] == "scan.product"
    private = floor.customer("M0002", viewer="maria", device="Tablet A")
    assert private == {**private, "consent": False, "customer": None, "orders": [], "notes": [], "visit": None}


def test_the_customer_view_is_audited_and_says_why_each_offer_applies(floor):
    check_in(floor)
    view = floor.customer("M0001", viewer="maria", device="Tablet A")
    assert view["customer"]["last_name"] == "Cooper" and view["orders"]
    assert view["offers"] and all(offer["reason"] and offer["code"] for offer in view["offers"])
    stock = floor.catalog.stock_here([item["gtin"] for item in view["wishlist"]], STORE)
    assert view["wishlist"] and [item["here"] is not None for item in view["wishlist"]] == [
        item["gtin"] in stock for item in view["wishlist"]]
    (entry,) = [e for e in floor.audit_log() if e["action"] == "view_customer"]
    assert (entry["actor"], entry["subject"], entry["device"]) == ("maria", "M0001", "Tablet A")
    assert floor.customer("M9999", viewer="maria", device="x") is None


def test_notes_are_kept_as_typed_and_shown_newest_first(floor):
    check_in(floor)
    floor.add_note("M0001", "maria", "Prefers size 38")
    floor.add_note("M0001", "tom", "<img src=x onerror=alert(1)>")
    assert [n["text"] for n in floor.notes("M0001")] == ["<img src=x onerror=alert(1)>", "Prefers size 38"]
    with pytest.raises(FloorError):
        floor.add_note("M0001", "maria", " ")
    with pytest.raises(FloorError) as private:
        check_in(floor, "M0002", session="s2")
        floor.add_note("M0002", "maria", "no")
    assert private.value.status == 403


def test_staff_send_a_product_to_the_members_online_wishlist_and_cart_once(floor, shop):
    check_in(floor)
    gtin = next(p["gtin"] for p in seed.build().products
                if p["gtin"] not in {w["gtin"] for w in shop.api("/api/v1/customers/M0001")["wishlist"]})
    assert floor.send_to_online("M0001", gtin, "wishlist", "maria")["status"] == "added"
    assert floor.send_to_online("M0001", gtin, "cart", "maria")["status"] == "added"
    profile = shop.api("/api/v1/customers/M0001")
    assert [w["gtin"] for w in profile["wishlist"]].count(gtin) == 1
    assert [line["gtin"] for line in profile["cart"]["items"]].count(gtin) == 1
    with pytest.raises(FloorError):
        floor.send_to_online("M0001", "00000000000000", "cart", "maria")


def test_search_finds_a_walk_in_and_masks_contact_details(floor, shop):
    (jane,) = floor.search("cooper", viewer="maria")
    assert (jane["id"], jane["first_name"]) == ("M0001", "Jane")
    assert jane["email"] == "ja•••@example.com" and jane["phone"].endswith("678") and "612" not in jane["phone"]
    check_in(floor)
    shop.admin("POST", "/faults", {"status": 503})
    (cached,) = floor.search("Cooper", viewer="maria")   # the online store is down: the hub's copy answers
    assert cached["id"] == "M0001"
    assert mask_email("x") is None and mask_phone("12") is None


def test_device_health_raises_alerts_for_a_device_offline_too_long_or_an_old_outbox():
    now = datetime(2026, 11, 29, 10, 0, tzinfo=timezone.utc)
    report = {"outbox": {"depth": 40, "oldest_age_s": 420}, "scan": {"camera": "lost"}, "disk_free_mb": 200,
              "cpu_temp_c": 82.0}
    row = {"id": "s001-k01", "state": "offline", "status_ts": format_ts(now - timedelta(minutes=3)),
           "last_seen": format_ts(now - timedelta(minutes=3)), "telemetry": json.dumps(report)}
    kinds = [a["kind"] for a in device_health(row, now)["alerts"]]
    assert kinds == ["offline", "outbox", "camera", "disk", "temperature"]
    fine = {"id": "s001-k02", "state": "online", "last_seen": format_ts(now),
            "telemetry": json.dumps({"outbox": {"depth": 0, "oldest_age_s": 0}, "scan": {"camera": "ok"}})}
    assert device_health(fine, now)["alerts"] == []
    just_gone = {**row, "status_ts": format_ts(now - timedelta(seconds=30)), "telemetry": None}
    assert device_health(just_gone, now)["alerts"] == []   # under two minutes: not yet an alert


def test_it_sends_a_command_and_sees_its_result(floor):
    floor.hub_store.update_device_status("s001-k01", STORE, {"state": "online", "session": 1}, format_ts(NOW))
    sent = floor.send_command("s001-k01", "screen.message", {"text": "Closing soon", "seconds": 30}, "ivan")
    (device, payload), = floor.published
    assert device == "s001-k01" and payload["id"] == sent["command_id"] and payload["command"] == "screen.message"
    for bad in (("s001-k09", "restart", {}), ("s001-k01", "self.destruct", {}), ("s001-k01", "screen.message", {})):
        with pytest.raises(FloorError):
            floor.send_command(*bad, "ivan")
    result = kiosk_event("command.result", {"command_id": sent["command_id"], "ok": True, "command": "screen.message",
                                            "result": {"shown_until": "x"}})
    floor.on_stored([result])
    got = floor.command_result(sent["command_id"])
    assert got["result"]["ok"] is True and got["sent_by"] == "ivan"
    assert ("command_result", got, it_room(STORE)) in floor.emit
    assert any(e["action"] == "command" and e["actor"] == "ivan" for e in floor.audit_log())


def test_a_member_without_consent_is_only_a_match_in_search(floor):
    (private,) = floor.search("M0002", viewer="maria")
    assert private == {"id": None, "first_name": None, "last_name": None, "tier": None, "email": None,
                       "phone": None, "consent": False}


def test_the_member_view_lists_the_visits_calls_for_help(floor):
    arrival, _ = check_in(floor)
    help_call = kiosk_event("assist.requested", {"session": "s1", "member": "M0001"})
    ingest(floor.hub_store, [help_call])
    floor.on_stored([help_call])
    (call,) = floor.customer("M0001", viewer="maria", device="Tablet A")["visit"]["assists"]
    assert (call["kiosk"], call["answered_by"]) == ("s001-k01", None)
    floor.answer_assist(call["assist_id"], "tom")
    (call,) = floor.customer("M0001", viewer="maria", device="Tablet A")["visit"]["assists"]
    assert call["answered_by"] == "tom"


def test_with_a_fleet_file_it_sees_every_expected_device_and_which_report_without_being_expected(floor):
    from hub.roster import parse_roster
    floor.roster = parse_roster({"store": STORE, "devices": [{"id": "s001-k01", "location": "Entrance"},
                                                             {"id": "s001-k02", "location": "Shoes, aisle 4"}]},
                                source="fleet.toml", base=Path("."), store=STORE)
    floor.hub_store.update_device_status("s001-k01", STORE, {"state": "online", "session": 1}, format_ts(NOW))
    floor.hub_store.update_device_status("s001-k07", STORE, {"state": "online", "session": 1}, format_ts(NOW))
    devices = {d["id"]: d for d in floor.devices()}
    assert [(d, devices[d]["state"], devices[d]["location"]) for d in sorted(devices)] == [
        ("s001-k01", "online", "Entrance"), ("s001-k02", "never_seen", "Shoes, aisle 4"), ("s001-k07", "online", None)]
    assert [a["kind"] for a in devices["s001-k02"]["alerts"]] == ["never_seen"]
    assert [a["kind"] for a in devices["s001-k07"]["alerts"]] == ["not_in_fleet"]
    with pytest.raises(FloorError) as never:
        floor.send_command("s001-k02", "catalog.resync", {}, "ivan")
    assert never.value.status == 409 and floor.published == []
