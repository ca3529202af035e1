"""Connector to the online store's REST API (docs/online-api.md): what the hub asks the web shop."""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from typing import Any, Callable, Mapping
from urllib.parse import quote

import requests

from hub import webhooks
from hub.connector import (
    ONLINE_CHANNELS,
    ORDER_CHANNELS,
    ActivityItem,
    ActivityResult,
    CatalogChangesPage,
    CircuitOpen,
    CursorRejected,
    CustomerChangesPage,
    CustomerNotFound,
    OnlineStoreError,
    OnlineStoreRefused,
    OnlineStoreUnauthorized,
    OnlineStoreUnavailable,
    OrdersPage,
    SessionsPage,
    WebhookEvent,
    WebhookRejection,
)

__all__ = ["CircuitBreaker", "CircuitOpen", "CursorRejected", "CustomerNotFound", "OnlineStoreError",
           "OnlineStoreRefused", "OnlineStoreUnauthorized", "OnlineStoreUnavailable", "RestOnlineStore"]

log = logging.getLogger("hub.online")

# 4xx answers that stay wrong however often they are retried: the request itself is refused.
# 401/403 are not among them: a wrong API key is fixed in the config, and the update then goes through.
REFUSED_STATUSES = frozenset({400, 404, 409, 410, 413, 422})
ACTIVITY_BATCH = 500  # the most items the API takes in one POST /activity
CUSTOMER_CHANGES_LIMIT = 100
CATALOG_CHANGES_LIMIT = 500
SESSIONS_LIMIT = 500
ORDERS_LIMIT = 500
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?Z\Z")
GTIN14 = re.compile(r"^\d{14}\Z")
CURRENCY = re.compile(r"^[A-Z]{3}\Z")


class CircuitBreaker:
    """Stops asking an online store that keeps failing, so a dead store costs a waiting kiosk nothing.

    closed: calls go through. After `failure_threshold` failed calls in a row it opens: calls
    raise CircuitOpen at once, for `cooldown_s`. Then it is half-open: one trial call goes
    through; its success closes the breaker, its failure opens it again. Any success resets
    the count. Thread-safe; `clock` (monotonic seconds) is injectable for tests.
    """

    def __init__(self, failure_threshold: int = 5, cooldown_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic):
        if failure_threshold < 1 or cooldown_s < 0:
            raise ValueError("failure_threshold must be at least 1 and cooldown_s not negative")
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_running = False
        self._counters = {"opened": 0, "short_circuited": 0}

    @property
    def state(self) -> str:
        """"closed", "open" or "half_open" (the cooldown has passed; the next call is the trial)."""
        with self._lock:
            return self._state()

    def counters(self) -> dict[str, int]:
        with self._lock:
            return {**self._counters, "consecutive_failures": self._failures}

    def admit(self) -> None:
        """Let a call through, or raise CircuitOpen without it touching the network."""
        with self._lock:
            state = self._state()
            if state == "closed":
                return
            if state == "half_open" and not self._trial_running:
                self._trial_running = True
                return
            self._counters["short_circuited"] += 1
            wait = max(0.0, self._opened_at + self.cooldown_s - self._clock()) if self._opened_at is not None else 0.0
        raise CircuitOpen(f"the online store failed {self.failure_threshold} times in a row; "
                          f"not asking it again for {wait:.1f} s")

    def succeeded(self) -> None:
        with self._lock:
            self._failures, self._opened_at, self._trial_running = 0, None, False

    def failed(self) -> None:
        with self._lock:
            self._failures += 1
            was_trial, self._trial_running = self._trial_running, False
            if was_trial or self._failures >= self.failure_threshold:
                if self._opened_at is None or was_trial:
                    self._counters["opened"] += 1
                self._opened_at = self._clock()

    def abandon(self) -> None:
        """A call ended in neither success nor failure (a bug): free the trial slot, decide nothing."""
        with self._lock:
            self._trial_running = False

    def _state(self) -> str:
        if self._opened_at is None:
            return "closed"
        return "open" if self._clock() < self._opened_at + self.cooldown_s else "half_open"


