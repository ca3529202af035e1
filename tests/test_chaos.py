"""Failures injected into real processes: Mosquitto, the hub and the edge agents are SIGKILLed and
restarted, the store network is cut, twenty kiosks reconnect at once, kiosk clocks are wrong, an
outbox fills up, the online store is gone for a morning and a device's disk fills up, while kiosks
append; the hub must end up with every event exactly once, no gaps, and the only events missing
are the ones the outbox's policy dropped and counted."""

from __future__ import annotations

import signal
import time

import pytest

from demo.chaos import (
    FAKETIME_LIB,
    ChaosStore,
    agent_kills,
    agents_and_hub_kills,
    broker_restarts,
    hub_and_broker_kills,
    hub_kills,
    loop_mount_unavailable,
    online_store_down,
    run_scenario,
)


@pytest.fixture
def chaos(tmp_path):
    store = ChaosStore(tmp_path).start()
    yield store
    store.stop()


def assert_every_event_once(outcome, events):
    assert outcome.sent == outcome.acknowledged == events
    assert (outcome.stored, outcome.lost, outcome.duplicated, outcome.gaps) == (events, 0, 0, 0), outcome


def test_broker_killed_and_restarted_five_times_loses_nothing(chaos):
    outcome = broker_restarts(chaos, events=5000, restarts=5)
    assert_every_event_once(outcome, 5000)
    assert outcome.faults == 5 and len(outcome.recoveries_s) == 5


def test_agents_sigkilled_five_times_during_drains_lose_nothing(chaos):
    outcome = agent_kills(chaos, events=5000, restarts=5)
    assert_every_event_once(outcome, 5000)


def test_hub_sigkilled_during_ingest_loses_nothing_and_stores_nothing_twice(chaos):
    outcome = hub_kills(chaos, events=5000, restarts=3)
    assert_every_event_once(outcome, 5000)


def test_agents_and_hub_sigkilled_at_once_lose_nothing(chaos):
    outcome = agents_and_hub_kills(chaos, events=3000, restarts=3)
    assert_every_event_once(outcome, 3000)


def test_events_the_broker_acknowledged_and_lost_come_again_from_the_devices(chaos):
    """Mosquitto acknowledges from memory; killed before it saved, it forgets events it acknowledged.
    Only the hub's receipts tell the devices to send those again."""
    outcome = hub_and_broker_kills(chaos, events=4000, restarts=2)
    assert_every_event_once(outcome, 4000)


def test_an_event_appended_just_before_the_agent_dies_is_delivered_after_it_restarts(chaos):
    device = chaos.devices[0]
    kiosk = chaos.kiosks[device]
    agent = chaos.processes[f"{device}-agent"]
    chaos.drain_all()
    # Freeze the agent first, so the event surely lands in its last instant of life, unsent.
    agent.send_signal(signal.SIGSTOP)
    kiosk.append()                      # on disk when append returns
    chaos.kill(f"{device}-agent")       # a power cut for the agent
    time.sleep(1.0)
    assert kiosk.ids[-1] not in _stored_ids(chaos)
    chaos.start_agent(device)
    chaos.wait(lambda: kiosk.ids[-1] in _stored_ids(chaos), 30, "the last event reached the hub")
    chaos.drain_all()
    assert chaos.outcome("one event").lost == 0


def _stored_ids(chaos):
    return {row[0] for row in chaos._query("SELECT id FROM events")}


def test_network_dropped_stalled_and_slowed_under_load_loses_nothing(tmp_path):
    """Through a proxy the test controls: connections reset, then half-open (nothing flows, nothing
    closes: only MQTT keepalive can notice), then slow."""
    outcome = run_scenario("netcut", events=1000, restarts=3, root=tmp_path)
    assert_every_event_once(outcome, 1000)
    assert outcome.notes["cuts"] == ["drop", "stall", "slow"]
    assert len(outcome.notes["stall_noticed_after_s"]) == 1  # every agent saw the half-open link die


def test_twenty_kiosks_reconnecting_at_once_spread_out_and_lose_nothing(tmp_path):
    """Small counts: twenty agent processes on a small machine are the load here, not the events."""
    outcome = run_scenario("burst", events=200, restarts=1, root=tmp_path)
    assert_every_event_once(outcome, 200)
    assert outcome.notes["reconnected"] == [20]
    # Jittered backoff: the twenty do not come back in the same instant.
    assert outcome.notes["most_reconnects_in_100ms"][0] <= 10, outcome.notes


@pytest.mark.skipif(not FAKETIME_LIB.exists(), reason="needs libfaketime: apt-get install -y faketime")
def test_kiosk_clocks_five_minutes_off_store_every_event_once_in_seq_order(tmp_path):
    outcome = run_scenario("skew", events=1000, restarts=1, root=tmp_path)
    assert_every_event_once(outcome, 1000)
    ahead, behind = outcome.notes["s001-k01"], outcome.notes["s001-k02"]
    assert ahead["seq_contiguous"] and behind["seq_contiguous"]
    # The first kiosk's clock stepped back 10 minutes: its ts went backwards while seq kept rising,
    # and nothing was lost or reordered, because the hub orders by seq.
    assert ahead["ts_steps_back_as_seq_rises"] >= 1
    # The hub keeps the device's ts as sent (and its own received_at beside it).
    assert -310 < behind["ts_minus_received_s"][0] <= behind["ts_minus_received_s"][1] < -290
    # The agents really ran with skewed clocks (their retained status carries their own ts).
    assert ahead["agent_status_ts_minus_hub_s"] > 200 and behind["agent_status_ts_minus_hub_s"] < -200


