"""Keeps the hub's copy of the online store fresh, so arrivals work even with the internet down.

- Deltas on an interval: the customers and catalog changes feeds, from cursors kept in the database.
- Webhooks as the fast path: a verified, first-seen delivery makes the hub look now.
- A full reconciliation now and then (webhooks arrive late or never): both feeds from the start.
- Prefetch of the members likely today: pickups ready at this store, members seen here lately.
- Erasure: a member erased online is erased here (profile, personal events, arrivals, visits).

Which customers are kept: everyone the hub already holds, plus anyone with an order ready for
pickup at this store; other members' changes are skipped (a store does not need the whole
customer base). Runs on its own thread; the online store being down only delays it.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from hub.analytics_data import erased_members, record_online_sessions, record_orders
from hub.catalog import HubCatalog
from hub.online import CursorRejected, CustomerNotFound, OnlineStoreError
from hub.pos_sales import link_pending_sales
from hub.store import HubStore
from protocol.envelope import format_ts

log = logging.getLogger("hub.sync")

CUSTOMER_PAGE = 100
CATALOG_PAGE = 500
PREFETCH_PER_ROUND = 200
ANALYTICS_PAGE = 500


def ready_for_pickup_here(profile: dict[str, Any], store: str) -> bool:
    return any(order.get("status") == "ready_for_pickup" and (order.get("pickup") or {}).get("store") == store
               for order in profile.get("orders") or [])


class OnlineSync:
    def __init__(self, *, hub_store: HubStore, catalog: HubCatalog, online, store: str,
                 on_catalog_changed: Callable[[], None] = lambda: None, interval_s: float = 60.0,
                 reconcile_every_s: float = 6 * 3600, prefetch_days: int = 30, profile_ttl_s: float = 900,
                 own_stock_from_feed: bool = True, currency: str = "EUR",
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)):
        self.hub_store = hub_store
        self.catalog = catalog
        self.online = online
        self.store = store
        self.on_catalog_changed = on_catalog_changed
        self.interval_s = interval_s
        self.reconcile_every_s = reconcile_every_s
        self.prefetch_days = prefetch_days
        self.profile_ttl_s = profile_ttl_s
        self.own_stock_from_feed = own_stock_from_feed
        self.currency = currency
        self._clock = clock
        self._webhooks: "queue.Queue[tuple[str, dict]]" = queue.Queue()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.counters: Counter = Counter()
        self.last_sync: dict[str, str] = {}

    # --- lifecycle
    def start(self) -> "OnlineSync":
        self._thread = threading.Thread(target=self._run, name="online-sync", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread:
            self._thread.join(10)

    def webhook(self, event_type: str, data: dict[str, Any]) -> None:
        """A verified delivery (the web app's thread): look now, on this thread."""
        self._webhooks.put((event_type, data))
        self._wake.set()

    def _run(self) -> None:
        next_delta = 0.0
        next_reconcile = time.monotonic() + self.reconcile_every_s
        first = True
        while not self._stopping.is_set():
            self._handle_webhooks()
            now = time.monotonic()
            if now >= next_reconcile or now >= next_delta:
                full = now >= next_reconcile
                self._round(full=full)
                next_delta = time.monotonic() + self.interval_s
                if full:
                    next_reconcile = time.monotonic() + self.reconcile_every_s
                if full or first:
                    self._guarded("prefetch", self.prefetch)
                    first = False
            self._wake.wait(max(0.05, min(next_delta, next_reconcile) - time.monotonic()))
            self._wake.clear()

    def _round(self, *, full: bool) -> None:
        self._guarded("customers", lambda: self.sync_customers(full=full))
        self._guarded("catalog", lambda: self.sync_catalog(full=full))
        self._guarded("analytics", self.sync_analytics)

    def _guarded(self, what: str, step: Callable[[], Any]) -> Any:
        try:
            return step()
        except OnlineStoreError as exc:
            self.counters[f"{what}_unavailable"] += 1
            log.warning("online store unavailable; the hub keeps its copy and tries again",
                        extra={"step": what, "error": exc.code})
        except Exception:
            self.counters[f"{what}_failed"] += 1
            log.exception("sync step failed", extra={"step": what})
        return None

    # --- customers
    def sync_customers(self, *, full: bool = False) -> dict[str, int]:
        """Page the customers changes feed from the stored cursor (from the start when `full`)."""
        cursor = None if full else self.hub_store.sync_cursor("customers")
        done: Counter = Counter()
        while True:
            page, cursor = self._page(self.online.customer_changes, cursor, CUSTOMER_PAGE, "customers")
            for change in page.get("items", []):
                done[self._apply_customer_change(change)] += 1
            cursor = page.get("next_cursor") or cursor
            self.hub_store.set_sync_cursor("customers", cursor, format_ts(self._clock()))
            if not page.get("has_more"):
                break
        self.counters.update({f"customers_{k}": v for k, v in done.items()})
        self.last_sync["customers"] = format_ts(self._clock())
        log.info("customers in sync", extra={"full": full, **dict(done)})
        return dict(done)

    def _apply_customer_change(self, change: dict[str, Any]) -> str:
        member = change.get("id")
        if not isinstance(member, str) or not member:
            return "malformed"
        if change.get("erased"):
            self.erase(member)
            return "erased"
        profile = change.get("profile")
        if not isinstance(profile, dict):
            return "malformed"
        if self.hub_store.cached_profile(member) is None and not ready_for_pickup_here(profile, self.store):
            return "skipped"
        self.hub_store.cache_profile(member, profile, format_ts(self._clock()))
        return "updated"

    def refresh_customer(self, member: str) -> str:
        """Fetch one customer now (a webhook said they changed)."""
        try:
            profile = self.online.customer(member, timeout_s=self.online.background_timeout_s)
        except CustomerNotFound:
            return "not_found"
        if self.hub_store.cached_profile(member) is None and not ready_for_pickup_here(profile, self.store):
            return "skipped"
        self.hub_store.cache_profile(member, profile, format_ts(self._clock()))
        return "updated"

    def erase(self, member: str) -> dict[str, int]:
        counts = self.hub_store.erase_member(member, now=self._clock())
        self.counters["erasures"] += 1
        log.info("member erased at the online store's request", extra={"removed": counts})
        return counts

    # --- analytics: the online store's sessions and orders for this store's customers
    def sync_analytics(self) -> dict[str, int]:
        """Page both feeds from their stored cursors into the analytics tables (hub.analytics_data),
        each page in one transaction with its cursor, so a crash repeats a page at worst (rows are
        keyed by id: stored once). Then link till sales whose loyalty number a profile now has."""
        done: Counter = Counter()
        for name, feed, record in (
                ("online_sessions", self.online.online_sessions,
                 lambda db, items, erased: record_online_sessions(db, items, erased=erased)),
                ("orders", self.online.orders,
                 lambda db, items, erased: record_orders(db, items, currency=self.currency, now=self._clock(),
                                                         erased=erased))):
            cursor = self.hub_store.sync_cursor(name)
            while not self._stopping.is_set():
                page, asked = self._page(lambda c, limit: feed(c, store=self.store, limit=limit), cursor,
                                         ANALYTICS_PAGE, name)
                items = page.get("items", [])
                cursor = page.get("next_cursor") or asked
                with self.hub_store.transaction() as store:
                    erased = erased_members(store.db, items)
                    done.update({f"{name}_{k}": v for k, v in record(store.db, items, erased).items() if v})
                    store.db.execute("INSERT INTO sync_cursors VALUES (?, ?, ?) ON CONFLICT(name) DO UPDATE "
                                     "SET cursor = excluded.cursor, updated_at = excluded.updated_at",
                                     [name, cursor, format_ts(self._clock())])
                if not page.get("has_more"):
                    break
                if cursor == asked:  # "more" but no way to ask for it: next round, not a spin
                    log.warning("the online store says there is more but gave no new cursor", extra={"feed": name})
                    self.counters[f"{name}_stuck_cursor"] += 1
                    break
        done["sales_linked"] = link_pending_sales(self.hub_store)
        self.counters.update(done)
        self.last_sync["analytics"] = format_ts(self._clock())
        if any(done.values()):
            log.info("online sessions and orders in sync", extra=dict(done))
        return dict(done)

    # --- catalog
    def sync_catalog(self, *, full: bool = False) -> int:
        """Page the catalog changes feed into the hub's catalog; devices follow its retained version."""
        cursor = None if full else self.hub_store.sync_cursor("catalog")
        before = self.catalog.version
        while True:
            page, cursor = self._page(self.online.catalog_changes, cursor, CATALOG_PAGE, "catalog")
            items = [item for item in page.get("items", []) if self._takes(item)]
            if items:
                self.catalog.apply_changes(items)
            cursor = page.get("next_cursor") or cursor
            self.hub_store.set_sync_cursor("catalog", cursor, format_ts(self._clock()))
            if not page.get("has_more"):
                break
        version = self.catalog.version
        self.last_sync["catalog"] = format_ts(self._clock())
        if version != before:
            self.counters["catalog_versions"] += 1
            log.info("catalog changed", extra={"version": version, "was": before})
            self.on_catalog_changed()
        return version

    def _takes(self, item: dict[str, Any]) -> bool:
        """With stock.source = pos the till is the truth for this store's own stock; the feed's rows for it are not."""
        return self.own_stock_from_feed or not (item.get("kind") == "stock"
                                                and str(item.get("key", "")).endswith(f"/{self.store}"))

    def _page(self, feed, cursor: str | None, limit: int, name: str) -> tuple[dict[str, Any], str | None]:
        """One page; a cursor the online store no longer knows (its data was rebuilt) means reading from the start."""
        try:
            return feed(cursor, limit=limit), cursor
        except CursorRejected:
            log.warning("the online store no longer knows our cursor; reading its feed from the start",
                        extra={"feed": name})
            self.counters[f"{name}_cursor_reset"] += 1
            return feed(None, limit=limit), None

    # --- webhooks and prefetch
    def _handle_webhooks(self) -> None:
        while True:
            try:
                event_type, data = self._webhooks.get_nowait()
            except queue.Empty:
                return
            member = data.get("customer_id")
            if event_type == "customer.erased" and isinstance(member, str):
                self._guarded("webhook", lambda: self.erase(member))
            elif event_type in ("customer.updated", "order.updated") and isinstance(member, str):
                outcome = self._guarded("webhook", lambda: self.refresh_customer(member))
                self.counters[f"webhook_{outcome}"] += 1
            elif event_type == "catalog.updated":
                self._guarded("catalog", self.sync_catalog)

    def prefetch(self) -> int:
        """Members seen here in the last `prefetch_days` whose cached profile is older than its TTL:
        fetched now, so their next arrival needs no online store."""
        since = format_ts(self._clock() - timedelta(days=self.prefetch_days))
        stale_before = format_ts(self._clock() - timedelta(seconds=self.profile_ttl_s))
        fetched = 0
        for member in self.hub_store.members_to_prefetch(since=since, stale_before=stale_before,
                                                         limit=PREFETCH_PER_ROUND):
            if self._stopping.is_set():
                break
            try:
                profile = self.online.customer(member, timeout_s=self.online.background_timeout_s)
            except CustomerNotFound:
                continue
            self.hub_store.cache_profile(member, profile, format_ts(self._clock()))
            fetched += 1
        self.counters["prefetched"] += fetched
        if fetched:
            log.info("profiles prefetched", extra={"fetched": fetched})
        return fetched