class RestOnlineStore:
    """Talks to the REST API with a time budget per call: jittered retries on 5xx and network
    errors, `429 Retry-After` respected, but never past the budget (a kiosk is waiting).

    `timeout_s` is the budget of calls someone waits for (an arrival, a cart tap);
    `background_timeout_s` that of the feeds and activity pushes, which nobody watches.
    One circuit breaker guards every call of this instance."""

    def __init__(self, base_url: str, api_key: str, *, timeout_s: float = 0.8, background_timeout_s: float = 10.0,
                 webhook_secret: str | None = None, failure_threshold: int = 5, cooldown_s: float = 30.0,
                 session: requests.Session | None = None, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic):
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}", "Accept": "application/json",
                         "User-Agent": "omnikiosk-hub"}
        self.timeout_s = timeout_s
        self.background_timeout_s = background_timeout_s
        self._webhook_secret = webhook_secret
        self._http = session or requests.Session()
        self._sleep = sleep
        # `clock` drives the breaker only; budgets bound real network waits, so they use real time.
        self.breaker = CircuitBreaker(failure_threshold, cooldown_s, clock)
        self._lock = threading.Lock()
        self._calls = {"calls": 0, "failed_calls": 0}

    def __repr__(self) -> str:
        return f"RestOnlineStore({self.base_url})"  # never the key nor the webhook secret

    @property
    def breaker_state(self) -> str:
        return self.breaker.state

    @property
    def counters(self) -> dict[str, int]:
        """calls, failed_calls (counted by the breaker), opened, short_circuited, consecutive_failures."""
        with self._lock:
            calls = dict(self._calls)
        return {**calls, **self.breaker.counters()}

    # --- someone is waiting
    def customer(self, customer_id: str, *, timeout_s: float | None = None) -> dict[str, Any]:
        """The customer with orders, wishlist, cart, recently viewed and loyalty."""
        return self._call("GET", f"/api/v1/customers/{quote(customer_id, safe='')}", timeout_s or self.timeout_s)

    def add_to_cart(self, customer_id: str, gtin: str, quantity: int, idempotency_key: str, *,
                    timeout_s: float | None = None) -> dict[str, Any]:
        """Put `quantity` of `gtin` in the customer's online cart; returns the updated cart.

        The same `idempotency_key` again adds nothing, which is what makes retrying this POST safe."""
        body = {"gtin": gtin, "quantity": quantity, "idempotency_key": idempotency_key}
        path = f"/api/v1/customers/{quote(customer_id, safe='')}/cart/items"
        cart = self._call("POST", path, timeout_s or self.timeout_s, body=body).get("cart")
        if not isinstance(cart, dict):
            raise OnlineStoreError(f"POST {path}: the answer has no cart")
        return cart

    def add_to_wishlist(self, customer_id: str, gtin: str, idempotency_key: str, *,
                        timeout_s: float | None = None) -> list[dict[str, Any]]:
        """Put `gtin` on the customer's online wishlist; returns the wishlist. Idempotent like add_to_cart."""
        body = {"gtin": gtin, "idempotency_key": idempotency_key}
        path = f"/api/v1/customers/{quote(customer_id, safe='')}/wishlist/items"
        wishlist = self._call("POST", path, timeout_s or self.timeout_s, body=body).get("wishlist")
        if not isinstance(wishlist, list):
            raise OnlineStoreError(f"POST {path}: the answer has no wishlist")
        return wishlist

    def search_customers(self, query: str, *, limit: int = 20, timeout_s: float | None = None) -> list[dict[str, Any]]:
        """Members whose id, name, email or phone contains `query` (a walk-in staff look up)."""
        found = self._call("GET", "/api/v1/customers", timeout_s or self.timeout_s,
                           params={"q": query, "limit": str(limit)}).get("items")
        if not isinstance(found, list):
            raise OnlineStoreError("GET /api/v1/customers: the answer has no items")
        return [item for item in found if isinstance(item, dict)]

    # --- background sync
    def customer_changes(self, cursor: str | None, *, limit: int = CUSTOMER_CHANGES_LIMIT) -> CustomerChangesPage:
        """Profiles changed or erased after `cursor` (None: every customer once)."""
        page = self._feed("/api/v1/customers/changes", cursor, limit)
        for item in page["items"]:
            if not (isinstance(item, dict) and isinstance(item.get("id"), str)
                    and (item.get("erased") is True or isinstance(item.get("profile"), dict))):
                raise OnlineStoreError("GET /api/v1/customers/changes: an item has neither a profile nor erased")
        return page  # type: ignore[return-value]

    def catalog_changes(self, cursor: str | None, *, limit: int = CATALOG_CHANGES_LIMIT) -> CatalogChangesPage:
        """Products, stock rows and stores changed after `cursor` (None: the whole catalog)."""
        page = self._feed("/api/v1/catalog/changes", cursor, limit)
        for item in page["items"]:
            if not (isinstance(item, dict) and item.get("kind") in ("product", "stock", "store")
                    and isinstance(item.get("key"), str)
                    and (item.get("data") is None or isinstance(item["data"], dict))):
                raise OnlineStoreError("GET /api/v1/catalog/changes: an item has no kind, key and data")
        return page  # type: ignore[return-value]

    def online_sessions(self, cursor: str | None, *, store: str, limit: int = SESSIONS_LIMIT) -> SessionsPage:
        """Online sessions of the members whose home store is `store`, after `cursor` (None: all once)."""
        path = "/api/v1/sessions/changes"
        page = self._feed(path, cursor, limit, store=store)
        for item in page["items"]:
            problem = _session_problem(item)
            if problem:
                raise OnlineStoreError(f"GET {path}: {_item_name(item)} {problem}")
        return page  # type: ignore[return-value]

    def orders(self, cursor: str | None, *, store: str, limit: int = ORDERS_LIMIT) -> OrdersPage:
        """Orders of the members whose home store is `store`, placed or changed after `cursor` (None: all once)."""
        path = "/api/v1/orders/changes"
        page = self._feed(path, cursor, limit, store=store)
        for item in page["items"]:
            problem = _order_problem(item)
            if problem:
                raise OnlineStoreError(f"GET {path}: {_item_name(item)} {problem}")
        return page  # type: ignore[return-value]

    def push_activity(self, items: list[ActivityItem]) -> ActivityResult:
        """Record in-store activity, in POSTs of at most 500; ids sent before are accepted, stored once."""
        result: ActivityResult = {"accepted": [], "rejected": []}
        for start in range(0, len(items), ACTIVITY_BATCH):
            answer = self._call("POST", "/api/v1/activity", self.background_timeout_s,
                                body={"items": list(items[start:start + ACTIVITY_BATCH])})
            accepted, rejected = answer.get("accepted"), answer.get("rejected")
            if not isinstance(accepted, list) or not isinstance(rejected, list):
                raise OnlineStoreError("POST /api/v1/activity: the answer has no accepted and rejected lists")
            result["accepted"] += accepted
            result["rejected"] += rejected
        return result

    def verify_webhook(self, raw_body: bytes, headers: Mapping[str, str], *,
                       now: float) -> WebhookEvent | WebhookRejection:
        """Check a delivery against the webhook secret; without one every delivery is `not_configured`."""
        return webhooks.verify(raw_body, headers, secret=self._webhook_secret, now=now)

    def _feed(self, path: str, cursor: str | None, limit: int, *, store: str | None = None) -> dict[str, Any]:
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise ValueError(f"limit must be a whole number of at least 1, not {limit!r}")
        params = {"limit": str(limit)} | ({"cursor": cursor} if cursor is not None else {})
        if store is not None:
            if not isinstance(store, str) or not store:
                raise ValueError(f"store must be a store id such as 's001', not {store!r}")
            params["store"] = store
        page = self._call("GET", path, self.background_timeout_s, params=params)
        if not (isinstance(page.get("items"), list) and isinstance(page.get("next_cursor"), str)
                and isinstance(page.get("has_more"), bool)):
            raise OnlineStoreError(f"GET {path}: the answer is not a page (items, next_cursor, has_more)")
        return page

    # --- one call: the breaker around a budgeted, retried request
    def _call(self, method: str, path: str, budget_s: float, *, body: dict[str, Any] | None = None,
              params: dict[str, str] | None = None) -> dict[str, Any]:
        self.breaker.admit()
        with self._lock:
            self._calls["calls"] += 1
        try:
            answer = self._request(method, path, budget_s, body=body, params=params)
        except (OnlineStoreRefused, OnlineStoreUnauthorized):
            self.breaker.succeeded()  # it answered: the store is up, the request is what is wrong
            raise
        except OnlineStoreError:
            with self._lock:
                self._calls["failed_calls"] += 1
            self.breaker.failed()
            raise
        except BaseException:
            self.breaker.abandon()
            raise
        self.breaker.succeeded()
        return answer

    def _request(self, method: str, path: str, budget_s: float, *, body: dict[str, Any] | None = None,
                 params: dict[str, str] | None = None) -> dict[str, Any]:
        deadline = time.monotonic() + budget_s
        attempt = 0
        while True:
            attempt += 1
            remaining = deadline - time.monotonic()
            if remaining <= 0.01:
                raise OnlineStoreUnavailable(f"no answer within {budget_s:.2f} s ({attempt - 1} attempts)")
            try:
                response = self._http.request(method, self.base_url + path, headers=self._headers, json=body,
                                              params=params, timeout=remaining)
            except requests.RequestException as exc:
                wait = self._backoff(attempt)
                log.warning("online store request failed",
                            extra={"method": method, "path": path, "error": type(exc).__name__})
            else:
                if response.status_code in (200, 201):
                    return _json_object(response, method, path)
                wait = self._retry_wait(response, method, path, attempt)
                log.warning("online store answered with an error",
                            extra={"method": method, "path": path, "status": response.status_code,
                                   "retry_in_s": round(wait, 3)})
            if time.monotonic() + wait >= deadline:
                raise OnlineStoreUnavailable(f"gave up within the {budget_s:.2f} s budget")
            self._sleep(wait)

    def _retry_wait(self, response: requests.Response, method: str, path: str, attempt: int) -> float:
        """How long to wait before trying again; raises when no retry can change the answer."""
        status = response.status_code
        if status == 429:
            return _retry_after(response.headers.get("Retry-After"), self._backoff(attempt))
        if status >= 500:
            return self._backoff(attempt)
        if status == 404:
            raise CustomerNotFound(f"{method} {path}: {_error_message(response)}")
        if status in (401, 403):
            raise OnlineStoreUnauthorized(f"HTTP {status} for {method} {path}: check online.api_key_file")
        if status == 400 and _error_code(response) == "invalid_cursor":
            raise CursorRejected(f"{method} {path}: {_error_message(response)}")
        if status in REFUSED_STATUSES:
            raise OnlineStoreRefused(f"HTTP {status} for {method} {path}: {_error_message(response)}")
        raise OnlineStoreError(f"HTTP {status} for {method} {path}")

    @staticmethod
    def _backoff(attempt: int) -> float:
        # Full jitter: many hubs retrying at once do not hit the shop in step.
        return random.uniform(0, min(2.0, 0.05 * 2 ** attempt))


