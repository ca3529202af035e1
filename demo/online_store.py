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
from demo.seed import CURRENCY, STATUSES, TIERS, StoreData, iso
from hub.connector import ACTIVITY_TYPES, ONLINE_CHANNELS, ORDER_CHANNELS
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
SESSIONS_CHANGES_LIMIT = (500, 1000)
ORDERS_CHANGES_LIMIT = (500, 1000)
ACTIVITY_LIST_LIMIT = (100, 1000)
GTIN_LENGTHS = (8, 12, 13, 14)  # EAN-8, UPC-A, EAN-13, GTIN-14
# Below this many significant digits a phone search would match almost every member.
MIN_PHONE_DIGITS = 6
CART_QUANTITY = (1, 99)
IDEMPOTENCY_KEY_LENGTH = (1, 100)
ACTIVITY_BATCH = 500
ACTIVITY_ITEM_BYTES = 16 * 1024  # as large as a device event may be
ACTIVITY_TS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?Z$")
SECOND_TS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
RECORD_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$")  # session and order ids an admin may choose
ORDER_LINES = (1, 50)
SESSION_FIELDS = ("id", "customer_id", "channel", "source", "started_at", "added_to_cart", "asked_for_help")
ORDER_FIELDS = ("id", "customer_id", "channel", "status", "placed_at", "total", "currency", "lines", "pickup")
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
    customers = LiveCustomers(data.customers, clock)
    shop = Shop(customers=customers, catalog=LiveCatalog(data, clock),
                activity=ActivityLog(clock), faults=Faults(), webhooks=sender, clock=clock,
                analytics=LiveAnalytics(data, customers, clock))
    app.extensions["omnikiosk_online_store"] = shop  # tests and the demo reach the live state here

    _register_gates(app, shop, api_key.encode())
    _register_public(app, jwks)
    _register_customers(app, shop)
    _register_catalog(app, shop, data.stores)
    _register_activity(app, shop)
    _register_analytics(app, shop, {s["id"] for s in data.stores})
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

    def scoped_page(self, cursor: str | None, limit: int, scope: str,
                    select: Callable[[Hashable], bool]) -> tuple[list[Hashable], str, bool]:
        """As `page`, over the keys `select` takes only (it is asked outside the lock, so it may read other
        live state). The cursor names `scope` (a store id, without dots): it is refused for another scope."""
        with self._lock:
            position = self._position(cursor, scope)
            index = bisect.bisect_right(self._seqs, position)
            live = [(self._seqs[i], self._keys[i]) for i in range(index, len(self._seqs))
                    if self._latest[self._keys[i]] == self._seqs[i]]
            end = self._seq
        keys: list[Hashable] = []
        remaining = iter(live)
        for seq, key in remaining:
            if select(key):
                keys.append(key)
                position = seq
                if len(keys) == limit:
                    break
        else:
            position = end  # everything up to here was looked at: skipped keys need not be seen again
        more = any(select(key) for _, key in remaining)
        return keys, f"{self._epoch}.{scope}.{position}", more

    def _append(self, key: Hashable) -> None:
        self._seq += 1
        self._seqs.append(self._seq)
        self._keys.append(key)
        self._latest[key] = self._seq

    def _compact(self) -> None:
        # Entries a later change replaced; cursors name sequence numbers, so they stay valid.
        live = [(seq, key) for seq, key in zip(self._seqs, self._keys, strict=True) if self._latest[key] == seq]
        self._seqs, self._keys = [seq for seq, _ in live], [key for _, key in live]

    def _position(self, cursor: str | None, scope: str | None = None) -> int:
        if cursor is None:
            return 0
        epoch, _, seq = cursor.partition(".")
        if scope is not None:
            named, _, seq = seq.rpartition(".")
            epoch = epoch if named == scope else ""
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

    def add_order(self, customer_id: str, order: dict) -> dict:
        """Put a new order in the profile (orders stay newest first); returns the profile now."""
        with self._lock:
            profile = self._editable(customer_id)
            profile["orders"] = sorted([*profile["orders"], order], key=lambda o: o["placed_at"], reverse=True)
            return self._store(profile, iso(self._clock()))

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


