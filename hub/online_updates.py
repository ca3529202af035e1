"""The durable queue of updates for the online store, and the pusher that delivers cart lines from it.

A member's "send to my online cart" must reach the online store even when it is down for
hours: the update is a row in the hub's database until the online store accepts it. The key
is the kiosk's `cart.sent` event id, used both here (one row per key) and as the online
store's `idempotency_key` (one cart line per key), so the same tap arriving by the
`cart.add` request and again by event ingest adds one line, never two.
"""

from __future__ import annotations

import json
import logging
import random
import sqlite3
import threading
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import sqlite_utils

from hub.online import OnlineStoreError, OnlineStoreRefused
from protocol.envelope import format_ts, parse_ts
from protocol.sqlite import immediate

log = logging.getLogger("hub.online_updates")

KIND_CART_ADD = "cart.add"
KIND_WISHLIST_ADD = "wishlist.add"  # staff sending a product to a member's online wishlist
PUSHED_KINDS = (KIND_CART_ADD, KIND_WISHLIST_ADD)
BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 15 * 60.0
COLUMNS = ("key", "kind", "customer_id", "payload", "created_at", "attempts", "next_attempt_at", "done_at",
           "last_error")


def create_online_updates_tables(db: sqlite_utils.Database) -> None:
    """DDL of migration 003; runs inside the migration's transaction, so it opens none itself."""
    db.execute(
        "CREATE TABLE online_updates ("
        " key TEXT PRIMARY KEY,"
        " kind TEXT NOT NULL,"
        " customer_id TEXT NOT NULL,"
        " payload TEXT NOT NULL,"
        " created_at TEXT NOT NULL,"
        " attempts INTEGER NOT NULL DEFAULT 0,"
        " next_attempt_at TEXT NOT NULL,"
        " done_at TEXT,"
        " last_error TEXT)")
    # Partial index: the pusher only ever looks for rows that are due and not done.
    db.execute("CREATE INDEX online_updates_due ON online_updates (kind, next_attempt_at) WHERE done_at IS NULL")


def insert_update(db: sqlite_utils.Database, key: str, kind: str, customer_id: str, payload: dict[str, Any],
                  now: datetime) -> bool:
    """One INSERT on whatever transaction the caller holds; False when the key exists.

    Ingest calls this inside its own transaction, so a stored `cart.sent` event and its
    queued cart line commit together: no crash can keep one and lose the other."""
    if not key:
        raise ValueError("an online update needs a key (the cart.sent event id)")
    stamp = format_ts(now)
    cursor = db.execute(
        "INSERT OR IGNORE INTO online_updates (key, kind, customer_id, payload, created_at, attempts, "
        "next_attempt_at) VALUES (?, ?, ?, ?, ?, 0, ?)",
        [key, kind, customer_id, json.dumps(payload, separators=(",", ":")), stamp, stamp])
    return cursor.rowcount == 1


def backoff_s(attempts: int, rng: random.Random | Any = random) -> float:
    """Wait after the `attempts`-th failure: the ceiling doubles from 1 s to 15 min and the wait is
    drawn from its upper half, so it always grows yet hubs that failed together retry apart."""
    ceiling = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** max(0, attempts - 1))
    return rng.uniform(ceiling / 2, ceiling)


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


