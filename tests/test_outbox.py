"""The device outbox: durable, ordered, bounded; what it drops and refuses is the policy's and is counted."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timedelta, timezone

import pytest

from edge_agent.outbox import DEFAULT_TTL_S, HIGH, PRIORITY, Outbox, OutboxFull, OutboxPolicy, open_device_db
from kiosk.decode import Code
from kiosk.shopper import PAUSED, Shopper
from protocol.tokens import KeySet

NOW = datetime(2026, 11, 29, 10, 0, tzinfo=timezone.utc)
PRODUCT = {"session": "s", "gtin": "04006381333931", "source": "ean13"}
MEMBER = {"session": "s", "member": "M0001", "jti": "j", "typ": "app"}


class Clock:
    def __init__(self, now=NOW):
        self.now = now

    def __call__(self):
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def outbox(tmp_path, clock):
    return Outbox(open_device_db(tmp_path / "outbox.db"), store="s001", device="s001-k01", clock=clock)


def types_waiting(outbox):
    return [row.type for row in outbox.peek(0, 10_000)]


def test_every_row_type_has_a_priority_and_a_ttl_and_only_the_important_ones_are_high():
    assert set(PRIORITY) == set(DEFAULT_TTL_S)
    assert {t for t, p in PRIORITY.items() if p == HIGH} == {"scan.member", "cart.sent", "assist.requested",
                                                              "command.result"}
    assert DEFAULT_TTL_S["telemetry"] < 3600 <= 86400 <= DEFAULT_TTL_S["scan.product"]


def test_append_is_on_disk_for_another_connection_when_it_returns(outbox, tmp_path):
    envelope = outbox.append("scan.product", PRODUCT)
    other = sqlite3.connect(tmp_path / "outbox.db")
    assert other.execute("SELECT id, seq FROM outbox").fetchall() == [(envelope.id, 1)]
    assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_positions_are_never_reused_after_the_outbox_emptied(outbox):
    """The drain remembers the last position it handed out; a reused one would never be sent."""
    outbox.append("scan.product", PRODUCT)
    first = outbox.peek()[0].pos
    outbox.settle([(1, 1)])
    outbox.append("scan.product", PRODUCT)
    assert [row.pos for row in outbox.peek(first)] == [first + 1]


def test_seq_rises_by_one_across_reopening(tmp_path, clock):
    path = tmp_path / "outbox.db"
    Outbox(open_device_db(path), store="s001", device="s001-k01", clock=clock).append("scan.product", PRODUCT)
    again = Outbox(open_device_db(path), store="s001", device="s001-k01", clock=clock)
    assert again.append("scan.product", PRODUCT).seq == 2


def test_a_version_1_outbox_keeps_every_waiting_event_when_upgraded(tmp_path, clock):
    path = tmp_path / "outbox.db"
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE outbox (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, type TEXT NOT NULL,"
        " body TEXT NOT NULL, created_at TEXT NOT NULL);"
        "CREATE TABLE outbox_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);"
        "INSERT INTO outbox_meta VALUES ('schema', 1), ('last_seq', 7), ('agent_session', 3);")
    conn.execute("INSERT INTO outbox VALUES (6, 'a', 'scan.member', '{\"x\":1}', '2026-11-29T09:59:00.000Z')")
    conn.execute("INSERT INTO outbox VALUES (7, 'b', 'scan.product', '{\"x\":2}', '2026-11-29T09:59:30.000Z')")
    conn.commit()
    conn.close()
    outbox = Outbox(open_device_db(path), store="s001", device="s001-k01", clock=clock)
    assert [(r.seq, r.id, r.type, r.leaf) for r in outbox.peek()] == [(6, "a", "scan.member", "events"),
                                                                      (7, "b", "scan.product", "events")]
    stats = outbox.stats()
    assert (stats["depth"], stats["last_seq"], stats["oldest_age_s"]) == (2, 7, 60.0)
    assert outbox.append("scan.product", PRODUCT).seq == 8
    assert outbox.next_counter("agent_session") == 4


def test_settle_forgets_what_the_receipt_covers_and_counts_refusals(outbox):
    for _ in range(5):
        outbox.append("scan.product", PRODUCT)
    assert outbox.settle([(1, 2), (4, 4)], [(5, 5)]) == (3, 1)
    assert [row.seq for row in outbox.peek()] == [3]
    assert outbox.drops() == {"rejected_by_hub": {"scan.product": 1}}
    assert outbox.stats()["dropped"]["rejected_by_hub"] == 1


def test_rows_bound_drops_the_oldest_of_the_lowest_priority_first(outbox):
    outbox.set_policy(OutboxPolicy(max_rows=4))
    outbox.append("scan.product", PRODUCT)          # normal, oldest
    outbox.append("offer.shown", {"session": "s", "offer": "o1"})   # low
    outbox.append("scan.member", MEMBER)             # high
    outbox.append("offer.shown", {"session": "s", "offer": "o2"})   # low, newer
    outbox.append("scan.product", PRODUCT)           # full: the oldest low one goes
    assert types_waiting(outbox) == ["scan.product", "scan.member", "offer.shown", "scan.product"]
    assert json.loads(outbox.peek()[2].body)["data"]["offer"] == "o2"
    outbox.append("scan.product", PRODUCT)           # the other low one goes
    outbox.append("scan.product", PRODUCT)           # then the oldest normal one
    assert types_waiting(outbox) == ["scan.member", "scan.product", "scan.product", "scan.product"]
    assert outbox.drops() == {"full": {"offer.shown": 2, "scan.product": 1}}


def test_an_event_never_pushes_out_a_more_important_one(outbox):
    outbox.set_policy(OutboxPolicy(max_rows=2))
    outbox.append("scan.product", PRODUCT)
    outbox.append("scan.product", PRODUCT)
    with pytest.raises(OutboxFull, match="offer.shown is refused"):
        outbox.append("offer.shown", {"session": "s", "offer": "o"})
    assert types_waiting(outbox) == ["scan.product", "scan.product"]
    assert outbox.drops() == {"refused": {"offer.shown": 1}}


def test_when_only_high_priority_events_wait_new_appends_are_refused_and_nothing_is_written(outbox):
    outbox.set_policy(OutboxPolicy(max_rows=3))
    for _ in range(3):
        outbox.append("scan.member", MEMBER)
    before = outbox.stats()
    for event_type, data in (("scan.member", MEMBER), ("scan.product", PRODUCT)):
        with pytest.raises(OutboxFull, match="outbox full"):
            outbox.append(event_type, data)
    after = outbox.stats()
    assert (after["depth"], after["last_seq"]) == (before["depth"], before["last_seq"]) == (3, 3)
    assert outbox.drops() == {"refused": {"scan.member": 1, "scan.product": 1}}
    assert after["dropped"]["refused"] == 2
    outbox.settle([(1, 1)])  # the hub got one: there is room again, and seq goes on from where it was
    assert outbox.append("scan.product", PRODUCT).seq == 4


def test_bytes_bound_counts_what_the_rows_weigh(outbox):
    size = len(outbox.append("scan.product", PRODUCT).to_json().encode())
    outbox.set_policy(OutboxPolicy(max_bytes=3 * size + size // 2))
    outbox.append("scan.product", PRODUCT)
    outbox.append("scan.product", PRODUCT)
    outbox.append("scan.product", PRODUCT)
    stats = outbox.stats()
    assert stats["depth"] == 3 and stats["bytes"] <= stats["max_bytes"]
    assert outbox.drops() == {"full": {"scan.product": 1}}


def test_rows_past_their_time_to_live_are_dropped_and_counted_by_type(outbox, clock):
    outbox.set_policy(OutboxPolicy(ttl_s={**DEFAULT_TTL_S, "scan.product": 3600, "scan.member": 7200}))
    outbox.append("scan.product", PRODUCT)
    outbox.append("scan.member", MEMBER)
    outbox.append_telemetry({"v": 1})
    clock.now = NOW + timedelta(minutes=20)
    assert outbox.expire() == {"telemetry": 1}
    clock.now = NOW + timedelta(hours=1, seconds=1)
    assert outbox.expire() == {"scan.product": 1}
    assert types_waiting(outbox) == ["scan.member"]
    assert outbox.stats()["dropped"]["expired"] == 2


def test_expired_rows_make_room_before_anything_is_evicted(outbox, clock):
    outbox.set_policy(OutboxPolicy(max_rows=2, ttl_s={**DEFAULT_TTL_S, "scan.product": 3600}))
    outbox.append("scan.product", PRODUCT)
    outbox.append("scan.member", MEMBER)
    clock.now = NOW + timedelta(hours=2)
    outbox.append("scan.product", PRODUCT)
    assert types_waiting(outbox) == ["scan.member", "scan.product"]
    assert outbox.drops() == {"expired": {"scan.product": 1}}


def test_telemetry_waits_only_where_there_is_room_for_it(outbox):
    outbox.set_policy(OutboxPolicy(max_rows=2))
    assert outbox.append_telemetry({"v": 1, "n": 1})
    outbox.append("scan.product", PRODUCT)
    assert outbox.append_telemetry({"v": 1, "n": 2})       # pushes out the older snapshot
    assert [r.leaf for r in outbox.peek()] == ["events", "telemetry"]
    outbox.append("scan.product", PRODUCT)                  # pushes out telemetry, not an event
    assert not outbox.append_telemetry({"v": 1, "n": 3})    # full of events: the snapshot is refused
    assert types_waiting(outbox) == ["scan.product", "scan.product"]
    telemetry_row_seq = [r.seq for r in outbox.peek() if r.leaf == "telemetry"]
    assert telemetry_row_seq == []


def test_the_policy_the_agent_writes_is_the_one_the_kiosk_obeys(tmp_path, clock):
    path = tmp_path / "outbox.db"
    agent_side = Outbox(open_device_db(path), store="s001", device="s001-k01", clock=clock)
    kiosk_side = Outbox(open_device_db(path), store="s001", device="s001-k01", clock=clock)
    agent_side.set_policy(OutboxPolicy(max_rows=1))
    kiosk_side.append("scan.member", MEMBER)
    with pytest.raises(OutboxFull):
        kiosk_side.append("scan.member", MEMBER)
    assert agent_side.stats()["dropped"]["refused"] == 1


def test_stats_report_depth_size_oldest_age_and_the_bound(outbox, clock):
    outbox.append("scan.product", PRODUCT)
    clock.now = NOW + timedelta(seconds=90)
    outbox.append("scan.product", PRODUCT)
    stats = outbox.stats()
    assert stats["depth"] == 2 and stats["oldest_age_s"] == 90.0 and stats["bytes"] > 0
    assert stats["dropped"] == {"expired": 0, "full": 0, "refused": 0, "rejected_by_hub": 0}
    assert (stats["max_rows"], stats["max_bytes"]) == (OutboxPolicy().max_rows, OutboxPolicy().max_bytes)


def test_a_command_is_claimed_once(outbox):
    assert outbox.claim_command("cmd-1") is True
    assert outbox.claim_command("cmd-1") is False
    assert outbox.claim_command("cmd-2") is True


def test_a_full_outbox_pauses_the_kiosk_instead_of_showing_an_unrecorded_result(outbox):
    """No scan whose result the shopper saw may be lost: with nothing droppable, nothing is shown."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from demo.issuer import Issuer
    outbox.set_policy(OutboxPolicy(max_rows=2))
    outbox.append("scan.member", MEMBER)
    outbox.append("cart.sent", {"session": "s", "gtin": "04006381333931", "member": "M0001"})
    screens = []
    shopper = Shopper(outbox=outbox, keys=KeySet.from_jwks(Issuer(Ed25519PrivateKey.generate()).jwks()),
                      screen=screens.append, wall_clock=lambda: NOW)
    view = shopper.scan(Code("ean13", "4006381333931"), now=0.0)
    assert view == {"view": "unavailable", "message": PAUSED} and screens[-1] == view
    assert shopper.counters["outbox_full"] == 1
    assert outbox.stats()["depth"] == 2 and outbox.drops()["refused"] == {"session.started": 1}
