"""The security checklist of issue 8, where other test files do not already prove an item.

Each test here closes a gap next to an existing test (the map from checklist item to test is in the
issue): the broker and the hub each refusing an oversized message, a device that may not speak for the
hub nor read other kiosks, HS256 signed with the issuer's public key, a tampered payload, a session
cookie planted before sign-in or copied before sign-out, product names from the catalog in the staff
app, a customer name changed online reaching the staff app and the kiosk as text, the kiosk's ports on
loopback only, a scanned web address never opened, an idle kiosk page keeping no personal data, and
the logs of a busy store keeping no secret.

Real Mosquitto, real processes (the shared demo store), real HTTP and real headless Chromium.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import socket
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import requests
from browser import Browser
from conftest import DEVICES, STORE, demo_cli, raw_client, wait_for
from cryptography.hazmat.primitives import serialization
from test_delivery import start_hub
from test_end_to_end import _rejections, signed_in
from test_staff_app import (  # noqa: F401
    DATA,
    XSS_IMG,
    XSS_SCRIPT,
    browser_sign_in,
    light,
    page_csrf,
    shop,
    sign_in,
)
from test_tokens import JANE, NOW, issuer, keys  # noqa: F401

from demo import seed
from demo.catalog_feed import catalog_feed
from demo.issuer import Issuer, qr_png
from protocol.envelope import MAX_ENVELOPE_BYTES, make_envelope
from protocol.tokens import b64url_encode, verify_member_token
from protocol.topics import Topics

TOPICS = Topics(STORE)
COOKIE = "omnikiosk_staff"
EVIL_URL = "https://evil.example/"


# --- MQTT -----------------------------------------------------------------------------------------

def mqtt311_client(broker, user: str):
    """A plain MQTT 3.1.1 client: it knows no broker packet limit, so the broker alone must refuse."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"v311-{user}", protocol=mqtt.MQTTv311)
    client.username_pw_set(user, broker.passwords[user])
    connected, dropped = threading.Event(), threading.Event()
    client.on_connect = lambda *a: connected.set()
    client.on_disconnect = lambda *a: dropped.set()
    client.connect(broker.host, broker.port)
    client.loop_start()
    assert connected.wait(10)
    return client, dropped


def test_the_broker_refuses_a_message_over_its_packet_limit_and_the_hub_one_over_the_envelope_limit(broker, tmp_path):
    hub_store, ingest = start_hub(broker, tmp_path)
    device = DEVICES[0]
    topic = TOPICS.events(device)
    try:
        # 40 KiB is over Mosquitto's max_packet_size (32 KiB): it hangs up on the sender, delivers nothing.
        big, dropped = mqtt311_client(broker, device)
        big.publish(topic, b"{" + b" " * 40_000 + b"}", qos=1)
        assert dropped.wait(10), "the broker kept a client that sent a packet over its limit"
        big.loop_stop()
        # 20 KiB passes the broker but not the hub: a valid envelope padded with whitespace is still too large.
        client = raw_client(broker, device)
        padded = make_envelope(store=STORE, device=device, type="session.started", seq=1, data={"session": "p"},
                               now=datetime.now(timezone.utc)).to_json().encode() + b" " * (20 * 1024)
        assert MAX_ENVELOPE_BYTES < len(padded) < 32 * 1024
        client.publish(topic, padded, qos=1).wait_for_publish(5)
        honest = make_envelope(store=STORE, device=device, type="session.started", seq=2, data={"session": "h"},
                               now=datetime.now(timezone.utc))
        client.publish(topic, honest.to_json(), qos=1).wait_for_publish(5)
        wait_for(lambda: hub_store.count_events(id=honest.id) == 1, what="the honest envelope stored")
        client.loop_stop()
    finally:
        ingest.stop()
    assert dict(ingest.counters.rejected) == {"too_large": 1}
    assert hub_store.rejection_counts() == {"too_large": 1}
    assert hub_store.count_events() == 1


