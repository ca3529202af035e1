"""sd_notify: what systemd receives on a real AF_UNIX datagram socket, and that nothing ever raises."""

from __future__ import annotations

import logging
import os
import socket
import uuid

import pytest

from protocol import sdnotify
from protocol.sdnotify import Watchdog, notify, watchdog_interval_s


@pytest.fixture(autouse=True)
def fresh_failure_log():
    sdnotify._failed_once.clear()
    yield
    sdnotify._failed_once.clear()


@pytest.fixture
def systemd(tmp_path, monkeypatch):
    """A socket standing in for systemd's notify socket, NOTIFY_SOCKET pointing at it."""
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    yield sock
    sock.close()


def received(sock: socket.socket) -> list[str]:
    """Every datagram waiting on the socket, without blocking."""
    sock.setblocking(False)
    messages = []
    try:
        while True:
            messages.append(sock.recv(4096).decode())
    except BlockingIOError:
        pass
    finally:
        sock.settimeout(2)
    return messages


def test_notify_sends_the_state_as_one_datagram(systemd):
    assert notify("READY=1") is True
    assert systemd.recv(4096) == b"READY=1"


def test_notify_reaches_an_abstract_socket(monkeypatch):
    name = f"omnikiosk-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert notify("STATUS=scanning") is True
        assert sock.recv(4096) == b"STATUS=scanning"


def test_notify_is_a_no_op_outside_systemd(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert notify("READY=1") is False


def test_notify_reads_the_variable_when_called_not_at_import(tmp_path, monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert notify("READY=1") is False
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(tmp_path / "later.sock"))
        sock.settimeout(2)
        monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "later.sock"))
        assert notify("READY=1") is True
        assert sock.recv(4096) == b"READY=1"


def test_a_failed_send_never_raises_and_is_logged_once(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens.sock"))
    with caplog.at_level(logging.WARNING, logger="protocol.sdnotify"):
        assert notify("WATCHDOG=1") is False
        assert notify("WATCHDOG=1") is False
    warnings = [r for r in caplog.records if r.name == "protocol.sdnotify"]
    assert len(warnings) == 1
    assert "nobody-listens.sock" in warnings[0].getMessage()


def test_a_notify_socket_that_is_no_address_is_refused_quietly(monkeypatch, caplog):
    monkeypatch.setenv("NOTIFY_SOCKET", "vsock:2:1234")
    with caplog.at_level(logging.WARNING, logger="protocol.sdnotify"):
        assert notify("READY=1") is False
    assert "vsock:2:1234" in caplog.text


@pytest.mark.parametrize("environ, expected", [
    ({}, None),
    ({"WATCHDOG_USEC": "30000000"}, 30.0),
    ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "4242"}, 30.0),
    ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),       # another process's watchdog
    ({"WATCHDOG_USEC": "0"}, None),
    ({"WATCHDOG_USEC": "soon"}, None),
    ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "me"}, None),
])
def test_watchdog_interval_follows_sd_watchdog_enabled(environ, expected):
    assert watchdog_interval_s(environ, pid=4242) == expected


