"""The demo online store: the REST API of docs/online-api.md, served from seeded StoreData."""

from __future__ import annotations

import bisect
import copy
import heapq
import hmac
import json
import logging
import random
import re
import secrets
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Hashable, Iterable

import requests
from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from demo.catalog_feed import catalog_feed, product_row, promotion_for
from demo.seed import STATUSES, TIERS, StoreData, iso
from hub.connector import ACTIVITY_TYPES
from hub.webhooks import sign
from protocol.catalog import ONLINE, stock_key
from protocol.envelope import ID_PATTERN

log = logging.getLogger("demo.online_store")

API = "/api/v1"
ADMIN = f"{API}/_admin"
PUBLIC_ENDPOINTS = frozenset({"healthz", "signing_keys"})
ERROR_CODES = {400: "bad_request", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed",
               409: "conflict", 429: "rate_limited", 500: "internal_error", 502: "bad_gateway", 503: "unavailable"}
CUSTOMER_SUMMARY_FIELDS = ("id", "first_name", "last_name", "email", "phone", "tier", "points",
                           "consent", "updated_at")
CUSTOMER_LIMIT = (20, 100)  # (default, maximum)
PRODUCT_LIMIT = (100, 500)
CUSTOMER_CHANGES_LIMIT = (100, 500)
CATALOG_CHANGES_LIMIT = (500, 1000)
ACTIVITY_LIST_LIMIT = (100, 1000)
GTIN_LENGTHS = (8, 12, 13, 14)  # EAN-8, UPC-A, EAN-13, GTIN-14
# Below this many significant digits a phone search would match almost every member.
MIN_PHONE_DIGITS = 6
CART_QUANTITY = (1, 99)
IDEMPOTENCY_KEY_LENGTH = (1, 100)
ACTIVITY_BATCH = 500
ACTIVITY_ITEM_BYTES = 16 * 1024  # as large as a device event may be
ACTIVITY_TS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?Z$")
BIRTHDAY = re.compile(r"^(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$")
TEXT_FIELDS = ("first_name", "last_name", "email", "phone")
FAULT_STATUSES = (500, 502, 503, 429)
FAULTS_OFF = {"latency_ms": 0, "status": None, "rate": 1.0, "retry_after_s": 1, "down": False}
DOWN_HANG_S = 30.0  # how long a request to a `down` store hangs before its 503, as a dead host looks
WEBHOOK_ATTEMPTS = 8
WEBHOOK_RETRY_S = 1.0  # the first retry's wait; it doubles, up to WEBHOOK_MAX_RETRY_S
WEBHOOK_MAX_RETRY_S = 60.0
WEBHOOK_TIMEOUT_S = 5.0
WEBHOOK_KEPT = 1000  # deliveries the admin read remembers


