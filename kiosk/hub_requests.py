"""Questions the kiosk asks the hub (welcome, offers, products, online cart), through the edge agent's local request API.

The call: `POST {agent}/v1/requests` with `{"method": …, "params": {…}}`, answered with
`{"ok": true, "result": …}` or `{"ok": false, "error": {"code", "message"}}` — the same shape
as the MQTT `requests`/`responses` pair the agent relays it over (docs/protocol.md).
A short timeout and a fallback: the shopper is standing there, so no answer means
"available at the till", never a spinner.
"""

from __future__ import annotations

import logging
from typing import Any

import requests

log = logging.getLogger("kiosk.requests")

TILL_FALLBACK = "Your personal offers are available at the till"
# The agent answers "timeout" at timeout_s; give that answer the time to travel back.
HTTP_MARGIN_S = 0.15


class HubRequests:
    def __init__(self, agent_url: str, *, timeout_s: float = 0.3, token: str = "",
                 session: requests.Session | None = None):
        self.url = agent_url.rstrip("/") + "/v1/requests"
        self.timeout_s = timeout_s
        self._http = session or requests.Session()
        if token:  # the agent's local API wants the token both processes share (local_api.token_file)
            self._http.headers["Authorization"] = f"Bearer {token}"
        self.counters = {"ok": 0, "failed": 0}

    def call(self, method: str, params: dict[str, Any]) -> Any | None:
        """The result, or None when the hub cannot answer in time (the caller falls back)."""
        try:
            body = {"method": method, "params": {k: v for k, v in params.items() if v is not None},
                    "timeout_s": self.timeout_s}
            response = self._http.post(self.url, json=body, timeout=self.timeout_s + HTTP_MARGIN_S)
            body = response.json()
        except (requests.RequestException, ValueError) as exc:
            self.counters["failed"] += 1
            log.info("hub request unanswered; falling back", extra={"method": method, "error": type(exc).__name__})
            return None
        if not isinstance(body, dict) or not body.get("ok"):
            self.counters["failed"] += 1
            error = body.get("error", {}) if isinstance(body, dict) else {}
            log.info("hub request refused; falling back", extra={"method": method, "code": error.get("code")})
            return None
        self.counters["ok"] += 1
        return body.get("result")

    def member_welcome(self, member: str) -> dict[str, Any] | None:
        """`member.welcome` at check-in: {"first_name", "tier", "points", "offers": [{id, title, text, code, …}],
        "wishlist_here": [{gtin, name, location}]} — nothing else about the member."""
        result = self.call("member.welcome", {"member": member})
        return result if isinstance(result, dict) else None

    def member_offers(self, member: str, gtin: str | None = None) -> dict[str, Any] | None:
        """`member.offers`: the member's offers (for one product when `gtin` is given) and the
        wishlist items in stock here. Result: {"offers": [{id, title, text, code}], "wishlist_here": [{name, location}]}."""
        result = self.call("member.offers", {"member": member, "gtin": gtin})
        return result if isinstance(result, dict) else None

    def product_detail(self, gtin: str) -> dict[str, Any] | None:
        """`product.detail`: the hub's view of a product this kiosk's catalog does not know (yet)."""
        result = self.call("product.detail", {"gtin": gtin})
        return result if isinstance(result, dict) and isinstance(result.get("name"), str) else None

    def cart_add(self, member: str, gtin: str, event_id: str) -> str | None:
        """`cart.add`: "added" (in the online cart now), "queued" (the hub will add it), None (no answer:
        the cart.sent event still carries it to the hub, which adds it then)."""
        result = self.call("cart.add", {"member": member, "gtin": gtin, "event_id": event_id})
        status = result.get("status") if isinstance(result, dict) else None
        return status if status in ("added", "queued", "refused") else None