def _item_name(item: Any) -> str:
    if isinstance(item, dict) and isinstance(item.get("id"), str):
        return f"item {item['id'][:40]!r}"
    return "an item"


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _common_problem(item: Any, channels: tuple[str, ...], stamp: str) -> str | None:
    """What is wrong with the fields sessions and orders share, or None. Unknown fields are allowed."""
    if not isinstance(item, dict):
        return "is not a JSON object"
    if not (isinstance(item.get("id"), str) and item["id"]):
        return "has no id"
    if not (item.get("customer_id") is None or (isinstance(item["customer_id"], str) and item["customer_id"])):
        return "has a customer_id that is neither a string nor null"
    if item.get("channel") not in channels:
        return f"has channel {item.get('channel')!r}, not one of {', '.join(channels)}"
    if not (isinstance(item.get(stamp), str) and TIMESTAMP.match(item[stamp])):
        return f"has no {stamp} in ISO 8601 UTC with Z"
    return None


def _session_problem(item: Any) -> str | None:
    problem = _common_problem(item, ONLINE_CHANNELS, "started_at")
    if problem:
        return problem
    if "source" not in item or not (item["source"] is None or isinstance(item["source"], str)):
        return "has a source that is neither a string nor null"
    for flag in ("added_to_cart", "asked_for_help"):
        if not isinstance(item.get(flag), bool):
            return f"has no {flag} true or false"
    return None