class ApiError(Exception):
    """An error the client can act on; rendered as {"error": {"code", "message"}}."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


def create_app(data: StoreData, api_key: str, jwks: dict | None = None, *,
               clock: Callable[[], datetime] = _utc_now, webhook_url: str | None = None,
               webhook_secret: str | None = None, webhook_attempts: int = WEBHOOK_ATTEMPTS,
               webhook_retry_s: float = WEBHOOK_RETRY_S) -> Flask:
    """Build the API over `data`; every route except /healthz and the JWKS needs `api_key`.

    `data` is never changed: carts, profile changes, erasures, prices and activity changed
    through the API live in this app only (`clock` stamps them), so two apps over the same
    data do not see each other's changes. With `webhook_url`, every change is also POSTed
    there, signed with `webhook_secret`, by a thread started on the first change."""
    if not api_key:
        raise ValueError("api_key must be a non-empty string: an empty key would let every request in")
    if webhook_url and not webhook_secret:
        raise ValueError("webhook_url needs a webhook_secret: the hub refuses unsigned webhooks")
    app = Flask(__name__)
    app.json.sort_keys = False  # keep fields in the documented order, so responses read like the docs
    app.json.ensure_ascii = False
    sender = WebhookSender(webhook_url, webhook_secret, attempts=webhook_attempts, retry_s=webhook_retry_s)
    shop = Shop(customers=LiveCustomers(data.customers, clock), catalog=LiveCatalog(data, clock),
                activity=ActivityLog(clock), faults=Faults(), webhooks=sender, clock=clock)
    app.extensions["omnikiosk_online_store"] = shop  # tests and the demo reach the live state here

    _register_gates(app, shop, api_key.encode())
    _register_public(app, jwks)
    _register_customers(app, shop)
    _register_catalog(app, shop, data.stores)
    _register_activity(app, shop)
    _register_admin(app, shop)
    _register_error_handlers(app)
    return app


# --- the live store -----------------------------------------------------------------------

class ChangeLog:
    """Keys in the order they last changed. A key changed again moves to the end, so a reader
    walking from the start meets every key once, in its state of now; a reader holding a
    cursor meets exactly the keys changed after it. Thread-safe."""

    def __init__(self, keys: Iterable[Hashable]):
        # In every cursor: a restarted store (whose changes are gone) refuses the old cursors.
        self._epoch = secrets.token_hex(4)
        self._lock = threading.Lock()
        self._seq = 0
        self._seqs: list[int] = []
        self._keys: list[Hashable] = []
        self._latest: dict[Hashable, int] = {}
        for key in keys:
            self._append(key)

    def touch(self, key: Hashable) -> None:
        with self._lock:
            self._append(key)
            if len(self._seqs) > 2 * len(self._latest) + 1000:
                self._compact()

    def page(self, cursor: str | None, limit: int) -> tuple[list[Hashable], str, bool]:
        """(keys changed after `cursor`, at most `limit`; the cursor to ask next; whether more wait)."""
        with self._lock:
            position = self._position(cursor)
            index = bisect.bisect_right(self._seqs, position)
            keys: list[Hashable] = []
            while index < len(self._seqs) and len(keys) < limit:
                if self._latest[self._keys[index]] == self._seqs[index]:
                    keys.append(self._keys[index])
                position = self._seqs[index]
                index += 1
            more = any(self._latest[self._keys[i]] == self._seqs[i] for i in range(index, len(self._seqs)))
            return keys, f"{self._epoch}.{position}", more

    def _append(self, key: Hashable) -> None:
        self._seq += 1
        self._seqs.append(self._seq)
        self._keys.append(key)
        self._latest[key] = self._seq

    def _compact(self) -> None:
        # Entries a later change replaced; cursors name sequence numbers, so they stay valid.
        live = [(seq, key) for seq, key in zip(self._seqs, self._keys, strict=True) if self._latest[key] == seq]
        self._seqs, self._keys = [seq for seq, _ in live], [key for _, key in live]

    def _position(self, cursor: str | None) -> int:
        if cursor is None:
            return 0
        epoch, _, seq = cursor.partition(".")
        if epoch != self._epoch or not (seq.isascii() and seq.isdigit()) or int(seq) > self._seq:
            raise ApiError(400, "invalid_cursor", "This cursor was not issued by this feed of this store (it may have "
                                                  "restarted); start again without a cursor.")
        return int(seq)


class LiveCarts:
    """Carts changed through the API, laid over the seeded ones. The seeded StoreData is shared
    and immutable by convention, so a customer's cart is copied on its first change."""

    def __init__(self, clock: Callable[[], datetime]):
        self._clock = clock
        self._lock = threading.Lock()
        self._carts: dict[str, dict] = {}
        # idempotency key → (what was asked, the cart answered): a retry gets the first answer.
        self._answers: dict[str, tuple[tuple[str, str, int], dict]] = {}

    def overlay(self, profile: dict) -> dict:
        """The profile with its live cart; `updated_at` moves with it (the latest change anywhere)."""
        with self._lock:
            cart = self._carts.get(profile["id"])
        if cart is None:
            return profile
        return {**profile, "cart": cart, "updated_at": max(profile["updated_at"], cart["updated_at"])}

    def add(self, profile: dict, product: dict, quantity: int, key: str) -> tuple[dict, bool]:
        """(the cart, whether this call changed it): a known key changes nothing."""
        asked = (profile["id"], product["gtin"], quantity)
        with self._lock:
            if key in self._answers:
                first_asked, answer = self._answers[key]
                if first_asked != asked:
                    raise ApiError(409, "conflict", "This idempotency_key was already used for another cart line; "
                                                    "send a new key for a new line.")
                return answer, False
            current = self._carts.get(profile["id"]) or profile["cart"]
            cart = {"updated_at": iso(self._clock()), "items": _with_line(current["items"], product, quantity)}
            self._carts[profile["id"]] = cart
            self._answers[key] = (asked, cart)
            return cart, True

    def forget(self, customer_id: str) -> None:
        with self._lock:
            self._carts.pop(customer_id, None)


class LiveCustomers:
    """Customers as they are now: the seeded profiles with their carts, admin changes and erasures."""

    def __init__(self, seeded: list[dict], clock: Callable[[], datetime]):
        self._seeded = {c["id"]: c for c in seeded}
        self._clock = clock
        self._lock = threading.RLock()
        self._changed: dict[str, dict] = {}  # copies of profiles changed through the admin API
        self._erased: dict[str, str] = {}  # id → erased_at
        self._wishlist_keys: dict[str, set[str]] = {}  # id → idempotency keys already applied
        self.carts = LiveCarts(clock)
        self.changes = ChangeLog(c["id"] for c in seeded)

    def get(self, customer_id: str) -> dict | None:
        """The profile now, or None for an unknown or erased customer."""
        cid = customer_id.upper()
        with self._lock:
            if cid in self._erased:
                return None
            base = self._changed.get(cid) or self._seeded.get(cid)
        return self.carts.overlay(base) if base is not None else None

    def require(self, customer_id: str) -> dict:
        profile = self.get(customer_id)
        if profile is None:
            raise ApiError(404, "not_found", f"No customer with id {customer_id!r}.")
        return profile

    def everyone(self) -> Iterable[dict]:
        """Every customer not erased, in id order."""
        for cid in self._seeded:
            profile = self.get(cid)
            if profile is not None:
                yield profile

    def add_to_cart(self, customer_id: str, product: dict, quantity: int, key: str) -> tuple[dict, bool]:
        with self._lock:  # held so an erasure cannot slip between the check and the add
            profile = self.require(customer_id)
            cart, added = self.carts.add(profile, product, quantity, key)
            if added:
                self.changes.touch(profile["id"])
            return cart, added

    def add_to_wishlist(self, customer_id: str, product: dict, key: str) -> tuple[list, bool]:
        """Put a product on the member's wishlist (newest first); the same key again, or a product already
        there, adds nothing."""
        with self._lock:
            profile = self._editable(customer_id)
            seen = self._wishlist_keys.setdefault(profile["id"], set())
            if key in seen or any(item["gtin"] == product["gtin"] for item in profile["wishlist"]):
                seen.add(key)
                return profile["wishlist"], False
            seen.add(key)
            now = iso(self._clock())
            profile["wishlist"].insert(0, {"gtin": product["gtin"], "name": product["name"],
                                           "price": product["price"], "added_at": now})
            return self._store(profile, now)["wishlist"], True

    def change(self, customer_id: str, fields: dict[str, Any]) -> dict:
        """Apply checked profile fields (`_customer_fields`); returns the profile now."""
        with self._lock:
            profile = self._editable(customer_id)
            now = iso(self._clock())
            for name, value in fields.items():
                _set_profile_field(profile, name, value, now)
            return self._store(profile, now)

    def change_order(self, customer_id: str, order_id: str, status: str, shelf: str | None) -> dict:
        with self._lock:
            profile = self._editable(customer_id)
            order = next((o for o in profile["orders"] if o["id"] == order_id), None)
            if order is None:
                raise ApiError(404, "not_found", f"Customer {profile['id']} has no order {order_id!r}.")
            now = iso(self._clock())
            _set_order_status(order, status, shelf, now)
            return self._store(profile, now)

    def erase(self, customer_id: str) -> dict:
        with self._lock:
            profile = self.require(customer_id)
            cid = profile["id"]
            self._erased[cid] = iso(self._clock())
            self._changed.pop(cid, None)
            self.carts.forget(cid)
            self.changes.touch(cid)
            return self.change_item(cid)

    def change_item(self, customer_id: str) -> dict:
        """One item of the customers changes feed: the profile now, or the erasure."""
        with self._lock:
            if customer_id in self._erased:
                return {"id": customer_id, "erased": True, "erased_at": self._erased[customer_id]}
        profile = self.get(customer_id)
        return {"id": customer_id, "updated_at": profile["updated_at"], "profile": profile}

    def _editable(self, customer_id: str) -> dict:
        self.require(customer_id)
        cid = customer_id.upper()
        return copy.deepcopy(self._changed.get(cid) or self._seeded[cid])

    def _store(self, profile: dict, now: str) -> dict:
        profile["updated_at"] = max(profile["updated_at"], now)
        self._changed[profile["id"]] = profile
        self.changes.touch(profile["id"])
        return self.carts.overlay(profile)


