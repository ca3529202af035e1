"""The store's time on a device: the agent measures how far this device's clock is from the hub's, the kiosk reads it.

A Raspberry Pi has no battery-backed clock and a store network may block NTP, so a kiosk's
clock can be minutes off. Member app tokens live 120 seconds: a kiosk 5 minutes slow would call
every one "not yet valid", 5 minutes fast "expired". So the agent asks the hub (`clock.now`)
when the hub comes online and every 10 minutes, takes the offset at the middle of the round
trip, and writes it into outbox.db (the file both device processes share); the kiosk checks
tokens and stamps events with `HubClock.now()`. An offset older than a day, or none, is not
used: then the device's own clock is all there is.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Callable

import sqlite_utils

from protocol.envelope import parse_ts
from protocol.sqlite import immediate

MAX_AGE = timedelta(days=1)     # an older measurement may no longer hold (the device's clock was reset)
MIN_OFFSET_S = 1.0              # below this, the round trip's own uncertainty: keep the device's clock
REREAD_S = 10.0                 # how often a reader looks for a new measurement

Wall = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


def offset_from(before: datetime, hub_now: datetime, after: datetime) -> float:
    """Seconds to add to this device's clock to get the hub's, from one round trip: the hub read its
    clock somewhere between `before` and `after`; the middle is the best guess."""
    return (hub_now - (before + (after - before) / 2)).total_seconds()


class HubClock:
    """Reads and records the measured offset in the device database (table `hub_clock`, one row).
    Give it a connection of its own: another object's connection may be mid-transaction on another thread."""

    def __init__(self, db: sqlite_utils.Database, *, wall: Wall = _utc_now,
                 monotonic: Callable[[], float] = time.monotonic):
        self.db, self._wall, self._monotonic = db, wall, monotonic
        self._lock = threading.Lock()
        self._cached: tuple[float, float] | None = None     # (offset_s, read at monotonic)
        with immediate(db.conn):
            db.conn.execute("CREATE TABLE IF NOT EXISTS hub_clock (id INTEGER PRIMARY KEY CHECK (id = 1), "
                            "offset_ms INTEGER NOT NULL, rtt_ms INTEGER NOT NULL, measured_at TEXT NOT NULL)")

    def record(self, offset_s: float, rtt_s: float) -> None:
        with immediate(self.db.conn):
            self.db.conn.execute("INSERT OR REPLACE INTO hub_clock VALUES (1, ?, ?, ?)",
                                 [round(offset_s * 1000), round(rtt_s * 1000), self._wall().isoformat()])
        with self._lock:
            self._cached = None

    def measurement(self) -> dict | None:
        row = self.db.conn.execute("SELECT offset_ms, rtt_ms, measured_at FROM hub_clock WHERE id = 1").fetchone()
        return None if row is None else {"offset_s": row[0] / 1000, "rtt_s": row[1] / 1000, "measured_at": row[2]}

    def offset_s(self) -> float:
        """The offset to use now: 0 when none was measured, it is too old, or it is within the noise."""
        with self._lock:
            if self._cached and self._monotonic() - self._cached[1] < REREAD_S:
                return self._cached[0]
        found = self.measurement()
        offset = 0.0
        if found:
            # measured_at is on the device's own clock, like the age we compare it with
            age = self._wall() - datetime.fromisoformat(found["measured_at"])
            if timedelta(0) <= age <= MAX_AGE and abs(found["offset_s"]) >= MIN_OFFSET_S:
                offset = found["offset_s"]
        with self._lock:
            self._cached = (offset, self._monotonic())
        return offset

    def now(self) -> datetime:
        """The store's time as best this device knows it."""
        return self._wall() + timedelta(seconds=self.offset_s())


def measure(ask: Callable[[str, dict, float], dict], wall: Wall = _utc_now,
            timeout_s: float = 2.0) -> tuple[float, float] | None:
    """(offset_s, rtt_s) from one `clock.now` request, or None when the hub did not answer."""
    before = wall()
    answer = ask("clock.now", {}, timeout_s)
    after = wall()
    if not answer.get("ok"):
        return None
    try:
        hub_now = parse_ts(answer["result"]["now"])
    except (KeyError, TypeError, ValueError):
        return None
    return offset_from(before, hub_now, after), (after - before).total_seconds()
