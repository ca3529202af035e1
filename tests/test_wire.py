"""The agent ↔ hub wire of protocol v1 beyond the envelope: receipts, requests, commands, reconnect delays,
and the agent's delivery ledger. Pure: no sockets."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone

import pytest

from edge_agent.delivery import Ledger
from edge_agent.outbox import PendingRow
from protocol import requests as wire
from protocol.backoff import Backoff
from protocol.commands import COMMANDS, check_args, command_payload, parse_command, result_data
from protocol.receipts import MAX_RANGES, parse_receipt, receipt_payload, to_ranges

NOW = datetime(2026, 11, 29, 10, 0, tzinfo=timezone.utc)


# --- receipts

def test_seqs_become_merged_inclusive_ranges():
    assert to_ranges([5, 1, 2, 3, 3, 9, 8, 7]) == [(1, 3), (5, 5), (7, 9)]
    assert to_ranges([]) == []


def test_a_receipt_round_trips_and_says_what_it_covers():
    (payload,) = receipt_payload(hub_session=42, stored=[1, 2, 3, 5], rejected=[4])
    receipt = parse_receipt(payload)
    assert receipt.hub_session == 42 and receipt.stored == ((1, 3), (5, 5)) and receipt.rejected == ((4, 4),)
    assert [s for s in range(1, 7) if receipt.covers(s)] == [1, 2, 3, 4, 5]


def test_many_ranges_are_split_over_several_receipts_within_the_broker_limit():
    payloads = receipt_payload(hub_session=1, stored=range(1, 2 * (MAX_RANGES + 10) * 2, 2))
    assert len(payloads) == 3 and all(len(p) < 32 * 1024 for p in payloads)
    covered = [r for p in payloads for r in parse_receipt(p).stored]
    assert len(covered) == MAX_RANGES * 2 + 20


@pytest.mark.parametrize("payload, reason", [
    (b"\xff", "not_json"), (b"[]", "unknown_version"), (b'{"v": 2, "hub_session": 1}', "unknown_version"),
    (b'{"v": 1}', "bad_field"), (b'{"v": 1, "hub_session": 1, "stored": [[3, 1]]}', "bad_range"),
    (b'{"v": 1, "hub_session": 1, "stored": [[0, 1]]}', "bad_range"),
    (b'{"v": 1, "hub_session": 1, "stored": [[1, true]]}', "bad_range"),
    (b'{"v": 1, "hub_session": 1, "stored": "1-3"}', "bad_field"),
])
def test_a_malformed_receipt_is_refused_with_a_reason(payload, reason):
    refused = parse_receipt(payload)
    assert not refused and refused.reason == reason


# --- requests

def test_requests_are_checked_against_the_methods_of_the_protocol():
    request = wire.parse_request(b'{"method": "member.welcome", "params": {"member": "M0001"}}')
    assert request == wire.Request("member.welcome", {"member": "M0001"})
    assert wire.check_request("catalog.changes", {"since": 0, "cursor": None}) == wire.Request(
        "catalog.changes", {"since": 0})


@pytest.mark.parametrize("method, params, code, words", [
    ("member.hack", {}, "unknown_method", "unknown method"),
    ("member.welcome", {}, "bad_request", "'member' is required"),
    ("member.welcome", {"member": "M0001", "email": "x"}, "bad_request", "unknown parameter"),
    ("member.welcome", {"member": "../../etc"}, "bad_request", "member id"),
    ("product.detail", {"gtin": "123"}, "bad_request", "GTIN-14"),
    ("catalog.changes", {"since": -1}, "bad_request", "whole number"),
    ("catalog.changes", {"since": True}, "bad_request", "whole number"),
    ("cart.add", {"member": "M1", "gtin": "04006381333931", "event_id": "nope"}, "bad_request", "UUID"),
    ("member.welcome", [], "bad_request", "JSON object"),
])
def test_a_bad_request_gets_a_specific_answer(method, params, code, words):
    answer = wire.check_request(method, params)
    assert not answer and answer.code == code and words in answer.message


def test_garbage_bytes_are_a_bad_request_not_a_crash():
    for payload in (b"", b"\xff\xfe", b"[1]", b"{" * 5000, json.dumps({"method": "x" * 9000}).encode()):
        answer = wire.parse_request(payload)
        assert not answer and answer.code in ("bad_request", "unknown_method")


def test_answers_parse_back_and_unknown_error_codes_do_not_pass():
    assert wire.parse_response(wire.encode(wire.ok({"a": 1}))) == {"ok": True, "result": {"a": 1}}
    assert wire.parse_response(b'{"ok": false, "error": {"code": "rate_limited", "message": "slow"}}')["ok"] is False
    assert not wire.parse_response(b'{"ok": false, "error": {"code": "boom"}}')
    with pytest.raises(ValueError):
        wire.error("boom", "x")


def test_a_caller_timeout_is_always_an_answer_within_bounds():
    assert wire.clamp_timeout(0.3) == 0.3
    assert wire.clamp_timeout(10_000) == wire.MAX_TIMEOUT_S
    assert wire.clamp_timeout(None) == wire.clamp_timeout(-1) == wire.clamp_timeout("1") == wire.DEFAULT_TIMEOUT_S


# --- commands

def test_a_command_round_trips():
    command = parse_command(command_payload("c1", "screen.message", {"text": "Closing soon", "seconds": 60}), now=NOW)
    assert (command.id, command.command, command.args) == ("c1", "screen.message", {"text": "Closing soon",
                                                                                     "seconds": 60})


@pytest.mark.parametrize("payload, code", [
    (b"\x00garbage", "bad_command"),
    (b'{"command": "restart"}', "bad_command"),
    (b'{"id": "c1", "command": "self.destruct"}', "unknown_command"),
    (b'{"id": "c1", "command": "screen.message", "args": {"text": ""}}', "bad_args"),
    (b'{"id": "c1", "command": "screen.message", "args": {"text": "hi", "seconds": 0}}', "bad_args"),
    (b'{"id": "c1", "command": "restart", "args": {"target": "hub"}}', "bad_args"),
    (b'{"id": "c1", "command": "config.update", "args": {"settings": {}}}', "bad_args"),
    (b'{"id": "c1", "command": "catalog.resync", "args": {"force": true}}', "bad_args"),
    (b'{"id": "c1", "command": "restart", "expires_at": "2026-11-29T09:00:00.000Z"}', "expired"),
    (b'{"id": "c1", "command": "restart", "expires_at": "soon"}', "bad_command"),
])
def test_a_bad_command_gets_a_specific_reason_and_keeps_its_id_when_it_had_one(payload, code):
    refused = parse_command(payload, now=NOW)
    assert not refused and refused.code == code
    assert (refused.id == "c1") == (b'"id": "c1"' in payload)


def test_every_command_has_an_argument_check_and_a_description():
    assert set(COMMANDS) == {"config.update", "catalog.resync", "screen.message", "restart"}
    for name in COMMANDS:
        check_args(name, {})  # never raises, whatever the command


def test_a_result_carries_either_a_result_or_an_error():
    assert result_data("c1", "restart", result={"restarting": "agent"}) == {
        "command_id": "c1", "ok": True, "command": "restart", "result": {"restarting": "agent"}}
    failed = result_data("c1", "restart", error=("failed", "x" * 500))
    assert failed["ok"] is False and len(failed["error"]["message"]) == 300


# --- reconnect delays

def test_reconnect_delays_grow_with_jitter_between_one_and_sixty_seconds():
    backoff = Backoff(min_s=1, max_s=60, rng=random.Random(7))
    delays = [backoff.next_delay() for _ in range(12)]
    assert all(1 <= d <= 60 for d in delays)
    caps = [min(60, 2 ** (n + 1)) for n in range(12)]
    assert all(d <= cap for d, cap in zip(delays, caps))
    assert max(delays[6:]) > 10  # it does grow


def test_twenty_kiosks_losing_the_broker_together_do_not_come_back_together():
    """The first retry of each of 20 agents falls anywhere in 1-2 s: no 100 ms slot holds more than a few."""
    firsts = [Backoff(rng=random.Random(seed)).next_delay() for seed in range(20)]
    slots = [int(d * 10) for d in firsts]
    assert 1 <= min(firsts) and max(firsts) <= 2
    assert max(slots.count(s) for s in set(slots)) <= 4
    assert max(firsts) - min(firsts) > 0.5


def test_the_delay_resets_only_after_a_connection_stayed_up():
    t = [0.0]
    backoff = Backoff(min_s=1, max_s=60, stable_after_s=30, clock=lambda: t[0], rng=random.Random(1))
    for _ in range(5):
        backoff.next_delay()
    backoff.connected()
    t[0] = 10.0
    backoff.disconnected()        # dropped after 10 s: a flapping link keeps backing off
    assert backoff.attempt == 5
    backoff.connected()
    t[0] = 45.0
    backoff.disconnected()        # up for 35 s: back to short delays
    assert backoff.attempt == 0


# --- the delivery ledger

def row(pos, seq=None, leaf="events"):
    return PendingRow(pos=pos, seq=pos if seq is None and leaf == "events" else seq, id=f"id{pos}", leaf=leaf,
                      type="telemetry" if leaf == "telemetry" else "scan.product", body="{}")


def test_an_event_awaits_the_hub_receipt_after_its_puback():
    ledger = Ledger(window=10)
    ledger.handed(101, row(1))
    ledger.handed(102, row(2))
    ledger.acked(101, True, now=1.0)
    assert ledger.awaiting == {1: 1.0} and not ledger.idle
    ledger.receipted([(1, 1)])
    assert ledger.awaiting == {} and list(ledger.in_flight) == [102]


def test_a_receipt_that_overtakes_the_puback_is_not_waited_for_again():
    ledger = Ledger()
    ledger.handed(7, row(1))
    ledger.receipted([(1, 1)])
    ledger.acked(7, True, now=1.0)
    assert ledger.idle


def test_telemetry_needs_only_its_puback():
    ledger = Ledger()
    ledger.handed(1, row(5, leaf="telemetry"))
    settled = ledger.acked(1, True, now=1.0)
    assert settled.row.leaf == "telemetry" and ledger.idle


def test_after_a_reconnect_what_the_broker_acknowledged_goes_again():
    ledger = Ledger()
    for n in (1, 2, 3):
        ledger.handed(n, row(n))
        ledger.acked(n, True, now=1.0)
    ledger.receipted([(2, 2)])
    ledger.reconnected()
    assert ledger.take_resend(10) == [1, 3] and ledger.awaiting == {}


def test_events_unreceipted_past_the_timeout_go_again_but_only_while_the_hub_is_online():
    ledger = Ledger(receipt_timeout_s=30)
    ledger.handed(1, row(1))
    ledger.acked(1, True, now=100.0)
    assert ledger.overdue(now=200.0, hub_online_since=None) == []       # hub away: wait, do not flood
    assert ledger.overdue(now=125.0, hub_online_since=0.0) == []
    assert ledger.overdue(now=140.0, hub_online_since=120.0) == []       # the hub just came back: give it time
    assert ledger.overdue(now=151.0, hub_online_since=120.0) == [1]
    assert ledger.resend == [1]


def test_a_refused_publish_is_handed_out_again_in_order():
    ledger = Ledger()
    for n in (1, 2, 3):
        ledger.handed(n, row(n))
    ledger.acked(2, False, now=1.0, reason="Not authorized")
    assert ledger.next_pos == 1 and ledger.wanted(row(2)) and not ledger.wanted(row(3))


def test_room_is_bounded_by_the_window_and_by_what_awaits_receipts():
    ledger = Ledger(window=3, unconfirmed_max=4)
    for n in (1, 2, 3):
        ledger.handed(n, row(n))
    assert ledger.room() == 0
    for n in (1, 2, 3):
        ledger.acked(n, True, now=1.0)
    assert ledger.room() == 1  # three await receipts; the hub must answer before more go


def test_timestamps_used_by_commands_are_utc_z():
    later = NOW + timedelta(minutes=10)
    command = parse_command(command_payload("c9", "restart", expires_at=later.strftime("%Y-%m-%dT%H:%M:%S.000Z")),
                            now=NOW)
    assert command.command == "restart"
