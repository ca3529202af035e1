"""The staff tablet app over real HTTP, real Socket.IO and real (headless) Chromium: sign-in with a password or,
on a registered tablet, a PIN; idle sign-out that also hangs up live sockets; CSRF; roles; the live floor
(arrivals, claims seen by every tablet, help, notes, resume after a lost connection); the audited member
view; the fleet view; and text from customers shown as text, never run.

A light hub runs in this process: the real web app and Floor over a temporary hub database, the demo online
store on a real socket, and a clock the tests move to make a session idle.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import requests
import socketio
from conftest import wait_for
from test_connector import KEY, DemoShop
from test_floor import ingest
from werkzeug.serving import make_server

import hub.config
from browser import Browser
from demo import seed
from demo.catalog_feed import catalog_feed
from demo.store import STORE_NAME
from hub import staff as staff_rules
from hub.arrivals import ArrivalDesk
from hub.catalog import HubCatalog
from hub.floor import Floor
from hub.offers import OfferEngine
from hub.online import RestOnlineStore
from hub.online_updates import CartPusher, OnlineUpdates
from hub.profiles import ProfileSource
from hub.store import HubStore, open_hub_db
from hub.web import STAFF_NAMESPACE, TABLET_COOKIE, create_app, it_room, store_room
from protocol.envelope import format_ts, make_envelope
from protocol.settings import parse

STORE = "s001"
DATA = seed.build()
PROFILES = {c["id"]: c for c in DATA.customers}
STAFF = {"ann": ("associate", "ann-password-1"), "maria": ("manager", "maria-password-1"),
         "ivan": ("it", "ivan-password-1")}
PINS = {"ann": "4826", "maria": "7391"}
XSS_IMG = '<img src=x onerror="window.__xss=1;alert(1)">'
XSS_SCRIPT = "<script>window.__xss=2;alert(2)</script>"
SCREENSHOTS = os.environ.get("OMNIKIOSK_SCREENSHOTS")  # a folder: the screen tests also write docs/screenshots there


class Clock:
    """The web app's idle clock: real time plus however far a test moved it."""

    def __init__(self):
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


class LightHub:
    """The staff web app, Floor and arrival desk of one store over a temporary hub database."""

    def __init__(self, folder: Path, shop: DemoShop, *, idle_min: int = 15, store_name: str = STORE_NAME):
        path = folder / "hub.db"
        self.store = HubStore(open_hub_db(path))
        self.catalog = HubCatalog(open_hub_db(path))
        self.catalog.apply_feed(catalog_feed(DATA))
        online = RestOnlineStore(shop.url, KEY)
        updates = OnlineUpdates(open_hub_db(path))
        self.published: list[tuple[str, dict]] = []
        self.clock = Clock()
        self.floor = Floor(store=STORE, hub_store=self.store, catalog=self.catalog, online=online, updates=updates,
                           pusher=CartPusher(updates, online),
                           profiles=ProfileSource(hub_store=self.store, online=online, ttl_s=900),
                           engine=OfferEngine.from_file(None), offers_secret=b"s" * 32, emit=self._emit,
                           publish_command=self._publish)
        self.desk = ArrivalDesk(store=STORE, hub_store=self.store, online=online, emit=self.floor.arrival,
                                stock_here=self.catalog.stock_here)
        config = parse(hub.config.SETTINGS, {
            "store": STORE, "store_name": store_name, "demo": True, "mqtt": {"password_file": "unused"},
            "online": {"base_url": shop.url, "api_key_file": "unused"}, "web": {"idle_timeout_min": idle_min}},
            {}, source="test")
        self.app, self.socketio = create_app(config, hub_store=self.store, secret_key="k" * 32, floor=self.floor,
                                             clock=self.clock)
        for username, (role, password) in STAFF.items():
            self.store.add_staff(username, staff_rules.hash_password(password), role, STORE)
        for username, pin in PINS.items():
            self.store.set_staff_pin(username, staff_rules.hash_pin(pin))
        self.http = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.url = f"http://127.0.0.1:{self.http.server_port}/"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()
        self._seq = 0

    def _emit(self, event, payload, room):
        self.socketio.emit(event, payload, namespace=STAFF_NAMESPACE, to=room)

    def _publish(self, device, payload):
        self.published.append((device, json.loads(payload)))
        return True

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()

    @property
    def sweep(self):
        return self.app.extensions["omnikiosk.sweep"]

    # --- what happens on the floor
    def event(self, event_type: str, data: dict, *, device: str = "s001-k01", at: datetime | None = None):
        self._seq += 1
        return make_envelope(store=STORE, device=device, type=event_type, seq=self._seq, data=data,
                             now=at or datetime.now(timezone.utc))

    def check_in(self, member: str = "M0001", *, device: str = "s001-k01", late: bool = False) -> dict:
        """A member shows their app at a kiosk: the events stored, the arrival card on the floor."""
        at = datetime.now(timezone.utc) - (timedelta(minutes=10) if late else timedelta(0))
        session = f"session-{self._seq + 1}"
        events = [self.event("session.started", {"session": session}, device=device, at=at),
                  self.event("scan.member", {"session": session, "member": member, "jti": f"jti-{session}",
                                             "typ": "app"}, device=device, at=at)]
        ingest(self.store, events)
        self.floor.on_stored(events)
        self.sessions = getattr(self, "sessions", {})
        self.sessions[member] = (session, device)
        return self.desk.handle(events[1])

    def kiosk(self, member: str, event_type: str, **data) -> None:
        """Something a checked-in member does at the kiosk (scan a product, ask for help)."""
        session, device = self.sessions[member]
        event = self.event(event_type, {"session": session, "member": member, **data}, device=device)
        ingest(self.store, [event])
        self.floor.on_stored([event])

    def device_reports(self, device: str, *, state: str = "online", telemetry: dict | None = None,
                       seen: datetime | None = None) -> None:
        seen_ts = format_ts(seen or datetime.now(timezone.utc))
        self.store.update_device_status(device, STORE, {"state": state, "session": 1, "version": "0.1.0",
                                                        "ts": seen_ts}, seen_ts)
        if telemetry:
            self.store.update_device_telemetry(device, STORE, {"ts": seen_ts, **telemetry}, seen_ts)