class LiveCatalog:
    """Products, stock and stores as they are now: the catalog feed with the admin's price and stock changes."""

    def __init__(self, data: StoreData, clock: Callable[[], datetime]):
        feed = catalog_feed(data)
        self._clock = clock
        self._lock = threading.Lock()
        self._products = {p["gtin"]: p for p in feed["products"]}
        self.gtins = sorted(self._products)
        self._stock = {stock_key(row["gtin"], row["store"]): row for row in feed["stock"]}
        self._stores = {s["id"]: s for s in feed["stores"]}
        self.changes = ChangeLog([("store", sid) for sid in self._stores]
                                 + [("product", gtin) for gtin in self.gtins]
                                 + [("stock", key) for key in self._stock])

    def product(self, gtin: str) -> dict | None:
        with self._lock:
            return self._products.get(gtin)

    def require(self, gtin: str) -> dict:
        found = self.product(gtin)
        if found is None:
            raise ApiError(404, "not_found", f"No product with GTIN {gtin}.")
        return found

    def change(self, gtin: str, fields: dict[str, Any]) -> dict:
        """Apply checked product fields (`_product_fields`); returns the product now."""
        with self._lock:
            product = dict(self._products.get(gtin) or {})
            if not product:
                raise ApiError(404, "not_found", f"No product with GTIN {gtin}.")
            now = iso(self._clock())
            stock = fields.pop("stock", {})
            unknown = sorted(set(stock) - set(self._stores) - {ONLINE})
            if unknown:
                raise ApiError(400, "bad_request", f"stock names unknown stores {unknown}; use "
                                                   f"{', '.join([*self._stores, ONLINE])}.")
            if fields:
                self._products[gtin] = _priced(product, fields, now)
                self.changes.touch(("product", gtin))
            for store, quantity in stock.items():
                key = stock_key(gtin, store)
                self._stock[key] = {**self._stock[key], "quantity": quantity, "updated_at": now}
                self.changes.touch(("stock", key))
            return self._products[gtin]

    def change_item(self, change: tuple[str, str]) -> dict:
        kind, key = change
        with self._lock:
            if kind == "product":
                data = product_row(self._products[key])
            elif kind == "stock":
                data = dict(self._stock[key])
            else:
                data = dict(self._stores[key])
        return {"kind": kind, "key": key, "data": data}


def _priced(product: dict, fields: dict[str, Any], now: str) -> dict:
    """The product with new prices or promotion; without an explicit promotion, the prices decide it."""
    changed = {**product, **fields, "updated_at": max(product["updated_at"], now)}
    if changed["compare_at_price"] is not None and changed["compare_at_price"] <= changed["price"]:
        raise ApiError(400, "bad_request", "compare_at_price must be above price (the price before the sale), or null.")
    if "promotion" not in fields:
        changed["promotion"] = promotion_for(changed["price"], changed["compare_at_price"])
    return changed


