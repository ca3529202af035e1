"""Store analytics: every figure the hub answers equals a brute-force count over the raw rows.

A seeded history (kiosk events, online sessions and orders, till sales) goes into a real hub
database through the live code paths; tests/analytics_reference.py recomputes each figure from
the raw rows with plain Python and zoneinfo. Then hand-made edge cases: a sale with no touch,
touches on the window's edges, ranges and hours across daylight-saving changes.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from demo.history import History, generate, gtin14, load
from hub.analytics import (TABLES, Query, QueryError, offset_changes, parse_query, report, span_of)
from hub.store import HubStore, open_hub_db
from protocol.envelope import Envelope, format_ts, uuid7
from tests.analytics_reference import Facts, answer

AMSTERDAM = ZoneInfo("Europe/Amsterdam")
NEW_YORK = ZoneInfo("America/New_York")
END = datetime(2026, 11, 2, tzinfo=timezone.utc)  # 60 days before include the 25 October DST change


def facts_of(history: History) -> Facts:
    return Facts(events=history.events, online_sessions=history.online_sessions, orders=history.orders,
                 pos_sales=history.pos_sales, products=history.products, no_consent=history.no_consent)


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    history = generate(customers=300, days=60, end=END, seed=11, tz=AMSTERDAM, sessions_per_day=30)
    hub_store = HubStore(open_hub_db(tmp_path_factory.mktemp("analytics") / "hub.db"))
    load(hub_store, history)
    return hub_store, facts_of(history)


def comparable(table):
    """Rows as plain dicts with money rounded, for comparing with the reference."""
    out = []
    for row in table.rows:
        row = {k: (round(v, 2) if isinstance(v, float) else v) for k, v in row.items() if k != "product"}
        out.append(row)
    return out


def rounded(rows):
    return [{k: (round(v, 2) if isinstance(v, float) else v) for k, v in row.items()} for row in rows]


QUERIES = [
    Query(date(2026, 9, 3), date(2026, 11, 1)),                     # everything
    Query(date(2026, 10, 3), date(2026, 11, 1)),                    # 30 days across the DST change
    Query(date(2026, 10, 25), date(2026, 10, 25)),                  # the 25-hour day alone
    Query(date(2026, 10, 10), date(2026, 10, 16), window_days=7),
    Query(date(2026, 10, 1), date(2026, 10, 31), window_days=1),
    Query(date(2026, 8, 1), date(2026, 9, 2)),                      # before any data
    *[Query(date(2026, 10, 3), date(2026, 11, 1), channel=c) for c in
      ("store", "kiosk", "web", "app", "social", "email", "search", "marketplace")],
]


@pytest.mark.parametrize("query", QUERIES, ids=lambda q: f"{q.start}..{q.end}-{q.channel or 'all'}-w{q.window_days}")
def test_every_figure_equals_brute_force(seeded, query):
    hub_store, facts = seeded
    got = report(hub_store.db, query, tz=AMSTERDAM)
    expected = answer(facts, start=query.start, end=query.end, tz=AMSTERDAM, channel=query.channel,
                      window_days=query.window_days)
    assert list(got) == list(TABLES)
    for name in TABLES:
        assert comparable(got[name]) == rounded(expected[name]), name


def test_the_seeded_history_is_not_trivial(seeded):
    """The comparison above means something only if every figure has data to get wrong."""
    hub_store, facts = seeded
    got = report(hub_store.db, QUERIES[1], tz=AMSTERDAM)
    by_channel = {r["channel"]: r for r in got["channels"].rows}
    assert all(by_channel[c]["sessions"] > 0 for c in ("store", "kiosk", "web", "app", "search"))
    assert by_channel["store"]["sales"] > 20 and by_channel["web"]["sales"] > 3
    attribution = {r["channel"]: r for r in got["attribution"].rows}
    assert attribution["none"]["first_sales"] > 0 and attribution["kiosk"]["last_sales"] > 0
    assert attribution["store"]["first_sales"] > 0
    assert sum(r["assisted_sales"] for r in got["assisted"].rows) > 5
    assert len(got["lost_demand"].rows) > 3
    assert {(r["channel"], r["source"]) for r in got["sources"].rows} >= {("search", "google"), ("web", "")}
    assert got["repeat"].rows[0]["repeat_visitors"] > 0
    assert len(got["kiosks"].rows) == 3
    assert sum(sum(v for k, v in r.items() if k != "weekday") for r in got["peak_hours"].rows) > 500
    # a window of one day credits fewer sales to a touch than thirty days do
    narrow = report(hub_store.db, Query(QUERIES[1].start, QUERIES[1].end, window_days=1), tz=AMSTERDAM)
    none = lambda rep: next(r for r in rep["attribution"].rows if r["channel"] == "none")["first_sales"]  # noqa: E731
    assert none(narrow) > none(got)


def test_the_same_history_in_another_time_zone(seeded):
    """The range and the hours follow the store's zone: New York's days cut the same rows elsewhere."""
    hub_store, facts = seeded
    query = Query(date(2026, 10, 20), date(2026, 11, 1))
    got = report(hub_store.db, query, tz=NEW_YORK)
    expected = answer(facts, start=query.start, end=query.end, tz=NEW_YORK)
    for name in TABLES:
        assert comparable(got[name]) == rounded(expected[name]), name


# --- hand-made edge cases ------------------------------------------------------------------

class Tiny:
    """A hub database with a handful of facts written one by one."""

    def __init__(self, tmp_path, tz=AMSTERDAM):
        self.hub_store = HubStore(open_hub_db(tmp_path / "hub.db"))
        self.history = History(products={gtin14("8710000000001"): {"name": "Boot", "price": 100.0, "quantity": 0},
                                          gtin14("8710000000002"): {"name": "Hat", "price": 20.0, "quantity": 5}})
        self.everything = History(products=self.history.products)
        self.tz = tz
        self.seq = 0

    @property
    def boot(self) -> str:
        return gtin14("8710000000001")

    def event(self, when: str, kind: str, **data):
        self.seq += 1
        moment = datetime.fromisoformat(when.replace("Z", "+00:00"))
        self.history.events.append(Envelope(1, uuid7(moment), self.seq, format_ts(moment), "s001", "k01", kind, data))

    def visit(self, when: str, member: str, session: str, gtin: str | None = None):
        self.event(when, "session.started", session=session)
        self.event(when, "scan.member", session=session, member=member, jti=session, typ="app")
        if gtin:  # a minute after checking in
            later = format_ts(datetime.fromisoformat(when.replace("Z", "+00:00")) + timedelta(minutes=1))
            self.event(later, "scan.product", session=session, gtin=gtin, source="ean13")

    def online(self, when: str, member: str, channel: str, ident: str):
        self.history.online_sessions.append({"id": ident, "customer_id": member, "channel": channel, "source": None,
                                             "started_at": when, "added_to_cart": False, "asked_for_help": False})

    def sale(self, when: str, member: str | None, ident: str, gtin: str | None = None, amount: float = 50.0):
        self.history.pos_sales.append({"id": ident, "ts": when, "member_id": member, "currency": "EUR",
                                       "lines": [{"gtin": gtin or gtin14("8710000000002"),
                                                  "quantity": -1 if amount < 0 else 1, "amount": amount}]})

    def report(self, start: date, end: date, window: int = 30):
        if self.history.events or self.history.online_sessions or self.history.pos_sales:
            self.history.events.sort(key=lambda e: e.ts)
            load(self.hub_store, self.history)
            for name in ("events", "online_sessions", "orders", "pos_sales"):
                getattr(self.everything, name).extend(getattr(self.history, name))
            self.everything.events.sort(key=lambda e: e.ts)
            self.facts = facts_of(self.everything)
            self.history = History(products=self.history.products)
        got = report(self.hub_store.db, Query(start, end, window_days=window), tz=self.tz)
        expected = answer(self.facts, start=start, end=end, tz=self.tz, window_days=window)
        for name in TABLES:
            assert comparable(got[name]) == rounded(expected[name]), name
        return got


def attributed(got) -> dict[str, tuple[int, int]]:
    return {r["channel"]: (r["first_sales"], r["last_sales"]) for r in got["attribution"].rows
            if r["first_sales"] or r["last_sales"]}


def test_a_sale_with_no_touch_is_credited_to_none(tmp_path):
    tiny = Tiny(tmp_path)
    tiny.sale("2026-06-10T12:00:00.000Z", None, "anon")          # nobody known
    tiny.sale("2026-06-10T13:00:00.000Z", "M00001", "quiet")     # a member with no touch at all
    got = tiny.report(date(2026, 6, 10), date(2026, 6, 10))
    assert attributed(got) == {"none": (2, 2)}


def test_touches_on_the_window_edges(tmp_path):
    """[sale − 30 days, sale], both ends in: a touch at exactly the start counts, a millisecond before
    does not; a touch at the sale's own moment counts, one a millisecond after does not."""
    tiny = Tiny(tmp_path)
    tiny.online("2026-05-11T12:00:00.000Z", "M00001", "email", "edge-in")     # exactly 30 days before
    tiny.online("2026-05-11T11:59:59.999Z", "M00002", "social", "edge-out")   # 1 ms too early
    tiny.online("2026-05-11T12:00:00.000Z", "M00002", "app", "edge-in-2")      # and the one that counts
    tiny.online("2026-06-10T12:00:00.000Z", "M00003", "search", "same-moment")
    tiny.online("2026-06-10T12:00:00.001Z", "M00003", "web", "just-after")
    tiny.sale("2026-06-10T12:00:00.000Z", "M00001", "a")
    tiny.sale("2026-06-10T12:00:00.000Z", "M00002", "b")
    tiny.sale("2026-06-10T12:00:00.000Z", "M00003", "c")
    got = tiny.report(date(2026, 6, 10), date(2026, 6, 10))
    assert attributed(got) == {"email": (1, 1), "app": (1, 1), "search": (1, 1)}
    got = tiny.report(date(2026, 6, 10), date(2026, 6, 10), window=29)
    assert attributed(got) == {"none": (2, 2), "search": (1, 1)}