@pytest.fixture(scope="module")
def shop():
    served = DemoShop()
    yield served
    served.close()


@pytest.fixture
def light(tmp_path, shop):
    hub_ = LightHub(tmp_path, shop)
    yield hub_
    hub_.close()


# --- helpers: people signing in

def csrf_of(page: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def sign_in(light: LightHub, username: str, password: str | None = None, http: requests.Session | None = None
            ) -> requests.Session:
    http = http or requests.Session()
    token = csrf_of(http.get(light.url + "login", timeout=5).text)
    answer = http.post(light.url + "login", data={"username": username, "csrf_token": token,
                                                  "password": password or STAFF[username][1]},
                       timeout=5, allow_redirects=False)
    assert answer.status_code == 302, answer.text
    return http


def page_csrf(light: LightHub, http: requests.Session) -> str:
    return re.search(r'name="csrf-token" content="([^"]+)"', http.get(light.url, timeout=5).text).group(1)


def post(light: LightHub, http: requests.Session, path: str, payload: dict | None = None) -> requests.Response:
    return http.post(light.url + path.lstrip("/"), json=payload or {}, timeout=10,
                     headers={"X-CSRF-Token": page_csrf(light, http)})


def live_socket(light: LightHub, http: requests.Session | None, events=("floor", "signed_out", "command_result")):
    got: dict[str, list] = {name: [] for name in events}
    client = socketio.Client(reconnection=False)
    for name in events:
        client.on(name, got[name].append, namespace=STAFF_NAMESPACE)
    cookie = "; ".join(f"{c.name}={c.value}" for c in http.cookies) if http else ""
    client.connect(light.url, namespaces=[STAFF_NAMESPACE], headers={"Cookie": cookie} if cookie else {},
                   transports=["websocket"], wait_timeout=5)
    return client, got


def browser_sign_in(browser: Browser, light: LightHub, username: str, path: str = "") -> None:
    browser.goto(light.url + path)
    browser.wait_for("location.pathname === '/login'")
    if browser.evaluate("!!document.querySelector('details.auth-more:not([open])')"):
        browser.click("details.auth-more summary")   # a registered tablet offers the PIN first
    browser.type("#password-form [name=username]", username)
    browser.type("#password-form [name=password]", STAFF[username][1])
    browser.click("#password-form button[type=submit]")
    browser.wait_for(f"location.pathname === {json.dumps('/' + path)} && document.readyState === 'complete'")


def wait_live(browser: Browser) -> None:
    browser.wait_for("document.getElementById('conn') && document.getElementById('conn').dataset.state === 'live'")


def register_this_tablet(browser: Browser, light: LightHub, name: str) -> None:
    browser.goto(light.url + "tablets")
    browser.type("[name=name]", name)
    browser.click(".inline-form button[type=submit]")
    browser.wait_for(f"document.body.innerText.includes('Registered as') && document.body.innerText.includes({json.dumps(name)})")


# --- signing in and out

def test_sign_in_and_sign_out_in_a_real_browser(light, browsers):
    browser = browsers()
    browser_sign_in(browser, light, "ann")
    assert "ann" in browser.evaluate("document.querySelector('.topbar-user').innerText")
    session = next(c for c in browser.cookies() if c["name"] == "omnikiosk_staff")
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    browser.click(".logout-form button")
    browser.wait_for("location.pathname === '/login'")
    browser.goto(light.url)
    assert browser.evaluate("location.pathname") == "/login"
    assert [e["action"] for e in light.floor.audit_log()][:2] == ["logout", "login"]
    assert not browser.csp_violations(), browser.errors()


def test_outside_demo_mode_the_session_cookie_is_secure(tmp_path, shop):
    config = parse(hub.config.SETTINGS, {"store": STORE, "mqtt": {"password_file": "x"},
                                         "online": {"base_url": shop.url, "api_key_file": "x"}}, {}, source="test")
    app, _ = create_app(config, hub_store=HubStore(open_hub_db(tmp_path / "hub.db")), secret_key="k" * 32)
    assert app.config["SESSION_COOKIE_SECURE"] and app.config["SESSION_COOKIE_HTTPONLY"]


def test_the_session_id_changes_at_sign_in(light):
    http = requests.Session()
    http.get(light.url + "login", timeout=5)
    before = http.cookies.get("omnikiosk_staff")
    sign_in(light, "ann", http=http)
    assert http.cookies.get("omnikiosk_staff") != before
    assert http.get(light.url + "api/feed", timeout=5).status_code == 200
    metrics = requests.get(light.url + "metrics", timeout=5).text
    assert "omnikiosk_hub_staff_sessions 1" in metrics and 'omnikiosk_hub_staff_logins_total{outcome="password"} 1' in metrics


def test_wrong_passwords_lock_the_account_out(light):
    http = requests.Session()
    statuses = []
    for _ in range(6):
        token = csrf_of(http.get(light.url + "login", timeout=5).text)
        statuses.append(http.post(light.url + "login", data={"username": "ann", "password": "nope",
                                                             "csrf_token": token}, timeout=5).status_code)
    assert statuses == [401] * 5 + [429]
    token = csrf_of(http.get(light.url + "login", timeout=5).text)
    right = http.post(light.url + "login", data={"username": "ann", "password": STAFF["ann"][1], "csrf_token": token},
                      timeout=5, allow_redirects=False)
    assert right.status_code == 429, "a locked account stays locked even with the right password"


# --- PINs on registered tablets

def test_pin_sign_in_works_only_on_a_registered_tablet(light, browsers):
    browser = browsers()
    browser.goto(light.url + "login")
    assert browser.evaluate("document.getElementById('pin-form')") is None  # no PIN on an unknown device
    http = requests.Session()
    token = csrf_of(http.get(light.url + "login", timeout=5).text)
    refused = http.post(light.url + "login/pin", data={"username": "ann", "pin": PINS["ann"], "csrf_token": token},
                        timeout=5, allow_redirects=False)
    assert refused.status_code == 403 and "registered tablet" in refused.text

    browser_sign_in(browser, light, "maria", "tablets")
    register_this_tablet(browser, light, "Shoes floor tablet")
    tablet_cookie = next(c for c in browser.cookies() if c["name"] == TABLET_COOKIE)
    assert tablet_cookie["httpOnly"] and tablet_cookie["expires"] > time.time() + 300 * 86400
    browser.click(".logout-form button")
    browser.wait_for("location.pathname === '/login' && !!document.getElementById('pin-form')")
    browser.type("#pin-form [name=username]", "ann")
    browser.type("#pin-form [name=pin]", PINS["ann"])
    browser.click("#pin-form button[type=submit]")
    browser.wait_for("location.pathname === '/' && document.readyState === 'complete'")
    assert browser.evaluate("document.querySelector('.user-name').innerText") == "ann"
    login = next(e for e in light.floor.audit_log() if e["action"] == "login" and e["actor"] == "ann")
    assert (login["detail"], login["device"]) == ("PIN", "Shoes floor tablet")
    assert ("tablet.register", "Shoes floor tablet") in [(e["action"], e["subject"]) for e in light.floor.audit_log()]

    # The PIN session is bound to the tablet: its cookie alone, on another device, is not signed in.
    staff_cookie = next(c for c in browser.cookies() if c["name"] == "omnikiosk_staff")
    elsewhere = requests.Session()
    elsewhere.cookies.set("omnikiosk_staff", staff_cookie["value"])
    assert elsewhere.get(light.url + "api/feed", timeout=5).status_code == 401


def test_wrong_pins_lock_out_and_a_revoked_tablet_ends_its_pin_sessions(light):
    tablet_id, token = light.store.register_tablet("Till tablet", "maria")
    http = requests.Session()
    http.cookies.set(TABLET_COOKIE, token)

    def pin_attempt(pin):
        csrf = csrf_of(http.get(light.url + "login", timeout=5).text)
        return http.post(light.url + "login/pin", data={"username": "ann", "pin": pin, "csrf_token": csrf},
                         timeout=5, allow_redirects=False).status_code

    assert [pin_attempt("0000") for _ in range(6)] == [401] * 5 + [429]
    assert pin_attempt(PINS["ann"]) == 429
    # Someone else on the same tablet is not locked out by ann's lock.
    csrf = csrf_of(http.get(light.url + "login", timeout=5).text)
    assert http.post(light.url + "login/pin", data={"username": "maria", "pin": PINS["maria"], "csrf_token": csrf},
                     timeout=5, allow_redirects=False).status_code == 302
    client, got = live_socket(light, http)
    light.store.revoke_tablet(tablet_id)            # as `python -m hub tablets revoke` does
    assert http.get(light.url + "api/feed", timeout=5).status_code == 401
    light.sweep()
    wait_for(lambda: not client.connected, timeout=5, what="the revoked tablet's socket to be hung up")


def test_setting_your_own_pin_needs_your_password_and_a_manager_revokes_a_tablet_on_its_page(light):
    ivan = sign_in(light, "ivan")             # IT has no PIN yet
    csrf = page_csrf(light, ivan)
    wrong = ivan.post(light.url + "account/pin", data={"password": "guess", "pin": "5829", "pin_again": "5829",
                                                       "csrf_token": csrf}, timeout=5)
    weak = ivan.post(light.url + "account/pin", data={"password": STAFF["ivan"][1], "pin": "1234", "pin_again": "1234",
                                                      "csrf_token": csrf}, timeout=5)
    assert (wrong.status_code, weak.status_code) == (403, 400) and light.store.staff("ivan")["pin_hash"] is None
    done = ivan.post(light.url + "account/pin", data={"password": STAFF["ivan"][1], "pin": "5829", "pin_again": "5829",
                                                      "csrf_token": csrf}, timeout=5)
    assert done.status_code == 200 and staff_rules.verify_pin(light.store.staff("ivan"), "5829")

    tablet_id, token = light.store.register_tablet("Till tablet", "maria")
    tablet = requests.Session()
    tablet.cookies.set(TABLET_COOKIE, token)
    csrf = csrf_of(tablet.get(light.url + "login", timeout=5).text)
    assert tablet.post(light.url + "login/pin", data={"username": "ivan", "pin": "5829", "csrf_token": csrf},
                       timeout=5, allow_redirects=False).status_code == 302
    maria = sign_in(light, "maria")
    maria.post(light.url + f"tablets/{tablet_id}/revoke", data={"csrf_token": page_csrf(light, maria)}, timeout=5)
    assert tablet.get(light.url + "api/feed", timeout=5).status_code == 401
    assert [t["revoked_at"] is not None for t in light.store.tablets()] == [True]


# --- idle sessions and their sockets

def test_an_idle_session_is_signed_out_and_its_socket_hung_up_by_the_hub(light):
    http = sign_in(light, "ann")
    client, got = live_socket(light, http)
    light.clock.advance(10 * 60)
    assert light.sweep() == 0 and client.connected          # 10 of 15 minutes: still signed in
    assert post(light, http, "api/here").status_code == 200  # someone touched the tablet
    light.clock.advance(10 * 60)
    assert light.sweep() == 0 and client.connected
    assert http.get(light.url + "api/feed", timeout=5).status_code == 200  # the feed refreshing itself...
    light.clock.advance(6 * 60)                                            # ...is not someone using it
    assert light.sweep() == 1
    wait_for(lambda: not client.connected, timeout=5, what="the idle socket to be disconnected")
    assert got["signed_out"], "the page is told why, so it can show the sign-in page"
    assert http.get(light.url + "api/feed", timeout=5).status_code == 401
    with pytest.raises(socketio.exceptions.ConnectionError):
        live_socket(light, http)


def test_the_page_pings_when_someone_touches_it_and_an_unattended_page_goes_to_sign_in(light, browsers):
    browser = browsers()
    browser_sign_in(browser, light, "ann")
    wait_live(browser)
    asking = requests.Session()  # asking how long is left does not count as use
    asking.cookies.set("omnikiosk_staff", next(c["value"] for c in browser.cookies() if c["name"] == "omnikiosk_staff"))

    def idle_left() -> int:
        return asking.get(light.url + "api/session", timeout=5).json()["idle_left_s"]
    light.clock.advance(14 * 60)
    assert idle_left() <= 60
    # The page throttles its pings to one a minute: let its clock run two minutes ahead, then scroll.
    browser.evaluate("(() => { const real = Date.now; Date.now = () => real() + 120000; })()")
    browser.call("Input.dispatchMouseEvent", type="mouseWheel", x=300, y=300, deltaX=0, deltaY=120)
    wait_for(lambda: idle_left() > 14 * 60, timeout=5, what="the page's 'I am here' ping")
    light.clock.advance(16 * 60)
    light.sweep()
    browser.wait_for("location.pathname === '/login' && location.search.includes('expired=1')", timeout=15)
    assert "signed out after a while" in browser.evaluate("document.body.innerText")


# --- CSRF and roles

def test_a_post_without_the_csrf_token_is_refused(light):
    arrival = light.check_in("M0001")
    http = sign_in(light, "ann")
    bare = http.post(light.url + f"api/arrivals/{arrival['id']}/claim", timeout=5)
    forged = http.post(light.url + f"api/arrivals/{arrival['id']}/claim", timeout=5, headers={"X-CSRF-Token": "x"})
    assert (bare.status_code, forged.status_code) == (400, 400) and bare.json()["error"]["code"] == "csrf"
    form = http.post(light.url + "logout", timeout=5, allow_redirects=False)
    assert form.status_code == 400
    assert post(light, http, f"api/arrivals/{arrival['id']}/claim").status_code == 200
    assert light.floor.feed()[-1]["kind"] == "claim"


def test_an_associate_cannot_open_the_it_view_or_the_audit_log(light):
    ann, maria, ivan = (sign_in(light, name) for name in ("ann", "maria", "ivan"))
    for path in ("it", "audit", "tablets", "api/devices"):
        assert ann.get(light.url + path, timeout=5).status_code == 403, path
    assert post(light, ann, "api/devices/s001-k01/commands", {"command": "catalog.resync"}).status_code == 403
    assert "Devices" not in ann.get(light.url, timeout=5).text
    for person in (maria, ivan):
        assert person.get(light.url + "audit", timeout=5).status_code == 200
        assert person.get(light.url + "it", timeout=5).status_code == 200


def test_unauthenticated_socket_connections_are_refused(light):
    with pytest.raises(socketio.exceptions.ConnectionError):
        live_socket(light, None)
    signed_out = sign_in(light, "ann")
    signed_out.post(light.url + "logout", data={"csrf_token": page_csrf(light, signed_out)}, timeout=5)
    with pytest.raises(socketio.exceptions.ConnectionError):
        live_socket(light, signed_out)


def test_the_it_room_hears_device_news_and_the_store_room_only_the_floor(light):
    ann_client, ann_got = live_socket(light, sign_in(light, "ann"), events=("floor", "devices"))
    ivan_client, ivan_got = live_socket(light, sign_in(light, "ivan"), events=("floor", "devices"))
    light.socketio.emit("devices", {"devices": []}, namespace=STAFF_NAMESPACE, to=it_room(STORE))
    light.socketio.emit("floor", {"id": 0}, namespace=STAFF_NAMESPACE, to=store_room(STORE))
    wait_for(lambda: ivan_got["devices"] and ivan_got["floor"] and ann_got["floor"], timeout=5, what="both rooms")
    time.sleep(0.3)
    assert ann_got["devices"] == []
    ann_client.disconnect()
    ivan_client.disconnect()


# --- the live floor

def test_an_arrival_appears_live_and_a_claim_in_one_browser_shows_in_the_other(light, browsers):
    ann, maria = browsers(), browsers()
    browser_sign_in(ann, light, "ann")
    browser_sign_in(maria, light, "maria")
    wait_live(ann)
    wait_live(maria)
    arrival = light.check_in("M0001")
    card = f".card[data-arrival-id='{arrival['id']}']"
    for browser in (ann, maria):
        browser.wait_for(f"!!document.querySelector(\"{card}\") && document.body.innerText.includes('Jane Cooper')")
    assert "pickup ready here" in ann.evaluate(f"document.querySelector(\"{card}\").textContent").lower()
    assert ann.evaluate("document.body.dataset.rings") == "1"
    ann.click(f"{card} .btn-claim")
    maria.wait_for(f"document.querySelector(\"{card} .card-actions\").innerText.includes('ann is helping')")
    ann.wait_for(f"document.querySelector(\"{card} .card-actions\").innerText.includes('You’re helping Jane')")
    assert maria.evaluate(f"document.querySelector(\"{card} .btn-claim\")") is None
    ann.click(f"{card} .card-actions .btn-primary")      # Mark served
    maria.wait_for(f"document.querySelector(\"{card} .card-actions\").innerText.includes('Served by ann')")
    assert not ann.csp_violations() and not maria.csp_violations(), ann.errors() + maria.errors()


def test_a_late_arrival_is_marked_late_and_does_not_ring(light, browsers):
    browser = browsers()
    browser_sign_in(browser, light, "ann")
    wait_live(browser)
    late = light.check_in("M0004", late=True)
    browser.wait_for(f"!!document.querySelector(\".card[data-arrival-id='{late['id']}'].card-late\")")
    assert "Late — replayed after an outage" in browser.evaluate("document.querySelector('.card-late').innerText")
    assert browser.evaluate("document.body.dataset.rings") is None
    fresh = light.check_in("M0005")
    browser.wait_for(f"!!document.querySelector(\".card[data-arrival-id='{fresh['id']}']\")")
    assert browser.evaluate("document.body.dataset.rings") == "1"


def test_a_call_for_help_shows_on_every_tablet_and_one_answers_it(light, browsers):
    ann, maria = browsers(), browsers()
    browser_sign_in(ann, light, "ann")
    browser_sign_in(maria, light, "maria")
    wait_live(ann)
    wait_live(maria)
    light.check_in("M0001", device="s001-k02")
    product = DATA.products[0]
    light.kiosk("M0001", "assist.requested", gtin=product["gtin"])
    for browser in (ann, maria):
        browser.wait_for("document.body.innerText.includes('Help needed at kiosk s001-k02')")
        browser.wait_for("document.body.innerText.includes('Needs help at kiosk s001-k02')")  # on Jane's card too
    assert product["name"] in maria.evaluate("document.querySelector('.card-assist').innerText")
    maria.click(".card-assist .btn-answer")
    ann.wait_for("document.querySelector('.card-assist').innerText.includes('maria is on it')")
    ann.wait_for("!document.body.innerText.includes('Needs help at kiosk s001-k02')")


def test_a_tablet_that_lost_its_connection_gets_what_it_missed_exactly_once(light, browsers):
    browser = browsers()
    browser_sign_in(browser, light, "ann")
    wait_live(browser)
    first = light.check_in("M0001")
    browser.wait_for(f"!!document.querySelector(\".card[data-arrival-id='{first['id']}']\")")
    for socket_id in light.app.extensions["omnikiosk.sessions"].sockets():  # the Wi-Fi drops: the socket is gone
        light.socketio.server.disconnect(socket_id, namespace=STAFF_NAMESPACE)
    browser.wait_for("document.getElementById('conn').dataset.state === 'reconnecting'")
    missed = [light.check_in(member) for member in ("M0004", "M0005")]
    light.floor.claim(first["id"], "maria")
    wait_live(browser)
    for arrival in missed:
        browser.wait_for(f"!!document.querySelector(\".card[data-arrival-id='{arrival['id']}']\")")
    browser.wait_for(f"document.querySelector(\".card[data-arrival-id='{first['id']}']\").innerText.includes('maria is helping')")
    counts = browser.evaluate("Array.from(document.querySelectorAll('.card[data-arrival-id]')).map(c => c.dataset.arrivalId)")
    assert sorted(counts) == sorted(str(a["id"]) for a in [first, *missed]), "every arrival once, none twice"
    assert browser.evaluate("document.body.dataset.rings") == "1", "what it missed does not ring as if new"


def test_a_reconnecting_socket_resumes_after_its_last_feed_id_with_each_item_once(light):
    http = sign_in(light, "ann")
    client, got = live_socket(light, http)
    light.check_in("M0001")
    wait_for(lambda: got["floor"], timeout=5, what="the arrival live")
    last = got["floor"][-1]["id"]
    client.disconnect()
    missed = [light.check_in("M0004")["id"], light.check_in("M0005")["id"]]
    client, got = live_socket(light, http)
    answer = client.call("resume", {"after": last}, namespace=STAFF_NAMESPACE, timeout=5)
    assert [item["arrival_id"] for item in answer["items"] if item["kind"] == "arrival"] == missed
    ids = [item["id"] for item in answer["items"]]
    assert len(ids) == len(set(ids)) and min(ids) > last
    assert client.call("resume", {"after": ids[-1]}, namespace=STAFF_NAMESPACE, timeout=5)["items"] == []
    assert got["floor"] == [], "nothing already resumed comes again live"
    client.disconnect()


# --- the member view

def test_the_member_view_shows_the_visit_live_and_its_view_goes_to_the_audit_log(light, browsers):
    tablet_id, token = light.store.register_tablet("Denim tablet", "maria")
    browser = browsers()
    browser.set_cookie(TABLET_COOKIE, token, light.url)
    browser_sign_in(browser, light, "ann", "customers/M0001")
    browser.wait_for("document.body.innerText.includes('Jane Cooper') && !!document.querySelector('.panel-visit')")
    text = browser.evaluate("document.body.innerText")
    for part in ("#1043", "Wishlist", "Online cart", "Recently viewed online", "Sizes and preferences", "Loyalty",
                 "Why:", "Not checked in at a kiosk right now"):
        assert part in text, part
    (view,) = [e for e in light.floor.audit_log() if e["action"] == "view_customer"]
    assert (view["actor"], view["subject"], view["device"]) == ("ann", "M0001", "Denim tablet")

    wait_live(browser)
    light.check_in("M0001", device="s001-k02")
    browser.wait_for("document.querySelector('.panel-visit').innerText.includes('s001-k02')")
    product = DATA.products[2]
    light.kiosk("M0001", "scan.product", gtin=product["gtin"], source="ean13")
    browser.wait_for(f"document.querySelector('.panel-visit').innerText.includes({json.dumps('Scanned ' + product['name'])})")
    browser.click(".profile-actions .btn-claim")
    browser.wait_for("document.querySelector('.profile-actions').innerText.includes('You’re helping Jane')")
    assert light.floor.feed()[-1]["data"] == {"arrival_id": light.floor.feed()[-1]["arrival_id"], "by": "ann"}

    manager = browsers()
    browser_sign_in(manager, light, "maria", "audit")
    row = manager.evaluate("Array.from(document.querySelectorAll('.audit tbody tr')).map(r => r.innerText)"
                           ".find(t => t.includes('viewed profile'))")
    assert "ann" in row and "M0001" in row and "Denim tablet" in row


def test_a_member_without_consent_is_only_member_checked_in(light, browsers):
    light.check_in("M0002")
    browser = browsers()
    browser_sign_in(browser, light, "ann")
    browser.wait_for("!!document.querySelector('.card-private')")
    card = browser.evaluate("document.querySelector('.card-private').innerText")
    private = PROFILES["M0002"]
    assert "Member checked in" in card and private["last_name"] not in card and private["first_name"] not in card
    assert browser.evaluate("document.querySelector('.card-private .btn-open')") is None
    browser.goto(light.url + "customers/M0002")
    browser.wait_for("!!document.querySelector('.panel-private')")
    text = browser.evaluate("document.getElementById('customer').innerText")
    assert "Member checked in" in text and private["last_name"] not in text and private["email"] not in text


def test_notes_and_sending_to_the_online_cart_from_the_member_view(light, browsers, shop):
    light.check_in("M0001")
    browser = browsers()
    browser_sign_in(browser, light, "ann", "customers/M0001")
    browser.wait_for("!!document.querySelector('.note-form')")
    wait_live(browser)
    browser.type(".note-input", "Prefers the 38 in boots")
    browser.click(".note-form button")
    browser.wait_for("document.querySelector('.notes').innerText.includes('Prefers the 38 in boots')")
    light.floor.add_note("M0001", "maria", "Birthday next week")      # from another tablet
    browser.wait_for("document.querySelector('.notes').innerText.includes('Birthday next week')")
    assert browser.evaluate("document.querySelectorAll('.note').length") == 2
    browser.click(".row-product .btn-send")   # the first wishlist item, to the online cart
    browser.wait_for("document.querySelector('.toasts') && document.querySelector('.toasts').innerText.includes('Added to Jane')")
    gtin = light.floor.customer("M0001", viewer="test", device="test")["wishlist"][0]["gtin"]
    assert gtin in [line["gtin"] for line in shop.api("/api/v1/customers/M0001")["cart"]["items"]]


def test_names_and_notes_with_markup_show_as_text_and_never_run(light, browsers):
    profile = {**PROFILES["M0001"], "first_name": XSS_IMG, "last_name": XSS_SCRIPT}
    light.store.cache_profile("M0001", profile, format_ts(datetime.now(timezone.utc)))
    light.check_in("M0001")
    light.floor.add_note("M0001", "maria", XSS_SCRIPT + XSS_IMG)
    browser = browsers()
    browser_sign_in(browser, light, "ann")
    browser.wait_for(f"document.body.innerText.includes({json.dumps(XSS_IMG)})")
    assert XSS_SCRIPT in browser.evaluate("document.body.innerText")
    browser.goto(light.url + "customers/M0001")
    browser.wait_for("document.querySelectorAll('.note').length === 1")
    browser.type(".note-input", XSS_IMG)
    browser.click(".note-form button")
    browser.wait_for("document.querySelectorAll('.note').length === 2")
    text = browser.evaluate("document.getElementById('customer').innerText")
    assert XSS_IMG in text and XSS_SCRIPT in text
    browser.goto(light.url + "search?q=Cooper")
    browser.wait_for("document.readyState === 'complete'")
    assert browser.evaluate("document.querySelectorAll('main img, main script').length") == 0
    assert browser.evaluate("window.__xss") is None and browser.dialogs == []
    assert not browser.csp_violations(), browser.errors()


def test_search_finds_a_walk_in_by_name_email_phone_or_member_id(light, browsers):
    browser = browsers()
    browser_sign_in(browser, light, "ann", "search")
    for query in ("Cooper", "jane.cooper@example.com", PROFILES["M0001"]["phone"], "M0001"):
        browser.goto(light.url + "search?q=" + requests.utils.quote(query))
        browser.wait_for("document.readyState === 'complete'")
        assert "Jane Cooper" in browser.evaluate("document.querySelector('.results').innerText"), query
    assert PROFILES["M0001"]["email"] not in browser.evaluate("document.body.innerText")  # masked
    browser.click(".result")
    browser.wait_for("location.pathname === '/customers/M0001'")
    # A member without clienteling consent is found, but neither named nor linked.
    private = PROFILES["M0002"]
    browser.goto(light.url + "search?q=" + requests.utils.quote(private["last_name"]))
    browser.wait_for("document.readyState === 'complete'")
    results = browser.evaluate("document.querySelector('.results').innerText")
    assert "A member matches" in results and private["first_name"] not in results
    assert browser.evaluate("document.querySelectorAll('a.result[href=\"/customers/M0002\"]').length") == 0


# --- the fleet view (IT)

def test_it_sees_every_device_with_alerts_and_gets_a_commands_result_live(light, browsers):
    light.device_reports("s001-k01", telemetry={"scan": {"fps": 9.8, "camera": "ok"}, "outbox": {"depth": 0, "oldest_age_s": 0},
                                                "disk_free_mb": 20480, "cpu_temp_c": 48.3})
    light.device_reports("s001-k02", state="offline", seen=datetime.now(timezone.utc) - timedelta(minutes=7),
                         telemetry={"scan": {"fps": 0, "camera": "lost"}, "outbox": {"depth": 41, "oldest_age_s": 420},
                                    "disk_free_mb": 812, "cpu_temp_c": 61})
    browser = browsers()
    browser_sign_in(browser, light, "ivan", "it")
    browser.wait_for("document.querySelectorAll('.device').length === 2")
    alerts = browser.evaluate("document.getElementById('fleet-alerts').innerText")
    assert "s001-k02" in alerts and "offline" in alerts and "41 events waiting" in alerts
    assert "9.8" in browser.evaluate("document.querySelector(\"[data-device='s001-k01']\").innerText")
    wait_live(browser)
    browser.click("[data-device='s001-k01'] .device-commands summary")
    browser.type("[data-device='s001-k01'] [name=text]", "Back in 5 minutes")
    browser.click("[data-device='s001-k01'] .command-form button[type=submit]")
    wait_for(lambda: light.published, timeout=5, what="the command published")
    device, payload = light.published[0]
    assert (device, payload["command"], payload["args"]["text"]) == ("s001-k01", "screen.message", "Back in 5 minutes")
    result = light.event("command.result", {"command_id": payload["id"], "ok": True, "command": "screen.message",
                                            "result": {"shown_for_s": 30}})
    light.floor.on_stored([result])
    browser.wait_for("document.querySelector(\"[data-device='s001-k01'] .command-result\").innerText.startsWith('Done')")
    assert any(e["action"] == "command" and e["actor"] == "ivan" for e in light.floor.audit_log())


# --- every screen, at tablet and phone size

SCREENS = ["login", "login-tablet", "arrivals", "customer", "customer-private", "search", "devices", "audit",
           "tablets", "account", "forbidden"]
SIZES = [(1280, 800, False), (390, 844, True)]


def stage(light: LightHub) -> str:
    """A store in mid-morning: members checked in (one late, one without consent), a call for help, Jane
    with her pickup and a scan, notes and claims, one healthy and one troubled kiosk."""
    private = light.check_in("M0002", device="s001-k02")
    light.floor.claim(private["id"], "maria")
    light.check_in("M0004", device="s001-k02", late=True)
    light.check_in("M0005", device="s001-k02")
    light.kiosk("M0005", "assist.requested", gtin=DATA.products[5]["gtin"])
    jane = light.check_in("M0001")
    light.kiosk("M0001", "scan.product", gtin=DATA.products[2]["gtin"], source="ean13")
    light.floor.add_note("M0001", "maria", "Prefers the 38 in boots; ask about the cardigan in chocolate.")
    light.floor.claim(jane["id"], "maria")
    light.device_reports("s001-k01", telemetry={"scan": {"fps": 9.8, "camera": "ok"}, "outbox": {"depth": 0, "oldest_age_s": 0},
                                                "disk_free_mb": 20480, "cpu_temp_c": 48.3})
    light.device_reports("s001-k02", state="offline", seen=datetime.now(timezone.utc) - timedelta(minutes=7),
                         telemetry={"scan": {"fps": 0, "camera": "lost"}, "outbox": {"depth": 41, "oldest_age_s": 420},
                                    "disk_free_mb": 812, "cpu_temp_c": 61})
    light.floor.customer("M0001", viewer="ann", device="Shoes floor tablet")
    return light.store.register_tablet("Shoes floor tablet", "maria")[1]


def open_screen(browser: Browser, light: LightHub, screen: str, tablet_token: str) -> None:
    ready = {"arrivals": "document.querySelectorAll('.card').length >= 4",
             "customer": "!!document.querySelector('.panel-visit')",
             "customer-private": "!!document.querySelector('.panel-private')",
             "devices": "document.querySelectorAll('.device').length === 2"}
    paths = {"login": "login", "login-tablet": "login", "arrivals": "", "customer": "customers/M0001",
             "customer-private": "customers/M0002", "search": "search?q=co", "devices": "it", "audit": "audit",
             "tablets": "tablets", "account": "account", "forbidden": "it"}
    if screen == "login-tablet":
        browser.set_cookie(TABLET_COOKIE, tablet_token, light.url)
    browser.goto(light.url + paths[screen])
    browser.wait_for(ready.get(screen, "document.readyState === 'complete'"))
    browser.wait_for("!document.getElementById('conn') || document.getElementById('conn').dataset.state === 'live'")
    browser.evaluate("document.activeElement && document.activeElement.blur()")
    time.sleep(0.3)  # the arrival animation settles


def layout_problems(browser: Browser) -> list[str]:
    """Anything wider than the screen, and any visible control smaller than a finger (44 px)."""
    return browser.evaluate("""(() => {
        const problems = [];
        if (document.documentElement.scrollWidth > window.innerWidth + 1)
          problems.push('page scrolls sideways: ' + document.documentElement.scrollWidth + ' > ' + window.innerWidth);
        for (const node of document.querySelectorAll('a.btn, button, .tab, summary, input:not([type=hidden]), select, textarea, .result, .topbar-user')) {
          const r = node.getBoundingClientRect();
          if (!r.width || !r.height) continue;
          if (r.height < 44 || r.width < 44) problems.push('small target: ' + (node.innerText || node.name || node.className).trim().slice(0, 40) + ' ' + Math.round(r.width) + 'x' + Math.round(r.height));
          if (r.right > window.innerWidth + 1) problems.push('off screen: ' + (node.innerText || node.className).trim().slice(0, 40));
        }
        return problems;
    })()""")


@pytest.mark.parametrize("width,height,mobile", SIZES, ids=["tablet-1280x800", "phone-390x844"])
def test_every_screen_fits_the_screen_with_finger_sized_controls(light, browsers, width, height, mobile):
    token = stage(light)
    folder = Path(SCREENSHOTS) if SCREENSHOTS else None
    for screen in SCREENS:
        browser = browsers(width, height)
        browser.viewport(width, height, mobile=mobile)
        username = {"devices": "ivan", "audit": "maria", "tablets": "maria", "forbidden": "ann"}.get(screen, "ann")
        if not screen.startswith("login"):
            browser_sign_in(browser, light, username, "" if screen == "forbidden" else "account")
        open_screen(browser, light, screen, token)
        assert layout_problems(browser) == [], screen
        assert not browser.csp_violations(), (screen, browser.errors())
        if folder:
            browser.screenshot(folder / f"staff-{screen}-{width}x{height}.png")
        browser.close()
