"""The facts store analytics reads, written where they arrive; hub/analytics.py answers the questions.

Four tables, each filled by the part of the hub that receives the facts:

- `store_activity`: one row per kiosk event that matters to a manager (sessions, check-ins, scans,
  help, offers, cart lines), with the member it belongs to and, for scans, whether the product was
  out of stock here when the scan reached the hub. Written inside the ingest transaction (`track`).
- `online_sessions`: the online store's sessions by channel (connector feed, hub.sync).
- `sales` + `sale_lines`: till sales (hub.pos_sales) and online orders (connector feed, hub.sync).
- `touches`: every moment a known customer met the brand, by channel: an online session, a store
  visit (its check-in), a product scanned / help asked / item sent to the cart at a kiosk. What
  attribution searches, by customer and time.

Times are UTC strings in one format (`format_ts`: milliseconds and a Z), so they compare as text.
Privacy follows hub.activity: a member without clienteling consent or erased is not in
`store_activity` or the in-store touches; an erased member is unlinked from sessions and sales.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any, Iterable, Mapping

import sqlite_utils

from hub.connector import ONLINE_CHANNELS
from protocol.catalog import stock_key
from protocol.codes import to_gtin14
from protocol.envelope import Envelope, format_ts, parse_ts

# The channels a touch or a session can have: the store visit and the kiosk are channels of their own.
STORE_CHANNELS = ("store", "kiosk")
CHANNELS = STORE_CHANNELS + ONLINE_CHANNELS
# Kiosk events that make a session qualified (the shopper did something) and count as kiosk touches.
QUALIFYING_TYPES = ("scan.product", "assist.requested", "cart.sent")
ACTIVITY_TYPES = ("session.started", "scan.member", "offer.shown") + QUALIFYING_TYPES
# A profile's loyalty card number, as SQL: the expression of index customers_loyalty (use it as is).
LOYALTY_NUMBER = "CAST(json_extract(profile, '$.loyalty.number') AS TEXT)"


def create_analytics_tables(db: sqlite_utils.Database) -> None:
    db.execute("CREATE TABLE store_activity (event_id TEXT PRIMARY KEY, ts TEXT NOT NULL, device TEXT NOT NULL,"
               " session TEXT, member TEXT, type TEXT NOT NULL, gtin TEXT, out_of_stock INTEGER NOT NULL DEFAULT 0)")
    db.execute("CREATE INDEX store_activity_ts ON store_activity (ts)")
    db.execute("CREATE INDEX store_activity_session ON store_activity (session, type)")
    db.execute("CREATE INDEX store_activity_member ON store_activity (member)")
    db.execute("CREATE TABLE online_sessions (id TEXT PRIMARY KEY, customer TEXT, channel TEXT NOT NULL, source TEXT,"
               " started_at TEXT NOT NULL, added_to_cart INTEGER NOT NULL, asked_for_help INTEGER NOT NULL)")
    db.execute("CREATE INDEX online_sessions_started ON online_sessions (started_at)")
    db.execute("CREATE INDEX online_sessions_customer ON online_sessions (customer)")
    db.execute("CREATE TABLE sales (id TEXT PRIMARY KEY, origin TEXT NOT NULL, customer TEXT, loyalty TEXT,"
               " channel TEXT NOT NULL, ts TEXT NOT NULL, total REAL NOT NULL, currency TEXT NOT NULL,"
               " status TEXT NOT NULL DEFAULT 'completed', received_at TEXT NOT NULL)")
    db.execute("CREATE INDEX sales_ts ON sales (ts)")
    db.execute("CREATE INDEX sales_customer ON sales (customer, ts)")
    db.execute("CREATE TABLE sale_lines (sale_id TEXT NOT NULL, gtin TEXT NOT NULL, quantity INTEGER NOT NULL,"
               " amount REAL NOT NULL)")
    db.execute("CREATE INDEX sale_lines_sale ON sale_lines (sale_id)")
    db.execute("CREATE TABLE touches (ref TEXT PRIMARY KEY, customer TEXT NOT NULL, ts TEXT NOT NULL,"
               " channel TEXT NOT NULL, gtin TEXT)")
    db.execute("CREATE INDEX touches_customer ON touches (customer, ts)")
    # Till sales name members by loyalty number: find the profile that has it without reading them all.
    db.execute(f"CREATE INDEX customers_loyalty ON customers ({LOYALTY_NUMBER})")
    db.execute("CREATE INDEX sessions_started ON sessions (started_at)")
    db.execute("CREATE INDEX sessions_visit ON sessions (visit_id)")
    db.execute("CREATE INDEX visits_started ON visits (started_at)")
    _backfill(db)


def _backfill(db: sqlite_utils.Database) -> None:
    """A hub that ran before analytics existed: its stored kiosk events and visits become facts now
    (stock at that time is unknown, so old scans are not counted as lost demand)."""
    db.execute(
        "INSERT OR IGNORE INTO store_activity (event_id, ts, device, session, member, type, gtin) "
        "SELECT e.id, e.ts, e.device, json_extract(e.data, '$.session'), "
        " coalesce(json_extract(e.data, '$.member'), s.member), e.type, json_extract(e.data, '$.gtin') "
        "FROM events e LEFT JOIN sessions s ON s.id = json_extract(e.data, '$.session') "
        f"WHERE e.type IN ({', '.join('?' * len(ACTIVITY_TYPES))})", list(ACTIVITY_TYPES))
    db.execute("INSERT OR IGNORE INTO touches (ref, customer, ts, channel) "
               "SELECT 'visit:' || id, member, started_at, 'store' FROM visits")
    db.execute("INSERT OR IGNORE INTO touches (ref, customer, ts, channel, gtin) "
               "SELECT event_id, member, ts, 'kiosk', gtin FROM store_activity "
               f"WHERE member IS NOT NULL AND type IN ({', '.join('?' * len(QUALIFYING_TYPES))})",
               list(QUALIFYING_TYPES))


# --- in-store, inside the ingest transaction ---------------------------------------------

def record_store_activity(db: sqlite_utils.Database, event: Envelope, member: str | None, store: str) -> None:
    """One kiosk event as a fact (and a kiosk touch when a member did something)."""
    if event.type not in ACTIVITY_TYPES:
        return
    gtin = event.data.get("gtin") if isinstance(event.data.get("gtin"), str) else None
    out_of_stock = int(event.type == "scan.product" and gtin is not None and not in_stock_here(db, gtin, store))
    db.execute("INSERT OR IGNORE INTO store_activity (event_id, ts, device, session, member, type, gtin, out_of_stock) "
               "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
               [event.id, event.ts, event.device, event.data.get("session"), member, event.type, gtin, out_of_stock])
    if member is not None and event.type in QUALIFYING_TYPES:
        add_touch(db, event.id, member, event.ts, "kiosk", gtin)


def in_stock_here(db: sqlite_utils.Database, gtin: str, store: str) -> bool:
    """What the hub's catalog says now: a product with no stock row for this store is not here either."""
    row = db.execute("SELECT json_extract(data, '$.quantity') FROM catalog_rows WHERE kind = 'stock' AND key = ?",
                     [stock_key(gtin, store)]).fetchone()
    return row is not None and isinstance(row[0], (int, float)) and row[0] > 0


