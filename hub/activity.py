"""In-store activity: who was here (visits, from a check-in to the end of their kiosk sessions) and what they
did (scans, help asked, offers shown, items sent to the online cart), queued for the online store so it
shows up online. Privacy decides what is linked to whom.

Everything here runs inside the ingest transaction (`track`), so a stored event and what it queues
commit together; `close_visits` runs from the hub's housekeeping. The queue is `online_updates`
(kind "activity"), keyed by event id: idempotent end to end.

Privacy: a member without clienteling consent is never linked to what they do here. Their events are
stored without the member id (anonymous; counted per day and type in `anonymous_counts`), no
visit is opened, nothing personal is pushed. An erased member's events are deleted, and late
arrivals naming them are kept anonymous too.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import replace
import random
import threading
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Iterable

import sqlite_utils

from hub.analytics_data import add_touch, canonical_ts, forget_member_facts, record_store_activity
from hub.online import OnlineStoreError
from hub.online_updates import OnlineUpdates, backoff_s, insert_update
from protocol.envelope import Envelope, format_ts, parse_ts

log = logging.getLogger("hub.activity")

KIND_ACTIVITY = "activity"
# What goes online as activity. An item sent to the online cart goes as the cart line itself
# (kind "cart.add", keyed by the cart.sent event id like the kiosk's own cart.add request).
PUSHED_TYPES = ("scan.product", "assist.requested", "offer.shown")
DEFAULT_VISIT_GAP_S = 30 * 60


def create_activity_tables(db: sqlite_utils.Database) -> None:
    db.execute("CREATE TABLE sessions (id TEXT PRIMARY KEY, device TEXT NOT NULL, member TEXT, started_at TEXT,"
               " ended_at TEXT, visit_id TEXT)")
    db.execute("CREATE INDEX sessions_member ON sessions (member)")
    db.execute("CREATE TABLE visits (id TEXT PRIMARY KEY, member TEXT NOT NULL, store TEXT NOT NULL,"
               " started_at TEXT NOT NULL, last_seen_at TEXT NOT NULL, ended_at TEXT, kiosks TEXT NOT NULL,"
               " closed INTEGER NOT NULL DEFAULT 0)")
    db.execute("CREATE INDEX visits_open ON visits (closed, last_seen_at)")
    db.execute("CREATE INDEX visits_member ON visits (member, closed)")
    db.execute("CREATE TABLE anonymous_counts (day TEXT NOT NULL, type TEXT NOT NULL, count INTEGER NOT NULL,"
               " PRIMARY KEY (day, type))")
    db.execute("CREATE TABLE erased_members (member_hash TEXT PRIMARY KEY, erased_at TEXT NOT NULL)")
    # Find a member's events without reading every event (redaction, erasure).
    db.execute("CREATE INDEX events_member ON events (json_extract(data, '$.member'))")


def member_hash(member: str) -> str:
    """How an erased member is remembered: enough to recognise a late event naming them, not who they were."""
    return hashlib.sha256(f"omnikiosk-erased:{member}".encode()).hexdigest()


def consent_of(db: sqlite_utils.Database, member: str) -> bool | None:
    """The member's clienteling consent from the cached profile; None when the hub has no profile yet."""
    row = db.execute("SELECT json_extract(profile, '$.consent.clienteling') FROM customers WHERE id = ?",
                     [member]).fetchone()
    if row is None:
        return None
    return bool(row[0])


def is_erased(db: sqlite_utils.Database, member: str) -> bool:
    return db.execute("SELECT 1 FROM erased_members WHERE member_hash = ?", [member_hash(member)]).fetchone() is not None