def _order_problem(item: Any) -> str | None:
    problem = _common_problem(item, ORDER_CHANNELS, "placed_at")
    if problem:
        return problem
    if not (isinstance(item.get("status"), str) and item["status"]):
        return "has no status"
    if not _number(item.get("total")):
        return "has no total number"
    if not (isinstance(item.get("currency"), str) and CURRENCY.match(item["currency"])):
        return "has no ISO 4217 currency"
    lines = item.get("lines")
    if not isinstance(lines, list):
        return "has no lines list"
    for line in lines:
        if not (isinstance(line, dict) and isinstance(line.get("gtin"), str) and GTIN14.match(line["gtin"])
                and isinstance(line.get("quantity"), int) and not isinstance(line["quantity"], bool)
                and line["quantity"] >= 1 and _number(line.get("amount"))):
            return "has a line that is not {gtin (GTIN-14), quantity (at least 1), amount}"
    return None


def _retry_after(header: str | None, default: float) -> float:
    try:
        return max(0.0, float(header)) if header is not None else default
    except ValueError:
        return default


def _error_body(response: requests.Response) -> dict[str, Any]:
    try:
        error = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        return {}
    return error if isinstance(error, dict) else {}


def _error_code(response: requests.Response) -> str | None:
    code = _error_body(response).get("code")
    return code if isinstance(code, str) else None


def _error_message(response: requests.Response) -> str:
    """The online store's own explanation (docs/online-api.md, "Errors"), cut short for logs."""
    message = _error_body(response).get("message")
    return str(message)[:200] if message is not None else "no explanation given"


def _json_object(response: requests.Response, method: str, path: str) -> dict[str, Any]:
    # A 200 that is not our JSON is a proxy or captive portal in the way: worth retrying later.
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise OnlineStoreError(f"{method} {path}: the answer is not a JSON object")
    return answer
