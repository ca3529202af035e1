"""The staff web app: sign-in (password, or PIN on a registered tablet), the live floor (arrivals, the
customer view, claims, notes, assistance, search), the fleet view for IT, the audit log, health and metrics.

Sessions are signed cookies that name a server-side session (`SessionBook`): the hub decides when a
session is idle, ends it, and hangs up its Socket.IO connections, so a tablet left alone signs out
even while its page stays open.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from functools import wraps
from typing import Any, Callable
from zoneinfo import ZoneInfo

from flask import (
    Flask,
    Response,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_socketio import SocketIO, join_room
from werkzeug.exceptions import HTTPException

from hub import analytics
from hub import staff as staff_rules
from hub.floor import FloorError, it_room, store_room
from hub.manager_view import FORM_FIELDS, analytics_view, csv_text, quick_ranges
from hub.pos_api import PATH as POS_PATH
from hub.roster import load_roster
from hub.store import HubStore
from protocol.settings import Config

log = logging.getLogger("hub.web")

STAFF_NAMESPACE = "/staff"
Metric = tuple[str, str, dict[str, str], float]  # name, help, labels, value

TABLET_COOKIE = "omnikiosk_tablet"
TABLET_COOKIE_DAYS = 365
FEED_PAGE = 200
NOTE_MAX_CHARS = 1000
SEARCH_MIN_CHARS = 2

# What each role may do. Everyone on the floor serves customers; the audit log and the tablets are for
# those who answer for the store (managers, IT); the fleet view is IT's, and a manager's in a store without IT.
MAY = {
    "floor": ("associate", "manager", "it"),
    "audit": ("manager", "it"),
    "tablets": ("manager", "it"),
    "fleet": ("it", "manager"),
    "analytics": ("manager",),
}


ROLE_LABELS = {"associate": "Associate", "manager": "Manager", "it": "IT"}
# Audit log actions as a manager reads them; an action not listed shows as recorded.
AUDIT_LABELS = {"view_customer": "viewed profile", "search_customers": "searched members", "login": "signed in",
                "logout": "signed out", "tablet.register": "registered tablet", "tablet.revoke": "revoked tablet",
                "pin.set": "set own PIN", "pin.remove": "removed own PIN", "command": "device command",
                "send_to_cart": "sent to online cart", "send_to_wishlist": "sent to wishlist",
                "analytics.export": "exported analytics"}



def may(role: str | None, what: str) -> bool:
    return role in MAY[what]


WEBHOOK_MAX_BYTES = 64 * 1024
# A webhook delivery → (HTTP status, JSON answer); the hub service verifies, deduplicates and dispatches.
WebhookHandler = Callable[[bytes, dict[str, str]], tuple[int, dict[str, Any]]]


class Refusal(Exception):
    """A request the app turns down with a status and a message the person can act on."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass
class StaffSession:
    user: dict[str, Any]            # {"username", "role", "store"}
    tablet_id: int | None           # set for a PIN sign-in: the session lives only on that tablet
    last_seen: float
    sockets: set[str] = field(default_factory=set)