class LiveAnalytics:
    """The analytics feeds: members' online sessions and orders, each a ChangeLog read per home store.

    Sessions are kept here (seeded, then added or replaced through the admin API); orders are
    the profiles' own, read live from LiveCustomers, so a status change shows in both. Members
    erased, or unknown, are left out of both feeds."""

    def __init__(self, data: StoreData, customers: LiveCustomers, clock: Callable[[], datetime]):
        self._customers = customers
        self._clock = clock
        self._lock = threading.Lock()
        # A member missing from home_stores (data built without them) belongs to the first store.
        self._default_home = data.stores[0]["id"] if data.stores else "s001"
        self._homes = dict(data.home_stores)
        self._sessions = {s["id"]: dict(s) for s in data.sessions}
        self._session_number = len(data.sessions)
        seeded_orders = sorted((o["placed_at"], o["id"], c["id"]) for c in data.customers for o in c["orders"])
        self._order_owner = {order_id: cid for _, order_id, cid in seeded_orders}
        self._order_number = max((int(i) for i in self._order_owner if i.isdigit()), default=0)
        self.sessions = ChangeLog(s["id"] for s in data.sessions)
        self.orders = ChangeLog(order_id for _, order_id, _ in seeded_orders)

    def home_store(self, customer_id: str) -> str:
        return self._homes.get(customer_id, self._default_home)

    def _member_of(self, customer_id: str | None, store: str) -> bool:
        return (customer_id is not None and self.home_store(customer_id) == store
                and self._customers.get(customer_id) is not None)

    # --- sessions
    def session_page(self, cursor: str | None, limit: int, store: str) -> dict:
        def select(session_id: Hashable) -> bool:
            with self._lock:
                session = self._sessions.get(session_id)
            return session is not None and self._member_of(session["customer_id"], store)

        keys, next_cursor, more = self.sessions.scoped_page(cursor, limit, store, select)
        with self._lock:
            items = [dict(self._sessions[key]) for key in keys]
        return {"items": items, "next_cursor": next_cursor, "has_more": more}

    def put_session(self, fields: dict) -> dict:
        """Add a session (no id: the next "S…" id), or replace the one with its id; it moves to the feed's end."""
        profile = self._customers.require(fields["customer_id"])
        with self._lock:
            session_id = fields.get("id")
            if session_id is None:
                while True:
                    self._session_number += 1
                    session_id = f"S{self._session_number:06d}"
                    if session_id not in self._sessions:
                        break
            session = {"id": session_id, "customer_id": profile["id"], "channel": fields["channel"],
                       "source": fields.get("source"), "started_at": fields.get("started_at") or iso(self._clock()),
                       "added_to_cart": fields.get("added_to_cart", False),
                       "asked_for_help": fields.get("asked_for_help", False)}
            self._sessions[session_id] = session
            self.sessions.touch(session_id)
            return dict(session)

    # --- orders
    def order_page(self, cursor: str | None, limit: int, store: str) -> dict:
        items: dict[Hashable, dict] = {}

        def select(order_id: Hashable) -> bool:
            item = self.order_item(order_id)
            if item is None or not self._member_of(item["customer_id"], store):
                return False
            items[order_id] = item
            return True

        keys, next_cursor, more = self.orders.scoped_page(cursor, limit, store, select)
        return {"items": [items[key] for key in keys], "next_cursor": next_cursor, "has_more": more}

    def order_item(self, order_id: Hashable) -> dict | None:
        """The order as the orders feed shows it now, or None (its member was erased)."""
        with self._lock:
            owner = self._order_owner.get(order_id)
        profile = self._customers.get(owner) if owner is not None else None
        order = next((o for o in profile["orders"] if o["id"] == order_id), None) if profile else None
        if order is None:
            return None
        return {"id": order["id"], "customer_id": profile["id"], "channel": order["channel"],
                "status": order["status"], "placed_at": order["placed_at"], "total": order["total"],
                "currency": order["currency"],
                "lines": [{"gtin": line["gtin"], "quantity": line["quantity"],
                           "amount": round(line["price"] * line["quantity"], 2)} for line in order["items"]]}

    def order_changed(self, order_id: str) -> None:
        self.orders.touch(order_id)

    def add_order(self, fields: dict, products: dict[str, dict]) -> dict:
        """A new order (checked by `_order_request`) in its member's profile and at the end of the orders feed.
        `products`: gtin → catalog product, for the profile's line names and unit prices."""
        profile = self._customers.require(fields["customer_id"])
        with self._lock:
            order_id = fields.get("id")
            if order_id is None:
                self._order_number += 1
                while str(self._order_number) in self._order_owner:
                    self._order_number += 1
                order_id = str(self._order_number)
            elif order_id in self._order_owner:
                raise ApiError(409, "conflict", f"Order {order_id!r} exists already; change its status with PATCH "
                                                f"{ADMIN}/customers/<id>/orders/{order_id}.")
            now = iso(self._clock())
            pickup = None
            if fields.get("pickup") is not None:
                ready = fields["status"] in ("ready_for_pickup", "picked_up")
                pickup = {"store": fields["pickup"]["store"], "shelf": (fields["pickup"].get("shelf") or "A")
                          if ready else None, "ready_since": now if ready else None}
            order = {"id": order_id, "number": f"#{order_id}", "channel": fields["channel"],
                     "status": fields["status"], "placed_at": fields.get("placed_at") or now,
                     "total": fields["total"], "currency": fields["currency"], "pickup": pickup,
                     "items": [{"gtin": line["gtin"], "name": products[line["gtin"]]["name"],
                                "quantity": line["quantity"], "price": round(line["amount"] / line["quantity"], 2)}
                               for line in fields["lines"]]}
            self._customers.add_order(profile["id"], order)
            self._order_owner[order_id] = profile["id"]
            self.orders.touch(order_id)
        item = self.order_item(order_id)
        assert item is not None
        return item


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
    analytics: LiveAnalytics

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


