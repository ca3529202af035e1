"""The edge agent against a real Mosquitto: rows stay until the hub's receipt, requests always get an
answer, the hub answers only on the asking device's own topic, telemetry survives an outage, the ACL
keeps devices apart, and an agent config update restarts the agent."""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timezone

import pytest
from conftest import DEVICES, STORE, login_for, raw_client, wait_for
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge_agent.agent import EdgeAgent
from edge_agent.outbox import Outbox, open_device_db
from hub.answers import RequestDesk
from hub.ingest import Ingest
from hub.store import HubStore, open_hub_db
from protocol.backoff import Backoff
from protocol.commands import command_payload
from protocol.presence import status_payload
from protocol.topics import Topics

TOPICS = Topics(STORE)
PRODUCT = {"session": "s", "gtin": "04006381333931", "source": "ean13"}


def agent_for(broker, tmp_path, device=DEVICES[0], **kwargs) -> tuple[Outbox, EdgeAgent]:
    outbox = Outbox(open_device_db(tmp_path / f"{device}.db"), store=STORE, device=device)
    agent = EdgeAgent(store=STORE, device=device, login=login_for(broker, device), outbox=outbox, version="test",
                      poll_s=0.05, backoff=Backoff(min_s=0.2, max_s=1.0), **kwargs)
    return outbox, agent.start()


def announce_hub_online(client, session=1):
    client.publish(TOPICS.hub_status, status_payload("online", session=session, version="t",
                                                     now=datetime.now(timezone.utc)), qos=1, retain=True).wait_for_publish(5)


def test_rows_stay_until_the_hub_receipts_them_and_go_again_when_it_does_not(broker, tmp_path):
    """A hub that says online but never stores (here: nobody subscribed, so the broker acknowledges into the
    void) gets the events again after the receipt timeout; the real hub then stores and receipts them."""
    impostor = raw_client(broker, broker.hub_user, client_id="not-the-hub")
    announce_hub_online(impostor)
    outbox, agent = agent_for(broker, tmp_path, receipt_timeout_s=1.0)
    ids = [outbox.append("scan.product", PRODUCT).id for _ in range(20)]
    wait_for(lambda: agent.counters["acked"] >= 20, what="PUBACKs")
    assert outbox.stats()["depth"] == 20, "a PUBACK alone must not delete a row"
    wait_for(lambda: agent.counters["resent"] >= 20, what="sent again after the receipt timeout")
    impostor.loop_stop()
    hub_store = HubStore(open_hub_db(tmp_path / "hub.db"))
    ingest = Ingest(store_id=STORE, login=login_for(broker, broker.hub_user), hub_store=hub_store, version="t").start()
    try:
        wait_for(lambda: outbox.stats()["depth"] == 0, timeout=30, what="receipted by the real hub")
        assert sorted(r[0] for r in hub_store.db.execute("SELECT id FROM events")) == sorted(ids)
        assert ingest.counters.receipts >= 1
    finally:
        agent.stop()
        ingest.stop()


def test_a_request_nobody_answers_times_out_and_a_missing_hub_answers_at_once(broker, tmp_path):
    fake_hub = raw_client(broker, broker.hub_user, client_id="silent-hub")
    announce_hub_online(fake_hub)
    outbox, agent = agent_for(broker, tmp_path)
    try:
        wait_for(agent.hub_online.is_set, what="hub online")
        started = time.monotonic()
        answer = agent.relay.ask("member.welcome", {"member": "M0001"}, 0.5)
        took = time.monotonic() - started
        assert answer == {"ok": False, "error": {"code": "timeout", "message": "no answer from the hub within 0.5 s"}}
        assert 0.45 <= took < 3.0  # it waited for the answer, and a missing answer did not hang it
        fake_hub.publish(TOPICS.hub_status, status_payload("stopped", session=1, version="t",
                                                           now=datetime.now(timezone.utc)), qos=1, retain=True)
        wait_for(lambda: not agent.hub_online.is_set(), what="hub away")
        started = time.monotonic()
        answer = agent.relay.ask("member.welcome", {"member": "M0001"}, 5.0)
        # answered at once, not after the 5 s the caller would have waited
        assert answer["error"]["code"] == "not_connected" and time.monotonic() - started < 2.5
        assert agent.relay.ask("member.welcome", {}, 5.0)["error"]["code"] == "bad_request"
        assert agent.relay.pending == 0
    finally:
        agent.stop()
        fake_hub.loop_stop()


