"""The shopper's kiosk page in real headless Chromium, fed by the real kiosk web app (kiosk.web.create_app).

Each test pushes screens the way the kiosk does (`Screen.show`), then reads the page back: what a
shopper sees, what a passer-by must never see, what a tap sends, and that nothing scrolls on the
7" (800x480) and 10" (1280x800) screens.
"""

from __future__ import annotations

import json
import threading

import pytest
import segno
from werkzeug.serving import make_server

import kiosk.config
from browser import Browser
from conftest import wait_for
from kiosk.web import Screen, create_app
from protocol.settings import parse

GTIN = "05012345678900"
XSS_TAG = '<img src=x onerror="window.__xss=1">'
XSS_SCRIPT = "<script>alert(1)</script>"


def qr(text: str) -> str:
    return segno.make_qr(text, error="m").svg_data_uri(scale=4, border=2)


def product(**changes) -> dict:
    view = {
        "view": "product", "gtin": GTIN, "known": True,
        "name": "Knit Ankle Boot, Rust", "brand": "Nordvik", "category": "shoes",
        "description": "A warm knit boot with a cushioned footbed.", "image_url": None,
        "price": 89.95, "currency": "EUR", "compare_at_price": 119.95,
        "promotion": {"label": "-25%", "text": "Winter sale"},
        "rating": {"average": 4.3, "count": 27},
        "reviews": [
            {"rating": 5, "title": "Warm and comfy", "text": "True to size and warm enough for December.",
             "author": "Anna K.", "date": "2026-10-02"},
            {"rating": 4, "title": "Nice colour", "text": "The rust is lovely in daylight.", "author": "Tom B.",
             "date": "2026-09-14"},
            {"rating": 3, "title": "Runs small", "text": "Take a size up.", "author": "Lee W.", "date": "2026-08-01"},
        ],
        "stock": {"here": {"quantity": 3, "location": "Shoes · aisle 4"},
                  "nearby": [{"store": "s002", "name": "Kalverstraat", "quantity": 5}],
                  "online": {"available": True}},
        "online_url": f"https://shop.omnikiosk.example/p/{GTIN}",
        "online_qr": qr(f"https://shop.omnikiosk.example/p/{GTIN}"),
        "updated_at": "2026-11-22T09:00:00Z",
        "member": None, "member_offer": None, "offers_note": None, "can_send_to_cart": False,
    }
    view.update(changes)
    return view


JANE = {"first_name": "Jane", "tier": "Gold"}
GOLD10 = {"id": "o1", "title": "10% off for Gold members", "text": "On full-price shoes, today only.",
          "code": "GOLD10", "code_qr": qr("GOLD10")}
KNIT2X = {"id": "o2", "title": "Double points on knitwear", "text": "Two points per euro this week.",
          "code": "KNIT2X", "code_qr": qr("KNIT2X")}
TILL = "Your personal offers are available at the till"


def member(**changes) -> dict:
    view = {"view": "member", "first_name": "Jane", "tier": "Gold", "points": 4088,
            "offers": [GOLD10, KNIT2X], "offers_note": None,
            "wishlist_here": [{"name": "Recycled Nylon Bomber, Sand", "location": "Outerwear · aisle 2"},
                              {"name": "Recycled Canvas Tote, Olive", "location": "Bags · front tables"},
                              {"name": "Cashmere Blend Quarter-Zip, Sky Blue", "location": "Knitwear · aisle 3"},
                              {"name": "Merino Cardigan, Chocolate", "location": "Knitwear · aisle 3"}]}
    view.update(changes)
    return view


class KioskPage:
    """The real kiosk web app on a free port, with callbacks that answer like the kiosk does."""

    def __init__(self):
        config = parse(kiosk.config.SETTINGS, {"store": "s001", "device": "s001-k01",
                                               "tokens": {"jwks_file": "x"}}, {})
        self.screen = Screen()
        self.calls: list[tuple] = []
        self._lock = threading.Lock()
        app, _ = create_app(config, screen=self.screen, on_done=self.on_done, on_assist=self.on_assist,
                            on_send_to_cart=self.on_send_to_cart)
        self.http = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.http.server_port}/"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def record(self, *call) -> None:
        with self._lock:
            self.calls.append(call)

    def on_done(self) -> None:
        self.record("done")
        self.screen.show({"view": "idle"})

    def on_assist(self, gtin) -> None:
        self.record("assist", gtin)
        self.screen.notice("assist", "A colleague is on the way")

    def on_send_to_cart(self, gtin) -> None:
        self.record("send_to_cart", gtin)
        self.screen.notice("cart", "Sent to your online cart")

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()


