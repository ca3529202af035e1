"""Questions the kiosk asks the hub (personal offers), through the edge agent's local request API.

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


class HubRequests:
    def __init__(self, agent_url: str, *, timeout_s: float = 0.3, session: requests.Session | None = None):
        self.url = agent_url.rstrip("/") + "/v1/requests"
        self.timeout_s = timeout_s
        self._http = session or requests.Session()
        self.counters = {"ok": 0, "failed": 0}

    def call(self, method: str, params: dict[str, Any]) -> Any | None:
        """The result, or None when the hub cannot answer in time (the caller falls back)."""
        try:
            response = self._http.post(self.url, json={"method": method, "params": params}, timeout=self.timeout_s)
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

    def member_offers(self, member: str, gtin: str | None = None) -> dict[str, Any] | None:
        """`member.offers`: the member's offers (for one product when `gtin` is given) and the
        wishlist items in stock here. Result: {"offers": [{id, title, text, code}], "wishlist_here": [{name, location}]}."""
        result = self.call("member.offers", {"member": member, "gtin": gtin})
        return result if isinstance(result, dict) else None