def test_touches_at_the_same_moment_are_ordered_by_reference(tmp_path):
    """Two sessions in the same millisecond: first touch is the smaller reference, last the larger."""
    tiny = Tiny(tmp_path)
    tiny.online("2026-06-01T10:00:00.000Z", "M00001", "search", "s-a")
    tiny.online("2026-06-01T10:00:00.000Z", "M00001", "email", "s-b")
    tiny.sale("2026-06-02T10:00:00.000Z", "M00001", "t1")
    got = tiny.report(date(2026, 6, 2), date(2026, 6, 2))
    assert attributed(got) == {"search": (1, 0), "email": (0, 1)}


def test_a_scan_in_the_same_millisecond_as_the_sale_assists_it(tmp_path):
    tiny = Tiny(tmp_path)
    tiny.event("2026-06-09T10:00:00.000Z", "session.started", session="v1")
    tiny.event("2026-06-09T10:00:00.000Z", "scan.member", session="v1", member="M00001", jti="v1", typ="app")
    tiny.event("2026-06-09T10:05:00.000Z", "scan.product", session="v1", gtin=tiny.boot, source="ean13")
    tiny.sale("2026-06-09T10:05:00.000Z", "M00001", "t1", gtin=tiny.boot)
    got = tiny.report(date(2026, 6, 9), date(2026, 6, 9))
    assert [(r["channel"], r["assisted_sales"]) for r in got["assisted"].rows] == [("store", 1)]


