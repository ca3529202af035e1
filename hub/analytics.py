"""Store analytics for managers: what each channel brings, what the kiosks and the store visit add.

Every figure is a function of (database, Query) → Table, answered by SQL over the facts in
hub.analytics_data; the definitions are in docs/analytics.md and here, next to the SQL.

- A range is a span of the store's own calendar days (`timezone` setting), both ends included:
  from local midnight of `start` to local midnight after `end`, whatever daylight saving did in
  between (a spring day has 23 hours, an autumn day 25).
- Hours and weekdays are the store's local ones (peak hours, days): SQL adds the UTC offset that
  applied at each moment, from a list of the offset's changes in the range.
- Attribution: a sale's touches are the customer's touches in [sale − window, sale], both ends
  included, the window counted in whole days of 24 hours. First touch: the earliest (ties by
  reference); last touch: the latest. A sale with no touch (anonymous, or nothing in the window)
  is attributed to "none".
- Sales that count: every sale in the range except cancelled, refunded or returned orders.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import date, datetime, time as dtime, timedelta, timezone
from typing import Any, Callable, Mapping
from zoneinfo import ZoneInfo

import sqlite_utils

from hub.analytics_data import CHANNELS, ONLINE_CHANNELS, QUALIFYING_TYPES
from protocol.envelope import format_ts

NO_TOUCH = "none"
NOT_COUNTED = ("cancelled", "refunded", "returned")
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
HOURS = tuple(f"{h:02d}" for h in range(24))
MAX_RANGE_DAYS = 400
MAX_WINDOW_DAYS = 365
DEFAULT_RANGE_DAYS = 30
FIRST_YEAR, LAST_YEAR = 2000, 2100  # far enough; the calendar's ends would overflow the UTC arithmetic


class QueryError(ValueError):
    """A range, channel or window a person asked for that cannot be answered; the message says why."""


@dataclass(frozen=True)
class Query:
    start: date                 # first local day, included
    end: date                   # last local day, included
    channel: str | None = None  # None: every channel
    window_days: int = 30       # attribution and kiosk-assist window

    def as_args(self) -> dict[str, str]:
        args = {"from": self.start.isoformat(), "to": self.end.isoformat(), "window": str(self.window_days)}
        if self.channel:
            args["channel"] = self.channel
        return args

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1


def parse_query(args: Mapping[str, str], *, today: date, window_days: int = 30) -> Query:
    """A Query from a request's arguments (`from`, `to`, `channel`, `window`); the last 30 days by default."""
    end = _day(args.get("to"), "to") if args.get("to") else today
    start = _day(args.get("from"), "from") if args.get("from") else end - timedelta(days=DEFAULT_RANGE_DAYS - 1)
    if start > end:
        raise QueryError(f"'from' ({start}) is after 'to' ({end}): pick a start on or before the end.")
    if (end - start).days + 1 > MAX_RANGE_DAYS:
        raise QueryError(f"the range is {(end - start).days + 1} days; ask for at most {MAX_RANGE_DAYS}.")
    channel = (args.get("channel") or "").strip().lower() or None
    if channel is not None and channel not in CHANNELS:
        raise QueryError(f"unknown channel {channel[:30]!r}; choose one of {', '.join(CHANNELS)}, or all.")
    window = window_days
    if args.get("window"):
        text = str(args["window"]).strip()
        if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_WINDOW_DAYS:
            raise QueryError(f"the attribution window must be a whole number of days from 1 to {MAX_WINDOW_DAYS}.")
        window = int(text)
    return Query(start, end, channel, window)


def _day(text: str | None, name: str) -> date:
    try:
        day = date.fromisoformat(str(text).strip()[:10])
    except ValueError:
        raise QueryError(f"'{name}' must be a date like 2026-11-29, not {str(text)[:30]!r}.") from None
    if not FIRST_YEAR <= day.year <= LAST_YEAR:
        raise QueryError(f"'{name}' must be a date between {FIRST_YEAR} and {LAST_YEAR}, not {day}.")
    return day


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    kind: str = "int"  # text, int, money, pct (0..1), float