def test_outbox_at_its_bound_drops_only_by_policy_and_counts_every_drop(tmp_path):
    outcome = run_scenario("outbox-bound", events=400, restarts=1, root=tmp_path)
    refused, evicted = outcome.notes["refused_by_type"], outcome.notes["evicted_by_type"]
    assert outcome.sent == 400
    assert (outcome.lost, outcome.duplicated, outcome.gaps) == (0, 0, 0), outcome
    assert outcome.acknowledged == outcome.sent - sum(refused.values())
    assert outcome.stored == outcome.acknowledged - sum(evicted.values())
    assert outcome.dropped_by_policy == sum(refused.values()) + sum(evicted.values()) > 0
    # Low priority goes first, then normal; a check-in is never pushed out, only refused when the
    # outbox holds nothing but check-ins.
    assert evicted.get("offer.shown") and "scan.member" not in evicted
    assert set(refused) == {"scan.member"}
    assert outcome.notes["stored_by_type"] == {"scan.member": outcome.stored}


def test_after_a_broker_lost_its_state_the_agent_waits_for_the_hub_before_sending(chaos):
    """A broker that comes back without its saved state knows neither the hub's session nor its
    retained status: an event sent before the hub is back would be acknowledged to nobody. The
    agent keeps it on disk until the hub announces itself again."""
    device = chaos.devices[0]
    chaos.drain_all()
    chaos.processes["hub"].send_signal(signal.SIGSTOP)  # the hub cannot come back before we look
    try:
        chaos.broker.kill()
        for saved in (chaos.root / "broker" / "data").glob("*"):
            saved.unlink()
        chaos.broker.start()
        chaos.wait(lambda: chaos.agent_health(device).get("connected"), 30, "the agent reconnected")
        chaos.kiosks[device].append()
        time.sleep(1.0)
        health = chaos.agent_health(device)
        assert health["hub_online"] is False and health["outbox"]["depth"] == 1, health
    finally:
        chaos.processes["hub"].send_signal(signal.SIGCONT)
    chaos.wait(lambda: chaos.kiosks[device].ids[-1] in _stored_ids(chaos), 30, "the event reached the hub")
    chaos.drain_all()
    assert chaos.outcome("broker without its state").lost == 0


def test_a_morning_without_the_online_store_loses_and_doubles_nothing_on_either_side(tmp_path):
    """The link to the online store gone (503, then refused; its webhooks refused too) while members
    check in, scan and send to their online cart and its back office changes profiles: when it is
    back, every queue drains, each id arrives once."""
    store = ChaosStore(tmp_path, online=True, webhook_retry_s=0.05).start()
    try:
        outcome = online_store_down(store, events=300, restarts=1, morning_s=8.0)
    finally:
        store.stop()
    assert outcome.sent == outcome.acknowledged == outcome.stored
    assert (outcome.lost, outcome.duplicated, outcome.gaps) == (0, 0, 0), outcome
    notes = outcome.notes
    check_ins = notes["check_ins"]
    # Arrivals never waited for the online store: regulars from the hub's cache, newcomers from the token.
    assert check_ins["arrivals"] == check_ins["sent"] > 0 and check_ins["lost"] == 0, check_ins
    assert check_ins["from_cache"] > 0 and check_ins["token_only"] > 0 and check_ins["online"] == 0, check_ins
    for queue in ("activity", "cart_lines", "webhooks"):
        figures = notes[queue]
        assert figures["queued"] > 0 and figures["delivered"] == figures["queued"], (queue, figures)
        assert (figures["lost"], figures["duplicated"]) == (0, 0), (queue, figures)
        assert all(s is not None for s in figures["drain_s"]), (queue, figures)
    assert notes["cart_lines"]["missing_quantity"] == 0
    # Every webhook was still waiting at the online store when the link came back, none given up.
    assert notes["queued_at_heal"][0]["webhooks_waiting_at_online_store"] == notes["webhooks"]["queued"]
    assert notes["webhooks"]["given_up_by_sender"] == 0
    assert all(s is not None for s in notes["profile_changes_at_hub_s"])


def test_a_device_disk_almost_full_refuses_appends_plainly_and_loses_nothing(tmp_path):
    reason = loop_mount_unavailable()
    if reason:
        pytest.skip(reason)
    outcome = run_scenario("disk-full", events=1000, restarts=1, root=tmp_path)
    notes = outcome.notes
    assert (outcome.lost, outcome.duplicated, outcome.gaps) == (0, 0, 0), outcome
    # Refused, told and counted: never a crash, never a silent loss.
    assert notes["refused_disk_full"] > 0
    assert outcome.acknowledged == outcome.sent - notes["refused_disk_full"] == outcome.stored
    assert notes["refusals_counted_by_outbox"] == notes["refused_disk_full"]
    assert notes["processes_died"] == []
    round_ = notes["rounds"][0]
    assert all(n > 0 for n in round_["acknowledged_while_full"].values())  # what fitted was taken
    assert round_["refused_after_space_freed"] == 0