def test_a_device_cannot_speak_for_the_hub_nor_read_what_other_kiosks_send(broker):
    """test_delivery and test_agent cover another device's events, requests, commands, answers and
    receipts; here: the hub's own topics, and wildcards over every kiosk's events (member ids)."""
    intruder, victim = DEVICES
    client = raw_client(broker, intruder)
    acks: dict[int, object] = {}
    client.on_publish = lambda c, u, mid, rc, props: acks.__setitem__(mid, rc)
    forbidden = [TOPICS.device(intruder, "commands"), TOPICS.device(intruder, "receipts"), TOPICS.hub_status,
                 TOPICS.catalog_version, f"{TOPICS.store_root}/anything", "elsewhere/anything"]
    mids = {topic: client.publish(topic, b"{}", qos=1).mid for topic in forbidden}
    wait_for(lambda: len(acks) == len(forbidden), what="the broker's answers")
    assert {topic: acks[mid].is_failure for topic, mid in mids.items()} == {topic: True for topic in forbidden}

    got: list[str] = []
    client.on_message = lambda c, u, m: got.append(m.topic)
    client.subscribe([("#", 1), (f"{TOPICS.store_root}/#", 1), (TOPICS.all_devices("events"), 1),
                      (TOPICS.events(victim), 1), (TOPICS.all_devices("telemetry"), 1)])
    time.sleep(0.3)
    other = raw_client(broker, victim)
    hub = raw_client(broker, broker.hub_user, client_id="it-tool")
    try:
        other.publish(TOPICS.events(victim), b'{"member": "M0001"}', qos=1).wait_for_publish(5)
        other.publish(TOPICS.device(victim, "telemetry"), b"{}", qos=1).wait_for_publish(5)
        hub.publish(TOPICS.device(intruder, "commands"), b"{}", qos=1).wait_for_publish(5)  # its own: allowed
        wait_for(lambda: got, what="the intruder's own command")
        time.sleep(0.5)
    finally:
        for c in (client, other, hub):
            c.loop_stop()
    assert set(got) == {TOPICS.device(intruder, "commands")}   # once per matching wildcard, nothing else


# --- member tokens --------------------------------------------------------------------------------

def _hs256(header: dict, claims: dict, secret: bytes) -> str:
    signing_input = b64url_encode(json.dumps(header).encode()) + "." + b64url_encode(json.dumps(claims).encode())
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64url_encode(signature)


def test_hs256_signed_with_the_issuers_public_key_is_refused(issuer, keys):  # noqa: F811
    """Key confusion: a verifier that let the token pick its algorithm would check this HMAC with the
    public key it holds, which everyone knows, and accept it."""
    public = issuer.private_key.public_key()
    secrets_anyone_has = [
        public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw),
        public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
        issuer.jwks()["keys"][0]["x"].encode(),
        json.dumps(issuer.jwks()).encode(),
    ]
    claims = {"iss": issuer.issuer, "sub": "M0001", "iat": int(NOW.timestamp()), "exp": int(NOW.timestamp()) + 60,
              "jti": "j-hs", "typ": "app", "given_name": "Jane"}
    for secret in secrets_anyone_has:
        token = _hs256({"alg": "HS256", "typ": "JWT", "kid": issuer.kid}, claims, secret)
        result = verify_member_token(token, keys, now=NOW, issuer=issuer.issuer)
        assert not result and result.reason == "unsupported_alg" and "HS256" in result.detail


@pytest.mark.parametrize("change", [{"sub": "M0002"}, {"points": 999_999}, {"typ": "card"},
                                    {"exp": int(NOW.timestamp()) + 86_400}, {"given_name": XSS_IMG}])
def test_a_token_whose_payload_was_changed_is_refused_as_a_bad_signature(issuer, keys, change):  # noqa: F811
    header, payload, signature = issuer.mint(JANE, now=NOW).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    tampered = ".".join([header, b64url_encode(json.dumps({**claims, **change}).encode()), signature])
    result = verify_member_token(tampered, keys, now=NOW, issuer=issuer.issuer)
    assert not result and result.reason == "bad_signature"


# --- staff app ------------------------------------------------------------------------------------

def _feed_status(light_hub, cookie_value: str) -> int:
    return requests.get(light_hub.url + "api/feed", headers={"Cookie": f"{COOKIE}={cookie_value}"},
                        timeout=5).status_code


