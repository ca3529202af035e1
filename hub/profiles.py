"""Where a member's online profile comes from when someone needs it now: the cache while it is
fresh, else the online store within a time budget, else the stale cache marked with its age."""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime
from typing import Any

from hub.online import CustomerNotFound, OnlineStoreError
from hub.store import HubStore
from protocol.envelope import format_ts, parse_ts

log = logging.getLogger("hub.profiles")


class ProfileSource:
    def __init__(self, *, hub_store: HubStore, online, ttl_s: float):
        self.hub_store = hub_store
        self.online = online
        self.ttl_s = ttl_s
        self.counters: Counter = Counter()

    def get(self, member: str, now: datetime, *, budget_s: float | None = None
            ) -> tuple[dict[str, Any] | None, str, float | None]:
        """(profile or None, source, age in seconds); source is online, cache, unknown or unavailable."""
        cached = self.hub_store.cached_profile(member)
        age = (now - parse_ts(cached[1])).total_seconds() if cached else None
        if cached and age is not None and age < self.ttl_s:
            self.counters["cache"] += 1
            return cached[0], "cache", age
        try:
            profile = self.online.customer(member, timeout_s=budget_s) if budget_s else self.online.customer(member)
        except CustomerNotFound:
            log.warning("member unknown to the online store", extra={"member": member})
            self.counters["unknown"] += 1
            return None, "unknown", None
        except OnlineStoreError as exc:
            log.warning("online store unavailable; using cache", extra={"error": exc.code, "cached": bool(cached)})
            if cached:
                self.counters["cache"] += 1
                return cached[0], "cache", age
            self.counters["unavailable"] += 1
            return None, "unavailable", None
        self.hub_store.cache_profile(member, profile, format_ts(now))
        self.counters["online"] += 1
        return profile, "online", 0.0
