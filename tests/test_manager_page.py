"""The manager's analytics page over real HTTP and in real (headless) Chromium: who may open it, the GET form
(dates, channel, attribution window, quick ranges) changing the figures, server-drawn SVG charts, the CSV
export of every table matching the page, CSV injection and markup in product names, bad queries.

The hub database gets facts whose answers are known (written the way the hub writes them: online sessions
and orders through hub.analytics_data, till sales, kiosk sessions, visits, kiosk activity and touches as
rows), in the store's time zone, relative to today so the default range (the last 30 days) has data.
`OMNIKIOSK_SCREENSHOTS=docs/screenshots pytest tests/test_manager_page.py -k screenshots` writes the
screenshots of docs/analytics.md again (from a busier, generated history).
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
import re
import threading
import time
from datetime import date, datetime, timedelta, timezone
from datetime import time as dtime
from html.parser import HTMLParser
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import requests
from browser import Browser
from werkzeug.serving import make_server

import hub.config
from hub import analytics
from hub import staff as staff_rules
from hub.analytics_data import record_online_sessions, record_orders
from hub.manager_view import format_cell
from hub.store import HubStore, open_hub_db
from hub.web import create_app
from protocol.envelope import format_ts
from protocol.settings import parse

STORE = "s001"
TZ = "Europe/Amsterdam"
ZONE = ZoneInfo(TZ)
STAFF = {"ann": ("associate", "ann-password-1"), "maria": ("manager", "maria-password-1"),
         "ivan": ("it", "ivan-password-1")}
XSS_NAME = "<img src=x onerror=alert(1)>"
FORMULA_NAME = '=HYPERLINK("http://evil.example/","click")'
SCREENSHOTS = os.environ.get("OMNIKIOSK_SCREENSHOTS")
TODAY = datetime.now(ZONE).date()
DAY_A, DAY_B = TODAY - timedelta(days=20), TODAY - timedelta(days=5)


def at(day: date, hour: int, minute: int = 0) -> str:
    """A store-local moment as the hub stores times (UTC text)."""
    return format_ts(datetime.combine(day, dtime(hour, minute), ZONE).astimezone(timezone.utc))


def add_product(db, gtin: str, name: str) -> None:
    db.execute("INSERT INTO catalog_rows (kind, key, version, hash, data) VALUES ('product', ?, 1, 'h', ?)",
               [gtin, json.dumps({"gtin": gtin, "name": name})])


def add_till_sale(db, sale_id: str, when: str, total: float, customer: str | None, lines=()) -> None:
    db.execute("INSERT INTO sales (id, origin, customer, channel, ts, total, currency, status, received_at) "
               "VALUES (?, 'pos', ?, 'store', ?, ?, 'EUR', 'completed', ?)", [sale_id, customer, when, total, when])
    db.conn.executemany("INSERT INTO sale_lines VALUES (?, ?, ?, ?)", [(sale_id, *line) for line in lines])


def add_kiosk_session(db, session: str, device: str, when: str, member: str | None, activity=()) -> None:
    db.execute("INSERT INTO sessions (id, device, member, started_at) VALUES (?, ?, ?, ?)", [session, device, member, when])
    rows = [("session.started", None, 0)] + list(activity)
    for i, (kind, gtin, out_of_stock) in enumerate(rows):
        event_id = f"{session}-e{i}"
        db.execute("INSERT INTO store_activity VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                   [event_id, when, device, session, member, kind, gtin, out_of_stock])
        if member and kind in ("scan.product", "assist.requested", "cart.sent"):
            db.execute("INSERT INTO touches VALUES (?, ?, ?, 'kiosk', ?)", [event_id, member, when, gtin])


def add_visit(db, visit: str, member: str, when: str) -> None:
    db.execute("INSERT INTO visits (id, member, store, started_at, last_seen_at, kiosks) VALUES (?, ?, ?, ?, ?, '[]')",
               [visit, member, STORE, when, when])
    db.execute("INSERT INTO touches (ref, customer, ts, channel) VALUES (?, ?, ?, 'store')", ["visit:" + visit, member, when])


def seed_known(hub_store: HubStore) -> None:
    """Three sales whose sums the tests know:
    - day A (20 days ago): a web order of 100.00 by M0001 (3 web sessions that day, one his);
    - day B (5 days ago): an app order of 1,234.50 by M0002 (2 app sessions), and a till sale of 50.25 by M0001
      of the shoe he scanned at a kiosk an hour before (kiosk-assisted);
    - at the kiosk on day B: 3 scans of an out-of-stock product named like markup, 2 of one named like a formula.
    M0001 visited the store on both days (a repeat visitor over the whole range)."""
    with hub_store.transaction():
        write_known(hub_store.db)


def write_known(db) -> None:
    add_product(db, "4006381333931", "Trail shoe")
    add_product(db, "4006381333948", XSS_NAME)
    add_product(db, "4006381333955", FORMULA_NAME)
    record_online_sessions(db, [
        {"id": "w1", "channel": "web", "customer_id": "M0001", "started_at": at(DAY_A, 9), "added_to_cart": True},
        {"id": "w2", "channel": "web", "started_at": at(DAY_A, 10)},
        {"id": "w3", "channel": "web", "started_at": at(DAY_A, 11)},
        {"id": "a1", "channel": "app", "customer_id": "M0002", "started_at": at(DAY_B, 18)},
        {"id": "a2", "channel": "app", "started_at": at(DAY_B, 19)}])
    record_orders(db, [
        {"id": "o1", "channel": "web", "customer_id": "M0001", "placed_at": at(DAY_A, 9, 30), "total": 100.0,
         "currency": "EUR", "status": "placed", "lines": [{"gtin": "4006381333931", "quantity": 1, "amount": 100.0}]},
        {"id": "o2", "channel": "app", "customer_id": "M0002", "placed_at": at(DAY_B, 18, 30), "total": 1234.5,
         "currency": "EUR", "status": "placed", "lines": []}], currency="EUR", now=datetime.now(timezone.utc))
    add_visit(db, "v1", "M0001", at(DAY_A, 14))
    add_visit(db, "v2", "M0001", at(DAY_B, 11))
    add_kiosk_session(db, "k1", "s001-k01", at(DAY_B, 11), "M0001", [("scan.member", None, 0),
                                                                      ("scan.product", "4006381333931", 0)])
    add_kiosk_session(db, "k2", "s001-k02", at(DAY_B, 15), None, [("scan.product", "4006381333948", 1)] * 3
                      + [("scan.product", "4006381333955", 1)] * 2)
    add_till_sale(db, "pos:1", at(DAY_B, 12), 50.25, "M0001", [("4006381333931", 1, 50.25)])


def seed_history(hub_store: HubStore) -> None:
    """A store's last 60 days for the screenshots: demo/history.py's generated past, loaded through the hub's
    live paths (ingest, online feed, till import); without it, a simpler history written here."""
    try:
        from demo.history import generate, load
    except ImportError:
        with hub_store.transaction():
            write_busy(hub_store.db)
        return
    load(hub_store, generate(customers=300, days=60, end=datetime.now(timezone.utc), seed=7, tz=ZONE,
                             sessions_per_day=30))


def write_busy(db, *, days: int = 60, seed: int = 7) -> None:
    """A plausible store history: shoppers online and in store, more at weekends and in the afternoon,
    kiosks in use, some products out of stock."""
    rng = random.Random(seed)
    products = [("4006381333931", "Trail running shoe"), ("4006381333962", "Merino base layer"),
                ("4006381333979", "Rain jacket, men's"), ("4006381333986", "Hiking sock 3-pack"),
                ("4006381333993", "Insulated bottle 0.75 l"), ("4006381334006", "Down vest, women's"),
                ("4006381334013", "Headlamp 400 lm"), ("4006381334020", "Trekking poles"),
                ("4006381334037", "Softshell trousers"), ("4006381334044", "Kids' rain boots"),
                ("4006381334051", "Cap, reflective"), ("4006381334068", "Gaiters")]
    for gtin, name in products:
        add_product(db, gtin, name)
    weights = {"web": 30, "app": 18, "social": 8, "email": 6, "search": 12, "marketplace": 5}
    members = [f"M{n:04d}" for n in range(1, 140)]
    online, orders = [], []
    for d in range(days):
        day = TODAY - timedelta(days=days - 1 - d)
        busy = 1.5 if day.weekday() >= 5 else 1.0
        for channel, weight in weights.items():
            for n in range(int(weight * busy * rng.uniform(0.6, 1.3))):
                hour = min(23, max(0, int(rng.gauss(19 if channel != "email" else 9, 3))))
                who = rng.choice(members) if rng.random() < 0.5 else None
                sid = f"{channel}-{d}-{n}"
                online.append({"id": sid, "channel": channel, "customer_id": who, "started_at": at(day, hour, rng.randrange(60)),
                               "added_to_cart": rng.random() < 0.2})
                if who and rng.random() < 0.12:
                    gtin = rng.choice(products)[0]
                    total = round(rng.uniform(19, 240), 2)
                    orders.append({"id": f"o-{sid}", "channel": channel, "customer_id": who, "total": total,
                                   "placed_at": at(day, hour, 59), "currency": "EUR", "status": "placed",
                                   "lines": [{"gtin": gtin, "quantity": 1, "amount": total}]})
        for n in range(int(22 * busy * rng.uniform(0.7, 1.2))):
            hour = min(20, max(9, int(rng.gauss(15, 2.5))))
            who = rng.choice(members) if rng.random() < 0.6 else None
            kiosk = f"s001-k0{rng.randint(1, 3)}"
            activity = [("scan.member", None, 0)] if who else []
            for _ in range(rng.randint(0, 4)):
                gtin = rng.choice(products)[0]
                activity.append(("scan.product", gtin, int(gtin in ("4006381334006", "4006381334020", "4006381333979")
                                                          and rng.random() < 0.6)))
            if rng.random() < 0.1:
                activity.append(("assist.requested", None, 0))
            if rng.random() < 0.08:
                activity.append(("cart.sent", None, 0))
            when = at(day, hour, rng.randrange(60))
            add_kiosk_session(db, f"k-{d}-{n}", kiosk, when, who, activity)
            if who:
                add_visit(db, f"v-{d}-{n}", who, when)
            if rng.random() < 0.45:
                scanned = [g for kind, g, _ in activity if kind == "scan.product"]
                total = round(rng.uniform(15, 300), 2)
                add_till_sale(db, f"pos-{d}-{n}", at(day, min(hour + 1, 21), rng.randrange(60)), total, who,
                              [(scanned[0] if scanned else rng.choice(products)[0], 1, total)])
    record_online_sessions(db, online)
    record_orders(db, orders, currency="EUR", now=datetime.now(timezone.utc))


class ManagerHub:
    """The staff web app over a temporary hub database (no floor: the analytics page reads the database)."""

    def __init__(self, folder: Path, seed=seed_known):
        self.store = HubStore(open_hub_db(folder / "hub.db"))
        seed(self.store)
        config = parse(hub.config.SETTINGS, {
            "store": STORE, "store_name": "Outdoor Store Utrecht", "demo": True, "timezone": TZ,
            "mqtt": {"password_file": "unused"}, "online": {"base_url": "http://127.0.0.1:9/", "api_key_file": "unused"}},
            {}, source="test")
        self.app, _ = create_app(config, hub_store=self.store, secret_key="k" * 32)
        for username, (role, password) in STAFF.items():
            self.store.add_staff(username, staff_rules.hash_password(password), role, STORE)
        self.http = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.url = f"http://127.0.0.1:{self.http.server_port}/"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()


@pytest.fixture
def light(tmp_path):
    hub_ = ManagerHub(tmp_path)
    yield hub_
    hub_.close()


def sign_in(light: ManagerHub, username: str) -> requests.Session:
    http = requests.Session()
    token = re.search(r'name="csrf_token" value="([^"]+)"', http.get(light.url + "login", timeout=5).text).group(1)
    answer = http.post(light.url + "login", data={"username": username, "password": STAFF[username][1],
                                                  "csrf_token": token}, timeout=5, allow_redirects=False)
    assert answer.status_code == 302
    return http


def browser_sign_in(browser: Browser, light: ManagerHub, username: str, path: str = "manager") -> None:
    browser.goto(light.url + path)
    browser.wait_for("location.pathname === '/login'")
    browser.type("#password-form [name=username]", username)
    browser.type("#password-form [name=password]", STAFF[username][1])
    browser.click("#password-form button[type=submit]")
    browser.wait_for(f"location.pathname === {json.dumps('/' + path)} && document.readyState === 'complete'")


def query(start: date, end: date, **more) -> dict[str, str]:
    return {"from": start.isoformat(), "to": end.isoformat(), **more}


SHOWN_TABLES = [name for name in analytics.TABLES if name != "summary"]


def cards(browser: Browser) -> dict[str, str]:
    return browser.evaluate("Object.fromEntries([...document.querySelectorAll('[data-card]')]"
                            ".map(n => [n.dataset.card, n.textContent.trim()]))")


class PageTables(HTMLParser):
    """Each table section of the page: {name: (header labels, column kinds, rows of cell texts)}."""

    def __init__(self):
        super().__init__()
        self.tables: dict[str, tuple[list[str], list[str], list[list[str]]]] = {}
        self.current, self.cell, self.row = None, None, None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section" and "data-table" in attrs:
            self.current = attrs["data-table"]
            self.tables[self.current] = ([], [], [])
        elif self.current and tag in ("th", "td"):
            self.cell = ""
            if tag == "th":
                self.tables[self.current][1].append(attrs.get("class", "").removeprefix("kind-"))
        elif self.current and tag == "tr" and self.row is None:
            self.row = []

    def handle_data(self, data):
        if self.cell is not None:
            self.cell += data

    def handle_endtag(self, tag):
        if self.current is None:
            return
        if tag == "th":
            self.tables[self.current][0].append(self.cell.strip())
            self.cell = None
        elif tag == "td":
            self.row.append(self.cell.strip())
            self.cell = None
        elif tag == "tr":
            if self.row:
                self.tables[self.current][2].append(self.row)
            self.row = None
        elif tag == "section":
            self.current = None


def page_tables(html: str) -> dict[str, tuple[list[str], list[str], list[list[str]]]]:
    parser = PageTables()
    parser.feed(html)
    return parser.tables


# --- who may open it

def test_only_managers_open_the_analytics_and_its_export(light):
    anonymous = requests.get(light.url + "manager", timeout=5, allow_redirects=False)
    assert anonymous.status_code == 302 and "/login" in anonymous.headers["Location"]
    assert requests.get(light.url + "manager/export/channels.csv", timeout=5, allow_redirects=False).status_code == 302
    for username in ("ann", "ivan"):
        http = sign_in(light, username)
        for path in ("manager", "manager/export/channels.csv"):
            answer = http.get(light.url + path, timeout=5)
            assert answer.status_code == 403 and "Your role cannot open this" in answer.text, (username, path)
        assert 'href="/manager"' not in http.get(light.url + "account", timeout=5).text   # no nav entry either
    maria = sign_in(light, "maria")
    page = maria.get(light.url + "manager", timeout=5)
    assert page.status_code == 200 and 'href="/manager" aria-current="page">Analytics</a>' in page.text
    assert not any(e["action"] == "analytics.export" for e in light.store.audit_log())


# --- the page in a browser

def test_a_manager_sees_figures_tables_and_svg_charts_and_markup_stays_text(light, browsers):
    browser = browsers()
    browser_sign_in(browser, light, "maria")
    # The default range is the last 30 days: both seeded days are in it.
    # Sessions: 3 web, 2 app, 2 kiosk sessions (the 2 store visits are kiosk sessions, not counted again);
    # contacts: M0001 and M0002, each counted once.
    assert cards(browser) == {"revenue": "1,384.75 EUR", "sales": "3", "sessions": "7", "contacts": "2",
                              "assisted": "50.25 EUR", "repeat": "100.0 %"}
    sections = browser.evaluate("[...document.querySelectorAll('[data-table]')].map(n => n.dataset.table)")
    assert sections == SHOWN_TABLES  # the summary is the cards
    charts = browser.evaluate("[...document.querySelectorAll('svg.chart-svg')].map(s => "
                              "[s.closest('[data-table]').dataset.table, s.getAttribute('role'), s.querySelector('title').textContent])")
    assert {name for name, _, _ in charts} == {"channels", "attribution", "lost_demand", "peak_hours", "kiosks", "daily"}
    assert all(role == "img" and title for _, role, title in charts)
    # The assisted total stands out; the repeat figures are cards too.
    assert browser.evaluate("document.querySelector('#table-assisted .an-figure-big .an-figure-value').textContent") == "50.25 EUR"
    assert "Came back" in browser.evaluate("document.querySelector('#table-repeat .an-figures').textContent")
    # A product named like markup is text, in the table and in the chart; nothing ran.
    products = browser.evaluate("[...document.querySelectorAll('#table-lost_demand tbody td:nth-child(2)')].map(n => n.textContent)")
    assert products == [XSS_NAME, FORMULA_NAME]
    assert browser.evaluate(f"[...document.querySelectorAll('#table-lost_demand svg rect title')]"
                            f".some(n => n.textContent === {json.dumps(XSS_NAME + ': 3')})")
    assert browser.evaluate("document.querySelectorAll('main img, main script').length") == 0
    time.sleep(0.3)
    assert browser.dialogs == [] and not browser.csp_violations(), browser.errors()
    # The heat map: every hour of every day, the count in a tooltip.
    assert browser.evaluate("document.querySelectorAll('#table-peak_hours svg rect title').length") == 7 * 24
    # Empty tables say so instead of drawing nothing: no kiosk data in a range without any.
    browser.goto(light.url + "manager?" + "&".join(f"{k}={v}" for k, v in query(DAY_A, DAY_A).items()))
    assert browser.evaluate("document.querySelector('#table-kiosks .an-empty').textContent") == "No data in this range"
    assert browser.evaluate("!document.querySelector('#table-kiosks svg')")
    # A range with nothing in it: every table says so (its CSV link stays, with the header row).
    browser.goto(light.url + f"manager?from={TODAY - timedelta(days=100)}&to={TODAY - timedelta(days=90)}")
    assert browser.evaluate("document.querySelectorAll('.an-empty').length") == len(SHOWN_TABLES)
    assert browser.evaluate("document.querySelectorAll('svg').length") == 0
    assert cards(browser)["revenue"] == "0.00 EUR"


def test_changing_the_range_and_channel_in_the_form_changes_the_figures(light, browsers):
    browser = browsers()
    browser_sign_in(browser, light, "maria")
    browser.evaluate(f"""(() => {{ const form = document.getElementById('filters');
        form.elements['from'].value = {json.dumps((DAY_B - timedelta(days=1)).isoformat())};
        form.elements['to'].value = {json.dumps(DAY_B.isoformat())}; }})()""")
    browser.click(".an-submit")
    browser.wait_for(f"location.search.includes('from={DAY_B - timedelta(days=1)}') && document.readyState === 'complete'")
    assert cards(browser)["revenue"] == "1,284.75 EUR" and cards(browser)["sales"] == "2"
    assert cards(browser)["repeat"] == "0.0 %"   # one visit in this range: nobody came back
    # The channel: only the web order.
    browser.evaluate(f"""(() => {{ const form = document.getElementById('filters');
        form.elements['from'].value = {json.dumps(DAY_A.isoformat())}; form.elements['channel'].value = 'web'; }})()""")
    browser.click(".an-submit")
    browser.wait_for("location.search.includes('channel=web') && document.readyState === 'complete'")
    assert cards(browser)["revenue"] == "100.00 EUR" and cards(browser)["sales"] == "1"
    assert browser.evaluate("document.querySelector('select[name=channel]').value") == "web"
    assert browser.evaluate("document.getElementById('range-text').textContent").startswith(f"{DAY_A} to {DAY_B} · Web")
    # A quick range keeps the channel and sets the dates.
    browser.click(".an-quick-link:nth-child(1)")   # last 7 days
    browser.wait_for(f"location.search.includes('from={TODAY - timedelta(days=6)}') && document.readyState === 'complete'")
    assert "channel=web" in browser.evaluate("location.search") and cards(browser)["revenue"] == "0.00 EUR"
    assert browser.evaluate("document.querySelector('.an-quick-link[aria-current]').textContent") == "Last 7 days"
    assert not browser.csp_violations(), browser.errors()


def test_the_form_works_without_javascript(light):
    http = sign_in(light, "maria")
    page = http.get(light.url + "manager", params=query(DAY_A, DAY_A), timeout=5).text
    assert 'data-card="revenue">100.00 EUR<' in page
    assert 'data-card="revenue">1,234.50 EUR<' in http.get(light.url + "manager", timeout=5,
                                                          params=query(DAY_A, DAY_B, channel="app")).text


def test_a_bad_query_is_refused_with_the_reason_in_the_form(light, browsers):
    http = sign_in(light, "maria")
    answer = http.get(light.url + "manager", params=query(DAY_B, DAY_A), timeout=5)
    assert answer.status_code == 400 and "is after" in answer.text and 'id="query-error"' in answer.text
    assert http.get(light.url + "manager", params={"channel": "carrier-pigeon"}, timeout=5).status_code == 400
    assert http.get(light.url + "manager", params={"window": "0"}, timeout=5).status_code == 400
    export = http.get(light.url + "manager/export/daily.csv", params=query(DAY_B, DAY_A), timeout=5)
    assert export.status_code == 400 and "is after" in export.text
    browser = browsers(390, 844)
    browser.viewport(390, 844, mobile=True)
    browser_sign_in(browser, light, "maria")
    browser.goto(light.url + f"manager?from={DAY_B}&to={DAY_A}")
    message = browser.evaluate("document.getElementById('query-error').innerText")
    assert f"'from' ({DAY_B}) is after 'to' ({DAY_A})" in message
    # What was typed stays in the form to be corrected; no figures are shown.
    assert browser.evaluate("document.querySelector('[name=from]').value") == DAY_B.isoformat()
    assert browser.evaluate("document.querySelectorAll('[data-table]').length") == 0


# --- the CSV export

def test_every_table_exports_as_csv_equal_to_the_page(light):
    http = sign_in(light, "maria")
    args = query(DAY_A, DAY_B, window="14")
    shown = page_tables(http.get(light.url + "manager", params=args, timeout=5).text)
    assert list(shown) == SHOWN_TABLES
    summary = list(csv.reader(io.StringIO(http.get(light.url + "manager/export/summary.csv", params=args,
                                                   timeout=5).content.decode("utf-8-sig"))))
    assert summary[0] == ["Sessions", "Contacts", "Qualified", "Sales", "Revenue"]
    assert summary[1][:2] == ["7", "2"] and summary[1][3:] == ["3", "1384.75"]
    for name in SHOWN_TABLES:
        answer = http.get(light.url + f"manager/export/{name}.csv", params=args, timeout=5)
        assert answer.status_code == 200 and answer.headers["Content-Type"] == "text/csv; charset=utf-8"
        assert answer.headers["Content-Disposition"] == f'attachment; filename="omnikiosk-{STORE}-{name}-{DAY_A}-{DAY_B}.csv"'
        rows = list(csv.reader(io.StringIO(answer.content.decode("utf-8-sig"))))
        labels, kinds, cells = shown[name]
        assert rows[0] == labels, name
        assert len(rows) - 1 == len(cells), name
        for csv_row, page_row in zip(rows[1:], cells):
            as_shown = [format_cell(kind, value.removeprefix("'") if kind == "text" else float(value))
                        for kind, value in zip(kinds, csv_row)]
            assert as_shown == page_row, (name, csv_row, page_row)
    exports = [e for e in light.store.audit_log() if e["action"] == "analytics.export"]
    assert sorted(e["subject"] for e in exports) == sorted(analytics.TABLES)  # the summary too
    assert all(e["actor"] == "maria" and f"{DAY_A}..{DAY_B}" in e["detail"] and "window=14d" in e["detail"]
               for e in exports)
    assert http.get(light.url + "manager/export/secrets.csv", params=args, timeout=5).status_code == 404


def test_a_formula_in_a_cell_is_defused_and_a_negative_number_stays_a_number(light):
    http = sign_in(light, "maria")
    text = http.get(light.url + "manager/export/lost_demand.csv", params=query(DAY_A, DAY_B), timeout=5).content.decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["GTIN", "Product", "Scans", "Shoppers"]
    assert rows[1:] == [["4006381333948", XSS_NAME, "3", "1"], ["4006381333955", "'" + FORMULA_NAME, "2", "1"]]
    from hub.manager_view import csv_safe
    assert [csv_safe(v) for v in ("-12.50", "-3", "+31 6 1234", "@SUM(A1)", "\tx", "\rx", "-1+1", "plain")] == \
        ["-12.50", "-3", "'+31 6 1234", "'@SUM(A1)", "'\tx", "'\rx", "'-1+1", "plain"]


# --- fits tablet and phone; the screenshots of docs/analytics.md

def layout_problems(browser: Browser) -> list[str]:
    """Anything wider than the screen, and any visible control smaller than a finger (44 px)."""
    return browser.evaluate("""(() => {
        const problems = [];
        if (document.documentElement.scrollWidth > window.innerWidth + 1)
          problems.push('page scrolls sideways: ' + document.documentElement.scrollWidth + ' > ' + window.innerWidth);
        for (const node of document.querySelectorAll('a.btn, button, .tab, summary, input:not([type=hidden]), select, .an-quick-link')) {
          const r = node.getBoundingClientRect();
          if (!r.width || !r.height) continue;
          if (r.height < 44 || r.width < 44) problems.push('small target: ' + (node.innerText || node.name || node.className).trim().slice(0, 40) + ' ' + Math.round(r.width) + 'x' + Math.round(r.height));
          if (r.right > window.innerWidth + 1) problems.push('off screen: ' + (node.innerText || node.className).trim().slice(0, 40));
        }
        return problems;
    })()""")


@pytest.mark.parametrize("width,height,mobile,name", [(1280, 800, False, "tablet"), (390, 844, True, "phone")],
                         ids=["tablet-1280x800", "phone-390x844"])
def test_the_page_fits_tablet_and_phone_and_screenshots(tmp_path, browsers, width, height, mobile, name):
    busy = ManagerHub(tmp_path, seed=seed_history)
    try:
        browser = browsers(width, height)
        browser.viewport(width, height, mobile=mobile)
        browser_sign_in(browser, busy, "maria")
        browser.goto(busy.url + "manager?" + "&".join(f"{k}={v}" for k, v in
                                                      query(TODAY - timedelta(days=29), TODAY).items()))
        assert browser.evaluate("document.querySelectorAll('svg.chart-svg').length") >= 6
        assert layout_problems(browser) == []
        assert not browser.csp_violations(), browser.errors()
        if SCREENSHOTS:
            browser.evaluate("document.activeElement && document.activeElement.blur()")
            browser.screenshot(Path(SCREENSHOTS) / f"manager-{name}.png", full_page=True)
    finally:
        busy.close()