def test_a_cookie_planted_before_sign_in_is_not_the_signed_in_one_and_a_copied_one_dies_at_sign_out(light):  # noqa: F811
    attacker = requests.Session()
    attacker.get(light.url + "login", timeout=5)
    planted = attacker.cookies.get(COOKIE)
    assert planted, "the sign-in page sets a (signed-out) session cookie"
    victim = requests.Session()
    victim.cookies.update(attacker.cookies)           # the attacker fixed the victim's cookie
    sign_in(light, "maria", http=victim)
    signed_in_cookie = victim.cookies.get(COOKIE)
    assert signed_in_cookie != planted
    assert _feed_status(light, signed_in_cookie) == 200
    assert _feed_status(light, planted) == 401, "the planted cookie must not share the victim's sign-in"
    # An attacker signed in as ann who plants their own cookie does not become maria either.
    ann = sign_in(light, "ann")
    ann_cookie = ann.cookies.get(COOKIE)
    victim2 = requests.Session()
    victim2.cookies.update(ann.cookies)
    sign_in(light, "maria", http=victim2)
    who = requests.get(light.url + "api/session", headers={"Cookie": f"{COOKIE}={ann_cookie}"}, timeout=5).json()
    assert "maria" not in json.dumps(who)
    # A copy of a signed-in cookie (a shared tablet, a proxy log) stops working at sign-out.
    victim.post(light.url + "logout", data={"csrf_token": page_csrf(light, victim)}, timeout=5)
    assert _feed_status(light, signed_in_cookie) == 401


def test_product_names_from_the_catalog_show_as_text_on_the_floor_and_the_member_view(light, browsers):  # noqa: F811
    hostile = {**DATA.products[0], "name": f"Boot {XSS_IMG}"}
    other = {**DATA.products[1], "name": XSS_SCRIPT}
    feed = catalog_feed(seed.build())
    feed["products"] = [hostile if p["gtin"] == hostile["gtin"] else other if p["gtin"] == other["gtin"] else p
                        for p in feed["products"]]
    light.catalog.apply_feed({**feed, "version": 2})
    assert light.catalog.product(hostile["gtin"], STORE)["name"] == hostile["name"]
    light.check_in("M0001")
    light.kiosk("M0001", "scan.product", gtin=other["gtin"], source="ean13")
    light.kiosk("M0001", "assist.requested", gtin=hostile["gtin"])
    browser = browsers()
    browser_sign_in(browser, light, "ann")
    browser.wait_for(f"document.body.innerText.includes({json.dumps(hostile['name'])})")
    browser.goto(light.url + "customers/M0001")
    browser.wait_for(f"document.body.innerText.includes({json.dumps('Scanned ' + XSS_SCRIPT)})")
    browser.evaluate("new Promise(r => setTimeout(r, 300))")
    assert browser.evaluate("document.querySelectorAll('main img, main script, #customer img').length") == 0
    assert browser.evaluate("window.__xss") is None and browser.dialogs == []
    assert not browser.csp_violations(), browser.errors()


def test_product_names_and_reviews_stored_in_the_kiosk_catalog_show_as_text_on_the_kiosk(tmp_path):
    """test_kiosk_pages pushes hostile screens directly; here they come the way a shopper meets them:
    from the kiosk's catalog cache, through a real scan, to the page in Chromium."""
    from test_kiosk_pages import KioskPage, load, text_of

    from edge_agent.catalog import CatalogCache
    from edge_agent.outbox import Outbox, open_device_db
    from kiosk.decode import Code
    from kiosk.shopper import Shopper
    from protocol.tokens import KeySet
    feed = catalog_feed(seed.build())
    target = next(p for p in feed["products"] if p["gtin"].startswith("0") and p.get("reviews"))
    hostile = {**target, "name": f"Boot {XSS_SCRIPT}", "brand": XSS_IMG,
               "reviews": [{**r, "title": XSS_IMG, "text": f"Great {XSS_SCRIPT} {XSS_IMG}", "author": XSS_IMG}
                           for r in target["reviews"]]}
    feed["products"] = [hostile if p is target else p for p in feed["products"]]
    cache = CatalogCache(open_device_db(tmp_path / "catalog.db"))
    cache.replace_all(**feed)
    page, browser = KioskPage(), Browser(1280, 800)
    try:
        shopper = Shopper(outbox=Outbox(open_device_db(tmp_path / "outbox.db"), store=STORE, device=DEVICES[0]),
                          keys=KeySet({}), screen=page.screen.show, catalog=cache, store=STORE)
        load(browser, page.url)
        shopper.scan(Code("ean13", hostile["gtin"][1:]), time.monotonic())
        browser.wait_for("document.getElementById('app').dataset.view === 'product'")
        assert text_of(browser, "product-name") == hostile["name"]
        assert text_of(browser, "product-brand") == XSS_IMG
        reviews = text_of(browser, "product-reviews")
        assert XSS_SCRIPT in reviews and XSS_IMG in reviews
        assert browser.evaluate("document.querySelectorAll('#product-name *, #product-brand *, #product-reviews img, "
                                "#product-reviews script, .review-title *, .review-text *').length") == 0
        browser.evaluate("new Promise(r => setTimeout(r, 300))")
        assert browser.evaluate("window.__xss") is None and browser.dialogs == []
        assert not browser.csp_violations(), browser.errors()
    finally:
        browser.close()
        page.close()