@dataclass
class Table:
    name: str
    title: str
    note: str
    columns: list[Column]
    rows: list[dict[str, Any]] = field(default_factory=list)


# --- the range in UTC, and local time inside SQL -----------------------------------------

@dataclass(frozen=True)
class Span:
    """A query's range as UTC text bounds [start, end), and the offset changes inside it."""
    start: str
    end: str
    offsets: tuple[tuple[str, int], ...]  # (from this UTC moment on, offset in minutes), first one from start

    def local(self, column: str, fmt: str) -> str:
        """SQL giving strftime(fmt) of `column` (UTC text) in the store's local time."""
        (_, first), rest = self.offsets[0], self.offsets[1:]
        if not rest:
            return f"strftime('{fmt}', {column}, '{first:+d} minutes')"
        cases = " ".join(f"WHEN {column} < '{at}' THEN '{before:+d} minutes'"
                         for (at, _), (_, before) in zip(rest, self.offsets))
        return f"strftime('{fmt}', {column}, CASE {cases} ELSE '{rest[-1][1]:+d} minutes' END)"


def span_of(query: Query, tz: ZoneInfo) -> Span:
    start = datetime.combine(query.start, dtime(0), tz).astimezone(timezone.utc)
    end = datetime.combine(query.end + timedelta(days=1), dtime(0), tz).astimezone(timezone.utc)
    return Span(format_ts(start), format_ts(end), tuple(offset_changes(start, end, tz)))