class SessionBook:
    """Signed-in sessions on this hub by session id: who, when a person last used it, and its live sockets.

    Only requests a person makes (a page, an action, the page's "I am here" ping) count as use; a feed
    refreshing itself does not, so an unattended tablet times out. Thread-safe."""

    def __init__(self, idle_s: float, clock: Callable[[], float] = time.monotonic):
        self.idle_s = idle_s
        self.clock = clock
        self._sessions: dict[str, StaffSession] = {}
        self._lock = threading.Lock()

    def open(self, user: dict[str, Any], tablet_id: int | None = None) -> str:
        sid = secrets.token_urlsafe(24)
        with self._lock:
            self._sessions[sid] = StaffSession(user, tablet_id, self.clock())
        return sid

    def get(self, sid: str | None) -> StaffSession | None:
        """The live session, or None (unknown, signed out, or idle past the timeout)."""
        with self._lock:
            entry = self._sessions.get(sid or "")
            if entry is None or self.clock() - entry.last_seen > self.idle_s:
                return None
            return entry

    def touch(self, sid: str) -> None:
        with self._lock:
            if sid in self._sessions:
                self._sessions[sid].last_seen = self.clock()

    def close(self, sid: str) -> set[str]:
        """End a session; returns its sockets, for the caller to hang up."""
        with self._lock:
            entry = self._sessions.pop(sid, None)
        return entry.sockets if entry else set()

    def close_tablet(self, tablet_id: int) -> set[str]:
        """End every PIN session bound to a tablet (it was revoked)."""
        with self._lock:
            gone = [sid for sid, s in self._sessions.items() if s.tablet_id == tablet_id]
            return set().union(*(self._sessions.pop(sid).sockets for sid in gone)) if gone else set()

    def attach(self, sid: str, socket_id: str) -> None:
        with self._lock:
            if sid in self._sessions:
                self._sessions[sid].sockets.add(socket_id)

    def detach(self, sid: str, socket_id: str) -> None:
        with self._lock:
            if sid in self._sessions:
                self._sessions[sid].sockets.discard(socket_id)

    def sweep(self, active_tablets: set[int] | None = None) -> set[str]:
        """End the sessions idle past the timeout, and PIN sessions whose tablet is no longer registered
        (when `active_tablets` is given); returns their sockets."""
        now = self.clock()
        with self._lock:
            ended = [sid for sid, s in self._sessions.items() if now - s.last_seen > self.idle_s or
                     (active_tablets is not None and s.tablet_id is not None and s.tablet_id not in active_tablets)]
            return set().union(*(self._sessions.pop(sid).sockets for sid in ended)) if ended else set()

    def sockets(self) -> set[str]:
        """Every live socket of every session."""
        with self._lock:
            return set().union(*(s.sockets for s in self._sessions.values())) if self._sessions else set()

    def counts(self) -> tuple[int, int]:
        with self._lock:
            return len(self._sessions), sum(len(s.sockets) for s in self._sessions.values())


