"""A whole demo store as real processes: a member QR shown to a kiosk camera reaches a signed-in staff tablet."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import requests
import socketio
from conftest import demo_cli, wait_for

from demo.store import DemoStore


def signed_in(store: DemoStore, username="demo", password="demo") -> requests.Session:
    http = requests.Session()
    page = http.get(store.hub_url + "login", timeout=5)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    response = http.post(store.hub_url + "login", data={"username": username, "password": password,
                                                        "csrf_token": token}, timeout=5, allow_redirects=False)
    assert response.status_code == 302, response.text
    return http


def staff_socket(store: DemoStore, http: requests.Session | None):
    arrivals: list[dict] = []
    client = socketio.Client(reconnection=False)
    client.on("floor", lambda item: arrivals.append({**item["data"], "id": item["arrival_id"]})
              if item.get("kind") == "arrival" else None, namespace="/staff")
    cookie = "; ".join(f"{c.name}={c.value}" for c in http.cookies) if http else ""
    client.connect(store.hub_url, namespaces=["/staff"], headers={"Cookie": cookie} if cookie else {},
                   transports=["websocket"], wait_timeout=5)
    return client, arrivals


def test_member_qr_at_kiosk_reaches_signed_in_staff_with_online_history(store, tmp_path):
    client, arrivals = staff_socket(store, signed_in(store))
    try:
        qr = tmp_path / "jane.png"
        assert demo_cli(store, "member-qr", "M0001", "--out", str(qr)).returncode == 0
        shown = demo_cli(store, "show", "--kiosk", "s001-k01", "--seconds", "2", str(qr))
        assert shown.returncode == 0, shown.stderr
        wait_for(lambda: arrivals, timeout=30, what="an arrival on the staff socket")
    finally:
        client.disconnect()
    card = arrivals[0]
    assert card["kiosk"] == "s001-k01" and card["late"] is False and card["consent"] is True
    assert card["customer"]["id"] == "M0001"
    assert (card["customer"]["first_name"], card["customer"]["last_name"]) == ("Jane", "Cooper")
    assert card["customer"]["tier"] == "Gold" and card["customer"]["points"] > 0
    pickup = [o for o in card["orders"] if o["ready_here"]]
    assert [o["number"] for o in pickup] == ["#1043"] and len(pickup[0]["items"]) == 2
    assert card["flags"][0]["kind"] == "pickup" and "#1043" in card["flags"][0]["text"]
    assert card["wishlist"] and card["cart"]["items"] and card["recently_viewed"]
    # Fetched from the online store by the arrival desk, or found fresh in the hub's cache (the hub's
    # answer to a kiosk's member.welcome fetches it too): younger than profile.ttl_s (900 s by default).
    assert card["profile_source"] == "online" or (card["profile_source"] == "cache" and card["profile_age_s"] < 900)
    assert len(arrivals) == 1, "holding the QR for two seconds must be one check-in"


def test_staff_socket_is_refused_without_a_signed_in_session(store):
    with pytest.raises(socketio.exceptions.ConnectionError):
        staff_socket(store, None)


def test_staff_pages_and_api_require_sign_in(store):
    anonymous = requests.Session()
    assert anonymous.get(store.hub_url, timeout=5, allow_redirects=False).status_code == 302
    assert anonymous.get(store.hub_url + "api/arrivals", timeout=5).status_code == 401


def test_login_without_csrf_token_is_refused(store):
    response = requests.post(store.hub_url + "login", data={"username": "demo", "password": "demo"}, timeout=5)
    assert response.status_code == 400


def test_wrong_password_is_refused_and_repeated_failures_lock_out(store):
    http = requests.Session()
    statuses = []
    for _ in range(6):
        page = http.get(store.hub_url + "login", timeout=5)
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        statuses.append(http.post(store.hub_url + "login", timeout=5, data={
            "username": "nobody", "password": "wrong", "csrf_token": token}).status_code)
    assert statuses[:5] == [401] * 5 and statuses[5] == 429


def test_an_expired_member_token_is_rejected_at_the_kiosk_and_never_reaches_staff(store, tmp_path):
    from datetime import datetime, timedelta, timezone

    from demo import seed
    from demo.issuer import Issuer, qr_png
    client, arrivals = staff_socket(store, signed_in(store))
    try:
        issuer = Issuer.load_or_create(store.issuer_key)
        member = next(c for c in seed.build().customers if c["id"] == "M0003")
        stale = issuer.mint(member, now=datetime.now(timezone.utc) - timedelta(minutes=10))
        image = qr_png(stale, tmp_path / "stale.png")
        assert demo_cli(store, "show", "--kiosk", "s001-k02", "--seconds", "1.5", str(image)).returncode == 0
        hub_db = store.root / "hub" / "hub.db"
        wait_for(lambda: _rejections(hub_db, "s001-k02"), timeout=30, what="the scan.rejected event at the hub")
    finally:
        client.disconnect()
    assert _rejections(hub_db, "s001-k02") == [{"reason": "expired", "kind": "member_token", "symbology": "qr"}]
    assert arrivals == []


def _rejections(db_path: Path, device: str) -> list[dict]:
    import json
    import sqlite3
    with sqlite3.connect(db_path) as conn:
        rows = conn.execute("SELECT data FROM events WHERE type = 'scan.rejected' AND device = ?", [device]).fetchall()
    return [{k: v for k, v in json.loads(r[0]).items() if k != "session"} for r in rows]


def kiosk_screens(store, device):
    screens: list[dict] = []
    client = socketio.Client(reconnection=False)
    client.on("screen", screens.append)
    client.connect(store.kiosk_url(device), transports=["websocket"], wait_timeout=5)
    return client, screens


def test_product_barcode_at_the_kiosk_shows_the_catalog_answer_and_reaches_the_hub(store, tmp_path):
    import cv2
    from barcodes import ean13_image, place_on_canvas

    from demo import seed
    product = next(p for p in seed.build().products if p["gtin"].startswith("0"))
    image = tmp_path / "label.png"
    cv2.imwrite(str(image), place_on_canvas(ean13_image(product["gtin"][1:]), 640, 480))
    client, screens = kiosk_screens(store, "s001-k02")
    try:
        assert demo_cli(store, "show", "--kiosk", "s001-k02", "--seconds", "2", str(image)).returncode == 0
        view = wait_for(lambda: next((s for s in screens if s.get("view") == "product"), None), timeout=30,
                        what="the product screen")
    finally:
        client.disconnect()
    assert view["known"] and view["name"] == product["name"] and view["price"] == product["price"]
    assert view["stock"]["here"]["location"]  # the aisle, from the store's catalog
    hub_db = store.root / "hub" / "hub.db"
    wait_for(lambda: _events(hub_db, "scan.product", product["gtin"]), timeout=30, what="scan.product at the hub")


def test_demo_scan_product_shows_a_digital_link_product(store):
    client, screens = kiosk_screens(store, "s001-k01")
    try:
        result = demo_cli(store, "scan-product", "--kiosk", "s001-k01")
        assert result.returncode == 0, result.stderr
        view = wait_for(lambda: next((s for s in screens if s.get("view") == "product"), None), timeout=30,
                        what="the product screen")
    finally:
        client.disconnect()
    assert view["known"] and view["promotion"] and view["online_qr"].startswith("data:image/svg+xml")


def _events(db_path: Path, event_type: str, gtin: str) -> list:
    import sqlite3
    with sqlite3.connect(db_path) as conn:
        return conn.execute("SELECT id FROM events WHERE type = ? AND json_extract(data, '$.gtin') = ?",
                            [event_type, gtin]).fetchall()