class ActivityLog:
    """In-store activity the hub pushed, each event once by id, with how often it arrived."""

    def __init__(self, clock: Callable[[], datetime]):
        self._clock = clock
        self._lock = threading.Lock()
        self._items: dict[str, dict] = {}  # id → item as received + received_at, times_received

    def record(self, items: list, known_customer: Callable[[str], bool]) -> dict:
        accepted, rejected = [], []
        for item in items:
            problem = _activity_problem(item) or _unknown_customer(item, known_customer)
            if problem:
                rejected.append({"id": item.get("id") if isinstance(item, dict) else None,
                                 "code": problem[0], "message": problem[1]})
                continue
            conflict = self._keep(item)
            if conflict:
                rejected.append({"id": item["id"], "code": "conflict", "message": conflict})
            else:
                accepted.append(item["id"])
        return {"accepted": accepted, "rejected": rejected}

    def items(self, customer_id: str | None, store: str | None, limit: int) -> list[dict]:
        with self._lock:
            kept = [dict(item) for item in self._items.values()
                    if (customer_id is None or (item["customer_id"] or "").upper() == customer_id.upper())
                    and (store is None or item["store"] == store)]
        return kept[:limit]

    def forget_customer(self, customer_id: str) -> None:
        with self._lock:
            self._items = {key: item for key, item in self._items.items()
                           if (item["customer_id"] or "").upper() != customer_id.upper()}

    def _keep(self, item: dict) -> str | None:
        fields = {name: item[name] for name in ("id", "type", "customer_id", "store", "ts", "data")}
        with self._lock:
            kept = self._items.get(item["id"])
            if kept is None:
                self._items[item["id"]] = {**fields, "received_at": iso(self._clock()), "times_received": 1}
                return None
            if {name: kept[name] for name in fields} != fields:
                return "This id was already used for different activity; every event needs its own id."
            kept["times_received"] += 1
            return None


def _activity_problem(item: Any) -> tuple[str, str] | None:
    """(code, message) saying why an activity item is refused, or None."""
    if not isinstance(item, dict):
        return "invalid", "An item must be a JSON object."
    event_id, kind, customer = item.get("id"), item.get("type"), item.get("customer_id")
    if not isinstance(event_id, str) or not 1 <= len(event_id) <= 100:
        return "invalid", "id is required: the event id, 1 to 100 characters."
    if kind not in ACTIVITY_TYPES:
        return "invalid", f"type must be one of {', '.join(ACTIVITY_TYPES)}."
    if customer is not None and not (isinstance(customer, str) and 1 <= len(customer) <= 100):
        return "invalid", "customer_id must be a customer id or null."
    if not isinstance(item.get("store"), str) or not ID_PATTERN.match(item["store"]):
        return "invalid", "store must be a store id such as s001."
    if not isinstance(item.get("ts"), str) or not ACTIVITY_TS.match(item["ts"]):
        return "invalid", "ts must be an ISO 8601 UTC timestamp ending in Z."
    if not isinstance(item.get("data"), dict):
        return "invalid", "data must be a JSON object ({} when there is nothing to say)."
    if len(json.dumps(item, ensure_ascii=False).encode()) > ACTIVITY_ITEM_BYTES:
        return "too_large", f"An item may be at most {ACTIVITY_ITEM_BYTES} bytes of JSON."
    return None


def _unknown_customer(item: dict, known: Callable[[str], bool]) -> tuple[str, str] | None:
    if item["customer_id"] is not None and not known(item["customer_id"]):
        return "not_found", f"No customer with id {item['customer_id']!r}."
    return None


class Faults:
    """Switchable trouble on every API request, to show what the hub does when the online store
    is slow, failing, rate limiting or gone. Changing the faults releases requests held by the old ones."""

    def __init__(self, rng: random.Random | None = None):
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._settings = dict(FAULTS_OFF)
        self._released = threading.Event()

    def snapshot(self) -> dict:
        with self._lock:
            return dict(self._settings)

    def replace(self, settings: dict) -> dict:
        with self._lock:
            self._settings = settings
            released, self._released = self._released, threading.Event()
        released.set()
        return dict(settings)

    def interfere(self) -> Response | None:
        """The response a faulty store gives instead of the real one, or None to answer normally."""
        with self._lock:
            settings, released = self._settings, self._released
        if settings == FAULTS_OFF:
            return None
        if settings["down"]:
            released.wait(DOWN_HANG_S)
            return _error_response(503, "unavailable", "The online store is down (an injected fault).")
        if settings["latency_ms"]:
            released.wait(settings["latency_ms"] / 1000)
        status = settings["status"]
        if status is None or self._rng.random() >= settings["rate"]:
            return None
        response = _error_response(status, ERROR_CODES[status], f"HTTP {status} (an injected fault).")
        if status == 429:
            response.headers["Retry-After"] = f"{settings['retry_after_s']:g}"
        return response