# --- the whole store: a name changed online, kiosk ports, scanned URLs, the idle screen ------------

CONSENTING = [c for c in seed.build().customers if c["consent"]["clienteling"] and c["id"] not in ("M0001", "M0003")]


def _admin(store, method: str, path: str, body=None) -> requests.Response:
    key = (store.root / "online" / "api_key").read_text().strip()
    return requests.request(method, f"http://127.0.0.1:{store.online_port}/api/v1/_admin{path}", json=body, timeout=5,
                            headers={"Authorization": f"Bearer {key}"})


def _open_kiosk(browser: Browser, store, device: str) -> None:
    browser.goto(store.kiosk_url(device))
    browser.wait_for("document.body.dataset.socket === 'connected' && !!document.getElementById('app').dataset.view")


def test_a_name_changed_online_reaches_the_staff_app_and_the_kiosk_as_text(store, tmp_path):
    """Stored XSS through the real path: the online store's back office, a signed webhook, the hub's
    profile, the staff floor over Socket.IO, and the kiosk's welcome from the hub."""
    member = CONSENTING[-1]
    assert _admin(store, "PATCH", f"/customers/{member['id']}",
                  {"first_name": XSS_IMG, "last_name": XSS_SCRIPT}).status_code == 200
    staff, kiosk = Browser(1280, 800), Browser(1280, 800)
    try:
        wait_for(lambda: any(d["status"] == "delivered" and d.get("type") == "customer.updated"
                             for d in _admin(store, "GET", "/webhooks").json()["deliveries"]),
                 timeout=20, what="the customer.updated webhook delivered")
        staff.goto(store.hub_url)
        staff.type("#password-form [name=username]", "demo")
        staff.type("#password-form [name=password]", "demo")
        staff.click("#password-form button[type=submit]")
        staff.wait_for("location.pathname === '/' && document.getElementById('conn')?.dataset.state === 'live'")
        _open_kiosk(kiosk, store, "s001-k02")
        assert demo_cli(store, "checkin", member["id"], "--kiosk", "s001-k02").returncode == 0
        staff.wait_for(f"document.body.innerText.includes({json.dumps(XSS_IMG)})", timeout=30)
        kiosk.wait_for(f"document.body.innerText.includes({json.dumps(XSS_IMG)})", timeout=30)
        staff.goto(store.hub_url + f"customers/{member['id']}")
        staff.wait_for(f"document.getElementById('customer').innerText.includes({json.dumps(XSS_SCRIPT)})")
        for browser in (staff, kiosk):
            browser.evaluate("new Promise(r => setTimeout(r, 300))")
            assert browser.evaluate("window.__xss") is None and browser.dialogs == []
            assert browser.evaluate("[...document.querySelectorAll('img')].filter(i => i.getAttribute('src') === 'x')"
                                    ".length") == 0
            assert not browser.csp_violations(), browser.errors()
    finally:
        _admin(store, "PATCH", f"/customers/{member['id']}",
               {"first_name": member["first_name"], "last_name": member["last_name"]})
        staff.close()
        kiosk.close()


