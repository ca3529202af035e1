"""Failures injected into real processes: Mosquitto, the hub and the edge agents are SIGKILLed and
restarted while kiosks append; the hub must end up with every event exactly once, no gaps."""

from __future__ import annotations

import signal
import time

import pytest

from demo.chaos import ChaosStore, agent_kills, broker_restarts, hub_and_broker_kills, hub_kills


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