def create_app(config: Config, *, hub_store: HubStore, secret_key: str,
               metrics: Callable[[], list[Metric]] = lambda: [],
               health: Callable[[], dict[str, Any]] = lambda: {},
               on_webhook: WebhookHandler | None = None,
               floor=None, clock: Callable[[], float] = time.monotonic) -> tuple[Flask, SocketIO]:
    """The staff app. `floor` (hub.floor.Floor) serves the floor, the fleet and the audit log (without it those
    answer 503; sign-in, health, metrics and webhooks still work); `clock` measures idleness."""
    app = Flask(__name__)
    demo = config["demo"]
    idle_s = config["web.idle_timeout_min"] * 60
    app.config.update(
        SECRET_KEY=secret_key,
        SESSION_COOKIE_NAME="omnikiosk_staff",
        SESSION_COOKIE_HTTPONLY=True,
        # Strict: no other site can make a tablet send its session along (CSRF tokens guard the rest).
        SESSION_COOKIE_SAMESITE="Strict",
        # Browsers send Secure cookies only over HTTPS; plain HTTP exists only in demo mode on loopback.
        SESSION_COOKIE_SECURE=not demo,
        PERMANENT_SESSION_LIFETIME=idle_s,
    )
    socketio = SocketIO(app, async_mode="threading", logger=False, engineio_logger=False)
    # Per account: 5 failures lock it for 5 min. Per address or tablet, more room: a shared tablet
    # signs in many people, but a guessing script is still stopped. PINs count apart from passwords.
    user_throttle = staff_rules.LoginThrottle(max_failures=5)
    addr_throttle = staff_rules.LoginThrottle(max_failures=20)
    book = SessionBook(idle_s, clock)
    counts: Counter = Counter()
    store_id = config["store"]
    sweeper_started = threading.Event()
    if floor is not None and getattr(floor, "roster", None) is None:
        # The fleet file (fleet.file) is read once, at start: a bad one stops the hub with the reason
        # (a RosterError is a ConfigError). A Floor given its roster by its maker keeps it.
        floor.roster = load_roster(config)

    # --- who is asking
    def tablet_of_request() -> dict[str, Any] | None:
        token = request.cookies.get(TABLET_COOKIE, "")
        return hub_store.tablet_for_token(token) if token else None

    def device_label() -> str:
        tablet = tablet_of_request()
        return tablet["name"] if tablet else f"browser at {request.remote_addr or 'unknown address'}"

    def current_session() -> StaffSession | None:
        entry = book.get(session.get("sid"))
        if entry is None:
            return None
        if entry.tablet_id is not None:
            tablet = tablet_of_request()
            if tablet is None or tablet["id"] != entry.tablet_id:
                # A PIN session copied off its tablet, or a tablet revoked since: it ends here.
                hang_up(book.close(session["sid"]), "tablet")
                return None
        return entry

    def current_staff() -> dict[str, Any] | None:
        entry = current_session()
        return entry.user if entry else None

    def wants_json() -> bool:
        return request.path.startswith("/api/")

    def refuse(status: int, code: str, message: str):
        if wants_json():
            return jsonify(error={"code": code, "message": message}), status
        return render_template("error.html", message=message, status=status, user=current_staff()), status

    def staff_only(permission: str = "floor"):
        def decorate(view):
            @wraps(view)
            def wrapper(*args, **kwargs):
                entry = current_session()
                if entry is None:
                    if wants_json():
                        return refuse(401, "unauthorized", "Sign in first.")
                    return redirect(url_for("login", next=request.path))
                if not may(entry.user["role"], permission):
                    log.warning("refused by role", extra={"username": entry.user["username"],
                                                          "role": entry.user["role"], "path": request.path})
                    return refuse(403, "forbidden", "Your role cannot open this. Ask a manager.")
                # A person opened a page or did something; a page fetching data by itself is not a person.
                if request.method != "GET" or not wants_json():
                    book.touch(session["sid"])
                g.staff = entry.user
                return view(*args, **kwargs)
            return wrapper
        return decorate

    def me() -> str:
        """Who is asking (inside a `staff_only` view)."""
        return g.staff["username"]

    # --- CSRF and headers
    def csrf_token() -> str:
        if "csrf" not in session:
            session["csrf"] = secrets.token_urlsafe(32)
        return session["csrf"]

    @app.before_request
    def check_csrf():
        if request.path.startswith("/webhooks/") or (request.path, request.method) == (POS_PATH, "POST"):
            return None  # no browser session here: signed deliveries (HMAC) and the till's bearer key
        if request.method in ("POST", "PUT", "PATCH", "DELETE"):
            sent = request.form.get("csrf_token") or request.headers.get("X-CSRF-Token", "")
            if not hmac.compare_digest(sent, session.get("csrf", "\0")):
                log.warning("csrf check failed", extra={"path": request.path, "remote": request.remote_addr})
                return refuse(400, "csrf", "The form expired. Reload the page and try again.")
        return None

    @app.after_request
    def security_headers(response: Response) -> Response:
        # Trusted Types: the browser itself refuses any HTML string written into the page (innerHTML and kin).
        response.headers.setdefault("Content-Security-Policy",
                                    "default-src 'self'; img-src 'self' data:; connect-src 'self'; "
                                    "object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; "
                                    "require-trusted-types-for 'script'")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("X-Frame-Options", "DENY")
        if request.path != "/healthz":
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    def nav_for(user: dict[str, Any] | None) -> list[tuple[str, str]]:
        """(endpoint, label) of the pages this person may open."""
        if not user:
            return []
        pages = [("arrivals_page", "Arrivals"), ("search_page", "Search")]
        if may(user["role"], "analytics"):
            pages.append(("manager_page", "Analytics"))
        if may(user["role"], "fleet"):
            pages.append(("fleet_page", "Devices"))
        if may(user["role"], "audit"):
            pages.append(("audit_page", "Audit"))
        if may(user["role"], "tablets"):
            pages.append(("tablets_page", "Tablets"))
        return pages

    app.jinja_env.globals.update(csrf_token=csrf_token, store_name=config["store_name"], demo=demo,
                                 nav_for=nav_for, idle_s=idle_s, store_id=store_id, role_label=ROLE_LABELS.get,
                                 audit_label=lambda action: AUDIT_LABELS.get(action, action))

    # --- sockets: hang-ups and the idle sweep
    def hang_up(socket_ids: set[str], reason: str) -> None:
        """Tell each socket why (idle, signed out, tablet revoked), then disconnect it."""
        for socket_id in socket_ids:
            try:
                socketio.emit("signed_out", {"reason": reason}, to=socket_id, namespace=STAFF_NAMESPACE)
                socketio.server.disconnect(socket_id, namespace=STAFF_NAMESPACE)
            except Exception:  # already gone: nothing left to hang up
                log.debug("socket already closed", extra={"socket": socket_id})

    def sweep_idle() -> int:
        """End idle (and revoked-tablet) sessions and disconnect their sockets; returns how many were hung up."""
        # A tablet may be revoked from the command line too: its PIN sessions end here as well.
        sockets = book.sweep({t["id"] for t in hub_store.tablets() if not t["revoked_at"]})
        hang_up(sockets, "idle")
        if sockets:
            log.info("idle sessions signed out", extra={"sockets": len(sockets)})
        return len(sockets)

    def sweep_forever() -> None:
        every = max(1.0, min(30.0, idle_s / 10))
        while True:
            socketio.sleep(every)
            try:
                sweep_idle()
            except Exception:
                log.exception("idle sweep failed")

    app.extensions["omnikiosk.sessions"] = book
    app.extensions["omnikiosk.sweep"] = sweep_idle

    # --- sign in and out
    def login_page(status: int = 200, *, error: str | None = None, username: str = "", mode: str = "pin"):
        """The sign-in page; on a registered tablet the PIN comes first (`mode` "password" opens the other)."""
        tablet = tablet_of_request()
        return render_template("login.html", error=error, username=username, tablet=tablet,
                               mode=mode if tablet else "password", expired=request.args.get("expired")), status

    def start_session(account: dict[str, Any], tablet_id: int | None) -> Response:
        sweep_idle()     # forget sessions that ended unseen (the sweeper runs only while sockets are live)
        session.clear()  # a fresh session at sign-in: nothing from before survives (no fixation)
        session.permanent = True
        user = {"username": account["username"], "role": account["role"], "store": store_id}
        session.update(sid=book.open(user, tablet_id), csrf=secrets.token_urlsafe(32))
        target = request.args.get("next", "/")
        return redirect(target if target.startswith("/") and not target.startswith("//") else "/")

    def lockout_wait(*keys: tuple[staff_rules.LoginThrottle, str]) -> float:
        return max(throttle.locked(key) for throttle, key in keys)

    @app.get("/login")
    def login():
        return login_page()

    @app.post("/login")
    def login_post():
        username = request.form.get("username", "").strip()[:64]
        password = request.form.get("password", "")[:256]
        user_key, addr_key = username.lower(), request.remote_addr or "-"
        wait = lockout_wait((user_throttle, user_key), (addr_throttle, addr_key))
        if wait > 0:
            counts["locked"] += 1
            log.warning("login locked out", extra={"username": username, "remote": request.remote_addr})
            return login_page(429, username=username, mode="password",
                              error=f"Too many attempts. Try again in {int(wait // 60) + 1} min.")
        account = hub_store.staff(username)
        if not staff_rules.verify_login(account, password) or account["store"] not in (store_id, "*"):
            user_throttle.failed(user_key)
            addr_throttle.failed(addr_key)
            counts["failed"] += 1
            log.warning("login failed", extra={"username": username, "remote": request.remote_addr})
            return login_page(401, username=username, mode="password", error="Wrong username or password.")
        user_throttle.succeeded(user_key)
        counts["password"] += 1
        hub_store.audit(account["username"], "login", account["username"], "password", device=device_label())
        log.info("staff signed in", extra={"username": account["username"], "role": account["role"]})
        return start_session(account, None)

    @app.post("/login/pin")
    def login_pin():
        username = request.form.get("username", "").strip()[:64]
        pin = request.form.get("pin", "")[:16]
        tablet = tablet_of_request()
        if tablet is None:
            counts["pin_refused"] += 1
            log.warning("PIN sign-in off a registered tablet", extra={"remote": request.remote_addr})
            return login_page(403, username=username, mode="password",
                              error="PIN sign-in works only on a registered tablet. Sign in with your password.")
        user_key, tablet_key = f"pin:{username.lower()}", f"tablet:{tablet['id']}"
        wait = lockout_wait((user_throttle, user_key), (addr_throttle, tablet_key))
        if wait > 0:
            counts["locked"] += 1
            log.warning("PIN sign-in locked out", extra={"username": username, "tablet": tablet["name"]})
            return login_page(429, username=username, mode="pin",
                              error=f"Too many attempts. Try again in {int(wait // 60) + 1} min.")
        account = hub_store.staff(username)
        if not staff_rules.verify_pin(account, pin) or account["store"] not in (store_id, "*"):
            user_throttle.failed(user_key)
            addr_throttle.failed(tablet_key)
            counts["failed"] += 1
            log.warning("PIN sign-in failed", extra={"username": username, "tablet": tablet["name"]})
            return login_page(401, username=username, mode="pin", error="Wrong username or PIN.")
        user_throttle.succeeded(user_key)
        counts["pin"] += 1
        hub_store.audit(account["username"], "login", account["username"], "PIN", device=tablet["name"])
        log.info("staff signed in with a PIN", extra={"username": account["username"], "tablet": tablet["name"]})
        return start_session(account, tablet["id"])

    @app.post("/logout")
    def logout():
        sid = session.get("sid")
        if sid:
            entry = book.get(sid)
            hang_up(book.close(sid), "signed_out")
            if entry:
                hub_store.audit(entry.user["username"], "logout", entry.user["username"], device=device_label())
        session.clear()
        return redirect(url_for("login"))

    @app.get("/api/session")
    def session_state():
        """Is this page still signed in? Asking does not count as use (the page checks after a hang-up)."""
        entry = current_session()
        if entry is None:
            return refuse(401, "unauthorized", "Sign in first.")
        return jsonify(username=entry.user["username"], role=entry.user["role"],
                       idle_left_s=max(0, round(idle_s - (clock() - entry.last_seen))))

    @app.post("/api/here")
    @staff_only()
    def here():
        """The page's "I am here" ping, sent (throttled) when someone touches, scrolls or types."""
        return jsonify(ok=True, idle_s=idle_s)

    # --- the floor: pages
    @app.get("/")
    @staff_only()
    def arrivals_page():
        return render_template("staff.html", user=current_staff(), page="arrivals")

    @app.get("/customers/<customer_id>")
    @staff_only()
    def customer_page(customer_id: str):
        return render_template("customer.html", user=current_staff(), page="customer", customer_id=customer_id[:64])

    @app.get("/search")
    @staff_only()
    def search_page():
        q = request.args.get("q", "").strip()[:100]
        results = None
        if len(q) >= SEARCH_MIN_CHARS:
            results = floor_call(lambda f: f.search(q, viewer=me()))
        return render_template("search.html", user=current_staff(), page="search", q=q, results=results,
                               too_short=0 < len(q) < SEARCH_MIN_CHARS)

    # --- the floor: data and actions
    def floor_call(action: Callable[[Any], Any]) -> Any:
        """Run `action(floor)`; the Floor's refusals (someone else claimed it, no such member, ...) become the
        answer. An app made without a floor signs people in but has no floor to show: 503."""
        if floor is None:
            raise Refusal(503, "no_floor", "The shop floor is not running on this hub.")
        try:
            return action(floor)
        except FloorError as error:
            raise Refusal(error.status, error.code, error.message) from None

    def body() -> dict[str, Any]:
        data = request.get_json(silent=True) if request.is_json else None
        return data if isinstance(data, dict) else request.form.to_dict()

    def whole_number(name: str, default: int = 0) -> int:
        value = request.args.get(name, str(default))
        if not value.isdigit():
            raise Refusal(400, "bad_request", f"{name} must be a whole number")
        return int(value)

    @app.get("/api/feed")
    @staff_only()
    def feed_api():
        after = whole_number("after")
        items = floor_call(lambda f: f.feed(after=after, limit=FEED_PAGE))
        return jsonify(items=items, more=after > 0 and len(items) == FEED_PAGE)

    @app.get("/api/arrivals")
    @staff_only()
    def arrivals_api():
        return jsonify(items=hub_store.recent_arrivals(store_id, after_id=whole_number("after")))

    @app.get("/api/customers/<customer_id>")
    @staff_only()
    def customer_api(customer_id: str):
        # Where the feed stood before the profile was read: the page follows the floor from here, so
        # nothing that happens while it loads is missed (a note added meanwhile may come twice; the page drops it).
        head = floor_call(lambda f: f.feed(after=0, limit=1))
        view = floor_call(lambda f: f.customer(customer_id[:64], viewer=me(), device=device_label()))
        if view is None:
            return refuse(404, "not_found", "No member with that id.")
        return jsonify({**view, "feed_after": head[-1]["id"] if head else 0})

    @app.get("/api/search")
    @staff_only()
    def search_api():
        q = request.args.get("q", "").strip()[:100]
        if len(q) < SEARCH_MIN_CHARS:
            return refuse(400, "bad_request", f"Type at least {SEARCH_MIN_CHARS} characters.")
        return jsonify(items=floor_call(lambda f: f.search(q, viewer=me())))

    @app.post("/api/arrivals/<int:arrival_id>/claim")
    @staff_only()
    def claim(arrival_id: int):
        return jsonify(floor_call(lambda f: f.claim(arrival_id, me())))

    @app.post("/api/arrivals/<int:arrival_id>/served")
    @staff_only()
    def served(arrival_id: int):
        return jsonify(floor_call(lambda f: f.serve(arrival_id, me())))

    @app.post("/api/assists/<int:assist_id>/answer")
    @staff_only()
    def answer_assist(assist_id: int):
        return jsonify(floor_call(lambda f: f.answer_assist(assist_id, me())))

    @app.post("/api/customers/<customer_id>/notes")
    @staff_only()
    def add_note(customer_id: str):
        text = str(body().get("text", "")).strip()
        if not 1 <= len(text) <= NOTE_MAX_CHARS:
            return refuse(400, "bad_request", f"A note has 1 to {NOTE_MAX_CHARS} characters.")
        return jsonify(floor_call(lambda f: f.add_note(customer_id[:64], me(), text))), 201

    @app.post("/api/customers/<customer_id>/send")
    @staff_only()
    def send_to_online(customer_id: str):
        data = body()
        gtin, where = str(data.get("gtin", "")).strip()[:20], str(data.get("where", ""))
        if where not in ("cart", "wishlist"):
            return refuse(400, "bad_request", "Send to the cart or the wishlist.")
        return jsonify(floor_call(lambda f: f.send_to_online(customer_id[:64], gtin, where, me(), device=device_label())))

    # --- the fleet (IT)
    @app.get("/it")
    @staff_only("fleet")
    def fleet_page():
        return render_template("it.html", user=current_staff(), page="fleet",
                               roster=getattr(floor, "roster", None))

    @app.get("/api/devices")
    @staff_only("fleet")
    def devices_api():
        return jsonify(items=floor_call(lambda f: f.devices()))

    @app.post("/api/devices/<device>/commands")
    @staff_only("fleet")
    def send_command(device: str):
        data = body()
        command, args = str(data.get("command", ""))[:40], data.get("args") or {}
        if not isinstance(args, dict):
            return refuse(400, "bad_args", "args must be an object.")
        return jsonify(floor_call(lambda f: f.send_command(device[:64], command, args, me(), from_device=device_label()))), 202

    @app.get("/api/commands/<command_id>")
    @staff_only("fleet")
    def command_result(command_id: str):
        result = floor_call(lambda f: f.command_result(command_id[:64]))
        if result is None:
            return refuse(404, "pending", "No result yet.")
        return jsonify(result)

    # --- the audit log
    @app.get("/audit")
    @staff_only("audit")
    def audit_page():
        before = whole_number("before") or None
        entries = floor_call(lambda f: f.audit_log(limit=FEED_PAGE, before=before))
        older = entries[-1]["id"] if len(entries) == FEED_PAGE else None
        return render_template("audit.html", user=current_staff(), page="audit", entries=entries, older=older)

    # --- tablets where a PIN works
    @app.get("/tablets")
    @staff_only("tablets")
    def tablets_page():
        return render_template("tablets.html", user=current_staff(), page="tablets", tablets=hub_store.tablets(),
                               this_tablet=tablet_of_request(), error=None)

    @app.post("/tablets")
    @staff_only("tablets")
    def register_tablet():
        name = " ".join(request.form.get("name", "").split())[:60]
        if not name:
            return render_template("tablets.html", user=current_staff(), page="tablets", tablets=hub_store.tablets(),
                                   this_tablet=tablet_of_request(), error="Give the tablet a name staff know it by."), 400
        tablet_id, token = hub_store.register_tablet(name, me())
        hub_store.audit(me(), "tablet.register", name, f"tablet {tablet_id}", device=device_label())
        response = redirect(url_for("tablets_page"))
        response.set_cookie(TABLET_COOKIE, token, max_age=TABLET_COOKIE_DAYS * 86400, httponly=True,
                            secure=not demo, samesite="Strict", path="/")
        return response

    @app.post("/tablets/<int:tablet_id>/revoke")
    @staff_only("tablets")
    def revoke_tablet(tablet_id: int):
        this = tablet_of_request()
        if hub_store.revoke_tablet(tablet_id):
            hang_up(book.close_tablet(tablet_id), "tablet")
            hub_store.audit(me(), "tablet.revoke", f"tablet {tablet_id}", device=device_label())
        response = redirect(url_for("tablets_page"))
        if this and this["id"] == tablet_id:
            response.delete_cookie(TABLET_COOKIE, path="/")
        return response

    # --- the manager's analytics (hub/analytics.py computes, hub/charts.py draws, manager.html shows)
    def store_tz() -> ZoneInfo:
        return ZoneInfo(config["timezone"])

    def analytics_query():
        """The query in the address, or a QueryError with a message for the person."""
        today = datetime.now(store_tz()).date()
        return analytics.parse_query(request.args, today=today,
                                     window_days=config["analytics.window_days"])

    def analytics_report(q: analytics.Query, only: str | None = None) -> tuple[dict[str, Any], float]:
        started = time.perf_counter()
        with hub_store.reading() as db:  # its own connection: a year's report does not hold up the floor
            tables = ({only: analytics.figure(db, q, only, tz=store_tz())} if only
                      else analytics.report(db, q, tz=store_tz()))
        took = time.perf_counter() - started
        log.info("analytics report", extra={"username": me(), "start": str(q.start), "end": str(q.end),
                                            "channel": q.channel or "all", "window_days": q.window_days,
                                            "figures": only or "all",
                                            "took_ms": round(took * 1000, 1)})
        return tables, took

    @app.get("/manager")
    @staff_only("analytics")
    def manager_page():
        today = datetime.now(store_tz()).date()
        page = {"user": current_staff(), "page": "manager", "channels": analytics.CHANNELS}
        try:
            q = analytics_query()
        except analytics.QueryError as error:
            form = {key: request.args.get(key, "")[:40] for key in FORM_FIELDS}
            keep = {"channel": form["channel"] if form["channel"] in analytics.CHANNELS else "",
                    "window": form["window"] if form["window"].isascii() and form["window"].isdigit() and 1 <= int(form["window"]) <= 365 else ""}
            quick = quick_ranges(today, keep)   # a way out of the bad query in one tap
            return render_template("manager.html", **page, error=str(error), form=form, view=None, quick=quick), 400
        tables, took = analytics_report(q)
        args = q.as_args()
        view = analytics_view(tables, currency=config["analytics.currency"], args=args)
        form = {"from": q.start.isoformat(), "to": q.end.isoformat(), "channel": q.channel or "",
                "window": str(q.window_days)}
        return render_template("manager.html", **page, error=None, form=form, view=view,
                               quick=quick_ranges(today, args, current=(q.start, q.end)), took_ms=round(took * 1000))

    @app.get("/manager/export/<table>.csv")
    @staff_only("analytics")
    def manager_export(table: str):
        if table not in analytics.TABLES:
            return refuse(404, "not_found", "There is no such table.")
        try:
            q = analytics_query()
        except analytics.QueryError as error:
            return refuse(400, "bad_query", str(error))
        tables, _ = analytics_report(q, only=table)
        hub_store.audit(me(), "analytics.export", table,
                        f"{q.start}..{q.end} channel={q.channel or 'all'} window={q.window_days}d", device=device_label())
        safe_store = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in str(store_id))
        name = f"omnikiosk-{safe_store}-{table}-{q.start.isoformat()}-{q.end.isoformat()}.csv"
        response = Response(csv_text(tables[table]).encode("utf-8-sig"), mimetype="text/csv")
        response.headers["Content-Type"] = "text/csv; charset=utf-8"
        response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
        return response

    # --- one's own account: the PIN
    def account_page(status: int = 200, *, error: str | None = None, done: str | None = None):
        account = hub_store.staff(me()) or {}
        return render_template("account.html", user=current_staff(), page="account", error=error, done=done,
                               has_pin=bool(account.get("pin_hash")), pin_digits=staff_rules.PIN_DIGITS), status

    @app.get("/account")
    @staff_only()
    def account():
        return account_page()

    @app.post("/account/pin")
    @staff_only()
    def set_pin():
        username, key = me(), f"pin-set:{me().lower()}"
        if user_throttle.locked(key) > 0:
            return account_page(429, error="Too many wrong passwords. Try again in a few minutes.")
        if not staff_rules.verify_login(hub_store.staff(username), request.form.get("password", "")[:256]):
            user_throttle.failed(key)
            return account_page(403, error="That is not your password.")
        pin, again = request.form.get("pin", "")[:16], request.form.get("pin_again", "")[:16]
        problem = staff_rules.pin_problem(pin) or (None if pin == again else "the two PINs differ")
        if problem:
            return account_page(400, error=f"Choose another PIN: {problem}.")
        hub_store.set_staff_pin(username, staff_rules.hash_pin(pin))
        hub_store.audit(username, "pin.set", username, device=device_label())
        return account_page(done="Your PIN is set. Use it on the store's registered tablets.")

    @app.post("/account/pin/remove")
    @staff_only()
    def remove_pin():
        hub_store.set_staff_pin(me(), None)
        hub_store.audit(me(), "pin.remove", me(), device=device_label())
        return account_page(done="Your PIN is removed.")

    # --- the outside world
    @app.post("/webhooks/online")
    def online_webhook():
        if on_webhook is None:
            return jsonify(ok=False, error={"code": "not_configured", "message": "webhooks are off"}), 404
        if (request.content_length or 0) > WEBHOOK_MAX_BYTES:
            return jsonify(ok=False, error={"code": "too_large", "message": "body over 64 KiB"}), 413
        status, answer = on_webhook(request.get_data(cache=False), dict(request.headers))
        return jsonify(answer), status

    @app.get("/healthz")
    def healthz():
        state = {"ok": True, **health()}
        state["ok"] = all(v for k, v in state.items() if k.endswith("_ok") or k == "ok")
        return jsonify(state), 200 if state["ok"] else 503

    def staff_metrics() -> list[Metric]:
        sessions, sockets = book.counts()
        return [("omnikiosk_hub_staff_sessions", "signed-in staff sessions", {}, sessions),
                ("omnikiosk_hub_staff_sockets", "live staff tablet connections", {}, sockets),
                *(("omnikiosk_hub_staff_logins_total", "staff sign-ins by outcome", {"outcome": k}, v)
                  for k, v in sorted(counts.items()))]

    @app.get("/metrics")
    def metrics_page():
        return Response(render_metrics(metrics() + staff_metrics()), mimetype="text/plain; version=0.0.4")

    @app.errorhandler(Refusal)
    def refused(refusal: Refusal):
        return refuse(refusal.status, refusal.code, refusal.message)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        messages = {404: "There is nothing here.", 405: "That cannot be done here."}
        return refuse(error.code or 500, error.name.lower().replace(" ", "_"),
                      error.description if error.code == 400 else messages.get(error.code, error.description))

    # --- Socket.IO: a signed-in session's live feed
    @socketio.on("connect", namespace=STAFF_NAMESPACE)
    def staff_connect(auth=None):
        entry = current_session()
        if entry is None:
            log.warning("socket.io connection refused: not signed in", extra={"remote": request.remote_addr})
            return False
        book.attach(session["sid"], request.sid)
        join_room(store_room(entry.user["store"]))
        if may(entry.user["role"], "fleet"):
            join_room(it_room(entry.user["store"]))
        if not sweeper_started.is_set():
            sweeper_started.set()
            socketio.start_background_task(sweep_forever)
        return True

    @socketio.on("disconnect", namespace=STAFF_NAMESPACE)
    def staff_disconnect(*_reason):
        book.detach(session.get("sid", ""), request.sid)

    @socketio.on("resume", namespace=STAFF_NAMESPACE)
    def resume(data=None):
        """What this tablet missed: every feed item after the last id it has (ack), oldest first."""
        if current_session() is None:
            hang_up({request.sid}, "idle")
            return {"error": {"code": "unauthorized", "message": "sign in first"}}
        if floor is None:
            return {"error": {"code": "no_floor", "message": "the shop floor is not running on this hub"}}
        after = data.get("after", 0) if isinstance(data, dict) else 0
        after = after if isinstance(after, int) and not isinstance(after, bool) and after >= 0 else 0
        items = floor.feed(after=after, limit=FEED_PAGE)
        return {"items": items, "more": after > 0 and len(items) == FEED_PAGE}

    return app, socketio


def render_metrics(metrics: list[Metric]) -> str:
    """Prometheus text exposition format."""
    lines: list[str] = []
    described: set[str] = set()
    for name, help_text, labels, value in metrics:
        if name not in described:
            kind = "counter" if name.endswith("_total") else "gauge"
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
            described.add(name)
        label_text = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        lines.append(f"{name}{{{label_text}}} {value}" if label_text else f"{name} {value}")
    return "\n".join(lines) + "\n"