def _non_loopback_address() -> str:
    candidates = []
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))      # no packet is sent: this only picks the outward interface
            candidates.append(probe.getsockname()[0])
    except OSError:
        pass                                     # no route out: try what the host name resolves to
    try:
        candidates += socket.gethostbyname_ex(socket.gethostname())[2]
    except OSError:
        pass
    outward = [a for a in candidates if not a.startswith("127.") and a != "0.0.0.0"]
    if not outward:
        pytest.skip("this machine has no non-loopback IPv4 address to try the kiosk's ports on")
    return outward[0]


@pytest.mark.parametrize("port_of", [pytest.param(lambda s, d: s.kiosk_ports[d], id="kiosk-page"),
                                     pytest.param(lambda s, d: s.agent_ports[d], id="agent-local-api")])
def test_the_kiosk_and_its_agent_listen_on_loopback_only(store, port_of):
    outward = _non_loopback_address()
    for device in store.kiosks:
        port = port_of(store, device)
        assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
        with pytest.raises(OSError):
            socket.create_connection((outward, port), timeout=3).close()


def test_a_scanned_web_address_is_never_opened_nor_shown_as_a_link(store, tmp_path):
    device = "s001-k02"
    hub_db = store.root / "hub" / "hub.db"
    before = _rejections(hub_db, device).count({"reason": "foreign_url", "kind": "code", "symbology": "qr"})
    image = qr_png(EVIL_URL, tmp_path / "evil.png")
    browser = Browser(1280, 800)
    try:
        _open_kiosk(browser, store, device)
        browser.evaluate("window.__stayed = true")
        held: dict = {}
        holder = threading.Thread(target=lambda: held.update(
            done=demo_cli(store, "show", "--kiosk", device, "--seconds", "1.5", str(image))))
        holder.start()
        # The refusal shows for 6 s: read the page while it is up, then check the hub heard of it.
        browser.wait_for("document.body.innerText.includes(\"That link isn't one of ours\")", timeout=20)
        assert browser.evaluate("location.href") == store.kiosk_url(device)
        assert browser.evaluate("window.__stayed") is True, "the page was navigated away and back"
        html = browser.evaluate("document.documentElement.outerHTML")
        assert "evil.example" not in html
        assert browser.evaluate("document.querySelectorAll('a[href], area[href], [onclick]').length") == 0
        targets = browser.call("Target.getTargets")["targetInfos"]
        assert not [t for t in targets if "evil.example" in t.get("url", "")], "a window was opened on the URL"
        holder.join(30)
        assert held["done"].returncode == 0, held["done"].stderr
        wait_for(lambda: _rejections(hub_db, device).count(
            {"reason": "foreign_url", "kind": "code", "symbology": "qr"}) > before, timeout=30,
            what="the foreign_url rejection at the hub")
    finally:
        browser.close()


def _kiosk_api(store, device: str, path: str, body: dict) -> requests.Response:
    token = (store.kiosk_dir(device) / "local-api.token").read_text().strip()
    return requests.post(store.kiosk_url(device) + path.lstrip("/"), json=body, timeout=10,
                         headers={"Authorization": f"Bearer {token}"})


def test_an_idle_kiosk_page_keeps_no_personal_data_in_the_dom(store, tmp_path):
    device = "s001-k01"
    jane = next(c for c in seed.build().customers if c["id"] == "M0001")
    # The session outlives the second the QR is held up, so the member screen is there to be read first.
    answer = _kiosk_api(store, device, "/v1/config", {"settings": {"session.idle_timeout_s": 8}})
    assert answer.status_code == 200, answer.text
    browser = Browser(1280, 800)
    try:
        _open_kiosk(browser, store, device)
        qr = tmp_path / "jane.png"
        assert demo_cli(store, "member-qr", "M0001", "--out", str(qr)).returncode == 0
        assert demo_cli(store, "show", "--kiosk", device, "--seconds", "1", str(qr)).returncode == 0
        browser.wait_for("document.getElementById('app').dataset.view === 'member'", timeout=30)
        shown = browser.evaluate("""({name: document.body.innerText.includes('Jane'),
            points: document.getElementById('member-points-value').textContent,
            offers: [...document.querySelectorAll('#member-offers li, #member-offers .offer-title')]
                      .map(e => e.textContent.trim()).filter(Boolean),
            wishlist: document.getElementById('app').innerText})""")
        assert shown["name"] and shown["points"] and shown["offers"], shown
        browser.wait_for("document.getElementById('app').dataset.view === 'idle'", timeout=30)
        html = browser.evaluate("document.documentElement.outerHTML")
        for private in ["Jane", jane["last_name"], shown["points"], *shown["offers"]]:
            assert private not in html, f"{private!r} is still in the idle page"
    finally:
        browser.close()
        _kiosk_api(store, device, "/v1/config", {"settings": {"session.idle_timeout_s": 30}})