def track(db: sqlite_utils.Database, events: Iterable[Envelope], *, store: str, now: datetime,
          gap_s: float = DEFAULT_VISIT_GAP_S) -> dict[str, int]:
    """Inside the ingest transaction: sessions and visits, anonymity for members who did not consent,
    the facts store analytics reads (hub.analytics_data), and the activity and cart lines queued for
    the online store. Returns what it did, for metrics."""
    done = {"anonymous": 0, "queued": 0, "visits_opened": 0}
    for event in events:
        if not canonical_ts(event.ts):  # one text form, so times compare as text (the stored event keeps its own)
            event = replace(event, ts=format_ts(parse_ts(event.ts)))
        member = event.data.get("member") if isinstance(event.data.get("member"), str) else None
        if member is not None and (is_erased(db, member) or consent_of(db, member) is False):
            _anonymise_event(db, event)
            member = None
            done["anonymous"] += 1
        if event.type == "session.started":
            db.execute("INSERT OR IGNORE INTO sessions (id, device, started_at) VALUES (?, ?, ?)",
                       [event.data["session"], event.device, event.ts])
        elif event.type == "scan.member" and member is not None:
            done["visits_opened"] += _check_in(db, event, member, store, gap_s, now)
        elif event.type == "session.ended":
            db.execute("UPDATE sessions SET ended_at = ? WHERE id = ?", [event.ts, event.data["session"]])
            db.execute("UPDATE visits SET last_seen_at = max(last_seen_at, ?), "
                       "ended_at = CASE WHEN closed THEN max(ended_at, ?) END WHERE id = "
                       "(SELECT visit_id FROM sessions WHERE id = ?)", [event.ts, event.ts, event.data["session"]])
        who = member if member is not None or event.type == "scan.member" else _session_member(db, event)
        record_store_activity(db, event, who, store)
        if event.type in PUSHED_TYPES:
            payload = {"type": event.type, "store": store, "ts": event.ts, "device": event.device,
                       "data": {k: v for k, v in event.data.items() if k in ("gtin", "offer", "source")}}
            done["queued"] += insert_update(db, event.id, KIND_ACTIVITY, who or "", payload, now)
        elif event.type == "cart.sent" and member is not None:
            done["queued"] += insert_update(db, event.id, "cart.add", member,
                                            {"gtin": event.data["gtin"], "quantity": 1, "device": event.device}, now)
    return done


def _anonymise_event(db: sqlite_utils.Database, event: Envelope) -> None:
    db.execute("UPDATE events SET data = json_remove(data, '$.member') WHERE id = ?", [event.id])
    db.execute("INSERT INTO anonymous_counts VALUES (?, ?, 1) ON CONFLICT(day, type) DO UPDATE "
               "SET count = count + 1", [event.ts[:10], event.type])


def _check_in(db: sqlite_utils.Database, event: Envelope, member: str, store: str, gap_s: float,
              now: datetime) -> int:
    """Link the session to the member and open a visit, or join the visit still open for them when
    this check-in is within `gap_s` of it (by the events' own times, so a check-in replayed after
    an outage, or a history imported at once, groups as it happened)."""
    gap = timedelta(seconds=gap_s)
    moment = parse_ts(event.ts)
    # The member's visit this check-in falls in, open or already closed by housekeeping (a kiosk replaying
    # its day after an outage arrives after the first part of a visit was closed). INDEXED BY: without
    # it SQLite walks every open visit in last_seen order to skip a sort.
    row = db.execute("SELECT id, kiosks FROM visits INDEXED BY visits_member WHERE member = ? "
                     "AND started_at <= ? AND last_seen_at >= ? ORDER BY last_seen_at DESC LIMIT 1",
                     [member, format_ts(moment + gap), format_ts(moment - gap)]).fetchone()
    if row is None:
        for (earlier,) in db.execute("SELECT id FROM visits INDEXED BY visits_member WHERE member = ? AND closed = 0 "
                                     "AND last_seen_at < ?", [member, event.ts]).fetchall():
            _close_visit(db, earlier, now)  # a new visit: the open one ended before it
    opened = 0
    if row is None:
        visit_id = event.id  # the check-in that opened it: stable, so the visit pushed online is idempotent
        cursor = db.execute("INSERT OR IGNORE INTO visits (id, member, store, started_at, last_seen_at, kiosks) "
                            "VALUES (?, ?, ?, ?, ?, ?)",
                            [visit_id, member, store, event.ts, event.ts, json.dumps([event.device])])
        if cursor.rowcount == 1:
            add_touch(db, "visit:" + visit_id, member, event.ts, "store")
        opened = 1
    else:
        visit_id, kiosks = row[0], json.loads(row[1])
        if event.device not in kiosks:
            kiosks.append(event.device)
        db.execute("UPDATE visits SET kiosks = ?, last_seen_at = max(last_seen_at, ?), started_at = min(started_at, ?),"
                   " ended_at = CASE WHEN closed THEN max(ended_at, ?) END WHERE id = ?",
                   [json.dumps(kiosks), event.ts, event.ts, event.ts, visit_id])
        db.execute("UPDATE touches SET ts = ? WHERE ref = ? AND ts > ?", [event.ts, "visit:" + visit_id, event.ts])
    db.execute("INSERT INTO sessions (id, device, member, started_at, visit_id) VALUES (?, ?, ?, ?, ?) "
               "ON CONFLICT(id) DO UPDATE SET member = excluded.member, visit_id = excluded.visit_id",
               [event.data["session"], event.device, member, event.ts, visit_id])
    return opened


