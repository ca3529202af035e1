"""Events travel outbox → edge agent → real Mosquitto → hub database exactly once."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone

import paho.mqtt.client as mqtt
import pytest
from conftest import DEVICES, STORE, login_for, raw_client, wait_for

from demo.broker import free_port
from edge_agent.agent import EdgeAgent
from edge_agent.outbox import Outbox, open_device_db
from hub.ingest import Ingest
from hub.store import HubStore, open_hub_db
from protocol.envelope import make_envelope
from protocol.mqtt import build_client, connect
from protocol.topics import Topics


def start_hub(broker, tmp_path):
    store = HubStore(open_hub_db(tmp_path / "hub.db"))
    ingest = Ingest(store_id=STORE, login=login_for(broker, broker.hub_user), hub_store=store, version="test").start()
    wait_for(ingest.connected.is_set, what="hub connected")
    return store, ingest


def start_agent(broker, tmp_path, device=DEVICES[0], window=20):
    outbox = Outbox(open_device_db(tmp_path / f"{device}-outbox.db"), store=STORE, device=device)
    agent = EdgeAgent(store=STORE, device=device, login=login_for(broker, device), outbox=outbox,
                      version="test", window=window, poll_s=0.05).start()
    return outbox, agent


def test_thousand_events_reach_the_hub_exactly_once(broker, tmp_path):
    hub_store, ingest = start_hub(broker, tmp_path)
    outbox, agent = start_agent(broker, tmp_path)
    sent = [outbox.append("scan.product", {"session": "s-1", "gtin": f"{n:014d}", "source": "ean13"}).id
            for n in range(1000)]
    wait_for(lambda: hub_store.count_events(device=DEVICES[0]) == 1000, timeout=60, what="1000 events stored")
    wait_for(agent.idle, what="outbox drained")
    stored = [row[0] for row in hub_store.db.execute("SELECT id FROM events ORDER BY seq").fetchall()]
    assert stored == sent
    seqs = [row[0] for row in hub_store.db.execute("SELECT seq FROM events ORDER BY seq").fetchall()]
    assert seqs == list(range(1, 1001))
    assert outbox.stats()["depth"] == 0
    device = {d["id"]: d for d in hub_store.devices()}[DEVICES[0]]
    assert device["events"] == 1000 and device["gaps"] == 0 and device["last_seq"] == 1000
    agent.stop()
    ingest.stop()


def test_events_written_while_broker_is_down_arrive_after_it_returns(broker, tmp_path):
    hub_store, ingest = start_hub(broker, tmp_path)
    outbox, agent = start_agent(broker, tmp_path)
    wait_for(agent.connected.is_set, what="agent connected")
    broker.stop()
    wait_for(lambda: not agent.connected.is_set(), what="agent saw the broker go")
    ids = [outbox.append("session.started", {"session": f"s-{n}"}).id for n in range(50)]
    assert outbox.stats()["depth"] == 50
    broker.start()
    wait_for(lambda: hub_store.count_events() == 50, timeout=60, what="events after broker restart")
    wait_for(agent.idle, what="outbox drained")
    assert sorted(r[0] for r in hub_store.db.execute("SELECT id FROM events").fetchall()) == sorted(ids)
    agent.stop()
    ingest.stop()


def test_redelivered_event_is_counted_as_duplicate_not_stored_twice(broker, tmp_path):
    hub_store, ingest = start_hub(broker, tmp_path)
    device = DEVICES[1]
    envelope = make_envelope(store=STORE, device=device, type="session.started", seq=1,
                             data={"session": "s-9"}, now=datetime.now(timezone.utc))
    client = raw_client(broker, device)
    for _ in range(3):
        client.publish(Topics(STORE).events(device), envelope.to_json(), qos=1).wait_for_publish(5)
    wait_for(lambda: ingest.counters.duplicates == 2, what="two duplicates counted")
    assert hub_store.count_events(id=envelope.id) == 1
    client.loop_stop()
    ingest.stop()


def test_device_cannot_publish_under_another_devices_topic(broker, tmp_path):
    hub_store, ingest = start_hub(broker, tmp_path)
    intruder, victim = DEVICES
    forged = make_envelope(store=STORE, device=victim, type="session.started", seq=1, data={"session": "x"},
                           now=datetime.now(timezone.utc))
    client = raw_client(broker, intruder)
    acks: list = []
    client.on_publish = lambda c, u, mid, rc, props: acks.append(rc)
    client.publish(Topics(STORE).events(victim), forged.to_json(), qos=1)
    wait_for(lambda: acks, what="broker answered the forged publish")
    assert acks[0].is_failure, f"broker accepted a publish outside the ACL: {acks[0]}"
    # And an honest topic still works, proving the hub was listening all along.
    own = make_envelope(store=STORE, device=intruder, type="session.started", seq=1, data={"session": "y"},
                        now=datetime.now(timezone.utc))
    client.publish(Topics(STORE).events(intruder), own.to_json(), qos=1).wait_for_publish(5)
    wait_for(lambda: hub_store.count_events(id=own.id) == 1, what="own event stored")
    assert hub_store.count_events(device=victim) == 0
    client.loop_stop()
    ingest.stop()


def test_envelope_naming_another_device_is_rejected_by_the_hub(broker, tmp_path):
    """Even if an ACL were too wide, the hub trusts the topic, not the payload."""
    hub_store, ingest = start_hub(broker, tmp_path)
    sender, claimed = DEVICES
    forged = make_envelope(store=STORE, device=claimed, type="session.started", seq=1, data={"session": "x"},
                           now=datetime.now(timezone.utc))
    client = raw_client(broker, sender)
    client.publish(Topics(STORE).events(sender), forged.to_json(), qos=1).wait_for_publish(5)
    client.publish(Topics(STORE).events(sender), b"\xff\xfenot json", qos=1).wait_for_publish(5)
    wait_for(lambda: sum(ingest.counters.rejected.values()) == 2, what="two rejections")
    assert hub_store.rejection_counts() == {"device_mismatch": 1, "not_utf8": 1}
    assert hub_store.count_events() == 0
    client.loop_stop()
    ingest.stop()


@pytest.mark.parametrize("password", [None, "wrong-password"])
def test_anonymous_or_wrong_password_client_is_refused(broker, password):
    results: list = []
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="stranger", protocol=mqtt.MQTTv5)
    if password:
        client.username_pw_set(DEVICES[0], password)
    client.on_connect = lambda c, u, flags, rc, props: results.append(rc)
    client.connect(broker.host, broker.port)
    client.loop_start()
    wait_for(lambda: results, what="CONNACK")
    client.loop_stop()
    assert results[0].is_failure
    assert results[0].getName() in ("Not authorized", "Bad user name or password")


def test_agent_announces_online_and_stopped_retained(broker, tmp_path):
    hub_store, ingest = start_hub(broker, tmp_path)
    outbox, agent = start_agent(broker, tmp_path)
    wait_for(lambda: {d["id"]: d for d in hub_store.devices()}.get(DEVICES[0], {}).get("state") == "online",
             what="online status")
    agent.stop()
    wait_for(lambda: {d["id"]: d for d in hub_store.devices()}[DEVICES[0]]["state"] == "stopped",
             what="stopped status")
    retained = _read_retained(broker, Topics(STORE).status(DEVICES[0]))
    assert json.loads(retained)["state"] == "stopped"
    ingest.stop()


def test_agent_killed_uncleanly_is_marked_offline_by_its_will(broker, tmp_path):
    """Power cut: the agent process dies with SIGKILL, sends no DISCONNECT, and its last will speaks."""
    hub_store, ingest = start_hub(broker, tmp_path)
    config = tmp_path / "agent.toml"
    config.write_text(f'store = "{STORE}"\ndevice = "{DEVICES[0]}"\n[mqtt]\nhost = "{broker.host}"\n'
                      f'port = {broker.port}\nkeepalive_s = 5\n'
                      f'password_file = "{broker.password_file_for(DEVICES[0])}"\n'
                      f'[outbox]\npath = "{tmp_path / "outbox.db"}"\n[catalog]\npath = "{tmp_path / "catalog.db"}"\n'
                      f'[local_api]\ntoken_file = "{tmp_path / "token"}"\n[api]\nport = {free_port()}\n')
    agent = subprocess.Popen([sys.executable, "-m", "edge_agent", "--config", str(config)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        state = lambda: {d["id"]: d for d in hub_store.devices()}.get(DEVICES[0], {}).get("state")  # noqa: E731
        wait_for(lambda: state() == "online", what="online status")
        agent.send_signal(signal.SIGKILL)
        agent.wait(5)
        wait_for(lambda: state() == "offline", timeout=30, what="offline from the last will")
    finally:
        agent.kill()
        ingest.stop()


def _read_retained(broker, topic):
    got: list = []
    client = build_client("reader", login_for(broker, broker.hub_user), will_topic="omnikiosk/s001/hub/status",
                          will_payload=b"{}")
    client.on_connect = lambda c, *a: c.subscribe(topic, qos=1)
    client.on_message = lambda c, u, m: got.append(m.payload)
    connect(client, login_for(broker, broker.hub_user))
    client.loop_start()
    wait_for(lambda: got, what=f"retained message on {topic}")
    client.loop_stop()
    return got[0]


def test_hub_killed_mid_ingest_loses_nothing_and_stores_nothing_twice(broker, tmp_path):
    """SIGKILL the hub process while events stream in: unacknowledged ones are redelivered by the broker,
    committed ones are not stored again."""
    (tmp_path / "api_key").write_text("unused-by-this-test\n")
    config = tmp_path / "hub.toml"
    config.write_text(f'store = "{STORE}"\ndemo = true\n[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\n'
                      f'password_file = "{broker.password_file_for(broker.hub_user)}"\n'
                      f'[db]\npath = "{tmp_path / "hub.db"}"\n[web]\nport = {free_port()}\n'
                      f'[online]\nbase_url = "http://127.0.0.1:9"\napi_key_file = "{tmp_path / "api_key"}"\n')

    log = open(tmp_path / "hub.log", "ab")

    def start_hub_process():
        return subprocess.Popen([sys.executable, "-m", "hub", "run", "--config", str(config)],
                                stdout=log, stderr=subprocess.STDOUT)

    def stored() -> int:
        import sqlite3
        try:
            with sqlite3.connect(tmp_path / "hub.db", timeout=10) as conn:
                return conn.execute("SELECT count(*) FROM events").fetchone()[0]
        except sqlite3.OperationalError:
            return 0  # not created yet

    hub = start_hub_process()
    outbox, agent = start_agent(broker, tmp_path, window=100)
    try:
        wait_for(lambda: stored() >= 0 and (tmp_path / "hub.db").exists(), what="hub database")
        ids = [outbox.append("scan.product", {"session": "s", "gtin": f"{n:014d}", "source": "ean13"}).id
               for n in range(3000)]
        wait_for(lambda: stored() > 300, timeout=60, what="ingest under way")
        hub.send_signal(signal.SIGKILL)
        hub.wait(10)
        partial = stored()
        hub = start_hub_process()
        wait_for(lambda: stored() == 3000, timeout=120, what="every event after the hub restarted")
        wait_for(agent.idle, what="outbox drained")
    finally:
        hub.kill()
        agent.stop()
    import sqlite3
    with sqlite3.connect(tmp_path / "hub.db") as conn:
        got = [r[0] for r in conn.execute("SELECT id FROM events ORDER BY seq").fetchall()]
    assert got == ids, f"killed at {partial} stored"


def test_events_scanned_before_the_hub_ever_connected_wait_in_the_outbox_then_arrive(broker, tmp_path):
    """A broker acknowledges events nobody has subscribed to yet and drops them: so the agent holds them
    until the hub's retained status proves its session exists."""
    outbox, agent = start_agent(broker, tmp_path)
    wait_for(agent.connected.is_set, what="agent connected")
    ids = [outbox.append("session.started", {"session": f"s-{n}"}).id for n in range(100)]
    time.sleep(1.0)  # ample time to have drained, had it been allowed to
    assert outbox.stats()["depth"] == 100 and not agent.hub_seen.is_set()
    hub_store, ingest = start_hub(broker, tmp_path)
    wait_for(lambda: hub_store.count_events() == 100, what="events after the hub first connected")
    assert sorted(r[0] for r in hub_store.db.execute("SELECT id FROM events").fetchall()) == sorted(ids)
    agent.stop()
    ingest.stop()