class WebhookSender:
    """Delivers the store's events to the hub, signed (hub.webhooks.sign), from a thread of its own.

    Each event is retried while the hub does not answer 2xx, after 1, 2, 4 … × `retry_s`
    (at most WEBHOOK_MAX_RETRY_S), `attempts` times at most while the hub answers with an error,
    for as long as it cannot be reached at all; each attempt is signed anew, so a hub that was
    down receives it late but fresh. Without a URL, or switched off, events are
    only recorded (`not_sent`): the hub must then find the change by reconciliation."""

    def __init__(self, url: str | None, secret: str | None, *, attempts: int = WEBHOOK_ATTEMPTS,
                 retry_s: float = WEBHOOK_RETRY_S, timeout_s: float = WEBHOOK_TIMEOUT_S,
                 wall: Callable[[], float] = time.time):
        self.url = url
        self._secret = secret
        self.attempts = attempts
        self.retry_s = retry_s
        self.timeout_s = timeout_s
        self._wall = wall
        self._cond = threading.Condition()
        self._due: list[tuple[float, int, dict]] = []  # heap of (monotonic due time, order, delivery)
        self._deliveries: deque[dict] = deque(maxlen=WEBHOOK_KEPT)
        self._order = 0
        self._enabled = True
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._http = requests.Session()

    def emit(self, event: dict) -> None:
        delivery = {"event": event, "status": "pending", "attempts": 0, "last_error": None}
        with self._cond:
            self._deliveries.append(delivery)
            if not self.url or not self._enabled:
                delivery["status"] = "not_sent"
                return
            self._schedule(delivery, time.monotonic())
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="webhook-sender", daemon=True)
                self._thread.start()

    def status(self) -> dict:
        with self._cond:
            deliveries = [{**d["event"], "status": d["status"], "attempts": d["attempts"],
                           "last_error": d["last_error"]} for d in self._deliveries]
            return {"url": self.url, "enabled": self._enabled, "deliveries": deliveries}

    def set_enabled(self, enabled: bool) -> None:
        with self._cond:
            self._enabled = enabled

    def stop(self, timeout_s: float = 5.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _schedule(self, delivery: dict, due: float) -> None:
        self._order += 1
        heapq.heappush(self._due, (due, self._order, delivery))
        self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and (not self._due or self._due[0][0] > time.monotonic()):
                    self._cond.wait(self._due[0][0] - time.monotonic() if self._due else None)
                if self._stopping:
                    return
                delivery = heapq.heappop(self._due)[2]
            error = self._attempt(delivery["event"])
            with self._cond:
                delivery["attempts"] += 1
                delivery["last_error"] = error
                if error is None:
                    delivery["status"] = "delivered"
                elif delivery["attempts"] >= self.attempts and error.startswith("HTTP "):
                    # Given up only on a hub that answers and refuses: one that cannot be reached (down, or
                    # the store's link cut for a morning) gets it when it is back, however long that takes.
                    delivery["status"] = "failed"
                    log.warning("webhook given up", extra={"event": delivery["event"]["id"], "error": error})
                else:
                    wait = min(WEBHOOK_MAX_RETRY_S, self.retry_s * 2 ** (delivery["attempts"] - 1))
                    self._schedule(delivery, time.monotonic() + wait)

    def _attempt(self, event: dict) -> str | None:
        """None when the hub took it (2xx), else what went wrong (a status or an error name)."""
        body = json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json", **sign(self._secret, body, self._wall())}
        try:
            response = self._http.post(self.url, data=body, headers=headers, timeout=self.timeout_s)
        except requests.RequestException as exc:
            return type(exc).__name__
        return None if 200 <= response.status_code < 300 else f"HTTP {response.status_code}"


@dataclass
class Shop:
    """Everything the running demo store holds besides the seeded data."""

    customers: LiveCustomers
    catalog: LiveCatalog
    activity: ActivityLog
    faults: Faults
    webhooks: WebhookSender
    clock: Callable[[], datetime]

    def emit(self, kind: str, data: dict) -> dict:
        """Announce a change to the hub: an event for the webhook sender."""
        event = {"id": f"evt_{uuid.uuid4().hex}", "type": kind, "created_at": iso(self.clock()), "data": data}
        self.webhooks.emit(event)
        return event


# --- routes -------------------------------------------------------------------------------

def _register_gates(app: Flask, shop: Shop, expected_key: bytes) -> None:
    """Faults first (a store that is down is down for everyone), then the API key."""

    @app.before_request
    def injected_faults() -> Response | None:
        if request.path.startswith(API + "/") and not request.path.startswith(ADMIN + "/"):
            return shop.faults.interfere()
        return None

    @app.before_request
    def require_api_key() -> Response | None:
        if request.endpoint in PUBLIC_ENDPOINTS:
            return None
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        # compare_digest keeps the comparison time independent of how much of the key matched.
        if scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), expected_key):
            return None
        response = _error_response(401, "unauthorized",
                                   "Missing or wrong API key: send 'Authorization: Bearer <api key>'.")
        response.headers["WWW-Authenticate"] = 'Bearer realm="omnikiosk-online-store"'
        return response


def _register_public(app: Flask, jwks: dict | None) -> None:
    @app.get("/healthz")
    def healthz():
        return {"ok": True}

    @app.get("/.well-known/jwks.json")
    def signing_keys():
        if jwks is None:
            raise ApiError(404, "not_found", "This store was started without member-token signing keys.")
        response = jsonify(jwks)
        # Kiosks refetch keys now and then; a short cache lets a key rotation reach them quickly.
        response.headers["Cache-Control"] = "public, max-age=300"
        return response


def _register_customers(app: Flask, shop: Shop) -> None:
    customers = shop.customers

    @app.get(f"{API}/customers/<customer_id>")
    def customer(customer_id: str):
        return customers.require(customer_id)

    @app.post(f"{API}/customers/<customer_id>/cart/items")
    def add_cart_item(customer_id: str):
        gtin, quantity, key = _cart_item_request(request.get_json(silent=True))
        profile = customers.require(customer_id)
        found = shop.catalog.require(gtin)
        cart, added = customers.add_to_cart(customer_id, found, quantity, key)
        if added:
            shop.emit("customer.updated", {"customer_id": profile["id"]})
        return {"cart": cart}

    @app.post(f"{API}/customers/<customer_id>/wishlist/items")
    def add_wishlist_item(customer_id: str):
        gtin, _, key = _cart_item_request({**(request.get_json(silent=True) or {}), "quantity": 1}
                                          if isinstance(request.get_json(silent=True), dict) else None)
        profile = customers.require(customer_id)
        wishlist, added = customers.add_to_wishlist(customer_id, shop.catalog.require(gtin), key)
        if added:
            shop.emit("customer.updated", {"customer_id": profile["id"]})
        return {"wishlist": wishlist}

    @app.get(f"{API}/customers")
    def customer_search():
        limit = _limit(*CUSTOMER_LIMIT)
        query = request.args.get("q", "").strip()
        matches = (c for c in customers.everyone() if _matches(query, _haystack(c), _digits(c["phone"])))
        items = []
        for live in matches:
            items.append({field: live[field] for field in CUSTOMER_SUMMARY_FIELDS})
            if len(items) == limit:
                break
        return {"items": items}

    @app.get(f"{API}/customers/changes")
    def customer_changes():
        keys, cursor, more = customers.changes.page(request.args.get("cursor") or None,
                                                    _limit(*CUSTOMER_CHANGES_LIMIT))
        return {"items": [customers.change_item(cid) for cid in keys], "next_cursor": cursor, "has_more": more}