def add_touch(db: sqlite_utils.Database, ref: str, customer: str, ts: str, channel: str,
              gtin: str | None = None) -> None:
    db.execute("INSERT OR IGNORE INTO touches (ref, customer, ts, channel, gtin) VALUES (?, ?, ?, ?, ?)",
               [ref, customer, ts, channel, gtin])


def forget_member_facts(db: sqlite_utils.Database, member: str, *, erase: bool) -> None:
    """Unlink a member from the in-store facts (no consent); `erase` also from online sessions and sales,
    and their loyalty card number from every sale that carries it (a till sale still waiting for its
    member, or one arriving later: hub.pos_sales checks the remembered hash). Run before the profile goes."""
    db.execute("UPDATE store_activity SET member = NULL WHERE member = ?", [member])
    if erase:
        from hub.activity import member_hash
        db.execute("DELETE FROM touches WHERE customer = ?", [member])
        db.execute("UPDATE online_sessions SET customer = NULL WHERE customer = ?", [member])
        db.execute("UPDATE sales SET customer = NULL, loyalty = NULL WHERE customer = ?", [member])
        row = db.execute(f"SELECT {LOYALTY_NUMBER} FROM customers WHERE id = ?", [member]).fetchone()
        if row and row[0]:
            db.execute("UPDATE sales SET loyalty = NULL WHERE loyalty = ?", [row[0]])
            db.execute("INSERT OR IGNORE INTO erased_members VALUES (?, datetime('now'))",
                       [member_hash(LOYALTY_PREFIX + row[0])])
    else:
        db.execute("DELETE FROM touches WHERE customer = ? AND channel IN ('store', 'kiosk')", [member])


LOYALTY_PREFIX = "loyalty:"  # an erased loyalty number is remembered as member_hash(LOYALTY_PREFIX + number)


# --- from the online store (hub.sync) ----------------------------------------------------