class OnlineUpdates:
    """The `online_updates` table. Give it its own connection (`hub.store.open_hub_db`, autocommit);
    methods are safe to call from several threads."""

    def __init__(self, db: sqlite_utils.Database):
        self.db = db
        self._lock = threading.RLock()

    def _write(self):
        return immediate(self.db.conn, self._lock)

    def enqueue(self, key: str, kind: str, customer_id: str, payload: dict[str, Any], *,
                now: datetime | None = None) -> bool:
        """Queue an update, due at once; False when this key was queued before (nothing changes)."""
        with self._write():
            return insert_update(self.db, key, kind, customer_id, payload, now or _utc_now())

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            row = self.db.execute(f"SELECT {', '.join(COLUMNS)} FROM online_updates WHERE key = ?",
                                  [key]).fetchone()
        return _row(row) if row else None

    def due(self, now: datetime, limit: int = 50, *, kind: str | None = None,
            kinds: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        """Updates not yet accepted whose next attempt is due, oldest due first (of `kind`, or of `kinds`)."""
        where, params = "done_at IS NULL AND next_attempt_at <= ?", [format_ts(now)]
        kinds = kinds or ((kind,) if kind is not None else ())
        if kinds:
            where, params = where + f" AND kind IN ({','.join('?' * len(kinds))})", params + list(kinds)
        with self._lock:
            rows = self.db.execute(f"SELECT {', '.join(COLUMNS)} FROM online_updates WHERE {where} "
                                   "ORDER BY next_attempt_at, created_at LIMIT ?", params + [limit]).fetchall()
        return [_row(row) for row in rows]

    def next_due(self, *, kind: str | None = None, kinds: tuple[str, ...] = ()) -> datetime | None:
        """When the earliest waiting update is due; None when nothing waits."""
        where, params = "done_at IS NULL", []
        kinds = kinds or ((kind,) if kind is not None else ())
        if kinds:
            where, params = where + f" AND kind IN ({','.join('?' * len(kinds))})", list(kinds)
        with self._lock:
            row = self.db.execute(f"SELECT min(next_attempt_at) FROM online_updates WHERE {where}",
                                  params).fetchone()
        return parse_ts(row[0]) if row and row[0] else None

    def mark_done(self, key: str, now: datetime, *, error: str | None = None) -> None:
        """The online store accepted the update, or refused it for good (then `error` says why)."""
        with self._write():
            self.db.execute("UPDATE online_updates SET done_at = ?, last_error = ?, attempts = attempts + 1 "
                            "WHERE key = ? AND done_at IS NULL", [format_ts(now), error, key])

    def mark_failed(self, key: str, error_code: str, now: datetime, retry_in_s: float) -> None:
        """An attempt failed; the update stays queued and is due again after `retry_in_s`."""
        retry_at = format_ts(now + timedelta(seconds=retry_in_s))
        with self._write():
            self.db.execute("UPDATE online_updates SET attempts = attempts + 1, last_error = ?, "
                            "next_attempt_at = ? WHERE key = ? AND done_at IS NULL",
                            [error_code, retry_at, key])

    def counts(self) -> dict[str, int]:
        """`pending`: waiting, never tried yet; `failing`: waiting after at least one failed
        attempt; `done`: accepted or refused for good. Waiting in all = pending + failing."""
        with self._lock:
            row = self.db.execute(
                "SELECT coalesce(sum(done_at IS NULL AND attempts = 0), 0), "
                "coalesce(sum(done_at IS NOT NULL), 0), coalesce(sum(done_at IS NULL AND attempts > 0), 0) "
                "FROM online_updates").fetchone()
        return {"pending": row[0], "done": row[1], "failing": row[2]}

    def forget_done(self, before: datetime) -> int:
        """Delete updates finished before `before`; their keys no longer guard against a repeat,
        so keep them longer than a kiosk keeps events in its outbox (30 days)."""
        with self._write():
            return self.db.execute("DELETE FROM online_updates WHERE done_at IS NOT NULL AND done_at < ?",
                                   [format_ts(before)]).rowcount


def _row(row: tuple) -> dict[str, Any]:
    record = dict(zip(COLUMNS, row))
    record["payload"] = json.loads(record["payload"])
    return record


class CartPusher:
    """Delivers queued `cart.add` updates to the online store on its own thread, each with its
    own jittered exponential backoff; a row leaves the queue only when the online store
    accepted it, or refused it in a way no retry can change (unknown customer or product)."""

    def __init__(self, updates: OnlineUpdates, online, *, clock: Callable[[], datetime] = _utc_now,
                 sleep: Callable[[float], object] | None = None, rng: random.Random | None = None,
                 attempt_budget_s: float = 2.0, batch: int = 20, idle_max_s: float = 30.0):
        self.updates = updates
        self.online = online
        self._clock = clock
        # Tests pass `sleep` to drive the thread with a fake clock; by default the thread
        # idles on an event, so `wake()` (a new line queued) ends the wait at once.
        self._sleep = sleep
        self._rng = rng or random.Random()
        self.attempt_budget_s = attempt_budget_s
        self.batch = batch
        self.idle_max_s = idle_max_s
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._in_flight: set[str] = set()
        self._lock = threading.Lock()  # guards _in_flight and counters (push_now runs on other threads)
        self._thread: threading.Thread | None = None
        self.counters = {"added": 0, "refused": 0, "failed": 0}

    # --- the kiosk is waiting
    def push_now(self, key: str, budget_s: float = 0.3) -> str:
        """One attempt within `budget_s`: "added" when the online store took it (now or before),
        "refused" when it never will, "queued" otherwise. A queued update is retried by the
        thread until accepted."""
        if not self._claim(key):
            return "queued"  # the thread is pushing it right now
        try:
            row = self.updates.get(key)
            if row is None:
                raise KeyError(f"no online update with key {key!r}; enqueue it before pushing")
            if row["done_at"] is not None:
                return "refused" if row["last_error"] else "added"
            return self._push(row, budget_s)
        finally:
            self._release(key)

    # --- the thread
    def start(self) -> "CartPusher":
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="cart-pusher", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout_s)

    def wake(self) -> None:
        """Something was queued: look now instead of at the next due time."""
        self._wake.set()

    def run_once(self) -> int:
        """Push every update that is due now; returns how many were tried."""
        tried = 0
        for due in self.updates.due(self._clock(), self.batch, kinds=PUSHED_KINDS):
            if self._stopping.is_set():
                break
            if not self._claim(due["key"]):
                continue
            try:
                row = self.updates.get(due["key"])  # push_now may have finished it meanwhile
                if row is not None and row["done_at"] is None:
                    self._push(row, self.attempt_budget_s)
                    tried += 1
            finally:
                self._release(due["key"])
        return tried

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                self.run_once()
            except Exception:
                # A dead thread would leave every cart line stuck: log it and go round again.
                log.exception("cart pusher round failed; trying again")
            self._idle(self._seconds_until_due())

    def _seconds_until_due(self) -> float:
        try:
            next_due = self.updates.next_due(kinds=PUSHED_KINDS)
        except sqlite3.Error:
            return self.idle_max_s
        if next_due is None:
            return self.idle_max_s
        # Never 0: a due row held by push_now must not make this loop spin.
        return min(self.idle_max_s, max(0.05, (next_due - self._clock()).total_seconds()))

    def _idle(self, seconds: float) -> None:
        if self._sleep is not None:
            self._sleep(seconds)
        else:
            self._wake.wait(seconds)

    # --- one attempt
    def _push(self, row: dict[str, Any], budget_s: float) -> str:
        key, payload = row["key"], row["payload"]
        line = _cart_line(payload)
        if line is None:
            return self._refused(key, "malformed", "the queued payload has no valid gtin/quantity")
        try:
            if row["kind"] == KIND_WISHLIST_ADD:
                self.online.add_to_wishlist(row["customer_id"], line[0], key, timeout_s=budget_s)
            else:
                self.online.add_to_cart(row["customer_id"], line[0], line[1], key, timeout_s=budget_s)
        except OnlineStoreRefused as exc:
            return self._refused(key, exc.code, str(exc))
        except OnlineStoreError as exc:
            return self._failed(row, exc.code)
        except Exception:
            # A bug must not drop the update nor stop the thread: keep it, back off, say so.
            log.exception("cart push failed unexpectedly", extra={"key": key})
            return self._failed(row, "internal")
        self.updates.mark_done(key, self._clock())
        self._count("added")
        log.info("cart line added online", extra={"key": key, "attempts": row["attempts"] + 1})
        return "added"

    def _refused(self, key: str, code: str, detail: str) -> str:
        self.updates.mark_done(key, self._clock(), error=code)
        self._count("refused")
        log.warning("online store refused a cart line; it will not be retried",
                    extra={"key": key, "reason": code, "detail": detail[:200]})
        return "refused"

    def _failed(self, row: dict[str, Any], code: str) -> str:
        attempts = row["attempts"] + 1
        retry_in = backoff_s(attempts, self._rng)
        self.updates.mark_failed(row["key"], code, self._clock(), retry_in)
        self._count("failed")
        log.warning("cart line not delivered yet; queued",
                    extra={"key": row["key"], "error": code, "attempts": attempts, "retry_in_s": round(retry_in, 3)})
        return "queued"

    def _count(self, outcome: str) -> None:
        with self._lock:
            self.counters[outcome] += 1

    def _claim(self, key: str) -> bool:
        with self._lock:
            if key in self._in_flight:
                return False
            self._in_flight.add(key)
            return True

    def _release(self, key: str) -> None:
        with self._lock:
            self._in_flight.discard(key)


def _cart_line(payload: Any) -> tuple[str, int] | None:
    """(gtin, quantity) from a queued payload, or None when it could never be sent."""
    if not isinstance(payload, dict):
        return None
    gtin, quantity = payload.get("gtin"), payload.get("quantity", 1)
    if not (isinstance(gtin, str) and gtin.isdigit() and len(gtin) == 14):
        return None
    if not (isinstance(quantity, int) and not isinstance(quantity, bool) and 1 <= quantity <= 99):
        return None
    return gtin, quantity