def _register_analytics(app: Flask, shop: Shop, store_ids: set[str]) -> None:
    """Members' online sessions and orders, per home store, for the store's analytics."""

    def store_param() -> str:
        store = request.args.get("store")
        if not store:
            raise ApiError(400, "bad_request", "store is required: the id of the store whose members to read, "
                                               "e.g. ?store=s001.")
        if store not in store_ids:
            raise ApiError(400, "bad_request", f"No store {store!r}; use one of {', '.join(sorted(store_ids))}.")
        return store

    @app.get(f"{API}/sessions/changes")
    def session_changes():
        store, limit = store_param(), _limit(*SESSIONS_CHANGES_LIMIT)
        return shop.analytics.session_page(request.args.get("cursor") or None, limit, store)

    @app.get(f"{API}/orders/changes")
    def order_changes():
        store, limit = store_param(), _limit(*ORDERS_CHANGES_LIMIT)
        return shop.analytics.order_page(request.args.get("cursor") or None, limit, store)

    @app.post(f"{ADMIN}/sessions")
    def add_session():
        return shop.analytics.put_session(_session_request(request.get_json(silent=True)))

    @app.post(f"{ADMIN}/orders")
    def add_order():
        fields = _order_request(request.get_json(silent=True), store_ids)
        shop.customers.require(fields["customer_id"])
        products = {line["gtin"]: shop.catalog.require(line["gtin"]) for line in fields["lines"]}
        order = shop.analytics.add_order(fields, products)
        shop.emit("order.updated", {"customer_id": order["customer_id"], "order_id": order["id"]})
        return order


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
        shop.analytics.order_changed(order_id)
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


def _session_request(body: Any) -> dict[str, Any]:
    """An online session from an admin POST body, checked; fields left out take their defaults."""
    if not isinstance(body, dict):
        raise ApiError(400, "bad_request", 'Send a JSON object: {"customer_id": "M0001", "channel": "web", '
                                           '"source": null, "started_at": "2026-11-22T10:15:04Z", '
                                           '"added_to_cart": false, "asked_for_help": false} (id optional).')
    unknown = sorted(set(body) - set(SESSION_FIELDS))
    if unknown:
        raise ApiError(400, "bad_request", f"Unknown fields {', '.join(unknown)}; use {', '.join(SESSION_FIELDS)}.")
    _record_id(body)
    if not (isinstance(body.get("customer_id"), str) and body["customer_id"]):
        raise ApiError(400, "bad_request", "customer_id is required: a member id such as M0001 (the demo keeps "
                                           "members' sessions only; an anonymous one has no home store).")
    if body.get("channel") not in ONLINE_CHANNELS:
        raise ApiError(400, "bad_request", f"channel is required: one of {', '.join(ONLINE_CHANNELS)}.")
    source = body.get("source")
    if source is not None and not (isinstance(source, str) and 0 < len(source) <= 100):
        raise ApiError(400, "bad_request", 'source must be the UTM source (a string such as "google") or null.')
    _timestamp(body, "started_at")
    for flag in ("added_to_cart", "asked_for_help"):
        if flag in body and not isinstance(body[flag], bool):
            raise ApiError(400, "bad_request", f"{flag} must be true or false.")
    return dict(body)