def _register_catalog(app: Flask, shop: Shop, seeded_stores: list[dict]) -> None:
    catalog = shop.catalog

    @app.get(f"{API}/products")
    def product_list():
        limit = _limit(*PRODUCT_LIMIT)
        cursor = request.args.get("cursor") or None
        if cursor is not None and not (cursor.isascii() and cursor.isdigit() and len(cursor) == 14):
            raise ApiError(400, "bad_request",
                           "cursor is not one this API issued; pass next_cursor from the previous page.")
        start = bisect.bisect_right(catalog.gtins, cursor) if cursor else 0
        page = [_listing(catalog.require(gtin)) for gtin in catalog.gtins[start:start + limit]]
        more = start + limit < len(catalog.gtins)
        return {"items": page, "next_cursor": page[-1]["gtin"] if more and page else None}

    @app.get(f"{API}/products/<code>")
    def product(code: str):
        return catalog.require(_normalise_gtin(code))

    @app.get(f"{API}/stores")
    def stores():
        return {"items": seeded_stores}

    @app.get(f"{API}/catalog/changes")
    def catalog_changes():
        keys, cursor, more = catalog.changes.page(request.args.get("cursor") or None, _limit(*CATALOG_CHANGES_LIMIT))
        return {"items": [catalog.change_item(key) for key in keys], "next_cursor": cursor, "has_more": more}


def _register_activity(app: Flask, shop: Shop) -> None:
    @app.post(f"{API}/activity")
    def push_activity():
        body = request.get_json(silent=True)
        items = body.get("items") if isinstance(body, dict) else None
        if not isinstance(items, list) or not 1 <= len(items) <= ACTIVITY_BATCH:
            raise ApiError(400, "bad_request", f'Send a JSON object {{"items": [...]}} with 1 to {ACTIVITY_BATCH} '
                                               "activity items.")
        return shop.activity.record(items, lambda cid: shop.customers.get(cid) is not None)

    @app.get(f"{API}/activity")
    def activity():
        limit = _limit(*ACTIVITY_LIST_LIMIT)
        return {"items": shop.activity.items(request.args.get("customer_id") or None,
                                             request.args.get("store") or None, limit)}


def _register_admin(app: Flask, shop: Shop) -> None:
    """Changes a real platform makes through its back office, and the switches of the demo itself."""

    @app.patch(f"{ADMIN}/customers/<customer_id>")
    def change_customer(customer_id: str):
        profile = shop.customers.change(customer_id, _customer_fields(request.get_json(silent=True)))
        shop.emit("customer.updated", {"customer_id": profile["id"]})
        return profile

    @app.patch(f"{ADMIN}/customers/<customer_id>/orders/<order_id>")
    def change_order(customer_id: str, order_id: str):
        status, shelf = _order_fields(request.get_json(silent=True))
        profile = shop.customers.change_order(customer_id, order_id, status, shelf)
        shop.emit("order.updated", {"customer_id": profile["id"], "order_id": order_id})
        return next(o for o in profile["orders"] if o["id"] == order_id)

    @app.post(f"{ADMIN}/customers/<customer_id>/erase")
    def erase_customer(customer_id: str):
        erased = shop.customers.erase(customer_id)
        shop.activity.forget_customer(erased["id"])
        shop.emit("customer.erased", {"customer_id": erased["id"]})
        return erased

    @app.patch(f"{ADMIN}/products/<code>")
    def change_product(code: str):
        product = shop.catalog.change(_normalise_gtin(code), _product_fields(request.get_json(silent=True)))
        shop.emit("catalog.updated", {})
        return product

    @app.get(f"{ADMIN}/faults")
    def faults():
        return shop.faults.snapshot()

    @app.post(f"{ADMIN}/faults")
    def set_faults():
        return shop.faults.replace(_fault_settings(request.get_json(silent=True)))

    @app.delete(f"{ADMIN}/faults")
    def clear_faults():
        return shop.faults.replace(dict(FAULTS_OFF))

    @app.get(f"{ADMIN}/webhooks")
    def webhooks():
        return shop.webhooks.status()

    @app.post(f"{ADMIN}/webhooks")
    def switch_webhooks():
        body = request.get_json(silent=True)
        if not (isinstance(body, dict) and set(body) == {"enabled"} and isinstance(body["enabled"], bool)):
            raise ApiError(400, "bad_request", 'Send {"enabled": true} or {"enabled": false}.')
        shop.webhooks.set_enabled(body["enabled"])
        return shop.webhooks.status()


# --- request bodies -----------------------------------------------------------------------