def test_refunds_returns_and_cancellations_count_nowhere(tmp_path):
    tiny = Tiny(tmp_path)
    tiny.sale("2026-06-09T10:00:00.000Z", "M00001", "kept", amount=80.0)
    tiny.sale("2026-06-09T11:00:00.000Z", "M00001", "refund", amount=-80.0)   # a till refund: total < 0
    for status in ("returned", "cancelled", "refunded", "delivered"):
        tiny.history.orders.append({"id": status, "customer_id": "M00002", "channel": "web", "status": status,
                                    "placed_at": "2026-06-09T12:00:00.000Z", "currency": "EUR", "total": 10.0,
                                    "lines": [{"gtin": tiny.boot, "quantity": 1, "amount": 10.0}]})
    got = tiny.report(date(2026, 6, 9), date(2026, 6, 9))
    assert (got["summary"].rows[0]["sales"], got["summary"].rows[0]["revenue"]) == (2, 90.0)


def test_first_and_last_touch_across_store_kiosk_and_online(tmp_path):
    tiny = Tiny(tmp_path)
    tiny.online("2026-06-01T10:00:00.000Z", "M00001", "search", "s1")          # first
    tiny.visit("2026-06-05T10:00:00.000Z", "M00001", "v1")                     # store visit
    tiny.visit("2026-06-09T10:00:00.000Z", "M00001", "v2", gtin=tiny.boot)     # visit, then a kiosk scan (last)
    tiny.sale("2026-06-09T10:20:00.000Z", "M00001", "t1", gtin=tiny.boot, amount=100.0)
    got = tiny.report(date(2026, 6, 9), date(2026, 6, 9))
    assert attributed(got) == {"search": (1, 0), "kiosk": (0, 1)}
    assisted = {r["channel"]: r for r in got["assisted"].rows}
    assert assisted["store"]["assisted_sales"] == 1 and assisted["store"]["assisted_revenue"] == 100.0
    lost = got["lost_demand"].rows
    assert [(r["gtin"], r["product"], r["scans"]) for r in lost] == [(tiny.boot, "Boot", 1)]
    # a sale of something else, with a kiosk scan in the window, is not kiosk-assisted
    tiny.sale("2026-06-09T11:00:00.000Z", "M00001", "t2", amount=20.0)
    got = tiny.report(date(2026, 6, 9), date(2026, 6, 9))
    assisted = {r["channel"]: r for r in got["assisted"].rows}
    assert (assisted["store"]["assisted_sales"], assisted["store"]["all_sales"]) == (1, 2)


