"""Connector to the online store's REST API (docs/online-api.md): what the hub asks the web shop."""

from __future__ import annotations

import logging
import random
import time
from typing import Any, Callable

import requests

log = logging.getLogger("hub.online")


class OnlineStoreError(Exception):
    """The online store could not answer; `code` says why (a metric label)."""

    code = "error"


class CustomerNotFound(OnlineStoreError):
    code = "not_found"


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
        return self._get(f"/api/v1/customers/{customer_id}", timeout_s or self.timeout_s)

    def _get(self, path: str, budget_s: float) -> dict[str, Any]:
        deadline = time.monotonic() + budget_s
        attempt = 0
        while True:
            attempt += 1
            remaining = deadline - time.monotonic()
            if remaining <= 0.01:
                raise OnlineStoreUnavailable(f"no answer within {budget_s:.2f} s ({attempt - 1} attempts)")
            try:
                response = self._http.get(self.base_url + path, headers=self._headers, timeout=remaining)
            except requests.RequestException as exc:
                wait = self._backoff(attempt)
                log.warning("online store request failed", extra={"path": path, "error": type(exc).__name__})
            else:
                if response.status_code == 200:
                    return response.json()
                if response.status_code == 404:
                    raise CustomerNotFound(path)
                if response.status_code == 429:
                    wait = _retry_after(response.headers.get("Retry-After"), self._backoff(attempt))
                elif response.status_code >= 500:
                    wait = self._backoff(attempt)
                else:
                    raise OnlineStoreError(f"HTTP {response.status_code} for {path}")
                log.warning("online store answered with an error",
                            extra={"path": path, "status": response.status_code, "retry_in_s": round(wait, 3)})
            if time.monotonic() + wait >= deadline:
                raise OnlineStoreUnavailable(f"gave up within the {budget_s:.2f} s budget")
            self._sleep(wait)

    @staticmethod
    def _backoff(attempt: int) -> float:
        # Full jitter: many hubs retrying at once do not hit the shop in step.
        return random.uniform(0, min(2.0, 0.05 * 2 ** attempt))


def _retry_after(header: str | None, default: float) -> float:
    try:
        return max(0.0, float(header)) if header is not None else default
    except ValueError:
        return default