def _cart_item_request(body: Any) -> tuple[str, int, str]:
    """(GTIN-14, quantity, idempotency key) from a POST body, or a 400 saying what to send."""
    if not isinstance(body, dict):
        raise ApiError(400, "bad_request", 'Send a JSON object: {"gtin": "...", "quantity": 1, '
                                           '"idempotency_key": "..."} with Content-Type: application/json.')
    gtin = body.get("gtin")
    if not isinstance(gtin, str):
        raise ApiError(400, "bad_request", "gtin is required: a string of 8, 12, 13 or 14 digits.")
    quantity = body.get("quantity", 1)
    low, high = CART_QUANTITY
    if not _whole(quantity, low, high):
        raise ApiError(400, "bad_request", f"quantity must be a whole number from {low} to {high}.")
    key = body.get("idempotency_key")
    shortest, longest = IDEMPOTENCY_KEY_LENGTH
    if not isinstance(key, str) or not shortest <= len(key) <= longest:
        raise ApiError(400, "bad_request", f"idempotency_key is required: a string of {shortest} to {longest} "
                                           "characters, the same on every retry of this line.")
    return _normalise_gtin(gtin), quantity, key


def _customer_fields(body: Any) -> dict[str, Any]:
    """The profile fields an admin PATCH may change, checked; a 400 says what is wrong."""
    allowed = ("consent", "points", "tier", "birthday", *TEXT_FIELDS)
    fields = _patch_body(body, allowed)
    for name, value in fields.items():
        if name == "consent" and not (isinstance(value, dict) and value and set(value) <= {"clienteling", "marketing"}
                                      and all(isinstance(v, bool) for v in value.values())):
            raise ApiError(400, "bad_request", 'consent must be an object such as {"clienteling": false} '
                                               "(clienteling, marketing: true or false).")
        if name == "points" and not _whole(value, 0, 10_000_000):
            raise ApiError(400, "bad_request", "points must be a whole number of at least 0.")
        if name == "tier" and value not in TIERS:
            raise ApiError(400, "bad_request", f"tier must be one of {', '.join(TIERS)}.")
        if name == "birthday" and not (isinstance(value, str) and BIRTHDAY.match(value)):
            raise ApiError(400, "bad_request", 'birthday must be "MM-DD", e.g. "11-28".')
        if name in TEXT_FIELDS and not (isinstance(value, str) and 0 < len(value.strip()) <= 100):
            raise ApiError(400, "bad_request", f"{name} must be a non-empty string of at most 100 characters.")
    return fields


def _order_fields(body: Any) -> tuple[str, str | None]:
    fields = _patch_body(body, ("status", "shelf"))
    if fields.get("status") not in STATUSES:
        raise ApiError(400, "bad_request", f"status is required: one of {', '.join(STATUSES)}.")
    shelf = fields.get("shelf")
    if shelf is not None and not (isinstance(shelf, str) and 0 < len(shelf) <= 10):
        raise ApiError(400, "bad_request", 'shelf must be a short string such as "B".')
    return fields["status"], shelf


def _product_fields(body: Any) -> dict[str, Any]:
    """Price, compare_at_price, promotion and per-store stock an admin PATCH may change, checked."""
    fields = _patch_body(body, ("price", "compare_at_price", "promotion", "stock"))
    if "price" in fields and not _money(fields["price"]):
        raise ApiError(400, "bad_request", "price must be a positive number (major units, e.g. 59.95).")
    if fields.get("compare_at_price") is not None and not _money(fields["compare_at_price"]):
        raise ApiError(400, "bad_request", "compare_at_price must be a positive number or null.")
    for name in ("price", "compare_at_price"):
        if fields.get(name) is not None:
            fields[name] = round(float(fields[name]), 2)
    if "promotion" in fields and not _promotion_ok(fields["promotion"]):
        raise ApiError(400, "bad_request", 'promotion must be null or {"label": "-30%", "text": "...", '
                                           '"percent": 30} (percent 1 to 99, or null).')
    stock = fields.get("stock", {})
    if not (isinstance(stock, dict) and all(_whole(q, 0, 100_000) for q in stock.values())):
        raise ApiError(400, "bad_request", 'stock must be an object of store id → quantity, e.g. {"s001": 3}.')
    return fields