def test_the_range_is_local_days_across_the_spring_change(tmp_path):
    """29 March 2026 in Amsterdam has 23 hours: 00:00 CET is 23:00Z the day before, 24:00 CEST is 22:00Z."""
    tiny = Tiny(tmp_path)
    tiny.visit("2026-03-28T22:59:59.999Z", "M00001", "before")   # 23:59:59 local on the 28th
    tiny.visit("2026-03-28T23:00:00.000Z", "M00002", "first")    # 00:00 local on the 29th
    tiny.visit("2026-03-29T00:59:59.999Z", "M00006", "winter")   # 01:59:59.999 CET, the last moment of winter time
    tiny.visit("2026-03-29T01:00:00.000Z", "M00007", "summer")   # 03:00 CEST (02:xx does not exist)
    tiny.visit("2026-03-29T01:30:00.000Z", "M00003", "jump")     # 03:30 CEST
    tiny.visit("2026-03-29T21:59:59.999Z", "M00004", "last")     # 23:59:59 CEST on the 29th
    tiny.visit("2026-03-29T22:00:00.000Z", "M00005", "after")    # 00:00 local on the 30th
    got = tiny.report(date(2026, 3, 29), date(2026, 3, 29))
    store = next(r for r in got["channels"].rows if r["channel"] == "store")
    assert store["sessions"] == 5
    sunday = next(r for r in got["peak_hours"].rows if r["weekday"] == "Sun")
    assert (sunday["00"], sunday["01"], sunday["02"], sunday["03"], sunday["23"]) == (1, 1, 0, 2, 1)  # kiosk sessions
    visits = tiny.report(date(2026, 3, 29), date(2026, 3, 29))  # the store channel alone: its visits, same hours
    assert report(tiny.hub_store.db, Query(date(2026, 3, 29), date(2026, 3, 29), channel="store"),
                  tz=AMSTERDAM)["peak_hours"].rows == [
        {**row} for row in report(tiny.hub_store.db, Query(date(2026, 3, 29), date(2026, 3, 29), channel="kiosk"),
                                  tz=AMSTERDAM)["peak_hours"].rows]
    assert visits["summary"].rows[0]["sessions"] == 5


