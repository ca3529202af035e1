"""Connector to the online store's REST API (docs/online-api.md): what the hub asks the web shop."""

from __future__ import annotations

import logging
import random
import time
from typing import Any, Callable
from urllib.parse import quote

import requests

log = logging.getLogger("hub.online")

# 4xx answers that stay wrong however often they are retried: the request itself is refused.
# 401/403 are not among them: a wrong API key is fixed in the config, and the update then goes through.
REFUSED_STATUSES = frozenset({400, 404, 409, 410, 413, 422})


class OnlineStoreError(Exception):
    """The online store could not answer; `code` says why (a metric label)."""

    code = "error"


class OnlineStoreRefused(OnlineStoreError):
    """The online store understood the request and will never accept it (a 4xx that no retry fixes)."""

    code = "refused"


class CustomerNotFound(OnlineStoreRefused):
    """404: the customer (or, when adding to a cart, the product) is unknown to the online store."""

    code = "not_found"


class OnlineStoreUnauthorized(OnlineStoreError):
    """401/403: the hub's API key is missing, wrong or lacks the right; fix `online.api_key_file`."""

    code = "unauthorized"


class OnlineStoreUnavailable(OnlineStoreError):
    code = "unavailable"


class RestOnlineStore:
    """Talks to the REST API with a time budget per call: jittered retries on 5xx and network
    errors, `429 Retry-After` respected, but never past the budget (a kiosk is waiting)."""

    def __init__(self, base_url: str, api_key: str, *, timeout_s: float = 0.8,
                 session: requests.Session | None = None, sleep: Callable[[float], None] = time.sleep):
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}", "Accept": "application/json",
                         "User-Agent": "omnikiosk-hub"}
        self.timeout_s = timeout_s
        self._http = session or requests.Session()
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"RestOnlineStore({self.base_url})"  # never the key

    def customer(self, customer_id: str, *, timeout_s: float | None = None) -> dict[str, Any]:
        """The customer with orders, wishlist, cart, recently viewed and loyalty."""
        return self._request("GET", f"/api/v1/customers/{quote(customer_id, safe='')}", timeout_s or self.timeout_s)

    def add_to_cart(self, customer_id: str, gtin: str, quantity: int, idempotency_key: str, *,
                    timeout_s: float | None = None) -> dict[str, Any]:
        """Put `quantity` of `gtin` in the customer's online cart; returns the updated cart.

        The same `idempotency_key` again adds nothing, which is what makes retrying this POST safe."""
        body = {"gtin": gtin, "quantity": quantity, "idempotency_key": idempotency_key}
        path = f"/api/v1/customers/{quote(customer_id, safe='')}/cart/items"
        cart = self._request("POST", path, timeout_s or self.timeout_s, body=body).get("cart")
        if not isinstance(cart, dict):
            raise OnlineStoreError(f"POST {path}: the answer has no cart")
        return cart

    def _request(self, method: str, path: str, budget_s: float, *, body: dict[str, Any] | None = None
                 ) -> dict[str, Any]:
        deadline = time.monotonic() + budget_s
        attempt = 0
        while True:
            attempt += 1
            remaining = deadline - time.monotonic()
            if remaining <= 0.01:
                raise OnlineStoreUnavailable(f"no answer within {budget_s:.2f} s ({attempt - 1} attempts)")
            try:
                response = self._http.request(method, self.base_url + path, headers=self._headers, json=body,
                                              timeout=remaining)
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
        if status in REFUSED_STATUSES:
            raise OnlineStoreRefused(f"HTTP {status} for {method} {path}: {_error_message(response)}")
        raise OnlineStoreError(f"HTTP {status} for {method} {path}")

    @staticmethod
    def _backoff(attempt: int) -> float:
        # Full jitter: many hubs retrying at once do not hit the shop in step.
        return random.uniform(0, min(2.0, 0.05 * 2 ** attempt))


def _retry_after(header: str | None, default: float) -> float:
    try:
        return max(0.0, float(header)) if header is not None else default
    except ValueError:
        return default


def _error_message(response: requests.Response) -> str:
    """The online store's own explanation (docs/online-api.md, "Errors"), cut short for logs."""
    try:
        return str(response.json()["error"]["message"])[:200]
    except (ValueError, KeyError, TypeError):
        return "no explanation given"


def _json_object(response: requests.Response, method: str, path: str) -> dict[str, Any]:
    # A 200 that is not our JSON is a proxy or captive portal in the way: worth retrying later.
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise OnlineStoreError(f"{method} {path}: the answer is not a JSON object")
    return answer
