"""The real pages of a whole demo store in real (headless) Chromium: staff sign in and see a check-in arrive
live; the kiosk greets the member. The staff app's own screens are tested in test_staff_app.py."""

from __future__ import annotations

import json

import pytest

from browser import Browser
from conftest import demo_cli
from demo import seed

MEMBERS = [c for c in seed.build().customers if c["consent"]["clienteling"] and c["id"] not in ("M0001", "M0003")]


@pytest.fixture
def browser():
    browser = Browser(1280, 800)
    yield browser
    browser.close()


def test_staff_sign_in_then_a_check_in_appears_live_without_reload(store, browser, tmp_path):
    member = MEMBERS[0]
    browser.goto(store.hub_url)
    assert browser.evaluate("location.pathname") == "/login"
    browser.type("#password-form [name=username]", "demo")
    browser.type("#password-form [name=password]", "demo")
    browser.click("#password-form button[type=submit]")
    browser.wait_for("location.pathname === '/' && document.getElementById('conn')?.dataset.state === 'live'")
    marker = browser.evaluate("window.__omnikioskMarker = Math.random()")  # proves no reload happens
    assert demo_cli(store, "checkin", member["id"], "--kiosk", "s001-k02").returncode == 0
    name = f"{member['first_name']} {member['last_name']}"
    browser.wait_for(f"document.body.innerText.includes({json.dumps(name)})", timeout=30)
    assert browser.evaluate("window.__omnikioskMarker") == marker
    card = browser.evaluate(f"""Array.from(document.querySelectorAll('.card'))
        .find(c => c.innerText.includes({json.dumps(name)})).innerText""")
    assert "s001-k02" in card and f"I’m helping {member['first_name']}" in card and "Open profile" in card
    browser.screenshot(tmp_path / "staff.png")
    assert not browser.csp_violations(), browser.errors()


def test_kiosk_greets_a_member_by_first_name_only(store, browser):
    member = MEMBERS[1]
    browser.goto(store.kiosk_url("s001-k01"))
    browser.wait_for("document.body.innerText.length > 0")
    assert demo_cli(store, "checkin", member["id"], "--kiosk", "s001-k01").returncode == 0
    browser.wait_for(f"document.body.innerText.includes({json.dumps(member['first_name'])})", timeout=30)
    text = browser.evaluate("document.body.innerText")
    assert member["last_name"] not in text and member["email"] not in text
    assert not [e for e in browser.errors() if "Content Security Policy" in e], browser.errors()


def test_kiosk_product_screen_after_a_real_scan_shows_catalog_price_and_stock(store, browser):
    from demo.catalog_feed import AISLES
    product = next(p for p in seed.build().products if p.get("compare_at_price"))  # what scan-product shows
    browser.goto(store.kiosk_url("s001-k02"))
    browser.wait_for("document.body.innerText.length > 0")
    result = demo_cli(store, "scan-product", "--kiosk", "s001-k02")
    assert result.returncode == 0, result.stderr
    browser.wait_for(f"document.body.innerText.includes({json.dumps(product['name'])})", timeout=30)
    text = browser.evaluate("document.body.innerText")
    assert f"{product['price']:.2f}".replace(".", ",") in text or f"{product['price']:.2f}" in text
    assert AISLES[product["category"]].split(" · ")[1] in text  # where it is in this store
    assert not [e for e in browser.errors() if "Content Security Policy" in e], browser.errors()