def _patch_body(body: Any, allowed: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(body, dict) or not body:
        raise ApiError(400, "bad_request", f"Send a JSON object with at least one of: {', '.join(allowed)}.")
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise ApiError(400, "bad_request", f"Cannot change {', '.join(unknown)}; allowed: {', '.join(allowed)}.")
    return dict(body)


def _fault_settings(body: Any) -> dict:
    """Complete fault settings from a POST body: fields left out are off."""
    if not isinstance(body, dict):
        raise ApiError(400, "bad_request", "Send a JSON object of faults, e.g. {\"status\": 503} or {\"down\": true}.")
    unknown = sorted(set(body) - set(FAULTS_OFF))
    if unknown:
        raise ApiError(400, "bad_request", f"Unknown faults {unknown}; use {', '.join(FAULTS_OFF)}.")
    settings = {**FAULTS_OFF, **body}
    if not _whole(settings["latency_ms"], 0, 60_000):
        raise ApiError(400, "bad_request", "latency_ms must be a whole number from 0 to 60000.")
    if settings["status"] is not None and settings["status"] not in FAULT_STATUSES:
        raise ApiError(400, "bad_request", f"status must be null or one of {', '.join(map(str, FAULT_STATUSES))}.")
    if not (_number(settings["rate"]) and 0 <= settings["rate"] <= 1):
        raise ApiError(400, "bad_request", "rate must be a number from 0 to 1 (the share of requests that fail).")
    if not (_number(settings["retry_after_s"]) and 0 <= settings["retry_after_s"] <= 3600):
        raise ApiError(400, "bad_request", "retry_after_s must be a number of seconds from 0 to 3600.")
    if not isinstance(settings["down"], bool):
        raise ApiError(400, "bad_request", "down must be true or false.")
    return settings


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _whole(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _money(value: Any) -> bool:
    return _number(value) and 0 < value < 1_000_000


def _promotion_ok(promotion: Any) -> bool:
    if promotion is None:
        return True
    if not (isinstance(promotion, dict) and set(promotion) <= {"label", "text", "percent"}):
        return False
    label, text, percent = promotion.get("label"), promotion.get("text"), promotion.get("percent")
    return (isinstance(label, str) and 0 < len(label) <= 40 and isinstance(text, str) and len(text) <= 200
            and (percent is None or _whole(percent, 1, 99)))


# --- changing a profile -------------------------------------------------------------------

def _set_profile_field(profile: dict, name: str, value: Any, now: str) -> None:
    """One checked field; points and tier move in `loyalty` too, so the profile stays consistent."""
    if name == "consent":
        profile["consent"] = {**profile["consent"], **value}
    elif name == "points":
        difference = value - profile["points"]
        if difference:
            profile["loyalty"]["history"].insert(0, {"ts": now, "points": difference, "reason": "Points adjusted"})
        profile["points"] = profile["loyalty"]["points"] = value
    elif name == "tier":
        profile["tier"] = profile["loyalty"]["tier"] = value
    else:
        profile[name] = value.strip() if isinstance(value, str) else value


def _set_order_status(order: dict, status: str, shelf: str | None, now: str) -> None:
    if status == "ready_for_pickup":
        if order["pickup"] is None:
            raise ApiError(409, "conflict", f"Order {order['number']} is not click & collect; it cannot be ready "
                                            "for pickup.")
        order["pickup"] = {**order["pickup"], "shelf": shelf or order["pickup"]["shelf"] or "A", "ready_since": now}
    elif shelf is not None:
        raise ApiError(400, "bad_request", "shelf goes with status ready_for_pickup only.")
    order["status"] = status


# --- helpers ------------------------------------------------------------------------------

def _with_line(items: list[dict], product: dict, quantity: int) -> list[dict]:
    """A new list (earlier answers stay as they were): the product's line grows, or is appended."""
    lines = copy.deepcopy(items)
    for line in lines:
        if line["gtin"] == product["gtin"]:
            line["quantity"] += quantity
            return lines
    return lines + [{"gtin": product["gtin"], "name": product["name"], "quantity": quantity,
                     "price": product["price"]}]


def _haystack(customer: dict) -> str:
    """The text a search looks through; fields are separated so a match cannot span two."""
    name = f"{customer['first_name']} {customer['last_name']}"
    return "\n".join((customer["id"], name, customer["email"], customer["phone"])).lower()


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isascii() and ch.isdigit())


def _matches(query: str, haystack: str, phone_digits: str) -> bool:
    """Case-insensitive substring on id, name, email and phone; digits also match a phone
    written another way ("06 1234 5678" finds "+31 612 345 678")."""
    if not query:
        return True
    if query.lower() in haystack:
        return True
    digits = _digits(query).lstrip("0")  # a national trunk 0 is absent from the +31 form
    return len(digits) >= MIN_PHONE_DIGITS and digits in phone_digits


def _listing(product: dict) -> dict:
    """A product as the catalog list shows it: everything but the reviews."""
    return {key: value for key, value in product.items() if key != "reviews"}


def _normalise_gtin(code: str) -> str:
    """EAN-8, UPC-A, EAN-13 and GTIN-14 all name the same product once left-padded to 14."""
    code = code.strip()
    if not (code.isascii() and code.isdigit() and len(code) in GTIN_LENGTHS):
        raise ApiError(400, "bad_request", f"GTIN must be 8, 12, 13 or 14 digits, got {code!r}.")
    return code.zfill(14)


def _limit(default: int, maximum: int) -> int:
    raw = request.args.get("limit")
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit() and 1 <= int(raw) <= maximum):
        raise ApiError(400, "bad_request", f"limit must be a whole number from 1 to {maximum}, got {raw!r}.")
    return int(raw)


def _error_response(status: int, code: str, message: str) -> Response:
    response = jsonify({"error": {"code": code, "message": message}})
    response.status_code = status
    return response


def _register_error_handlers(app: Flask) -> None:
    """Every failure is JSON in one shape, so clients never have to parse an HTML page."""

    @app.errorhandler(ApiError)
    def api_error(error: ApiError):
        return _error_response(error.status, error.code, error.message)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        status = error.code or 500
        if status == 404:
            message = f"No such endpoint: {request.method} {request.path}. See docs/online-api.md."
        elif isinstance(error, MethodNotAllowed):
            message = f"{request.method} is not allowed on {request.path}; use {', '.join(error.valid_methods or [])}."
        else:
            message = error.description or error.name
        response = _error_response(status, ERROR_CODES.get(status, "http_error"), message)
        if isinstance(error, MethodNotAllowed):
            response.headers["Allow"] = ", ".join(error.valid_methods or [])
        return response

    @app.errorhandler(Exception)
    def unexpected_error(error: Exception):
        app.logger.exception("unhandled error on %s %s", request.method, request.path)
        return _error_response(500, "internal_error", "The demo online store failed; see its log.")
