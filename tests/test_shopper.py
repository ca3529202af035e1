"""What a shopper's scans become: events in a real outbox file, and what the screen shows."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from demo.issuer import Issuer
from edge_agent.outbox import Outbox, open_device_db
from kiosk.decode import Code
from kiosk.scanner import Debouncer
from kiosk.shopper import Shopper
from protocol.tokens import KeySet

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=timezone.utc)
JANE = {"id": "M0001", "first_name": "Jane", "tier": "Gold", "points": 4088}


@pytest.fixture
def issuer():
    return Issuer(Ed25519PrivateKey.generate())


@pytest.fixture
def kiosk(tmp_path, issuer):
    outbox = Outbox(open_device_db(tmp_path / "outbox.db"), store="s001", device="s001-k01", clock=lambda: NOW)
    screens: list[dict] = []
    shopper = Shopper(outbox=outbox, keys=KeySet.from_jwks(issuer.jwks()), screen=screens.append,
                      idle_timeout_s=30, wall_clock=lambda: NOW)
    return shopper, outbox, screens


def events(outbox):
    return [(e.type, json.loads(e.body)["data"]) for e in outbox.peek(0, 100)]


def test_member_scan_starts_a_session_and_shows_only_first_name_tier_points(kiosk, issuer):
    shopper, outbox, screens = kiosk
    shopper.scan(Code("qr", issuer.mint(JANE, now=NOW)), now=0.0)
    (t1, started), (t2, member) = events(outbox)
    assert (t1, t2) == ("session.started", "scan.member")
    assert member["member"] == "M0001" and member["session"] == started["session"] and member["typ"] == "app"
    view = screens[-1]
    assert {k: view[k] for k in ("view", "first_name", "tier", "points")} == {
        "view": "member", "first_name": "Jane", "tier": "Gold", "points": 4088}
    # Nothing else about the member ever reaches the screen: only offers and what is in stock here.
    assert set(view) == {"view", "first_name", "tier", "points", "offers", "offers_note", "wishlist_here"}


def test_events_are_on_disk_before_the_screen_changes(kiosk, issuer, tmp_path):
    shopper, outbox, screens = kiosk
    seen_on_disk = []
    shopper.screen = lambda view: seen_on_disk.append(
        open_device_db(tmp_path / "outbox.db").execute("SELECT count(*) FROM outbox").fetchone()[0])
    shopper.scan(Code("ean13", "4006381333931"), now=0.0)
    assert seen_on_disk == [2]


def test_product_scan_is_normalised_to_gtin14(kiosk):
    shopper, outbox, screens = kiosk
    shopper.scan(Code("ean13", "4006381333931"), now=0.0)
    assert events(outbox)[-1] == ("scan.product", {"session": events(outbox)[0][1]["session"],
                                                   "gtin": "04006381333931", "source": "ean13"})
    assert screens[-1]["view"] == "product" and screens[-1]["gtin"] == "04006381333931"


@pytest.mark.parametrize("code, reason, kind", [
    (Code("qr", "https://evil.example/win-a-prize"), "foreign_url", "code"),
    (Code("ean13", "4006381333932"), "bad_check_digit", "code"),
    (Code("qr", "hello"), "unknown_format", "code"),
])
def test_rejected_codes_carry_the_reason_never_the_payload(kiosk, code, reason, kind):
    shopper, outbox, screens = kiosk
    shopper.scan(code, now=0.0)
    (event_type, data), = events(outbox)
    assert event_type == "scan.rejected" and data == {"reason": reason, "kind": kind, "symbology": code.symbology}
    assert code.text not in json.dumps(events(outbox)) and screens[-1]["view"] == "rejected"


def test_expired_token_is_rejected_with_a_friendly_message(kiosk, issuer):
    shopper, outbox, screens = kiosk
    shopper.scan(Code("qr", issuer.mint(JANE, now=NOW - timedelta(minutes=5))), now=0.0)
    assert events(outbox) == [("scan.rejected", {"reason": "expired", "kind": "member_token", "symbology": "qr"})]
    assert "expired" in screens[-1]["message"]


def test_app_token_reused_after_its_session_ended_is_a_replay(kiosk, issuer):
    shopper, outbox, screens = kiosk
    token = issuer.mint(JANE, now=NOW)
    shopper.scan(Code("qr", token), now=0.0)
    shopper.end_session("done")
    shopper.scan(Code("qr", token), now=10.0)
    assert events(outbox)[-1][1]["reason"] == "replayed"


def test_session_ends_after_idle_timeout_and_screen_forgets(kiosk):
    shopper, outbox, screens = kiosk
    shopper.scan(Code("ean13", "4006381333931"), now=0.0)
    shopper.tick(now=29.0)
    assert shopper.session is not None
    shopper.tick(now=31.0)
    assert shopper.session is None and screens[-1] == {"view": "idle"}
    assert events(outbox)[-1][0] == "session.ended" and events(outbox)[-1][1]["reason"] == "idle"


def test_seq_keeps_rising_across_restarts_even_when_the_outbox_was_emptied(tmp_path):
    path = tmp_path / "outbox.db"
    first = Outbox(open_device_db(path), store="s001", device="s001-k01")
    for n in range(3):
        first.append("session.started", {"session": str(n)})
    first.settle([(1, 3)])  # the hub's receipt covered all three
    assert first.stats()["depth"] == 0
    again = Outbox(open_device_db(path), store="s001", device="s001-k01")
    assert again.append("session.started", {"session": "x"}).seq == 4


def test_a_code_held_in_view_acts_once_and_again_after_it_left():
    debouncer = Debouncer(window_s=3.0)
    code = Code("qr", "x")
    acted = [bool(debouncer.fresh([code], now=t / 10)) for t in range(0, 100)]  # held for 10 s at 10 fps
    assert acted.count(True) == 1
    assert debouncer.fresh([code], now=14.0) == [code]  # gone for 4 s, then shown again


def test_a_barcode_read_in_one_frame_only_is_not_a_scan_but_two_frames_are():
    from kiosk.scanner import Scanner
    scanner = Scanner(debounce_s=3.0, confirm_window_s=1.0)
    ean, misread = Code("ean13", "4006381333931"), Code("ean13", "4006381333924")
    assert scanner.scans([ean, misread], now=0.0) == []
    assert scanner.scans([ean], now=0.1) == [ean]
    assert scanner.scans([misread], now=2.0) == []  # the one-off misread came back too late to confirm


def test_a_member_qr_acts_on_the_first_frame():
    from kiosk.scanner import Scanner
    qr = Code("qr", "eyJhbGciOiJFZERTQSJ9.e30.sig")
    assert Scanner(debounce_s=3.0, confirm_window_s=1.0).scans([qr], now=0.0) == [qr]


@pytest.fixture
def catalog(tmp_path):
    from demo import seed
    from demo.catalog_feed import catalog_feed
    from edge_agent.catalog import CatalogCache
    cache = CatalogCache(open_device_db(tmp_path / "catalog.db"))
    feed = catalog_feed(seed.build())
    cache.replace_all(**feed)
    return cache, feed


def shop_with_catalog(tmp_path, issuer, catalog, hub=None):
    outbox = Outbox(open_device_db(tmp_path / "outbox2.db"), store="s001", device="s001-k01", clock=lambda: NOW)
    screens, notices = [], []
    shopper = Shopper(outbox=outbox, keys=KeySet.from_jwks(issuer.jwks()), screen=screens.append, catalog=catalog,
                      hub=hub, notice=lambda kind, text: notices.append(kind), wall_clock=lambda: NOW)
    return shopper, outbox, screens, notices


def ean13_of(gtin14: str) -> str:
    return gtin14[1:]


def test_product_screen_comes_from_the_local_catalog_with_stock_here_and_nearby(tmp_path, issuer, catalog):
    cache, feed = catalog
    shopper, outbox, screens, _ = shop_with_catalog(tmp_path, issuer, cache)
    product = next(p for p in feed["products"] if p["promotion"])
    shopper.scan(Code("ean13", ean13_of(product["gtin"])), now=0.0)
    view = screens[-1]
    assert view["known"] and view["name"] == product["name"] and view["price"] == product["price"]
    assert view["promotion"]["label"].startswith("-") and view["online_qr"].startswith("data:image/svg+xml")
    assert set(view["stock"]) == {"here", "nearby", "online"} and view["member"] is None
    assert view["can_send_to_cart"] is False


def test_unknown_product_is_said_plainly_and_still_recorded(tmp_path, issuer, catalog):
    shopper, outbox, screens, _ = shop_with_catalog(tmp_path, issuer, catalog[0])
    shopper.scan(Code("ean13", "4006381333931"), now=0.0)
    assert screens[-1]["known"] is False and events(outbox)[-1][0] == "scan.product"


def test_member_without_hub_sees_offers_are_at_the_till(tmp_path, issuer, catalog):
    from kiosk.hub_requests import HubRequests
    unreachable = HubRequests("http://127.0.0.1:9", timeout_s=0.2)  # nothing listens on the discard port
    shopper, outbox, screens, _ = shop_with_catalog(tmp_path, issuer, catalog[0], hub=unreachable)
    shopper.scan(Code("qr", issuer.mint(JANE, now=NOW)), now=0.0)
    assert screens[-1]["offers"] == [] and "till" in screens[-1]["offers_note"]
    assert unreachable.counters["failed"] == 1


def test_member_and_product_in_one_session_can_send_to_the_online_cart(tmp_path, issuer, catalog):
    cache, feed = catalog
    shopper, outbox, screens, notices = shop_with_catalog(tmp_path, issuer, cache)
    gtin = feed["products"][0]["gtin"]
    shopper.scan(Code("qr", issuer.mint(JANE, now=NOW)), now=0.0)
    shopper.scan(Code("ean13", ean13_of(gtin)), now=1.0)
    assert screens[-1]["can_send_to_cart"] and screens[-1]["member"] == {"first_name": "Jane", "tier": "Gold"}
    shopper.send_to_cart(gtin, now=2.0)
    shopper.request_assistance(gtin, now=3.0)
    (t1, cart), (t2, assist) = events(outbox)[-2:]
    assert (t1, cart["gtin"], cart["member"]) == ("cart.sent", gtin, "M0001")
    assert (t2, assist["gtin"]) == ("assist.requested", gtin) and notices == ["cart", "assist"]


def test_send_to_cart_without_a_member_is_refused(tmp_path, issuer, catalog):
    shopper, outbox, screens, notices = shop_with_catalog(tmp_path, issuer, catalog[0])
    shopper.send_to_cart("04006381333931", now=0.0)
    assert events(outbox) == [] and notices == ["error"]


def test_member_welcome_from_the_hub_gets_till_codes(tmp_path, issuer, catalog):
    import threading

    from flask import Flask, jsonify, request
    from werkzeug.serving import make_server

    from kiosk.hub_requests import HubRequests
    app = Flask("agent-stand-in")
    asked = []

    @app.post("/v1/requests")
    def answer():
        asked.append(request.get_json())
        return jsonify(ok=True, result={"offers": [{"id": "o1", "title": "10% off knitwear", "text": "Gold only",
                                                    "code": "GOLD10"}],
                                        "wishlist_here": [{"name": "Merino Cardigan", "location": "aisle 3"}]})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        hub = HubRequests(f"http://127.0.0.1:{server.server_port}", timeout_s=2)
        shopper, outbox, screens, _ = shop_with_catalog(tmp_path, issuer, catalog[0], hub=hub)
        shopper.scan(Code("qr", issuer.mint(JANE, now=NOW)), now=0.0)
    finally:
        server.shutdown()
    view = screens[-1]
    assert view["offers"][0]["code"] == "GOLD10" and view["offers"][0]["code_qr"].startswith("data:image/svg")
    assert view["offers_note"] is None and view["wishlist_here"] == [{"name": "Merino Cardigan", "location": "aisle 3"}]
    assert asked == [{"method": "member.welcome", "params": {"member": "M0001"}, "timeout_s": 2}]
    # What was shown is recorded, so the online store learns which offers the member saw here.
    shown = [data for event_type, data in events(outbox) if event_type == "offer.shown"]
    assert [(d["offer"], d["member"]) for d in shown] == [("o1", "M0001")]