def _session_member(db: sqlite_utils.Database, event: Envelope) -> str | None:
    session = event.data.get("session")
    if not isinstance(session, str):
        return None
    row = db.execute("SELECT member FROM sessions WHERE id = ?", [session]).fetchone()
    return row[0] if row else None


def close_visits(db: sqlite_utils.Database, *, now: datetime, gap_s: float = DEFAULT_VISIT_GAP_S) -> int:
    """Visits nobody added to for `gap_s` are over: closed, and queued for the online store as one
    `visit` (start, end, kiosks used). Run inside a write transaction."""
    cutoff = format_ts(now - timedelta(seconds=gap_s))
    rows = db.execute("SELECT id, member, store, started_at, last_seen_at, kiosks FROM visits "
                      "WHERE closed = 0 AND last_seen_at < ?", [cutoff]).fetchall()
    for row in rows:
        _close_visit(db, row[0], now)
    return len(rows)


def _close_visit(db: sqlite_utils.Database, visit_id: str, now: datetime) -> None:
    """End a visit at its last kiosk session's end, and queue it for the online store as one `visit`."""
    member, store, started_at, last_seen_at, kiosks = db.execute(
        "SELECT member, store, started_at, last_seen_at, kiosks FROM visits WHERE id = ?", [visit_id]).fetchone()
    ended = db.execute("SELECT max(coalesce(ended_at, started_at)) FROM sessions WHERE visit_id = ?",
                       [visit_id]).fetchone()[0] or last_seen_at
    ended_at = max(ended, last_seen_at)
    db.execute("UPDATE visits SET closed = 1, ended_at = ? WHERE id = ?", [ended_at, visit_id])
    insert_update(db, f"visit:{visit_id}", KIND_ACTIVITY, member,
                  {"type": "visit", "store": store, "ts": ended_at,
                   "data": {"started_at": started_at, "ended_at": ended_at, "kiosks": json.loads(kiosks)}}, now)