def test_watchdog_interval_defaults_to_this_process(monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "20000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert watchdog_interval_s() == 20.0


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_watchdog_says_ready_once_and_pings_at_most_every_half_interval(systemd, monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "10000000")     # WatchdogSec=10
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    clock = Clock()
    watchdog = Watchdog(clock=clock)
    watchdog.tick()
    assert received(systemd) == ["READY=1", "WATCHDOG=1"]
    for _ in range(32):                                  # a loop at 8 fps for 4 s
        clock.now += 0.125
        watchdog.tick()
    assert received(systemd) == []
    clock.now += 1.0                                     # 5 s since the last ping
    watchdog.tick()
    watchdog.tick()
    assert received(systemd) == ["WATCHDOG=1"]


def test_watchdog_without_watchdog_sec_only_says_ready(systemd):
    watchdog = Watchdog(clock=Clock())
    watchdog.tick()
    watchdog.tick()
    assert received(systemd) == ["READY=1"]


def test_a_watchdog_that_waits_to_be_ready_pings_without_readiness(systemd, monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "10000000")
    clock = Clock()
    watchdog = Watchdog(ready_on_tick=False, clock=clock)
    watchdog.tick()
    assert received(systemd) == ["WATCHDOG=1"]
    watchdog.ready()
    watchdog.ready()
    assert received(systemd) == ["READY=1"]


def test_watchdog_keeps_working_when_systemd_went_away(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone.sock"))
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")
    clock = Clock()
    watchdog = Watchdog(clock=clock)
    with caplog.at_level(logging.WARNING, logger="protocol.sdnotify"):
        for _ in range(5):
            watchdog.tick()
            clock.now += 1
    assert len([r for r in caplog.records if r.name == "protocol.sdnotify"]) == 1


# --- the processes that speak it: each ticks from the loop that does its real work ------------------


def test_a_running_kiosk_says_ready_and_keeps_pinging_without_a_camera(tmp_path, systemd):
    """No frame ever arrives (an empty camera folder): the scan loop still turns, so systemd hears from it."""
    import signal
    import subprocess
    import sys

    from conftest import ROOT
    from test_kiosk_control import write_config

    from demo.broker import free_port

    path = write_config(tmp_path, web={"port": free_port()})
    environ = {k: v for k, v in os.environ.items() if not k.startswith("OMNIKIOSK_")}
    environ.update(NOTIFY_SOCKET=systemd.getsockname(), WATCHDOG_USEC="1000000")  # WatchdogSec=1
    process = subprocess.Popen([sys.executable, "-m", "kiosk", "run", "--config", str(path)], cwd=ROOT, env=environ,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        systemd.settimeout(60)
        assert systemd.recv(4096) == b"READY=1"
        systemd.settimeout(5)
        assert [systemd.recv(4096) for _ in range(3)] == [b"WATCHDOG=1"] * 3
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0
        assert "STOPPING=1" in received(systemd)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def agent_without_broker(tmp_path, ticks: list):
    """An edge agent whose broker is not there, counting its watchdog ticks."""
    from demo.broker import free_port
    from edge_agent.agent import EdgeAgent
    from edge_agent.outbox import Outbox, open_device_db
    from protocol.backoff import Backoff
    from protocol.mqtt import BrokerLogin

    outbox = Outbox(open_device_db(tmp_path / "outbox.db"), store="s001", device="s001-k01")
    return EdgeAgent(store="s001", device="s001-k01", outbox=outbox, version="t", poll_s=0.05,
                     login=BrokerLogin(host="127.0.0.1", port=free_port(), username="s001-k01", password="x"),
                     backoff=Backoff(min_s=0.2, max_s=1.0), heartbeat=lambda: ticks.append(1)).start()


def test_the_agents_drain_loop_ticks_while_the_broker_is_away(tmp_path):
    from conftest import wait_for

    ticks = []
    agent = agent_without_broker(tmp_path, ticks)
    try:
        wait_for(lambda: len(ticks) >= 10, timeout=10, what="the drain loop's ticks with no broker")
        assert not agent.connected.is_set()
    finally:
        agent.stop()


def test_the_agent_stops_feeding_the_watchdog_when_its_network_thread_dies(tmp_path):
    """paho's loop thread is what reconnects: if it is gone the agent would wait forever, ticking. It must
    stop ticking instead, so systemd restarts it."""
    import time

    from conftest import wait_for

    ticks = []
    agent = agent_without_broker(tmp_path, ticks)
    try:
        wait_for(lambda: len(ticks) >= 5, timeout=10, what="ticks while healthy")
        agent.client.loop_stop()          # the network thread is gone
        time.sleep(0.3)
        before = len(ticks)
        time.sleep(1.0)
        assert len(ticks) == before and not agent.healthy()
    finally:
        agent.stop()


def test_the_hubs_ingest_writer_ticks_while_idle(tmp_path):
    from conftest import wait_for

    from demo.broker import free_port
    from hub.ingest import IDLE_TURN_S, Ingest
    from hub.store import HubStore, open_hub_db
    from protocol.mqtt import BrokerLogin

    ticks = []
    ingest = Ingest(store_id="s001", hub_store=HubStore(open_hub_db(tmp_path / "hub.db")), version="t",
                    login=BrokerLogin(host="127.0.0.1", port=free_port(), username="hub-s001", password="x"),
                    heartbeat=lambda: ticks.append(1)).start()
    try:
        wait_for(lambda: len(ticks) >= 3, timeout=5 * IDLE_TURN_S, what="the writer's ticks with nothing to write")
    finally:
        ingest.stop()


def test_the_hub_is_ready_only_once_its_web_app_answers():
    import threading

    from demo.broker import free_port
    from hub.__main__ import ready_when_serving

    port = free_port()
    ready = threading.Event()
    threading.Thread(target=ready_when_serving, args=(f"https://127.0.0.1:{port}/", ready.set, 0.05),
                     daemon=True).start()
    assert not ready.wait(0.5)
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", port))
        server.listen()
        assert ready.wait(5)