def _order_request(body: Any, store_ids: set[str]) -> dict[str, Any]:
    """An order from an admin POST body, checked; `total` defaults to the sum of the lines' amounts."""
    if not isinstance(body, dict):
        raise ApiError(400, "bad_request", 'Send a JSON object: {"customer_id": "M0001", "channel": "web", '
                                           '"status": "placed", "lines": [{"gtin": "04166978004214", '
                                           '"quantity": 1, "amount": 145.99}]} (id, placed_at, total, currency, '
                                           'pickup optional).')
    unknown = sorted(set(body) - set(ORDER_FIELDS))
    if unknown:
        raise ApiError(400, "bad_request", f"Unknown fields {', '.join(unknown)}; use {', '.join(ORDER_FIELDS)}.")
    fields = dict(body)
    _record_id(fields)
    if not (isinstance(fields.get("customer_id"), str) and fields["customer_id"]):
        raise ApiError(400, "bad_request", "customer_id is required: a member id such as M0001.")
    if fields.get("channel") not in ORDER_CHANNELS:
        raise ApiError(400, "bad_request", f"channel is required: one of {', '.join(ORDER_CHANNELS)}.")
    fields.setdefault("status", "placed")
    if fields["status"] not in STATUSES:
        raise ApiError(400, "bad_request", f"status must be one of {', '.join(STATUSES)}.")
    _timestamp(fields, "placed_at")
    fields.setdefault("currency", CURRENCY)
    if fields["currency"] != CURRENCY:
        raise ApiError(400, "bad_request", f"currency must be {CURRENCY}, the store's currency.")
    lines = fields.get("lines")
    low, high = ORDER_LINES
    if not (isinstance(lines, list) and low <= len(lines) <= high):
        raise ApiError(400, "bad_request", f"lines is required: {low} to {high} lines "
                                           '{"gtin": "<GTIN-14>", "quantity": 1, "amount": 145.99}.')
    for line in lines:
        if not (isinstance(line, dict) and set(line) == {"gtin", "quantity", "amount"}
                and isinstance(line["gtin"], str) and line["gtin"].isascii() and line["gtin"].isdigit()
                and len(line["gtin"]) == 14 and _whole(line["quantity"], *CART_QUANTITY) and _money(line["amount"])):
            raise ApiError(400, "bad_request", 'Each line must be {"gtin": "<GTIN-14>", "quantity": 1 to 99, '
                                               '"amount": a positive number (quantity × unit price)}.')
        if abs(round(line["amount"] / line["quantity"], 2) * line["quantity"] - line["amount"]) >= 0.005:
            raise ApiError(400, "bad_request", f"amount {line['amount']} is not {line['quantity']} × a unit price in "
                                               "cents.")
    total = round(sum(line["amount"] for line in lines), 2)
    if "total" in fields and not (_number(fields["total"]) and abs(fields["total"] - total) < 0.005):
        raise ApiError(400, "bad_request", f"total must be the sum of the lines' amounts, {total}.")
    fields["total"] = total
    pickup = fields.get("pickup")
    if pickup is not None:
        if not (isinstance(pickup, dict) and set(pickup) <= {"store", "shelf"} and pickup.get("store") in store_ids
                and (pickup.get("shelf") is None or (isinstance(pickup["shelf"], str) and 0 < len(pickup["shelf"]) <= 10))):
            raise ApiError(400, "bad_request", f'pickup must be null or {{"store": one of {", ".join(sorted(store_ids))}'
                                               ', "shelf": "B" (optional)}.')
        if fields["channel"] not in ("web", "app"):
            raise ApiError(400, "bad_request", "Only web and app orders can be click & collect (pickup).")
    elif fields["status"] in ("ready_for_pickup", "picked_up"):
        raise ApiError(400, "bad_request", f"status {fields['status']} needs a pickup: {{\"store\": \"s001\"}}.")
    return fields


def _record_id(body: dict) -> None:
    if "id" in body and not (isinstance(body["id"], str) and RECORD_ID.match(body["id"])):
        raise ApiError(400, "bad_request", "id must be 1 to 40 letters, digits, '-' or '_' (or left out: the store "
                                           "picks one).")


def _timestamp(body: dict, name: str) -> None:
    """A second-precision UTC timestamp when given; left out, it becomes the time of the request."""
    value = body.get(name)
    if value is None:
        body.pop(name, None)
        return
    try:
        ok = isinstance(value, str) and SECOND_TS.match(value) and datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        ok = False
    if not ok:
        raise ApiError(400, "bad_request", f'{name} must be ISO 8601 UTC to the second, e.g. "2026-11-22T10:15:04Z".')


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