class _Answers:
    """Answers stand-in for the desk: enough to see which topic an answer goes to."""
    methods = {"product.detail": lambda device, params: {"gtin": params["gtin"], "asked_by": device}}


def test_the_hub_answers_only_on_the_asking_devices_own_topic(broker, tmp_path):
    hub_store = HubStore(open_hub_db(tmp_path / "hub.db"))
    desk = RequestDesk(topics=TOPICS, answers=_Answers(), workers=1)
    ingest = Ingest(store_id=STORE, login=login_for(broker, broker.hub_user), hub_store=hub_store, version="t",
                    on_request=desk.submit)
    desk.bind(ingest.client)
    desk.start()
    ingest.start()
    wait_for(ingest.connected.is_set, what="hub connected")
    asker, victim = DEVICES
    received: list = []
    listener = raw_client(broker, victim)
    listener.on_message = lambda c, u, m: received.append(m.topic)
    listener.subscribe([(TOPICS.device(victim, "commands"), 1), (TOPICS.device(victim, "responses"), 1)])
    answers: list = []
    client = raw_client(broker, asker)
    client.on_message = lambda c, u, m: answers.append(json.loads(m.payload))
    client.subscribe(TOPICS.device(asker, "responses"), qos=1)
    time.sleep(0.3)
    try:
        for response_topic in (TOPICS.device(victim, "commands"), TOPICS.device(asker, "responses")):
            props = Properties(PacketTypes.PUBLISH)
            props.ResponseTopic = response_topic
            props.CorrelationData = b"c1"
            client.publish(TOPICS.device(asker, "requests"), b'{"method": "product.detail", '
                           b'"params": {"gtin": "04006381333931"}}', qos=1, properties=props).wait_for_publish(5)
        wait_for(lambda: answers, what="the answer on the asker's own topic")
        time.sleep(0.5)
        assert answers == [{"ok": True, "result": {"gtin": "04006381333931", "asked_by": asker}}]
        assert received == [] and desk.counters["bad_response_topic"] == 1
    finally:
        for c in (client, listener):
            c.loop_stop()
        ingest.stop()
        desk.stop()


def test_a_device_cannot_read_another_devices_commands_answers_or_receipts(broker):
    """Mosquitto 2.0 grants an ACL-denied subscription but delivers nothing on it: check what arrives."""
    intruder, victim = DEVICES
    client = raw_client(broker, intruder)
    got: list = []
    client.on_message = lambda c, u, m: got.append(m.topic)
    client.subscribe([(TOPICS.device(victim, leaf), 1) for leaf in ("commands", "responses", "receipts")]
                     + [(TOPICS.device(intruder, "commands"), 1)])
    time.sleep(0.3)
    hub = raw_client(broker, broker.hub_user, client_id="it-tool")
    for leaf in ("commands", "responses", "receipts"):
        hub.publish(TOPICS.device(victim, leaf), b"{}", qos=1).wait_for_publish(5)
    hub.publish(TOPICS.device(intruder, "commands"), b"{}", qos=1).wait_for_publish(5)
    wait_for(lambda: got, what="the intruder's own command")
    time.sleep(0.5)
    for c in (client, hub):
        c.loop_stop()
    assert got == [TOPICS.device(intruder, "commands")]


