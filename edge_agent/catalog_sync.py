"""Keeps this device's catalog.db at the hub's catalog version (retained on `catalog/version`).

When the announced version is ahead of the cache, ask `catalog.changes` page by page and apply
each page in one transaction; a sync cut short (the agent killed between pages) resumes from
the last applied page. A hub whose version went backwards (its database restored) gets a
full resync. Requests go through the same relay as the kiosk's.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable

from edge_agent.catalog import CatalogCache
from protocol.catalog import DEFAULT_PAGE_LIMIT

log = logging.getLogger("edge_agent.catalog")

Ask = Callable[[str, dict, float], dict]


class CatalogSyncFailed(Exception):
    """The hub could not give a page, or gave one this agent cannot apply; the sync is retried later."""


class CatalogSync:
    def __init__(self, cache: CatalogCache, ask: Ask, *, page_limit: int = DEFAULT_PAGE_LIMIT,
                 timeout_s: float = 10.0):
        self.cache = cache
        self.ask = ask
        self.page_limit = page_limit
        self.timeout_s = timeout_s
        self.target: int | None = None
        self._lock = threading.Lock()   # one sync at a time (a resync command and an announcement)
        self.counters = {"syncs": 0, "pages": 0, "changes": 0, "failures": 0}

    def announce(self, version: int) -> None:
        """The hub's retained catalog version (paho's thread: only remembers it)."""
        self.target = version

    @property
    def behind(self) -> bool:
        since, cursor = self.cache.resume_point()
        return cursor is not None or (self.target is not None and self.target != self.cache.version)

    def sync(self) -> dict[str, Any]:
        """Bring the cache to the hub's version; raises CatalogSyncFailed with the hub's reason."""
        with self._lock:
            if self.target is not None and self.target < self.cache.version:
                log.warning("the hub's catalog version went back; fetching everything again",
                            extra={"hub_version": self.target, "local_version": self.cache.version})
                self.cache.start_resync()
            return self._page_through()

    def resync(self) -> dict[str, Any]:
        """Everything again (the `catalog.resync` command); the kiosk keeps reading the old rows meanwhile."""
        with self._lock:
            self.cache.start_resync()
            return self._page_through()

    def _page_through(self) -> dict[str, Any]:
        since, cursor = self.cache.resume_point()
        pages = changes = 0
        while True:
            params: dict[str, Any] = {"since": since, "limit": self.page_limit}
            if cursor:
                params["cursor"] = cursor
            answer = self.ask("catalog.changes", params, self.timeout_s)
            if not answer.get("ok"):
                error = answer.get("error", {})
                if error.get("code") == "bad_request" and cursor:
                    # The hub no longer knows our cursor (its catalog was rebuilt): page again from `since`.
                    log.warning("the hub refused the catalog cursor; paging again", extra={"since": since})
                    cursor = None
                    continue
                self.counters["failures"] += 1
                raise CatalogSyncFailed(f"catalog.changes: {error.get('code')}: {error.get('message')}")
            page = answer["result"]
            try:
                self.cache.apply_page(page, since=since)
            except ValueError as exc:
                self.counters["failures"] += 1
                raise CatalogSyncFailed(f"the hub sent a page this agent cannot apply: {exc}") from None
            pages += 1
            changes += len(page["changes"])
            cursor = page["next_cursor"]
            if cursor is None:
                self.counters["syncs"] += 1
                self.counters["pages"] += pages
                self.counters["changes"] += changes
                log.info("catalog in sync", extra={"version": page["version"], "pages": pages, "changes": changes})
                return {"version": page["version"], "pages": pages, "changes": changes}