@pytest.fixture(scope="module")
def kiosk_page():
    page = KioskPage()
    yield page
    page.close()


@pytest.fixture(scope="module")
def chromium():
    browser = Browser(800, 480)
    yield browser
    browser.close()


@pytest.fixture
def page(kiosk_page, chromium):
    """A freshly loaded kiosk page at 800x480 on the idle screen."""
    kiosk_page.calls.clear()
    kiosk_page.screen.show({"view": "idle"})
    resize(chromium, 800, 480)
    chromium.console.clear()
    load(chromium, kiosk_page.url)
    chromium.wait_for("document.getElementById('app').dataset.view === 'idle'")
    return kiosk_page, chromium


def load(browser: Browser, url: str) -> None:
    """Open the page and wait for its socket; the marker tells the new page from the one before."""
    browser.evaluate("window.__previous = true")
    browser.goto(url)
    browser.wait_for("!window.__previous && document.body.dataset.socket === 'connected'")


def resize(browser: Browser, width: int, height: int) -> None:
    browser.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
    browser.wait_for(f"innerWidth === {width} && innerHeight === {height}")


def show(kiosk_page: KioskPage, browser: Browser, payload: dict, view: str | None = None) -> None:
    """Push a screen and wait until the page has drawn it (two frames: fitting runs after layout)."""
    marker = browser.evaluate("window.__shown = (window.__shown || 0) + 1")
    kiosk_page.screen.show(payload)
    browser.wait_for(f"document.getElementById('app').dataset.view === {json.dumps(view or payload['view'])}")
    browser.evaluate("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
    assert browser.evaluate("window.__shown") == marker  # the page was not reloaded


def visible_text(browser: Browser) -> str:
    return browser.evaluate("document.body.innerText")


def text_of(browser: Browser, element_id: str) -> str:
    return browser.evaluate(f"document.getElementById({json.dumps(element_id)}).textContent")


ACTIVE_VIEW = "document.querySelector(`.view[data-for='${document.getElementById('app').dataset.view}']`)"


def is_visible(browser: Browser, selector: str) -> bool:
    """On the screen now: in the view on show, laid out, not hidden."""
    return browser.evaluate(f"""(() => {{ const e = document.querySelector({json.dumps(selector)});
        if (!e) return false; const r = e.getBoundingClientRect(), view = e.closest('.view');
        return r.width > 0 && r.height > 0 && !e.closest('.hidden') && (!view || view === {ACTIVE_VIEW}); }})()""")


def tap(browser: Browser, selector: str) -> None:
    """A real tap in the middle of the element in the view on show: fails if something covers it or it is
    smaller than a 48 px touch target."""
    box = browser.evaluate(f"""(() => {{ const active = {ACTIVE_VIEW};
        const e = [...active.querySelectorAll({json.dumps(selector)})].find(b => b.getBoundingClientRect().width);
        if (!e) return null; const r = e.getBoundingClientRect();
        const x = r.left + r.width / 2, y = r.top + r.height / 2;
        return {{x, y, w: r.width, h: r.height, hit: e.contains(document.elementFromPoint(x, y))}}; }})()""")
    assert box is not None, f"nothing on the screen matches {selector}"
    assert box["hit"], f"{selector} is covered by another element"
    assert box["w"] >= 48 and box["h"] >= 48, f"{selector} is smaller than a 48 px touch target: {box}"
    for kind in ("mousePressed", "mouseReleased"):
        browser.call("Input.dispatchMouseEvent", type=kind, x=box["x"], y=box["y"], button="left", clickCount=1)


def no_page_scroll(browser: Browser) -> bool:
    return browser.evaluate("document.documentElement.scrollHeight <= innerHeight && "
                            "document.documentElement.scrollWidth <= innerWidth && "
                            "document.body.scrollHeight <= innerHeight")


def csp_errors(browser: Browser) -> list[str]:
    return [e for e in browser.errors() if "Content Security Policy" in e or "Refused" in e]


def test_product_screen_shows_price_promotion_reviews_and_stock_here_nearby_and_online(page):
    kiosk_page, browser = page
    show(kiosk_page, browser, product())
    assert text_of(browser, "product-name") == "Knit Ankle Boot, Rust"
    assert text_of(browser, "product-brand") == "Nordvik"
    assert "89.95" in text_of(browser, "product-price") and "€" in text_of(browser, "product-price")
    assert "119.95" in text_of(browser, "product-was")
    assert text_of(browser, "product-promo-label") == "-25%" and text_of(browser, "product-promo-text") == "Winter sale"
    assert text_of(browser, "stock-here-text") == "3 in stock here"
    assert text_of(browser, "stock-here-location-text") == "Shoes · aisle 4"
    assert "Kalverstraat" in text_of(browser, "stock-nearby-text")
    assert text_of(browser, "stock-online-text") == "Available online"
    assert text_of(browser, "product-rating-value") == "4.3" and text_of(browser, "product-rating-count") == "27 reviews"
    assert "Warm and comfy" in visible_text(browser)  # the top review
    assert browser.evaluate("document.getElementById('product-qr').src").startswith("data:image/svg+xml")
    assert is_visible(browser, "#product-qr-card")
    assert browser.evaluate("document.querySelector('#product-picto-use').getAttribute('href')") == "#pic-shoes"
    assert not is_visible(browser, "#product-cart")  # no member checked in
    assert is_visible(browser, ".view-product [data-action='assist']")
    # screen readers hear about the new screen
    browser.wait_for("document.getElementById('announcer').textContent.includes('Knit Ankle Boot, Rust')")
    assert no_page_scroll(browser)
    assert not csp_errors(browser), browser.errors()


def test_text_from_data_is_shown_as_text_and_never_runs(page):
    kiosk_page, browser = page
    hostile = product(
        name=f"Boot {XSS_SCRIPT}", brand=XSS_TAG, category='"><svg onload=alert(1)>',
        image_url="javascript:window.__xss=3",
        promotion={"label": XSS_TAG, "text": XSS_SCRIPT},
        reviews=[{"rating": 5, "title": XSS_TAG, "text": f"Great {XSS_SCRIPT} {XSS_TAG}", "author": XSS_TAG,
                  "date": "2026-10-02"}],
        stock={"here": {"quantity": 3, "location": XSS_TAG}, "nearby": [{"store": "s002", "name": XSS_TAG,
                                                                      "quantity": 2}],
               "online": {"available": True}},
        online_qr="https://evil.example/qr.svg",
        member={"first_name": XSS_TAG, "tier": XSS_SCRIPT},
        member_offer={"id": "o1", "title": XSS_TAG, "code": XSS_SCRIPT, "code_qr": "javascript:alert(1)"},
        can_send_to_cart=True)
    show(kiosk_page, browser, hostile)
    assert text_of(browser, "product-name") == f"Boot {XSS_SCRIPT}"
    assert text_of(browser, "product-brand") == XSS_TAG
    reviews = text_of(browser, "product-reviews")
    assert XSS_SCRIPT in reviews and XSS_TAG in reviews
    assert text_of(browser, "product-offer-title") == XSS_TAG
    assert text_of(browser, "member-chip-name") == XSS_TAG
    # no markup was created from data: no element inside the data-filled parts, no foreign image
    assert browser.evaluate("document.querySelectorAll('#product-name *, #product-brand *, .review-text *, "
                            ".review-title *, #product-promo *:not(span[id]), #member-chip-name *').length") == 0
    assert browser.evaluate("document.querySelectorAll('script:not([src])').length") == 0
    assert browser.evaluate("[...document.images].map(i => i.getAttribute('src') || '')"
                            ".filter(s => s && !s.startsWith('data:image/') && !s.startsWith('/')).length") == 0
    browser.evaluate("new Promise(r => setTimeout(r, 300))")
    assert browser.evaluate("typeof window.__xss") == "undefined"
    assert not csp_errors(browser), browser.errors()


def test_member_screen_shows_first_name_tier_points_offers_and_wishlist_but_nothing_else(page):
    kiosk_page, browser = page
    payload = member(last_name="Cooper", email="jane.cooper@example.com", phone="+31 612 345 678",
                     member="M0001", lifetime_value=4740.34)
    show(kiosk_page, browser, payload)
    text = visible_text(browser)
    assert "Welcome back, Jane" in text
    assert text_of(browser, "member-tier") == "Gold" and text_of(browser, "member-points-value") == "4,088"
    assert "10% off for Gold members" in text and "GOLD10" in text and "KNIT2X" in text
    codes = browser.evaluate("[...document.querySelectorAll('#member-offers img.coupon-qr')]"
                             ".map(i => [i.src.slice(0, 19), i.alt])")
    assert codes == [["data:image/svg+xml;", "Scannable code GOLD10"], ["data:image/svg+xml;", "Scannable code KNIT2X"]]
    assert "Recycled Nylon Bomber, Sand" in text and "Outerwear · aisle 2" in text
    html = browser.evaluate("document.documentElement.outerHTML")
    for private in ("Cooper", "jane.cooper@example.com", "612 345", "M0001", "4740"):
        assert private not in html, private
    assert no_page_scroll(browser)
    assert not csp_errors(browser), browser.errors()


def test_when_the_hub_is_unreachable_offers_are_available_at_the_till(page):
    kiosk_page, browser = page
    show(kiosk_page, browser, member(offers=[], offers_note=TILL, wishlist_here=[]))
    assert TILL in visible_text(browser) and "Welcome back, Jane" in visible_text(browser)
    assert is_visible(browser, "#member-offers-note")
    show(kiosk_page, browser, product(member=JANE, offers_note=TILL, can_send_to_cart=True))
    assert is_visible(browser, "#product-offers-note") and TILL in visible_text(browser)
    assert not is_visible(browser, "#product-offer")
    assert no_page_scroll(browser)


def test_member_offer_on_this_product_and_ask_for_help_and_send_to_my_online_cart(page):
    kiosk_page, browser = page
    show(kiosk_page, browser, product(member=JANE, member_offer=GOLD10, can_send_to_cart=True))
    assert is_visible(browser, "#product-offer") and text_of(browser, "product-offer-title") == GOLD10["title"]
    assert text_of(browser, "product-offer-code-value") == "GOLD10"
    assert text_of(browser, "product-offer-kicker") == "For you, Jane"
    assert browser.evaluate("document.getElementById('product-offer-qr').src").startswith("data:image/svg+xml")
    assert is_visible(browser, "#member-chip") and text_of(browser, "member-chip-tier") == "Gold"

    tap(browser, "[data-action='assist']")
    wait_for(lambda: ("assist", GTIN) in kiosk_page.calls, what="on_assist with the product's GTIN")
    browser.wait_for("document.getElementById('toast').classList.contains('is-shown') && "
                     "document.getElementById('toast-text').textContent === 'A colleague is on the way'")
    assert browser.evaluate("document.querySelector('.view-product [data-action=assist]').disabled")

    tap(browser, "#product-cart")
    wait_for(lambda: ("send_to_cart", GTIN) in kiosk_page.calls, what="on_send_to_cart with the product's GTIN")
    browser.wait_for("document.getElementById('toast-text').textContent === 'Sent to your online cart'")
    assert browser.evaluate("document.getElementById('product-cart').disabled")
    assert kiosk_page.calls.count(("send_to_cart", GTIN)) == 1
    assert not csp_errors(browser), browser.errors()

    # on the member screen "Ask for help" is about no product
    show(kiosk_page, browser, member())
    tap(browser, "[data-action='assist']")
    wait_for(lambda: ("assist", None) in kiosk_page.calls, what="on_assist without a GTIN")


def test_send_to_cart_only_when_the_server_allows_it(page):
    kiosk_page, browser = page
    show(kiosk_page, browser, product(member=JANE, can_send_to_cart=False))
    assert not is_visible(browser, "#product-cart")
    show(kiosk_page, browser, product(member=None, can_send_to_cart=True, gtin="not-a-gtin"))
    assert not is_visible(browser, "#product-cart")


@pytest.mark.parametrize("size", [(800, 480), (1280, 800)])
def test_nothing_scrolls_and_buttons_are_touch_sized(page, size):
    kiosk_page, browser = page
    resize(browser, *size)
    longest = product(name="Cashmere Blend Quarter-Zip Sweater with Ribbed Cuffs, Chocolate Melange",
                      member=JANE, member_offer=GOLD10, can_send_to_cart=True,
                      stock={"here": {"quantity": 12, "location": "Knitwear · aisle 3"},
                             "nearby": [{"store": "s003", "name": "Utrecht Hoog Catharijne", "quantity": 9},
                                        {"store": "s002", "name": "Kalverstraat", "quantity": 6}],
                             "online": {"available": False}})
    screens = [product(), longest, product(member=JANE, offers_note=TILL, can_send_to_cart=True),
               member(), member(offers=[GOLD10, KNIT2X, dict(GOLD10, id="o3", code="WRAP26")], wishlist_here=[]),
               member(offers=[], offers_note=TILL), {"view": "product", "gtin": GTIN, "known": False, "member": None},
               {"view": "unavailable", "message": "Scanner unavailable — please ask staff"},
               {"view": "rejected", "message": "That code isn't one we know. Try a product barcode or your member QR."}]
    for payload in screens:
        view = "unknown" if payload.get("known") is False else payload["view"]
        show(kiosk_page, browser, payload, view)
        assert no_page_scroll(browser), (size, payload.get("name") or payload["view"])
        outside = browser.evaluate("""(() => { const v = document.querySelector('.app').dataset.view;
            const sec = [...document.querySelectorAll('.view')].find(s => getComputedStyle(s).visibility === 'visible');
            return [...sec.querySelectorAll('*')].filter(e => e.offsetParent).map(e => e.getBoundingClientRect())
              .filter(r => r.width && (r.bottom > innerHeight + .5 || r.right > innerWidth + .5 || r.left < -.5)).length; })()""")
        assert outside == 0, (size, payload["view"])
        small = browser.evaluate("""[...document.querySelectorAll('button')].filter(b => b.offsetParent &&
            getComputedStyle(b.closest('.view')).visibility === 'visible').map(b => b.getBoundingClientRect())
            .filter(r => r.width < 48 || r.height < 48).length""")
        assert small == 0, (size, payload["view"])
    assert not csp_errors(browser), browser.errors()


def test_unknown_product_unavailable_and_rejected_screens(page):
    kiosk_page, browser = page
    show(kiosk_page, browser, {"view": "product", "gtin": GTIN, "known": False, "member": None,
                               "can_send_to_cart": False}, "unknown")
    assert "We can’t find this product" in visible_text(browser)
    assert text_of(browser, "unknown-code") == "0 50123 45678 90 0"
    tap(browser, "[data-action='assist']")
    wait_for(lambda: ("assist", GTIN) in kiosk_page.calls, what="on_assist for the unknown product")

    show(kiosk_page, browser, {"view": "unavailable", "message": "Scanner unavailable — please ask staff"})
    assert "Scanner unavailable" in visible_text(browser) and is_visible(browser, ".view-unavailable [data-action='assist']")
    show(kiosk_page, browser, {"view": "rejected", "message": "That member code has expired."})
    assert "That member code has expired." in visible_text(browser)
    show(kiosk_page, browser, {"view": "message", "text": "Back in a moment"})
    assert "Back in a moment" in visible_text(browser)
    assert not csp_errors(browser), browser.errors()


def test_an_older_server_with_fewer_fields_still_gets_a_product_screen(page):
    kiosk_page, browser = page
    show(kiosk_page, browser, {"view": "product", "gtin": GTIN, "name": "Knit Ankle Boot, Rust", "price": 89.95,
                               "currency": "EUR"})
    assert text_of(browser, "product-name") == "Knit Ankle Boot, Rust" and "89.95" in text_of(browser, "product-price")
    assert not is_visible(browser, "#product-stock") and not is_visible(browser, "#product-qr-card")
    show(kiosk_page, browser, {"view": "product", "gtin": GTIN}, "unknown")  # no name, no "known": unknown
    show(kiosk_page, browser, {"view": "member", "first_name": None, "tier": None, "points": None})
    assert "Welcome back!" in visible_text(browser)
    assert not browser.errors(), browser.errors()


def test_done_tells_the_kiosk_and_forgets_the_shopper(page):
    kiosk_page, browser = page
    show(kiosk_page, browser, product(member=JANE, member_offer=GOLD10, can_send_to_cart=True))
    tap(browser, "[data-action='done']")
    wait_for(lambda: ("done",) in kiosk_page.calls, what="on_done")
    browser.wait_for("document.getElementById('app').dataset.view === 'idle'")
    assert text_of(browser, "product-name") == "" and text_of(browser, "product-offer-code-value") == ""
    assert "Jane" not in visible_text(browser) and not is_visible(browser, "#member-chip")


def test_a_reloaded_page_shows_the_current_screen_again(page):
    kiosk_page, browser = page
    show(kiosk_page, browser, member())
    load(browser, kiosk_page.url)
    browser.wait_for("document.getElementById('app').dataset.view === 'member'")
    assert "Welcome back, Jane" in visible_text(browser)