def record_online_sessions(db: sqlite_utils.Database, items: Iterable[Mapping[str, Any]], *,
                           erased: set[str] = frozenset()) -> dict[str, int]:
    """Sessions from the connector's feed, stored once (a session seen again replaces its row)."""
    done = {"stored": 0, "malformed": 0}
    for item in items:
        try:
            if not isinstance(item, Mapping):
                raise TypeError("not an object")
            session_id, channel = _text(item["id"], 100), str(item["channel"])
            started_at = normal_ts(item["started_at"])
        except (KeyError, TypeError, ValueError):
            done["malformed"] += 1
            continue
        customer = _member(item.get("customer_id"), erased)
        channel = channel if channel in ONLINE_CHANNELS else "web"
        source = item.get("source") if isinstance(item.get("source"), str) else None
        db.execute("INSERT INTO online_sessions VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET "
                   "customer = excluded.customer, channel = excluded.channel, source = excluded.source, "
                   "started_at = excluded.started_at, added_to_cart = excluded.added_to_cart, "
                   "asked_for_help = excluded.asked_for_help",
                   [session_id, customer, channel, source and source[:100], started_at,
                    int(bool(item.get("added_to_cart"))), int(bool(item.get("asked_for_help")))])
        db.execute("DELETE FROM touches WHERE ref = ?", ["online:" + session_id])
        if customer:
            add_touch(db, "online:" + session_id, customer, started_at, channel)
        done["stored"] += 1
    return done


def record_orders(db: sqlite_utils.Database, items: Iterable[Mapping[str, Any]], *, currency: str, now: datetime,
                  erased: set[str] = frozenset()) -> dict[str, int]:
    """Online orders from the connector's feed. A till purchase the platform knows of (channel "store")
    is skipped: the POS import is the truth for store sales. A cancelled order stays, marked, and
    counts nowhere; an order in another currency is skipped (figures are in the store's currency)."""
    done = {"stored": 0, "skipped_store": 0, "skipped_currency": 0, "malformed": 0}
    for item in items:
        if not isinstance(item, Mapping):
            done["malformed"] += 1
            continue
        if item.get("channel") == "store":
            done["skipped_store"] += 1
            continue
        try:
            order_id, placed_at = _text(item["id"], 100), normal_ts(item["placed_at"])
            total = _money(item["total"])
            lines = [(to_gtin14(str(line["gtin"])), int(line["quantity"]), _money(line["amount"]))
                     for line in item.get("lines") or []]
        except (KeyError, TypeError, ValueError, OverflowError):
            done["malformed"] += 1
            continue
        if item.get("currency") != currency:
            done["skipped_currency"] += 1
            continue
        channel = item.get("channel") if item.get("channel") in ONLINE_CHANNELS else "web"
        sale_id = "online:" + order_id
        db.execute("DELETE FROM sale_lines WHERE sale_id = ?", [sale_id])
        db.execute("INSERT INTO sales (id, origin, customer, channel, ts, total, currency, status, received_at) "
                   "VALUES (?, 'online', ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET customer = excluded.customer, "
                   "channel = excluded.channel, ts = excluded.ts, total = excluded.total, status = excluded.status",
                   [sale_id, _member(item.get("customer_id"), erased), channel, placed_at, total, currency,
                    str(item.get("status") or "placed")[:40], format_ts(now)])
        db.conn.executemany("INSERT INTO sale_lines VALUES (?, ?, ?, ?)", [(sale_id, *line) for line in lines])
        done["stored"] += 1
    return done


def erased_members(db: sqlite_utils.Database, items: Iterable[Any]) -> set[str]:
    """Which members of these feed items the online store erased (their sessions and orders stay anonymous)."""
    from hub.activity import is_erased
    members = {item.get("customer_id") for item in items if isinstance(item, Mapping)}
    return {m for m in members if isinstance(m, str) and is_erased(db, m)}


def canonical_ts(text: str) -> bool:
    """Is this already the one form (format_ts: 2026-11-29T10:00:00.000Z)?"""
    return len(text) == 24 and text[19] == "." and text[23] == "Z"


def normal_ts(value: Any) -> str:
    """Any ISO 8601 instant with a zone → the one UTC text format everything here compares as."""
    if not isinstance(value, str) or len(value) > 40:
        raise ValueError("not a timestamp")
    moment = parse_ts(value)
    if moment.tzinfo is None:
        raise ValueError("a timestamp without a time zone")
    return format_ts(moment)


def _member(value: Any, erased: set[str]) -> str | None:
    """A member id as the online store spells it (ids are opaque: never re-cased), None for nobody."""
    if not isinstance(value, str) or not value or len(value) > 64:
        return None
    return None if value in erased else value


def _money(value: Any) -> float:
    number = float(value)
    if isinstance(value, bool) or not math.isfinite(number):
        raise ValueError("not an amount")
    return round(number, 2)


def _text(value: Any, limit: int) -> str:
    if not isinstance(value, str) or not value or len(value) > limit:
        raise ValueError("not an id")
    return value