# --- logs of a busy store -------------------------------------------------------------------------

def _flask_session_id(secret_key: str, cookie: str) -> str:
    from flask import Flask
    from flask.sessions import SecureCookieSessionInterface
    app = Flask("decode")
    app.secret_key = secret_key
    return SecureCookieSessionInterface().get_signing_serializer(app).loads(cookie)["sid"]


def test_a_busy_store_logs_no_password_token_key_secret_cookie_or_email(store, tmp_path):
    """Runs last in this file on purpose: the shared store has also served every test above."""
    from hub.staff import hash_password
    from hub.store import HubStore, open_hub_db
    outputs: list[str] = []

    def cli(*args: str):
        done = demo_cli(store, *args)
        outputs.extend([done.stdout, done.stderr])
        assert done.returncode == 0, done.stderr
        return done

    suffix = hashlib.sha256(str(tmp_path).encode()).hexdigest()[:10]
    staff_password, wrong_password = f"Staff-Pw-{suffix}!", f"Wrong-Pw-{suffix}!"
    hub_db = HubStore(open_hub_db(store.root / "hub" / "hub.db"))
    hub_db.add_staff(f"sec{suffix}", hash_password(staff_password), "manager", STORE)
    hub_db.db.conn.close()

    # Staff: a wrong password, then a right one; a search by email, a profile view, a note, a cart push.
    http = requests.Session()
    token = re.search(r'name="csrf_token" value="([^"]+)"', http.get(store.hub_url + "login", timeout=5).text).group(1)
    assert http.post(store.hub_url + "login", data={"username": f"sec{suffix}", "password": wrong_password,
                                                   "csrf_token": token}, timeout=5).status_code == 401
    pre_login_cookie = http.cookies.get(COOKIE)
    http = signed_in(store, f"sec{suffix}", staff_password)
    cookies = [pre_login_cookie, http.cookies.get(COOKIE)]
    secret_key = (store.root / "hub" / "secret_key").read_text().strip()
    session_ids = [_flask_session_id(secret_key, cookies[1])]
    csrf = re.search(r'name="csrf-token" content="([^"]+)"', http.get(store.hub_url, timeout=5).text).group(1)
    customers = seed.build().customers
    members = [c for c in customers if c["consent"]["clienteling"]][:3]
    for member in members:
        assert http.get(store.hub_url + "search", params={"q": member["email"]}, timeout=5).status_code == 200
        assert http.get(store.hub_url + "api/search", params={"q": member["email"]}, timeout=5).status_code == 200

    # Check-ins with tokens we know, a replay on the other kiosk, product scans, a foreign URL.
    online_issuer = Issuer.load_or_create(store.issuer_key)
    tokens = []
    for index, member in enumerate(members):
        tokens.append(online_issuer.mint(member, now=datetime.now(timezone.utc)))
        image = qr_png(tokens[-1], tmp_path / f"member-{index}.png")
        cli("show", "--kiosk", store.kiosks[index % 2], "--seconds", "2", str(image))
    cli("show", "--kiosk", store.kiosks[1], "--seconds", "2", str(tmp_path / "member-0.png"))   # replayed
    card = online_issuer.mint(members[0], now=datetime.now(timezone.utc), typ="card")
    tokens.append(card)
    cli("show", "--kiosk", store.kiosks[0], "--seconds", "2", str(qr_png(card, tmp_path / "card.png")))
    cli("scan-product", "--kiosk", store.kiosks[0])
    cli("show", "--kiosk", store.kiosks[1], "--seconds", "2", str(qr_png(EVIL_URL, tmp_path / "evil.png")))
    member = members[0]
    wait_for(lambda: http.get(store.hub_url + f"api/customers/{member['id']}", timeout=5).status_code == 200,
             what="the member's profile")
    post = {"headers": {"X-CSRF-Token": csrf}, "timeout": 10}
    assert http.post(store.hub_url + f"api/customers/{member['id']}/notes",
                     json={"text": f"Prefers email {member['email']}"}, **post).status_code == 201
    gtin = seed.build().products[3]["gtin"]
    sent = http.post(store.hub_url + f"api/customers/{member['id']}/send", json={"gtin": gtin, "where": "cart"}, **post)
    assert sent.status_code == 200, sent.text

    # Webhooks: a real change in the online store's back office, and a forged delivery.
    def delivered() -> int:
        return sum(d["status"] == "delivered" and d.get("data", {}).get("customer_id") == member["id"]
                   for d in _admin(store, "GET", "/webhooks").json()["deliveries"])
    before = delivered()
    assert _admin(store, "PATCH", f"/customers/{member['id']}", {"points": member["points"] + 1}).status_code == 200
    wait_for(lambda: delivered() > before, timeout=20, what="the customer.updated webhook delivered")
    assert _admin(store, "PATCH", f"/customers/{member['id']}", {"points": member["points"]}).status_code == 200
    forged = requests.post(store.hub_url + "webhooks/online", data=b'{"type": "customer.updated"}', timeout=5,
                           headers={"Content-Type": "application/json", "X-Omnikiosk-Timestamp": str(int(time.time())),
                                    "X-Omnikiosk-Signature": "v1=" + "0" * 64})
    assert forged.status_code in (400, 401, 403)

    # MQTT: a kiosk's login tried with another kiosk's password; the local API with a wrong token.
    results: list = []
    stranger = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="stranger", protocol=mqtt.MQTTv5)
    stranger.username_pw_set(store.kiosks[0], store.broker.passwords[store.kiosks[1]])
    stranger.on_connect = lambda c, u, flags, rc, props: results.append(rc)
    stranger.connect(store.broker.host, store.broker.port)
    stranger.loop_start()
    wait_for(lambda: results, what="CONNACK")
    stranger.loop_stop()
    assert results[0].is_failure
    local_tokens = [(store.kiosk_dir(d) / "local-api.token").read_text().strip() for d in store.kiosks]
    assert requests.post(store.kiosk_url(store.kiosks[0]) + "v1/screen-message", json={"text": "hi", "seconds": 3},
                         headers={"Authorization": f"Bearer {local_tokens[1]}x"}, timeout=5).status_code == 401
    assert _kiosk_api(store, store.kiosks[0], "/v1/screen-message", {"text": "Closing soon", "seconds": 3}
                      ).status_code == 200
    http.post(store.hub_url + "logout", data={"csrf_token": csrf}, timeout=5)
    time.sleep(1.5)   # let every process write what it logs

    secrets = {
        "staff password": [staff_password, wrong_password],
        "MQTT password": list(store.broker.passwords.values()),
        "member token": tokens + [t.split(".")[2] for t in tokens] + [t.split(".")[1] for t in tokens],
        "online API key": [(store.root / "online" / "api_key").read_text().strip()],
        "webhook secret": [(store.root / "online" / "webhook_secret").read_text().strip()],
        "hub session key": [secret_key],
        "local API token": local_tokens,
        "session cookie": [c for c in cookies if c] + session_ids,
        "customer email": [c["email"] for c in customers],
    }
    logs = {path: path.read_text(errors="replace") for path in
            [*sorted((store.root / "logs").glob("*.log")), store.root / "broker" / "mosquitto.log"]}
    logs.update({Path(f"demo-cli-output-{n}"): text for n, text in enumerate(outputs)})
    hub_log = logs[store.root / "logs" / "hub.log"]
    # The run happened and was logged: otherwise finding no secret proves nothing.
    assert "login failed" in hub_log and "staff signed in" in hub_log
    assert "member token replayed on another kiosk" in hub_log
    assert "bad_signature" in hub_log and "cart line added online" in hub_log
    assert "member checked in" in logs[store.root / "logs" / "s001-k01-kiosk.log"]
    leaks = [f"{kind} in {path.name}" for kind, values in secrets.items() for value in values
             for path, text in logs.items() if value and value in text]
    assert not leaks, sorted(set(leaks))
