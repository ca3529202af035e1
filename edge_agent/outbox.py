"""The device outbox: what the kiosk and the agent must still deliver, durable, ordered and bounded.

Both processes open the same `outbox.db`. The kiosk appends events (durable when `append`
returns: WAL with synchronous=FULL, so a shopper never sees a result that a power cut can
take back); the agent sends rows in `pos` order and forgets an event only when the hub's
receipt covers its `seq` (a broker PUBACK is not enough: Mosquitto holds it in memory), and
a telemetry row on its PUBACK. `seq` comes from a counter in the same file, so it rises by
one per device across restarts even when the table is empty.

Bounded: at most `max_rows` rows and `max_bytes` bytes, and every row expires after the
time-to-live of its type. When an append does not fit, expired rows go first, then the
oldest rows of the lowest priority, never a row of higher priority than the one being
added and never a high-priority one; if that is not enough the append is refused with
`OutboxFull`. Every drop and refusal is counted by reason and type, in the file, so the
counts survive restarts and reach the hub in telemetry.

The policy (bounds and TTLs) is written into the file by the edge agent from its config,
so the kiosk, which appends, obeys the same numbers without a second copy of them.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable

import sqlite_utils

from protocol.envelope import EVENT_TYPES, Envelope, make_envelope, parse_ts, uuid7
from protocol.sqlite import immediate, open_db

SCHEMA_VERSION = 2
TELEMETRY = "telemetry"  # the row type of a telemetry snapshot kept while the broker is unreachable

# Priority of each row type: what goes first when the outbox is full. HIGH is never dropped
# for room: a check-in, a cart line, a call for help or IT's answer matter most.
LOW, NORMAL, HIGH = 1, 2, 3
PRIORITY: dict[str, int] = {
    TELEMETRY: 0,
    "offer.shown": LOW, "scan.rejected": LOW,
    "scan.product": NORMAL, "session.started": NORMAL, "session.ended": NORMAL,
    "scan.member": HIGH, "cart.sent": HIGH, "assist.requested": HIGH, "command.result": HIGH,
}
MINUTE, DAY = 60, 86400
DEFAULT_TTL_S: dict[str, int] = {
    TELEMETRY: 15 * MINUTE,
    "offer.shown": 2 * DAY, "scan.rejected": 2 * DAY,
    "scan.product": 7 * DAY, "session.started": 7 * DAY, "session.ended": 7 * DAY,
    "scan.member": 30 * DAY, "cart.sent": 30 * DAY, "assist.requested": 30 * DAY, "command.result": 30 * DAY,
}
assert set(PRIORITY) == set(DEFAULT_TTL_S) == set(EVENT_TYPES) | {TELEMETRY}, "every row type needs a policy"

DROP_REASONS = ("expired", "full", "refused", "rejected_by_hub")


@dataclass(frozen=True)
class OutboxPolicy:
    max_rows: int = 500_000
    max_bytes: int = 256 * 1024 * 1024
    ttl_s: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_TTL_S))

    def ttl_for(self, row_type: str) -> int:
        return self.ttl_s.get(row_type, DEFAULT_TTL_S.get(row_type, 7 * DAY))

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "OutboxPolicy":
        obj = json.loads(text)
        return cls(max_rows=int(obj["max_rows"]), max_bytes=int(obj["max_bytes"]),
                   ttl_s={**DEFAULT_TTL_S, **{k: int(v) for k, v in obj.get("ttl_s", {}).items()}})


class OutboxFull(Exception):
    """The outbox is at its bound and holds only events too important to drop. Nothing was written."""


class OutboxDiskFull(OutboxFull):
    """The device's disk is full: SQLite could not write the event (SQLITE_FULL). Nothing was written; the
    refusal is counted ("refused") like any other, so the kiosk tells the shopper, never loses silently."""


@dataclass(frozen=True)
class PendingRow:
    pos: int
    seq: int | None    # None for telemetry rows
    id: str
    leaf: str          # the topic leaf it goes to: "events" or "telemetry"
    type: str
    body: str


def open_device_db(path: str | Path) -> sqlite_utils.Database:
    """The device files (outbox.db, catalog.db): WAL, synchronous FULL, waits on the other process."""
    return open_db(path)


_SCHEMA = [
    # AUTOINCREMENT: a pos is never reused, even after the table emptied (the drain remembers how far it got).
    "CREATE TABLE outbox (pos INTEGER PRIMARY KEY AUTOINCREMENT, seq INTEGER UNIQUE, id TEXT NOT NULL UNIQUE,"
    " leaf TEXT NOT NULL, type TEXT NOT NULL, priority INTEGER NOT NULL, size INTEGER NOT NULL,"
    " body TEXT NOT NULL, created_s REAL NOT NULL, expires_s REAL NOT NULL)",
    "CREATE INDEX outbox_by_priority ON outbox (priority, pos)",
    "CREATE INDEX outbox_by_expiry ON outbox (expires_s)",
    "CREATE TABLE IF NOT EXISTS outbox_drops (reason TEXT NOT NULL, type TEXT NOT NULL,"
    " count INTEGER NOT NULL, PRIMARY KEY (reason, type))",
    "CREATE TABLE IF NOT EXISTS outbox_policy (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    # Commands already carried out: a command redelivered after a restart (QoS 1) runs once.
    "CREATE TABLE IF NOT EXISTS outbox_commands (id TEXT PRIMARY KEY, seen_s REAL NOT NULL)",
    # Depth and size kept by the database itself, so every path that adds or removes a row
    # (the kiosk, the agent, a migration) keeps them right and append never counts rows.
    "CREATE TRIGGER outbox_added AFTER INSERT ON outbox BEGIN"
    " UPDATE outbox_meta SET value = value + 1 WHERE key = 'rows';"
    " UPDATE outbox_meta SET value = value + NEW.size WHERE key = 'bytes'; END",
    "CREATE TRIGGER outbox_removed AFTER DELETE ON outbox BEGIN"
    " UPDATE outbox_meta SET value = value - 1 WHERE key = 'rows';"
    " UPDATE outbox_meta SET value = value - OLD.size WHERE key = 'bytes'; END",
]


class Outbox:
    """Durable, ordered, bounded queue of one device. Thread-safe within a process; both device
    processes may use the same file at once (SQLite serialises the writers)."""

    def __init__(self, db: sqlite_utils.Database, *, store: str, device: str,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)):
        self.db = db
        self.store = store
        self.device = device
        self._clock = clock
        self._lock = threading.Lock()
        # Refusals for want of disk space that could not be written either (the disk was full):
        # counted here and added to outbox_drops by the next write that succeeds.
        self._unrecorded: dict[str, int] = {}
        # Receipted seq ranges (stored, rejected) not yet deleted because the disk was full.
        self._unsettled: tuple[list[tuple[int, int]], list[tuple[int, int]]] = ([], [])
        self._unforgotten: list[int] = []  # telemetry rows the broker acknowledged, likewise
        self._migrate()

    # --- schema
    def _migrate(self) -> None:
        with self._write() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS outbox_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)")
            row = conn.execute("SELECT value FROM outbox_meta WHERE key = 'schema'").fetchone()
            schema = row[0] if row else 0
            if schema == SCHEMA_VERSION:
                return
            if schema > SCHEMA_VERSION:
                raise RuntimeError(f"outbox.db has schema {schema}, newer than this software ({SCHEMA_VERSION}); "
                                   "upgrade Omnikiosk on this device instead of downgrading it")
            old_rows = []
            if schema == 1:
                # v1: outbox(seq PK, id, type, body, created_at): keep every waiting event.
                old_rows = conn.execute("SELECT seq, id, type, body, created_at FROM outbox ORDER BY seq").fetchall()
                conn.execute("DROP TABLE outbox")
            for key in ("last_seq", "rows", "bytes"):
                conn.execute("INSERT OR IGNORE INTO outbox_meta VALUES (?, 0)", [key])
            conn.execute("UPDATE outbox_meta SET value = 0 WHERE key IN ('rows', 'bytes')")
            for statement in _SCHEMA:
                conn.execute(statement)
            policy = self._policy(conn)
            for seq, event_id, row_type, body, created_at in old_rows:
                created = parse_ts(created_at).timestamp()
                conn.execute(
                    "INSERT INTO outbox (pos, seq, id, leaf, type, priority, size, body, created_s, expires_s)"
                    " VALUES (?, ?, ?, 'events', ?, ?, ?, ?, ?, ?)",
                    [seq, seq, event_id, row_type, PRIORITY.get(row_type, NORMAL), len(body.encode()), body,
                     created, created + policy.ttl_for(row_type)])
            conn.execute("INSERT OR REPLACE INTO outbox_meta VALUES ('schema', ?)", [SCHEMA_VERSION])

    def _write(self, durable: bool = True):
        """A write transaction under this outbox's lock. `durable=False` (forgetting receipted rows): a
        power cut may undo the delete, which only means the event is sent again and the hub, which has
        it, counts a duplicate; it never costs an event. An append is always durable."""
        return immediate(self.db.conn, self._lock, durable=durable)

    # --- policy (written by the agent, obeyed by both processes)
    def set_policy(self, policy: OutboxPolicy) -> None:
        with self._write() as conn:
            conn.execute("INSERT OR REPLACE INTO outbox_policy VALUES ('policy', ?)", [policy.to_json()])

    @property
    def policy(self) -> OutboxPolicy:
        with self._lock:
            return self._policy(self.db.conn)

    @staticmethod
    def _policy(conn: sqlite3.Connection) -> OutboxPolicy:
        row = conn.execute("SELECT value FROM outbox_policy WHERE key = 'policy'").fetchone()
        return OutboxPolicy.from_json(row[0]) if row else OutboxPolicy()

    # --- appending
    def append(self, type: str, data: dict[str, Any]) -> Envelope:
        """Add one event; when this returns it is on disk and will reach the hub.
        Raises OutboxFull (and counts it) when it cannot be kept."""
        now = self._clock()
        try:
            with self._write() as conn:
                seq = conn.execute("SELECT value FROM outbox_meta WHERE key = 'last_seq'").fetchone()[0] + 1
                envelope = make_envelope(store=self.store, device=self.device, type=type, seq=seq, data=data, now=now)
                body = envelope.to_json()
                refusal = self._make_room(conn, type, len(body.encode()), now.timestamp())
                if refusal is None:
                    self._insert(conn, seq=seq, row_id=envelope.id, leaf="events", row_type=type, body=body,
                                 now_s=now.timestamp())
                    conn.execute("UPDATE outbox_meta SET value = ? WHERE key = 'last_seq'", [seq])
                recorded = dict(self._unrecorded)
                for row_type, count in recorded.items():
                    _count_drop(conn, "refused", row_type, count)
        except sqlite3.OperationalError as exc:
            if not self._failed_for_space(exc):
                raise
            self._refused_for_space(type)
            raise OutboxDiskFull(f"the device's disk is full: {type} not recorded (nothing was written); "
                                 "free space on the device") from exc
        for row_type, count in recorded.items():
            self._unrecorded[row_type] -= count
        if refusal is not None:
            raise OutboxFull(refusal)
        return envelope

    def _refused_for_space(self, row_type: str) -> None:
        """Count a refusal for want of disk space: in the file if that one small write fits, else in
        memory until a write succeeds."""
        self._unrecorded[row_type] = self._unrecorded.get(row_type, 0) + 1
        try:
            with self._write() as conn:
                _count_drop(conn, "refused", row_type, 1)
        except sqlite3.OperationalError as exc:
            if not self._failed_for_space(exc):
                raise
            return
        self._unrecorded[row_type] -= 1

    def _failed_for_space(self, exc: sqlite3.OperationalError) -> bool:
        """After a failed write: end the transaction a failed COMMIT may leave open; True if the disk was full."""
        with self._lock:
            if self.db.conn.in_transaction:
                self.db.conn.execute("ROLLBACK")
        return _disk_full(exc)

    def append_telemetry(self, payload: dict[str, Any]) -> bool:
        """Keep a telemetry snapshot for later (the broker is unreachable). False when there is no
        room for it: telemetry never pushes out an event."""
        now = self._clock()
        body = json.dumps(payload, separators=(",", ":"), default=str)
        try:
            with self._write() as conn:
                refusal = self._make_room(conn, TELEMETRY, len(body.encode()), now.timestamp())
                if refusal is None:
                    self._insert(conn, seq=None, row_id=uuid7(now), leaf=TELEMETRY, row_type=TELEMETRY, body=body,
                                 now_s=now.timestamp())
        except sqlite3.OperationalError as exc:
            if not self._failed_for_space(exc):
                raise
            return False  # no room on the disk: the snapshot is not kept (telemetry is never worth an event)
        return refusal is None

    def _insert(self, conn: sqlite3.Connection, *, seq: int | None, row_id: str, leaf: str, row_type: str,
                body: str, now_s: float) -> None:
        policy = self._policy(conn)
        conn.execute(
            "INSERT INTO outbox (seq, id, leaf, type, priority, size, body, created_s, expires_s)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [seq, row_id, leaf, row_type, PRIORITY[row_type], len(body.encode()), body, now_s,
             now_s + policy.ttl_for(row_type)])

    def _make_room(self, conn: sqlite3.Connection, row_type: str, size: int, now_s: float) -> str | None:
        """Make room for one row inside the caller's transaction; the reason it cannot, counted, or None."""
        policy = self._policy(conn)
        if _meta(conn, "rows") + 1 <= policy.max_rows and _meta(conn, "bytes") + size <= policy.max_bytes:
            return None
        self._expire(conn, now_s)
        need_rows = _meta(conn, "rows") + 1 - policy.max_rows
        need_bytes = _meta(conn, "bytes") + size - policy.max_bytes
        if need_rows <= 0 and need_bytes <= 0:
            return None
        # Never push out something more important than what comes in, and never a HIGH one.
        ceiling = min(PRIORITY[row_type], HIGH - 1)
        can_rows, can_bytes = conn.execute(
            "SELECT count(*), coalesce(sum(size), 0) FROM outbox WHERE priority <= ?", [ceiling]).fetchone()
        if can_rows < need_rows or can_bytes < need_bytes:
            _count_drop(conn, "refused", row_type, 1)
            return (f"outbox full ({_meta(conn, 'rows')} rows, {_meta(conn, 'bytes')} bytes; bound "
                    f"{policy.max_rows} rows, {policy.max_bytes} bytes) and what waits is at least as important "
                    f"as {row_type}: the hub has received nothing for a long time; {row_type} is refused until "
                    "the edge agent delivers")
        for priority in range(0, ceiling + 1):
            while need_rows > 0 or need_bytes > 0:
                batch = conn.execute("SELECT pos, size, type FROM outbox WHERE priority = ? ORDER BY pos LIMIT 256",
                                     [priority]).fetchall()
                if not batch:
                    break
                chosen = []
                for pos, row_size, dropped_type in batch:
                    if need_rows <= 0 and need_bytes <= 0:
                        break
                    chosen.append((pos, dropped_type))
                    need_rows, need_bytes = need_rows - 1, need_bytes - row_size
                conn.executemany("DELETE FROM outbox WHERE pos = ?", [(pos,) for pos, _ in chosen])
                for dropped_type, count in _tally(t for _, t in chosen).items():
                    _count_drop(conn, "full", dropped_type, count)
        return None

    # --- draining (the agent)
    def peek(self, after_pos: int = 0, limit: int = 100) -> list[PendingRow]:
        """The oldest rows with pos > after_pos, in order."""
        if self._unsettled != ([], []) or self._unforgotten:
            try:  # receipted rows a failed write left behind: the drain loop passes here on every turn
                self.settle([])
            except Exception:  # noqa: BLE001, S110 - still failing: kept for the next turn, never lost
                pass
        with self._lock:
            rows = self.db.execute(
                "SELECT pos, seq, id, leaf, type, body FROM outbox WHERE pos > ? ORDER BY pos LIMIT ?",
                [after_pos, limit]).fetchall()
        return [PendingRow(*row) for row in rows]

    def rows_with_seq(self, seqs: Iterable[int]) -> list[PendingRow]:
        """Events still waiting among these seqs (to send again), in order."""
        wanted = sorted(set(seqs))
        found: list[PendingRow] = []
        with self._lock:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start:start + 500]
                found += [PendingRow(*row) for row in self.db.execute(
                    f"SELECT pos, seq, id, leaf, type, body FROM outbox WHERE seq IN ({','.join('?' * len(chunk))})",
                    chunk).fetchall()]
        return sorted(found, key=lambda r: r.pos)

    def forget_positions(self, positions: Iterable[int]) -> int:
        """Telemetry rows the broker acknowledged."""
        positions = self._unforgotten + list(positions)
        if not positions:
            return 0
        try:
            with self._write(durable=False) as conn:
                forgotten = conn.executemany("DELETE FROM outbox WHERE pos = ? AND leaf = ?",
                                             [(pos, TELEMETRY) for pos in positions]).rowcount
        except Exception as exc:
            self._unforgotten = positions  # forgotten by the next call that can write
            if not (isinstance(exc, sqlite3.OperationalError) and self._failed_for_space(exc)):
                raise
            return 0
        self._unforgotten = []
        return forgotten

    def settle(self, stored: Iterable[tuple[int, int]], rejected: Iterable[tuple[int, int]] = ()) -> tuple[int, int]:
        """Forget events a hub receipt covers: (stored, rejected by the hub). Rejected ones are counted
        as drops: the hub refused them for good (a bug to look at, not a reason to resend forever).

        On a full disk even a delete cannot be written (WAL): the ranges are kept in memory and
        forgotten by the next settle that can write, so no receipt is lost (the rows were delivered;
        only an agent restart before then would send them again, and the hub counts a duplicate).
        Any other failed write keeps them too, then raises."""
        stored = self._unsettled[0] + list(stored)
        rejected = self._unsettled[1] + list(rejected)
        if self._unforgotten:
            self.forget_positions([])
        try:
            result = self._settle(stored, rejected)
        except Exception as exc:
            self._unsettled = (stored, rejected)  # whatever failed the write, no receipt is forgotten
            if not (isinstance(exc, sqlite3.OperationalError) and self._failed_for_space(exc)):
                raise
            return 0, 0
        self._unsettled = ([], [])
        return result

    def _settle(self, stored: list[tuple[int, int]], rejected: list[tuple[int, int]]) -> tuple[int, int]:
        deleted = refused = 0
        with self._write(durable=False) as conn:
            for first, last in rejected:
                for row_type, count in conn.execute(
                        "SELECT type, count(*) FROM outbox WHERE seq BETWEEN ? AND ? GROUP BY type", [first, last]):
                    _count_drop(conn, "rejected_by_hub", row_type, count)
                    refused += count
                conn.execute("DELETE FROM outbox WHERE seq BETWEEN ? AND ?", [first, last])
            for first, last in stored:
                deleted += conn.execute("DELETE FROM outbox WHERE seq BETWEEN ? AND ?", [first, last]).rowcount
        return deleted, refused

    def expire(self) -> dict[str, int]:
        """Drop rows past their time-to-live; returns how many of each type."""
        with self._write() as conn:
            return self._expire(conn, self._clock().timestamp())

    @staticmethod
    def _expire(conn: sqlite3.Connection, now_s: float) -> dict[str, int]:
        expired = dict(conn.execute("SELECT type, count(*) FROM outbox WHERE expires_s <= ? GROUP BY type",
                                    [now_s]).fetchall())
        if expired:
            conn.execute("DELETE FROM outbox WHERE expires_s <= ?", [now_s])
            for row_type, count in expired.items():
                _count_drop(conn, "expired", row_type, count)
        return expired

    # --- counters and health
    def next_counter(self, key: str) -> int:
        """Increment and return a persistent counter (the agent's session number)."""
        with self._write() as conn:
            conn.execute("INSERT OR IGNORE INTO outbox_meta VALUES (?, 0)", [key])
            conn.execute("UPDATE outbox_meta SET value = value + 1 WHERE key = ?", [key])
            return conn.execute("SELECT value FROM outbox_meta WHERE key = ?", [key]).fetchone()[0]

    def claim_command(self, command_id: str) -> bool:
        """True the first time this device sees a command id (it then carries it out), False after."""
        with self._write() as conn:
            claimed = conn.execute("INSERT OR IGNORE INTO outbox_commands VALUES (?, ?)",
                                   [command_id, self._clock().timestamp()]).rowcount == 1
            conn.execute("DELETE FROM outbox_commands WHERE id NOT IN "
                         "(SELECT id FROM outbox_commands ORDER BY seen_s DESC LIMIT 1000)")
        return claimed

    def drops(self) -> dict[str, dict[str, int]]:
        """{reason: {type: count}} since the outbox was created."""
        with self._lock:
            rows = self.db.execute("SELECT reason, type, count FROM outbox_drops ORDER BY reason, type").fetchall()
        result: dict[str, dict[str, int]] = {}
        for reason, row_type, count in rows:
            result.setdefault(reason, {})[row_type] = count
        for row_type, count in self._unrecorded.items():
            if count:
                refused = result.setdefault("refused", {})
                refused[row_type] = refused.get(row_type, 0) + count
        return result

    def stats(self) -> dict[str, Any]:
        """Depth, size, the oldest waiting row's age, drops and the bound (telemetry, /healthz)."""
        now_s = self._clock().timestamp()
        with self._lock:
            conn = self.db.conn
            oldest = conn.execute("SELECT created_s FROM outbox ORDER BY pos LIMIT 1").fetchone()
            policy = self._policy(conn)
            depth, size, last_seq = _meta(conn, "rows"), _meta(conn, "bytes"), _meta(conn, "last_seq")
            drops = dict(conn.execute("SELECT reason, sum(count) FROM outbox_drops GROUP BY reason").fetchall())
        drops["refused"] = drops.get("refused", 0) + sum(self._unrecorded.values())
        return {
            "depth": depth, "bytes": size, "last_seq": last_seq,
            "oldest_age_s": round(now_s - oldest[0], 1) if oldest else 0.0,
            "dropped": {reason: drops.get(reason, 0) for reason in DROP_REASONS},
            "max_rows": policy.max_rows, "max_bytes": policy.max_bytes,
        }


def _meta(conn: sqlite3.Connection, key: str) -> int:
    row = conn.execute("SELECT value FROM outbox_meta WHERE key = ?", [key]).fetchone()
    return row[0] if row else 0


def _count_drop(conn: sqlite3.Connection, reason: str, row_type: str, count: int) -> None:
    conn.execute("INSERT INTO outbox_drops VALUES (?, ?, ?) ON CONFLICT(reason, type) DO UPDATE "
                 "SET count = count + excluded.count", [reason, row_type, count])


def _disk_full(exc: BaseException | None) -> bool:
    """SQLITE_FULL ("database or disk is full") anywhere in the chain: a failed ROLLBACK after it
    ("cannot rollback - no transaction is active") hides it as its context."""
    while exc is not None:
        if isinstance(exc, sqlite3.Error) and (getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
                                               or "disk is full" in str(exc)):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _tally(items: Iterable[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for item in items:
        counts[item] = counts.get(item, 0) + 1
    return counts