def test_the_autumn_change_counts_the_repeated_hour_twice(tmp_path):
    """25 October 2026: 02:00-03:00 local happens twice (CEST, then CET); both fall in hour 02."""
    tiny = Tiny(tmp_path)
    tiny.visit("2026-10-25T00:30:00.000Z", "M00001", "cest")    # 02:30 CEST
    tiny.visit("2026-10-25T00:59:59.999Z", "M00006", "edge")    # 02:59:59.999 CEST, the last moment of summer time
    tiny.visit("2026-10-25T01:00:00.000Z", "M00007", "change")  # 02:00 CET, the first moment of winter time
    tiny.visit("2026-10-25T01:30:00.000Z", "M00002", "cet")     # 02:30 CET
    tiny.visit("2026-10-25T22:59:59.999Z", "M00003", "late")    # 23:59:59 CET, still the 25th
    tiny.visit("2026-10-25T23:00:00.000Z", "M00004", "next")    # the 26th
    got = tiny.report(date(2026, 10, 25), date(2026, 10, 25))
    sunday = next(r for r in got["peak_hours"].rows if r["weekday"] == "Sun")
    assert sunday["02"] == 4 and sunday["23"] == 1 and sunday["01"] == sunday["03"] == 0
    assert [r["sessions"] for r in got["daily"].rows] == [5]


def test_new_york_changes_on_other_days(tmp_path):
    tiny = Tiny(tmp_path, tz=NEW_YORK)
    tiny.sale("2026-03-08T04:59:59.999Z", None, "sat")   # 23:59:59 EST on the 7th
    tiny.sale("2026-03-08T05:00:00.000Z", None, "sun")   # 00:00 EST on the 8th
    tiny.sale("2026-03-09T03:59:59.999Z", None, "end")   # 23:59:59 EDT on the 8th
    tiny.sale("2026-03-09T04:00:00.000Z", None, "mon")   # 00:00 EDT on the 9th
    got = tiny.report(date(2026, 3, 8), date(2026, 3, 8))
    assert [(r["day"], r["sales"]) for r in got["daily"].rows] == [("2026-03-08", 2)]


def test_offset_changes_are_found_to_the_second():
    start = datetime(2026, 10, 1, tzinfo=timezone.utc)
    changes = offset_changes(start, datetime(2026, 11, 1, tzinfo=timezone.utc), AMSTERDAM)
    assert changes == [("2026-10-01T00:00:00.000Z", 120), ("2026-10-25T01:00:00.000Z", 60)]
    assert offset_changes(start, start + timedelta(days=3), ZoneInfo("UTC")) == [("2026-10-01T00:00:00.000Z", 0)]
    span = span_of(Query(date(2026, 3, 29), date(2026, 3, 29)), AMSTERDAM)
    assert (span.start, span.end) == ("2026-03-28T23:00:00.000Z", "2026-03-29T22:00:00.000Z")


def test_an_erased_member_leaves_only_anonymous_figures(tmp_path):
    tiny = Tiny(tmp_path)
    tiny.online("2026-06-01T10:00:00.000Z", "M00001", "search", "s1")
    tiny.visit("2026-06-05T10:00:00.000Z", "M00001", "v1", gtin=tiny.boot)
    tiny.sale("2026-06-05T10:20:00.000Z", "M00001", "t1", gtin=tiny.boot)
    tiny.report(date(2026, 6, 5), date(2026, 6, 5))
    tiny.hub_store.erase_member("M00001", now=datetime(2026, 6, 6, tzinfo=timezone.utc))
    got = report(tiny.hub_store.db, Query(date(2026, 6, 5), date(2026, 6, 5)), tz=AMSTERDAM)
    assert attributed(got) == {"none": (1, 1)}
    db = tiny.hub_store.db
    assert db.execute("SELECT count(*) FROM touches").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM sales WHERE customer IS NOT NULL").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM online_sessions WHERE customer IS NOT NULL").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM store_activity WHERE member IS NOT NULL").fetchone()[0] == 0


def test_visits_group_by_the_events_own_times(tmp_path):
    """Check-ins within the visit gap of each other are one visit; a later one is a new visit,
    even when the whole history arrives at once (nothing ran in between to close the first)."""
    tiny = Tiny(tmp_path)
    tiny.visit("2026-06-05T10:00:00.000Z", "M00001", "a")
    tiny.visit("2026-06-05T10:20:00.000Z", "M00001", "b")   # same visit
    tiny.visit("2026-06-05T12:00:00.000Z", "M00001", "c")   # a new one
    got = tiny.report(date(2026, 6, 5), date(2026, 6, 5))
    assert got["repeat"].rows[0] | {} == {**got["repeat"].rows[0], "visitors": 1, "repeat_visitors": 1, "visits": 2}


