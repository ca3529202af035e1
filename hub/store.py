"""The hub's database: events, devices, customers, arrivals, staff. Schema changes are migrations.

Open one `HubStore` per thread that writes (the ingest writer) and one for the web app;
SQLite in WAL mode lets the readers read while the writer commits.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

import sqlite_utils

from protocol.envelope import Envelope
from protocol.sqlite import immediate, open_db


def _m001_initial(db: sqlite_utils.Database) -> None:
    db["events"].create({"id": str, "seq": int, "store": str, "device": str, "type": str, "ts": str,
                         "data": str, "received_at": str}, pk="id")
    db["events"].create_index(["device", "seq"])
    db["events"].create_index(["type", "ts"])
    db["rejected_events"].create({"id": int, "received_at": str, "topic": str, "device": str, "reason": str,
                                  "detail": str, "size": int}, pk="id")
    db["devices"].create({"id": str, "store": str, "state": str, "session": int, "version": str,
                          "status_ts": str, "last_seen": str, "last_seq": int, "events": int,
                          "duplicates": int, "gaps": int}, pk="id", defaults={"events": 0, "duplicates": 0,
                                                                                "gaps": 0, "last_seq": 0})
    db["customers"].create({"id": str, "profile": str, "fetched_at": str}, pk="id")
    db["arrivals"].create({"id": int, "event_id": str, "store": str, "device": str, "customer_id": str,
                           "member_jti": str, "scanned_at": str, "created_at": str, "late": int, "payload": str},
                          pk="id", not_null={"event_id", "store", "device", "customer_id"})
    db["arrivals"].create_index(["event_id"], unique=True)
    db["arrivals"].create_index(["member_jti"])
    db["staff"].create({"username": str, "password_hash": str, "role": str, "store": str, "disabled": int,
                        "created_at": str}, pk="username", defaults={"disabled": 0})
    db["audit_log"].create({"id": int, "ts": str, "actor": str, "action": str, "subject": str, "detail": str},
                           pk="id")


def _m002_catalog(db: sqlite_utils.Database) -> None:
    from hub.catalog import create_catalog_tables
    create_catalog_tables(db)


def _m003_online_updates(db: sqlite_utils.Database) -> None:
    from hub.online_updates import create_online_updates_tables
    create_online_updates_tables(db)


def _m004_device_telemetry(db: sqlite_utils.Database) -> None:
    db["devices"].add_column("telemetry", str)
    db["devices"].add_column("telemetry_ts", str)


def _m005_activity(db: sqlite_utils.Database) -> None:
    from hub.activity import create_activity_tables
    create_activity_tables(db)


def _m006_sync(db: sqlite_utils.Database) -> None:
    db.execute("CREATE TABLE sync_cursors (name TEXT PRIMARY KEY, cursor TEXT, updated_at TEXT NOT NULL)")
    # Webhook deliveries already handled: a redelivery (the sender retries until it hears 2xx) is counted, not redone.
    db.execute("CREATE TABLE webhook_events (id TEXT PRIMARY KEY, type TEXT NOT NULL, received_at TEXT NOT NULL)")


def _m007_floor(db: sqlite_utils.Database) -> None:
    # What the staff tablets see, in order: a tablet that lost Wi-Fi asks for everything after the last id it has.
    db.execute("CREATE TABLE floor_feed (id INTEGER PRIMARY KEY AUTOINCREMENT, store TEXT NOT NULL, kind TEXT NOT NULL,"
               " arrival_id INTEGER, customer_id TEXT, data TEXT NOT NULL, created_at TEXT NOT NULL)")
    db.execute("CREATE INDEX floor_feed_customer ON floor_feed (customer_id, id)")
    for column in ("claimed_by", "claimed_at", "served_by", "served_at"):
        db["arrivals"].add_column(column, str)
    db.execute("CREATE INDEX arrivals_customer ON arrivals (customer_id, created_at)")
    db.execute("CREATE TABLE assists (id INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL UNIQUE,"
               " store TEXT NOT NULL, device TEXT NOT NULL, gtin TEXT, member TEXT, arrival_id INTEGER,"
               " created_at TEXT NOT NULL, answered_by TEXT, answered_at TEXT)")
    db.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY AUTOINCREMENT, customer_id TEXT NOT NULL, text TEXT NOT NULL,"
               " author TEXT NOT NULL, created_at TEXT NOT NULL)")
    db.execute("CREATE INDEX notes_customer ON notes (customer_id, id)")
    db.execute("CREATE TABLE tablets (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL,"
               " token_hash TEXT NOT NULL UNIQUE, registered_by TEXT NOT NULL, registered_at TEXT NOT NULL,"
               " revoked_at TEXT)")
    db.execute("CREATE TABLE commands (id TEXT PRIMARY KEY, device TEXT NOT NULL, command TEXT NOT NULL,"
               " args TEXT NOT NULL, sent_by TEXT NOT NULL, sent_at TEXT NOT NULL, result TEXT, result_at TEXT)")
    db["staff"].add_column("pin_hash", str)
    db["audit_log"].add_column("device", str)


def _m008_analytics(db: sqlite_utils.Database) -> None:
    from hub.analytics_data import create_analytics_tables
    create_analytics_tables(db)


MIGRATIONS: list[tuple[str, Callable[[sqlite_utils.Database], None]]] = [
    ("001_initial", _m001_initial),
    ("002_catalog", _m002_catalog),
    ("003_online_updates", _m003_online_updates),
    ("004_device_telemetry", _m004_device_telemetry),
    ("005_activity", _m005_activity),
    ("006_sync", _m006_sync),
    ("007_floor", _m007_floor),
    ("008_analytics", _m008_analytics),
]


def open_hub_db(path: str | Path) -> sqlite_utils.Database:
    """Events are acknowledged to the broker after commit: that commit must survive a power cut (FULL)."""
    return open_db(path, foreign_keys=True)


def migrate(db: sqlite_utils.Database) -> list[str]:
    """Apply pending migrations in order; returns the names applied."""
    db.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
    applied = {row[0] for row in db.execute("SELECT name FROM _migrations").fetchall()}
    done = []
    for name, step in MIGRATIONS:
        if name in applied:
            continue
        with immediate(db.conn):
            if db.execute("SELECT 1 FROM _migrations WHERE name = ?", [name]).fetchone() is None:
                step(db)
                db.execute("INSERT INTO _migrations VALUES (?, ?)", [name, _now()])
                done.append(name)
    return done


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class HubStore:
    """All reads and writes of the hub's database. Methods are safe to call from several threads."""

    def __init__(self, db: sqlite_utils.Database):
        self.db = db
        self._lock = threading.RLock()
        migrate(db)

    @contextmanager
    def reading(self) -> Iterator[sqlite_utils.Database]:
        """A read-only connection of its own, for long reads (the manager's analytics over a year) that
        must not hold the lock the staff app's other requests wait for; WAL lets it read beside the writer."""
        path = next((row[2] for row in self.db.execute("PRAGMA database_list").fetchall() if row[1] == "main"), "")
        if not path:  # an in-memory database has no second connection: share this one
            with self._lock:
                yield self.db
            return
        conn = sqlite3.connect(f"{Path(path).as_uri()}?mode=ro", uri=True, check_same_thread=False)
        try:
            conn.execute("PRAGMA busy_timeout=10000")
            yield sqlite_utils.Database(conn)
        finally:
            conn.close()

    @contextmanager
    def transaction(self) -> Iterator["HubStore"]:
        """BEGIN IMMEDIATE … COMMIT under the store's lock; rolls back on any error."""
        with immediate(self.db.conn, self._lock):
            yield self

    # --- ingest (called by the single writer, inside `transaction()`)
    def insert_event(self, envelope: Envelope, received_at: str) -> bool:
        """Store an event once; False when its id was already stored (a duplicate)."""
        cursor = self.db.execute(
            "INSERT OR IGNORE INTO events (id, seq, store, device, type, ts, data, received_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [envelope.id, envelope.seq, envelope.store, envelope.device, envelope.type, envelope.ts,
             json.dumps(envelope.data, separators=(",", ":")), received_at])
        return cursor.rowcount == 1

    def insert_rejection(self, *, topic: str, device: str, reason: str, detail: str, size: int,
                         received_at: str) -> None:
        self.db.execute(
            "INSERT INTO rejected_events (received_at, topic, device, reason, detail, size) VALUES (?, ?, ?, ?, ?, ?)",
            [received_at, topic[:200], device[:64], reason, detail[:200], size])

    def update_device_counts(self, device: str, store: str, *, last_seen: str, max_seq: int,
                             events: int, duplicates: int) -> None:
        """`gaps` is what is missing below the highest seq seen: events a device dropped, or that are
        still on their way (a resend arrives after later events). It shrinks as late ones arrive."""
        self.db.execute(
            "INSERT INTO devices (id, store, last_seen, last_seq, events, duplicates, gaps) VALUES (?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET last_seen = excluded.last_seen, "
            "last_seq = max(devices.last_seq, excluded.last_seq), events = devices.events + excluded.events, "
            "duplicates = devices.duplicates + excluded.duplicates, "
            "gaps = max(0, max(devices.last_seq, excluded.last_seq) - devices.events - excluded.events)",
            [device, store, last_seen, max_seq, events, duplicates, max(0, max_seq - events)])

    def update_device_telemetry(self, device: str, store: str, report: dict[str, Any], seen: str) -> bool:
        """Keep a device's latest health report; an older one (replayed after an outage) does not win."""
        ts = str(report.get("ts", ""))[:40]
        cursor = self.db.execute(
            "INSERT INTO devices (id, store, telemetry, telemetry_ts, last_seen) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET telemetry = excluded.telemetry, telemetry_ts = excluded.telemetry_ts, "
            "last_seen = excluded.last_seen WHERE devices.telemetry_ts IS NULL OR excluded.telemetry_ts > devices.telemetry_ts",
            [device, store, json.dumps(report, separators=(",", ":")), ts, seen])
        return cursor.rowcount == 1

    def update_device_status(self, device: str, store: str, status: dict[str, Any], seen: str) -> bool:
        """Record presence unless it comes from an older session than the one we know."""
        cursor = self.db.execute(
            "INSERT INTO devices (id, store, state, session, version, status_ts, last_seen) VALUES (?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET state = excluded.state, session = excluded.session, "
            "version = excluded.version, status_ts = excluded.status_ts, last_seen = excluded.last_seen "
            "WHERE devices.session IS NULL OR excluded.session >= devices.session",
            [device, store, status["state"], status["session"], str(status.get("version", ""))[:40],
             str(status.get("ts", ""))[:40], seen])
        return cursor.rowcount == 1

    # --- reads
    def count_events(self, **where: Any) -> int:
        clause = " AND ".join(f"{k} = ?" for k in where) or "1"
        return self.db.execute(f"SELECT count(*) FROM events WHERE {clause}", list(where.values())).fetchone()[0]

    def devices(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.db["devices"].rows_where(order_by="id"))

    def rejection_counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self.db.execute("SELECT reason, count(*) FROM rejected_events GROUP BY reason").fetchall())

    # --- customers and arrivals
    def cached_profile(self, customer_id: str) -> tuple[dict[str, Any], str] | None:
        with self._lock:
            row = self.db.execute("SELECT profile, fetched_at FROM customers WHERE id = ?", [customer_id]).fetchone()
        return (json.loads(row[0]), row[1]) if row else None

    def cache_profile(self, customer_id: str, profile: dict[str, Any], fetched_at: str) -> bool:
        """Keep a profile. A member the online store erased is never kept again; a member without
        clienteling consent is unlinked from what they did here (their events become anonymous)."""
        from hub.activity import forget_member, is_erased
        with self.transaction():
            if is_erased(self.db, customer_id):
                return False
            self.db.execute("INSERT INTO customers (id, profile, fetched_at) VALUES (?, ?, ?) ON CONFLICT(id) "
                            "DO UPDATE SET profile = excluded.profile, fetched_at = excluded.fetched_at",
                            [customer_id, json.dumps(profile), fetched_at])
            if not (profile.get("consent") or {}).get("clienteling", False):
                forget_member(self.db, customer_id, erase=False, now=datetime.now(timezone.utc))
        return True

    def erase_member(self, customer_id: str, *, now: datetime) -> dict[str, int]:
        """The online store erased this member: their copy and personal events go (hub.activity.forget_member)."""
        from hub.activity import forget_member
        with self.transaction():
            return forget_member(self.db, customer_id, erase=True, now=now)

    def members_to_prefetch(self, *, since: str, stale_before: str, limit: int) -> list[str]:
        """Members who checked in here since `since` whose cached profile is missing or older than `stale_before`."""
        with self._lock:
            rows = self.db.execute(
                "SELECT a.customer_id FROM arrivals a LEFT JOIN customers c ON c.id = a.customer_id "
                "WHERE a.created_at >= ? AND a.customer_id != '' AND (c.id IS NULL OR c.fetched_at < ?) "
                "GROUP BY a.customer_id ORDER BY max(a.created_at) DESC LIMIT ?", [since, stale_before, limit]).fetchall()
        return [row[0] for row in rows]

    # --- sync with the online store
    def sync_cursor(self, name: str) -> str | None:
        with self._lock:
            row = self.db.execute("SELECT cursor FROM sync_cursors WHERE name = ?", [name]).fetchone()
        return row[0] if row else None

    def set_sync_cursor(self, name: str, cursor: str | None, at: str) -> None:
        with self.transaction():
            self.db.execute("INSERT INTO sync_cursors VALUES (?, ?, ?) ON CONFLICT(name) DO UPDATE "
                            "SET cursor = excluded.cursor, updated_at = excluded.updated_at", [name, cursor, at])

    def first_webhook(self, event_id: str, event_type: str, received_at: str) -> bool:
        """True the first time a webhook id is seen (then it is handled); False for a redelivery."""
        with self.transaction():
            return self.db.execute("INSERT OR IGNORE INTO webhook_events VALUES (?, ?, ?)",
                                   [event_id[:100], event_type[:60], received_at]).rowcount == 1

    def jti_seen_elsewhere(self, jti: str, device: str) -> str | None:
        """The other device that already used this token id, if any (a replayed QR)."""
        with self._lock:
            row = self.db.execute("SELECT device FROM arrivals WHERE member_jti = ? AND device != ? LIMIT 1",
                                  [jti, device]).fetchone()
        return row[0] if row else None

    def add_arrival(self, *, event_id: str, store: str, device: str, customer_id: str, jti: str,
                    scanned_at: str, late: bool, payload: dict[str, Any]) -> int | None:
        """Store an arrival once per event; returns its id, or None if it existed already."""
        with self._lock:
            cursor = self.db.execute(
                "INSERT OR IGNORE INTO arrivals (event_id, store, device, customer_id, member_jti, scanned_at, "
                "created_at, late, payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [event_id, store, device, customer_id, jti, scanned_at, _now(), int(late), json.dumps(payload)])
            return cursor.lastrowid if cursor.rowcount == 1 else None

    def arrived_before(self, customer_id: str, store: str, event_id: str) -> bool:
        """Has this member checked in at this store before this event?"""
        with self._lock:
            return self.db.execute("SELECT 1 FROM arrivals WHERE customer_id = ? AND store = ? AND event_id != ? "
                                   "LIMIT 1", [customer_id, store, event_id]).fetchone() is not None

    def recent_arrivals(self, store: str, *, after_id: int = 0, limit: int = 50) -> list[dict[str, Any]]:
        with self._lock:
            rows = self.db.execute(
                "SELECT id, payload FROM arrivals WHERE store = ? AND id > ? ORDER BY id DESC LIMIT ?",
                [store, after_id, limit]).fetchall()
        return [{**json.loads(payload), "id": row_id} for row_id, payload in rows]

    # --- staff
    def add_staff(self, username: str, password_hash: str, role: str, store: str) -> None:
        with self._lock:
            self.db["staff"].insert({"username": username, "password_hash": password_hash, "role": role,
                                     "store": store, "disabled": 0, "created_at": _now()}, pk="username")

    def set_staff_password(self, username: str, password_hash: str) -> bool:
        with self._lock:
            return self.db.execute("UPDATE staff SET password_hash = ? WHERE username = ?",
                                   [password_hash, username]).rowcount == 1

    def set_staff_disabled(self, username: str, disabled: bool) -> bool:
        with self._lock:
            return self.db.execute("UPDATE staff SET disabled = ? WHERE username = ?",
                                   [int(disabled), username]).rowcount == 1

    def staff(self, username: str) -> dict[str, Any] | None:
        with self._lock:
            rows = list(self.db["staff"].rows_where("username = ?", [username]))
        return rows[0] if rows else None

    def list_staff(self) -> list[dict[str, Any]]:
        with self._lock:
            return [{k: v for k, v in row.items() if k != "password_hash"}
                    for row in self.db["staff"].rows_where(order_by="username")]

    def audit(self, actor: str, action: str, subject: str, detail: str = "", device: str = "") -> None:
        with self._lock:
            self.db["audit_log"].insert({"ts": _now(), "actor": actor, "action": action, "subject": subject,
                                         "detail": detail[:300], "device": device[:120]})

    def audit_log(self, *, limit: int = 200, before: int | None = None) -> list[dict[str, Any]]:
        with self._lock:
            rows = self.db.execute(
                "SELECT id, ts, actor, action, subject, coalesce(device, ''), detail FROM audit_log "
                "WHERE id < ? ORDER BY id DESC LIMIT ?", [before or 2**62, limit]).fetchall()
        return [dict(zip(("id", "ts", "actor", "action", "subject", "device", "detail"), row)) for row in rows]

    # --- PINs and the tablets they work on
    def set_staff_pin(self, username: str, pin_hash: str | None) -> bool:
        with self._lock:
            return self.db.execute("UPDATE staff SET pin_hash = ? WHERE username = ?",
                                   [pin_hash, username]).rowcount == 1

    def register_tablet(self, name: str, by: str) -> tuple[int, str]:
        """A shared tablet where staff may sign in with a PIN: returns (id, the token for its cookie).
        Only a hash of the token is kept, so the database alone cannot make a tablet."""
        import hashlib
        import secrets as _secrets
        token = _secrets.token_urlsafe(32)
        with self._lock:
            cursor = self.db.execute(
                "INSERT INTO tablets (name, token_hash, registered_by, registered_at) VALUES (?, ?, ?, ?)",
                [name[:60], hashlib.sha256(token.encode()).hexdigest(), by, _now()])
        return cursor.lastrowid, token

    def tablet_for_token(self, token: str) -> dict[str, Any] | None:
        import hashlib
        if not token:
            return None
        with self._lock:
            row = self.db.execute("SELECT id, name, registered_by, registered_at FROM tablets WHERE token_hash = ? "
                                  "AND revoked_at IS NULL", [hashlib.sha256(token.encode()).hexdigest()]).fetchone()
        return dict(zip(("id", "name", "registered_by", "registered_at"), row)) if row else None

    def revoke_tablet(self, tablet_id: int) -> bool:
        with self._lock:
            return self.db.execute("UPDATE tablets SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                                   [_now(), tablet_id]).rowcount == 1

    def tablets(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self.db.execute("SELECT id, name, registered_by, registered_at, revoked_at FROM tablets "
                                   "ORDER BY id").fetchall()
        return [dict(zip(("id", "name", "registered_by", "registered_at", "revoked_at"), row)) for row in rows]