def offset_changes(start: datetime, end: datetime, tz: ZoneInfo) -> list[tuple[str, int]]:
    """The UTC moments in [start, end) where the zone's offset changes, each with its new offset."""
    def offset(moment: datetime) -> int:
        return int(moment.astimezone(tz).utcoffset().total_seconds() // 60)

    changes = [(format_ts(start), offset(start))]
    step = timedelta(hours=1)
    moment = start
    while moment < end:
        nxt = min(moment + step, end)
        if offset(nxt) != changes[-1][1]:
            low, high = moment, nxt  # offset(low) is the old one, offset(high) the new: find the second
            while high - low > timedelta(seconds=1):
                middle = low + (high - low) / 2
                low, high = (middle, high) if offset(middle) == changes[-1][1] else (low, middle)
            changes.append((format_ts(high), offset(high)))
        moment = nxt
    return changes


# --- the figures -----------------------------------------------------------------------------

def _in(values) -> str:
    return ", ".join(f"'{v}'" for v in values)


COUNTED = f"status NOT IN ({_in(NOT_COUNTED)})"
QUALIFYING = f"type IN ({_in(QUALIFYING_TYPES)})"


def _window(query: Query, column: str) -> str:
    return f"strftime('%Y-%m-%dT%H:%M:%fZ', {column}, '-{int(query.window_days)} days')"


def _channels_wanted(query: Query) -> tuple[str, ...]:
    return (query.channel,) if query.channel else CHANNELS


def channels(db: sqlite_utils.Database, query: Query, span: Span) -> Table:
    rows = {c: {"channel": c, "sessions": 0, "contacts": 0, "qualified": 0, "sales": 0, "revenue": 0.0}
            for c in CHANNELS}
    bounds = [span.start, span.end]
    for channel, sessions, contacts, qualified in db.execute(
            "SELECT channel, count(*), count(DISTINCT customer), sum(added_to_cart OR asked_for_help) "
            "FROM online_sessions WHERE started_at >= ? AND started_at < ? GROUP BY channel", bounds):
        rows[channel].update(sessions=sessions, contacts=contacts, qualified=qualified or 0)
    sessions, contacts, qualified = db.execute(
        "SELECT count(*), count(DISTINCT member), coalesce(sum(EXISTS (SELECT 1 FROM store_activity a "
        f"WHERE a.session = s.id AND a.{QUALIFYING})), 0) FROM sessions s "
        "WHERE s.started_at >= ? AND s.started_at < ?", bounds).fetchone()
    rows["kiosk"].update(sessions=sessions, contacts=contacts, qualified=qualified)
    sessions, contacts, qualified = db.execute(
        "SELECT count(*), count(DISTINCT member), coalesce(sum(EXISTS (SELECT 1 FROM sessions s "
        f"JOIN store_activity a ON a.session = s.id AND a.{QUALIFYING} WHERE s.visit_id = v.id)), 0) "
        "FROM visits v WHERE v.started_at >= ? AND v.started_at < ?", bounds).fetchone()
    rows["store"].update(sessions=sessions, contacts=contacts, qualified=qualified)
    for channel, count, revenue in db.execute(
            f"SELECT channel, count(*), sum(total) FROM sales WHERE ts >= ? AND ts < ? AND {COUNTED} "
            "GROUP BY channel", bounds):
        if channel in rows:
            rows[channel].update(sales=count, revenue=round(revenue or 0.0, 2))
    for row in rows.values():
        row["qualified_rate"] = row["qualified"] / row["sessions"] if row["sessions"] else 0.0
    return Table("channels", "Channels", "Sessions (store: visits; kiosk: kiosk sessions), identified customers, "
                 "qualified sessions (added to cart, asked for help or scanned a product) and sales, by channel.",
                 [Column("channel", "Channel", "text"), Column("sessions", "Sessions"), Column("contacts", "Contacts"),
                  Column("qualified", "Qualified"), Column("qualified_rate", "Qualified %", "pct"),
                  Column("sales", "Sales"), Column("revenue", "Revenue", "money")],
                 [rows[c] for c in _channels_wanted(query)])


def summary(db: sqlite_utils.Database, query: Query, span: Span) -> Table:
    """The headline: the channels table's totals, with contacts counted once across channels."""
    rows = channels(db, query, span).rows
    wanted, parts = set(_channels_wanted(query)), []
    online = [c for c in ONLINE_CHANNELS if c in wanted]
    if online:
        parts.append("SELECT customer FROM online_sessions WHERE started_at >= :start AND started_at < :end "
                     f"AND channel IN ({_in(online)})")
    if "kiosk" in wanted:
        parts.append("SELECT member AS customer FROM sessions WHERE started_at >= :start AND started_at < :end")
    if "store" in wanted:
        parts.append("SELECT member AS customer FROM visits WHERE started_at >= :start AND started_at < :end")
    contacts = db.execute(f"SELECT count(DISTINCT customer) FROM ({' UNION ALL '.join(parts)})",
                          {"start": span.start, "end": span.end}).fetchone()[0]
    counted = [row for row in rows if row["channel"] in _counted_channels(query)]
    total = {key: sum(row[key] for row in counted) for key in ("sessions", "qualified")}
    total["sales"] = sum(row["sales"] for row in rows)
    return Table("summary", "In short", "Every channel together (or the one chosen): sessions without the store "
                 "visits, which are kiosk sessions already counted; contacts once, whatever their channels.",
                 [Column("sessions", "Sessions"), Column("contacts", "Contacts"), Column("qualified", "Qualified"),
                  Column("sales", "Sales"), Column("revenue", "Revenue", "money")],
                 [{**total, "contacts": contacts, "revenue": round(sum(row["revenue"] for row in rows), 2)}])


def sources(db: sqlite_utils.Database, query: Query, span: Span) -> Table:
    """Online sessions by channel and campaign source (the UTM source the online store recorded)."""
    wanted = [c for c in _channels_wanted(query) if c in ONLINE_CHANNELS]
    rows = db.execute(
        "SELECT channel, coalesce(source, ''), count(*), count(DISTINCT customer), sum(added_to_cart OR asked_for_help) "
        f"FROM online_sessions WHERE started_at >= ? AND started_at < ? AND channel IN ({_in(wanted) or 'NULL'}) "
        "GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2", [span.start, span.end]).fetchall() if wanted else []
    return Table("sources", "Online sources", "Online sessions by channel and campaign source (UTM source, where the "
                 "online store knows it; empty: none recorded).",
                 [Column("channel", "Channel", "text"), Column("source", "Source", "text"),
                  Column("sessions", "Sessions"), Column("contacts", "Contacts"), Column("qualified", "Qualified")],
                 [{"channel": c, "source": src, "sessions": n, "contacts": people, "qualified": q}
                  for c, src, n, people, q in rows])


def attributed_sales(db: sqlite_utils.Database, query: Query, span: Span) -> list[tuple[str, float, str, str]]:
    """(sale id, total, first-touch channel, last-touch channel) of every counted sale in the range."""
    touches = ("SELECT channel FROM touches t WHERE t.customer = s.customer AND t.ts >= {window} AND t.ts <= s.ts "
               "ORDER BY t.ts {order}, t.ref {order} LIMIT 1")
    window = _window(query, "s.ts")
    rows = db.execute(
        f"SELECT s.id, s.total, ({touches.format(window=window, order='ASC')}), "
        f"({touches.format(window=window, order='DESC')}) FROM sales s "
        f"WHERE s.ts >= ? AND s.ts < ? AND s.{COUNTED}", [span.start, span.end]).fetchall()
    return [(sale, total, first or NO_TOUCH, last or NO_TOUCH) for sale, total, first, last in rows]


def attribution(db: sqlite_utils.Database, query: Query, span: Span) -> Table:
    rows = {c: {"channel": c, "first_sales": 0, "first_revenue": 0.0, "last_sales": 0, "last_revenue": 0.0}
            for c in CHANNELS + (NO_TOUCH,)}
    for _, total, first, last in attributed_sales(db, query, span):
        rows[first]["first_sales"] += 1
        rows[first]["first_revenue"] += total
        rows[last]["last_sales"] += 1
        rows[last]["last_revenue"] += total
    for row in rows.values():
        row["first_revenue"], row["last_revenue"] = round(row["first_revenue"], 2), round(row["last_revenue"], 2)
    wanted = (query.channel,) if query.channel else CHANNELS + (NO_TOUCH,)
    return Table("attribution", "Attribution",
                 f"Sales credited to the channel of the customer's first and of their last touch in the "
                 f"{query.window_days} days before buying; 'none': no touch in that window (or an anonymous sale).",
                 [Column("channel", "Channel", "text"), Column("first_sales", "First-touch sales"),
                  Column("first_revenue", "First-touch revenue", "money"), Column("last_sales", "Last-touch sales"),
                  Column("last_revenue", "Last-touch revenue", "money")], [rows[c] for c in wanted])


def assisted(db: sqlite_utils.Database, query: Query, span: Span) -> Table:
    window = _window(query, "s.ts")
    rows = {}
    for channel, all_sales, count, revenue in db.execute(
            "SELECT channel, count(*), coalesce(sum(helped), 0), coalesce(sum(CASE WHEN helped THEN total END), 0) "
            "FROM (SELECT s.channel, s.total, EXISTS (SELECT 1 FROM sale_lines l JOIN touches t "
            "ON t.customer = s.customer AND t.gtin = l.gtin AND t.channel = 'kiosk' "
            f"AND t.ts >= {window} AND t.ts <= s.ts WHERE l.sale_id = s.id AND l.quantity > 0) AS helped "
            f"FROM sales s WHERE s.ts >= ? AND s.ts < ? AND s.{COUNTED}) GROUP BY channel",
            [span.start, span.end]):
        rows[channel] = {"channel": channel, "assisted_sales": count, "assisted_revenue": round(revenue, 2),
                         "all_sales": all_sales, "share": count / all_sales if all_sales else 0.0}
    wanted = [c for c in _channels_wanted(query) if c in rows]
    return Table("assisted", "Kiosk-assisted sales",
                 f"Sales with a product the same customer scanned at a kiosk in the {query.window_days} days before, "
                 "by the channel the sale was made in.",
                 [Column("channel", "Sold in", "text"), Column("assisted_sales", "Assisted sales"),
                  Column("assisted_revenue", "Assisted revenue", "money"), Column("all_sales", "All sales"),
                  Column("share", "Share", "pct")], [rows[c] for c in wanted])


def lost_demand(db: sqlite_utils.Database, query: Query, span: Span) -> Table:
    rows = db.execute(
        "SELECT a.gtin, coalesce(json_extract(p.data, '$.name'), ''), count(*), count(DISTINCT a.session) "
        "FROM store_activity a LEFT JOIN catalog_rows p ON p.kind = 'product' AND p.key = a.gtin "
        "WHERE a.ts >= ? AND a.ts < ? AND a.type = 'scan.product' AND a.out_of_stock = 1 "
        "GROUP BY a.gtin ORDER BY count(*) DESC, a.gtin", [span.start, span.end]).fetchall()
    return Table("lost_demand", "Lost demand",
                 "Scans at a kiosk of products out of stock here (or not stocked here) when the scan arrived, by product.",
                 [Column("gtin", "GTIN", "text"), Column("product", "Product", "text"), Column("scans", "Scans"),
                  Column("sessions", "Shoppers")],
                 [{"gtin": g, "product": name, "scans": n, "sessions": s} for g, name, n, s in rows])


def _counted_channels(query: Query) -> tuple[str, ...]:
    """The channels whose sessions add up to a total. A store visit is a member's kiosk sessions grouped,
    not a session of its own: every channel together counts kiosk sessions and leaves visits out (a
    check-in would count twice); the store channel alone counts its visits."""
    return (query.channel,) if query.channel else tuple(c for c in CHANNELS if c != "store")


def _sessions_sql(query: Query) -> tuple[str, list[str]]:
    """Every session's start in the range of the counted channels (online sessions, kiosk sessions, or visits)."""
    parts, wanted = [], set(_counted_channels(query))
    online = [c for c in ONLINE_CHANNELS if c in wanted]
    if online:
        parts.append("SELECT started_at AS ts FROM online_sessions WHERE started_at >= :start AND started_at < :end"
                     + ("" if len(online) == len(ONLINE_CHANNELS) else f" AND channel IN ({_in(online)})"))
    if "kiosk" in wanted:
        parts.append("SELECT started_at AS ts FROM sessions WHERE started_at >= :start AND started_at < :end")
    if "store" in wanted:
        parts.append("SELECT started_at AS ts FROM visits WHERE started_at >= :start AND started_at < :end")
    return " UNION ALL ".join(parts), parts


def peak_hours(db: sqlite_utils.Database, query: Query, span: Span) -> Table:
    grid = [[0] * 24 for _ in WEEKDAYS]
    sql, _ = _sessions_sql(query)
    for weekday, hour, count in db.execute(
            f"SELECT {span.local('ts', '%w')}, {span.local('ts', '%H')}, count(*) FROM ({sql}) GROUP BY 1, 2",
            {"start": span.start, "end": span.end}):
        grid[(int(weekday) + 6) % 7][int(hour)] += count
    return Table("peak_hours", "Peak hours",
                 "Sessions started, by the store's local weekday and hour"
                 + (f" ({query.channel} only)." if query.channel else " (online and kiosk sessions)."),
                 [Column("weekday", "Day", "text"), *(Column(h, h) for h in HOURS)],
                 [{"weekday": day, **dict(zip(HOURS, grid[i]))} for i, day in enumerate(WEEKDAYS)])


def repeat(db: sqlite_utils.Database, query: Query, span: Span) -> Table:
    visitors, repeaters, visits = db.execute(
        "SELECT count(*), coalesce(sum(n >= 2), 0), coalesce(sum(n), 0) FROM (SELECT count(*) AS n FROM visits "
        "WHERE started_at >= ? AND started_at < ? GROUP BY member)", [span.start, span.end]).fetchone()
    channel = f" AND channel = '{query.channel}'" if query.channel else ""
    buyers, purchases = db.execute(
        f"SELECT count(DISTINCT customer), count(customer) FROM sales WHERE ts >= ? AND ts < ? AND {COUNTED}{channel}",
        [span.start, span.end]).fetchone()
    return Table("repeat", "Visits and purchases",
                 "Members who visited the store in the range, how many came back, and how often customers bought"
                 + (f" ({query.channel} sales)." if query.channel else "."),
                 [Column("visitors", "Visiting members"), Column("repeat_visitors", "Came back"),
                  Column("repeat_visit_rate", "Repeat-visit rate", "pct"), Column("visits", "Visits"),
                  Column("buyers", "Buying customers"), Column("purchases", "Purchases"),
                  Column("purchase_frequency", "Purchases per buyer", "float")],
                 [{"visitors": visitors, "repeat_visitors": repeaters,
                   "repeat_visit_rate": repeaters / visitors if visitors else 0.0, "visits": visits,
                   "buyers": buyers, "purchases": purchases,
                   "purchase_frequency": round(purchases / buyers, 3) if buyers else 0.0}])


KIOSK_COUNTS = (("sessions", "session.started", "Sessions"), ("check_ins", "scan.member", "Check-ins"),
                ("scans", "scan.product", "Scans"), ("assists", "assist.requested", "Help asked"),
                ("carts_sent", "cart.sent", "Sent to cart"), ("offers_shown", "offer.shown", "Offers shown"))


def kiosks(db: sqlite_utils.Database, query: Query, span: Span) -> Table:
    counts = ", ".join(f"sum(type = '{event_type}')" for _, event_type, _ in KIOSK_COUNTS)
    rows = []
    for device, *values, out_of_stock in db.execute(
            f"SELECT device, {counts}, sum(out_of_stock) FROM store_activity WHERE ts >= ? AND ts < ? "
            "GROUP BY device ORDER BY device", [span.start, span.end]):
        row = {"device": device, **{key: value for (key, _, _), value in zip(KIOSK_COUNTS, values)}}
        row["out_of_stock_scans"] = out_of_stock
        rows.append(row)
    return Table("kiosks", "Kiosks", "What each kiosk was used for in the range.",
                 [Column("device", "Kiosk", "text"), *(Column(key, label) for key, _, label in KIOSK_COUNTS[:3]),
                  Column("out_of_stock_scans", "Out of stock"), *(Column(key, label) for key, _, label in KIOSK_COUNTS[3:])],
                 rows)


def daily(db: sqlite_utils.Database, query: Query, span: Span) -> Table:
    days = {query.start + timedelta(days=i): {"day": (query.start + timedelta(days=i)).isoformat(), "sessions": 0,
                                              "sales": 0, "revenue": 0.0} for i in range(query.days)}
    sql, _ = _sessions_sql(query)
    for day, count in db.execute(f"SELECT {span.local('ts', '%Y-%m-%d')}, count(*) FROM ({sql}) GROUP BY 1",
                                 {"start": span.start, "end": span.end}):
        days[date.fromisoformat(day)]["sessions"] = count
    channel = f" AND channel = '{query.channel}'" if query.channel else ""
    for day, count, revenue in db.execute(
            f"SELECT {span.local('ts', '%Y-%m-%d')}, count(*), sum(total) FROM sales "
            f"WHERE ts >= ? AND ts < ? AND {COUNTED}{channel} GROUP BY 1", [span.start, span.end]):
        days[date.fromisoformat(day)].update(sales=count, revenue=round(revenue or 0.0, 2))
    return Table("daily", "By day", "Sessions started and sales made per local day"
                 + (f" ({query.channel} only)." if query.channel else "."),
                 [Column("day", "Day", "text"), Column("sessions", "Sessions"), Column("sales", "Sales"),
                  Column("revenue", "Revenue", "money")], list(days.values()))


FIGURES: dict[str, Callable[[sqlite_utils.Database, Query, Span], Table]] = {
    "summary": summary, "channels": channels, "sources": sources, "attribution": attribution, "assisted": assisted, "lost_demand": lost_demand,
    "peak_hours": peak_hours, "repeat": repeat, "kiosks": kiosks, "daily": daily,
}
TABLES = tuple(FIGURES)


def figure(db: sqlite_utils.Database, query: Query, name: str, *, tz: ZoneInfo) -> Table:
    """One figure (a CSV export needs no other)."""
    return FIGURES[name](db, query, span_of(query, tz))


def report(db: sqlite_utils.Database, query: Query, *, tz: ZoneInfo,
           timings: dict[str, float] | None = None) -> dict[str, Table]:
    """Every figure for the query, in TABLES order; `timings` (if given) gets seconds per figure."""
    span = span_of(query, tz)
    tables = {}
    for name, figure in FIGURES.items():
        began = time.perf_counter()
        tables[name] = figure(db, query, span)
        if timings is not None:
            timings[name] = time.perf_counter() - began
    return tables