def test_a_visit_closed_by_housekeeping_is_joined_by_a_replayed_check_in(tmp_path):
    """A kiosk that was offline replays its check-ins after the hub closed the first part of the visit."""
    from hub.activity import close_visits
    tiny = Tiny(tmp_path)
    tiny.visit("2026-06-05T10:00:00.000Z", "M00001", "a")
    tiny.report(date(2026, 6, 5), date(2026, 6, 5))
    db = tiny.hub_store.db
    with tiny.hub_store.transaction():
        assert close_visits(db, now=datetime(2026, 6, 6, tzinfo=timezone.utc)) == 1
    tiny.visit("2026-06-05T10:20:00.000Z", "M00001", "b")   # arrives now, 20 minutes after the first in event time
    got = tiny.report(date(2026, 6, 5), date(2026, 6, 5))
    assert db.execute("SELECT count(*), max(closed) FROM visits").fetchone() == (1, 1)
    assert got["repeat"].rows[0]["visits"] == 1


def test_times_without_milliseconds_compare_right(tmp_path):
    """The envelope allows 0 to 6 decimals; analytics keeps one form, so '10:00:00Z' is not after '10:00:00.500Z'."""
    tiny = Tiny(tmp_path)
    tiny.event("2026-05-11T12:00:00Z", "session.started", session="v1")
    tiny.event("2026-05-11T12:00:00Z", "scan.member", session="v1", member="m-lower", jti="v1", typ="app")
    tiny.event("2026-05-11T12:00:00.5Z", "scan.product", session="v1", gtin=tiny.boot, source="ean13")
    tiny.sale("2026-06-10T12:00:00.400Z", "m-lower", "a", gtin=tiny.boot)  # 30 days after 12:00:00.4
    got = tiny.report(date(2026, 6, 10), date(2026, 6, 10))
    # the visit at 12:00:00 is outside [sale − 30 d = 12:00:00.400, sale]; the scan at 12:00:00.5 inside
    assert attributed(got) == {"kiosk": (1, 1)}
    assert tiny.hub_store.db.execute("SELECT ts FROM touches WHERE channel = 'store'").fetchall() == [
        ("2026-05-11T12:00:00.000Z",)]


def test_member_ids_are_kept_as_spelled(tmp_path):
    """Ids are the online store's, opaque: a lower-case id meets its own touches, never another's."""
    tiny = Tiny(tmp_path)
    tiny.online("2026-06-01T10:00:00.000Z", "c-7f3a", "search", "s1")
    tiny.online("2026-06-01T11:00:00.000Z", "C-7F3A", "email", "s2")
    tiny.sale("2026-06-02T10:00:00.000Z", "c-7f3a", "t1")
    got = tiny.report(date(2026, 6, 2), date(2026, 6, 2))
    assert attributed(got) == {"search": (1, 1)}


@pytest.mark.parametrize("args, message", [
    ({"from": "2026-05-02", "to": "2026-05-01"}, "after"),
    ({"from": "yesterday"}, "must be a date"),
    ({"from": "2025-01-01", "to": "2026-05-01"}, "at most 400"),
    ({"channel": "fax"}, "unknown channel"),
    ({"window": "0"}, "window"),
    ({"window": "abc"}, "window"),
    ({"to": "9999-12-31"}, "between"),
    ({"from": "0001-01-01", "to": "0001-01-05"}, "between"),
])
def test_bad_queries_say_why(args, message):
    with pytest.raises(QueryError, match=message):
        parse_query(args, today=date(2026, 5, 10))


def test_the_default_query_is_the_last_30_days():
    query = parse_query({}, today=date(2026, 5, 10), window_days=14)
    assert (query.start, query.end, query.channel, query.window_days) == (date(2026, 4, 11), date(2026, 5, 10), None, 14)
    assert parse_query(query.as_args(), today=date(2027, 1, 1)) == query