def test_telemetry_taken_while_the_broker_is_down_reaches_the_hub_later(broker, tmp_path):
    hub_store = HubStore(open_hub_db(tmp_path / "hub.db"))
    ingest = Ingest(store_id=STORE, login=login_for(broker, broker.hub_user), hub_store=hub_store, version="t").start()
    outbox, agent = agent_for(broker, tmp_path)
    try:
        wait_for(agent.hub_online.is_set, what="hub online")
        broker.stop()
        wait_for(lambda: not agent.connected.is_set(), what="agent saw the broker go")
        outbox.append("scan.product", PRODUCT)
        agent.report_health()
        waiting = [row.leaf for row in outbox.peek()]
        assert waiting == ["events", "telemetry"] and agent.counters["telemetry_kept"] == 1
        broker.start()
        wait_for(lambda: outbox.stats()["depth"] == 0, timeout=30, what="outbox drained")
        wait_for(lambda: hub_store.devices() and hub_store.devices()[0].get("telemetry"), what="telemetry at the hub")
        report = json.loads(hub_store.devices()[0]["telemetry"])
        assert report["device"] == DEVICES[0] and report["outbox"]["depth"] == 1 and report["mqtt"]["connected"] is False
    finally:
        agent.stop()
        ingest.stop()


def test_an_agent_config_update_is_checked_written_and_applied_by_a_restart(broker, tmp_path):
    config = tmp_path / "agent.toml"
    config.write_text(f'store = "{STORE}"\ndevice = "{DEVICES[0]}"\n[mqtt]\npassword_file = "/x"\n')
    config.chmod(0o640)
    restarts = threading.Event()
    hub = raw_client(broker, broker.hub_user, client_id="it-tool")
    announce_hub_online(hub)
    outbox, agent = agent_for(broker, tmp_path, config_path=str(config), on_restart=restarts.set)
    try:
        wait_for(agent.connected.is_set, what="agent connected")
        hub.publish(TOPICS.device(DEVICES[0], "commands"), command_payload(
            "c-bad", "config.update", {"target": "agent", "settings": {"drain.window": 0}}), qos=1)
        hub.publish(TOPICS.device(DEVICES[0], "commands"), command_payload(
            "c-good", "config.update", {"target": "agent", "settings": {"drain.window": 80}}), qos=1)
        wait_for(restarts.is_set, what="the agent asked to restart")

        def results():
            return {json.loads(r.body)["data"]["command_id"]: json.loads(r.body)["data"]
                    for r in outbox.peek() if r.type == "command.result"}
        wait_for(lambda: len(results()) == 2 or outbox.stats()["depth"] == 0, what="two results")
        assert results()["c-bad"]["error"]["code"] == "bad_args" and "drain.window" in results()["c-bad"]["error"]["message"]
        assert results()["c-good"]["result"] == {"written": ["drain.window"], "restarting": "agent"}
        text = config.read_text()
        assert "window = 80" in text and 'device = "s001-k01"' in text
        assert config.stat().st_mode & 0o777 == 0o640
    finally:
        agent.stop()
        hub.loop_stop()


def test_the_broker_refuses_a_device_writing_requests_for_another(broker):
    intruder, victim = DEVICES
    client = raw_client(broker, intruder)
    acks: list = []
    client.on_publish = lambda c, u, mid, rc, props: acks.append(rc)
    client.publish(TOPICS.device(victim, "requests"), b"{}", qos=1)
    wait_for(lambda: acks, what="the broker's answer")
    client.loop_stop()
    assert acks[0].is_failure


def test_an_outbox_at_its_bound_reports_what_it_dropped_and_refused(broker, tmp_path):
    from edge_agent.outbox import OutboxFull, OutboxPolicy
    outbox, agent = agent_for(broker, tmp_path)
    try:
        outbox.set_policy(OutboxPolicy(max_rows=3))
        outbox.append("offer.shown", {"session": "s", "offer": "o"})
        for _ in range(3):
            outbox.append("scan.member", {"session": "s", "member": "M1", "jti": "j", "typ": "app"})
        with pytest.raises(OutboxFull):
            outbox.append("scan.product", PRODUCT)
        report = agent.health_snapshot()
        assert report["outbox"]["depth"] == 3 and report["outbox"]["max_rows"] == 3
        assert report["outbox"]["dropped"]["full"] == 1 and report["outbox"]["refused"] == 1
    finally:
        agent.stop()