def forget_member(db: sqlite_utils.Database, member: str, *, erase: bool, now: datetime) -> dict[str, int]:
    """Unlink a member from everything here. `erase=False` (they have no clienteling consent): their
    events stay as anonymous counts. `erase=True` (the online store erased them): their personal
    events, arrivals, cached profile, visits and unsent updates are deleted, and only a hash is kept
    so a late event naming them is recognised. Run inside a write transaction."""
    counts: dict[str, int] = {}
    forget_member_facts(db, member, erase=erase)  # first: it reads the profile's loyalty number
    if erase:
        counts["events"] = db.execute("DELETE FROM events WHERE json_extract(data, '$.member') = ?",
                                      [member]).rowcount
        counts["arrivals"] = db.execute("DELETE FROM arrivals WHERE customer_id = ?", [member]).rowcount
        counts["profiles"] = db.execute("DELETE FROM customers WHERE id = ?", [member]).rowcount
        counts["updates"] = db.execute("DELETE FROM online_updates WHERE customer_id = ? AND done_at IS NULL",
                                       [member]).rowcount
        db.execute("INSERT OR IGNORE INTO erased_members VALUES (?, ?)", [member_hash(member), format_ts(now)])
        db.execute("UPDATE audit_log SET subject = ? WHERE subject = ?", ["erased:" + member_hash(member)[:12], member])
    else:
        rows = db.execute("SELECT id, type, ts FROM events WHERE json_extract(data, '$.member') = ?",
                          [member]).fetchall()
        for event_id, event_type, ts in rows:
            db.execute("UPDATE events SET data = json_remove(data, '$.member') WHERE id = ?", [event_id])
            db.execute("INSERT INTO anonymous_counts VALUES (?, ?, 1) ON CONFLICT(day, type) DO UPDATE "
                       "SET count = count + 1", [ts[:10], event_type])
        counts["events"] = len(rows)
        db.execute("UPDATE online_updates SET customer_id = '' WHERE customer_id = ? AND kind = ? "
                   "AND done_at IS NULL", [member, KIND_ACTIVITY])
    counts["visits"] = db.execute("DELETE FROM visits WHERE member = ?", [member]).rowcount
    db.execute("UPDATE sessions SET member = NULL, visit_id = NULL WHERE member = ?", [member])
    return counts


class ActivityPusher:
    """Delivers queued in-store activity (visits, scans, help, offers shown) to the online store in
    batches, on its own thread, until accepted: nothing is lost while the online store is down for
    hours, and a batch sent twice is accepted once (ids are idempotency keys)."""

    def __init__(self, updates: OnlineUpdates, online, *, clock=lambda: datetime.now(timezone.utc),
                 batch: int = 100, idle_s: float = 5.0, rng: random.Random | None = None):
        self.updates = updates
        self.online = online
        self._clock = clock
        self.batch = batch
        self.idle_s = idle_s
        self._rng = rng or random.Random()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.counters: Counter = Counter()

    def start(self) -> "ActivityPusher":
        self._thread = threading.Thread(target=self._run, name="activity-pusher", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread:
            self._thread.join(10)

    def wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                pushed = self.run_once()
            except Exception:
                log.exception("activity push round failed; trying again")
                pushed = 0
            if pushed < self.batch:  # a full batch means more are waiting: go on at once
                self._wake.wait(self.idle_s)

    def run_once(self) -> int:
        """Push one batch of what is due; returns how many were tried."""
        rows = self.updates.due(self._clock(), self.batch, kind=KIND_ACTIVITY)
        if not rows:
            return 0
        items = [{"id": row["key"], "type": row["payload"]["type"], "customer_id": row["customer_id"] or None,
                  "store": row["payload"]["store"], "ts": row["payload"]["ts"], "data": row["payload"]["data"]}
                 for row in rows]
        try:
            answer = self.online.push_activity(items)
        except OnlineStoreError as exc:
            for row in rows:
                self.updates.mark_failed(row["key"], exc.code, self._clock(), backoff_s(row["attempts"] + 1, self._rng))
            self.counters["failed"] += len(rows)
            log.warning("in-store activity not delivered yet; queued",
                        extra={"items": len(rows), "error": exc.code})
            return len(rows)
        refused = {r.get("id"): r for r in answer.get("rejected", []) if isinstance(r, dict)}
        for row in rows:
            if row["key"] in refused:
                self.updates.mark_done(row["key"], self._clock(), error=str(refused[row["key"]].get("code", "refused")))
                self.counters["refused"] += 1
            else:
                self.updates.mark_done(row["key"], self._clock())
                self.counters["accepted"] += 1
        if refused:
            log.warning("the online store refused activity for good", extra={"items": len(refused)})
        return len(rows)
