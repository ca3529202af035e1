"""The device outbox: events the kiosk appended and the edge agent has not yet delivered.

Both processes open the same `outbox.db`. The kiosk appends (durable when `append`
returns: WAL with synchronous=FULL, so a shopper never sees a result that a power cut
can take back); the agent peeks in `seq` order and deletes a row only after the broker
acknowledged it. `seq` comes from a counter in the same file, so it keeps increasing by
one across restarts even when the table is empty.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import sqlite_utils

from protocol.envelope import Envelope, make_envelope

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class PendingEvent:
    seq: int
    id: str
    type: str
    body: str


def open_device_db(path: str | Path) -> sqlite_utils.Database:
    """A connection tuned for the device files: WAL, synchronous FULL, waits on a busy peer."""
    conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=10)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=10000")
    return sqlite_utils.Database(conn)


class Outbox:
    """Durable, ordered queue of envelopes for one device. Thread-safe within a process."""

    def __init__(self, db: sqlite_utils.Database, *, store: str, device: str,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)):
        self.db = db
        self.store = store
        self.device = device
        self._clock = clock
        self._lock = threading.Lock()
        self._migrate()

    def _migrate(self) -> None:
        with self._lock:
            self.db.execute(
                "CREATE TABLE IF NOT EXISTS outbox ("
                " seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, type TEXT NOT NULL,"
                " body TEXT NOT NULL, created_at TEXT NOT NULL)")
            self.db.execute("CREATE TABLE IF NOT EXISTS outbox_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)")
            self.db.execute("INSERT OR IGNORE INTO outbox_meta VALUES ('schema', ?)", [SCHEMA_VERSION])
            self.db.execute("INSERT OR IGNORE INTO outbox_meta VALUES ('last_seq', 0)")

    def append(self, type: str, data: dict[str, Any]) -> Envelope:
        """Add one event; when this returns it is on disk and will reach the hub."""
        now = self._clock()
        with self._lock:
            conn = self.db.conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                seq = conn.execute("SELECT value FROM outbox_meta WHERE key='last_seq'").fetchone()[0] + 1
                envelope = make_envelope(store=self.store, device=self.device, type=type, seq=seq, data=data, now=now)
                conn.execute("INSERT INTO outbox (seq, id, type, body, created_at) VALUES (?, ?, ?, ?, ?)",
                             [seq, envelope.id, type, envelope.to_json(), envelope.ts])
                conn.execute("UPDATE outbox_meta SET value=? WHERE key='last_seq'", [seq])
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return envelope

    def peek(self, after_seq: int = 0, limit: int = 100) -> list[PendingEvent]:
        """The oldest undelivered events with seq > after_seq, in order."""
        with self._lock:
            rows = self.db.execute(
                "SELECT seq, id, type, body FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
                [after_seq, limit]).fetchall()
        return [PendingEvent(*row) for row in rows]

    def delete(self, seqs: list[int]) -> int:
        """Forget events the broker acknowledged."""
        if not seqs:
            return 0
        with self._lock:
            conn = self.db.conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                deleted = conn.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s in seqs]).rowcount
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return deleted

    def next_counter(self, key: str) -> int:
        """Increment and return a persistent counter (the agent's session number)."""
        with self._lock:
            conn = self.db.conn
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT OR IGNORE INTO outbox_meta VALUES (?, 0)", [key])
            conn.execute("UPDATE outbox_meta SET value = value + 1 WHERE key = ?", [key])
            value = conn.execute("SELECT value FROM outbox_meta WHERE key = ?", [key]).fetchone()[0]
            conn.execute("COMMIT")
        return value

    def stats(self) -> dict[str, Any]:
        """Depth and the timestamp of the oldest waiting event (for telemetry and health)."""
        with self._lock:
            depth, oldest = self.db.execute("SELECT count(*), min(created_at) FROM outbox").fetchone()
            last_seq = self.db.execute("SELECT value FROM outbox_meta WHERE key='last_seq'").fetchone()[0]
        return {"depth": depth, "oldest": oldest, "last_seq": last_seq}
