"""Shared fixtures: a real Mosquitto on a free port, real SQLite files, helpers to wait for outcomes."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest

from demo.broker import Broker
from demo.store import DemoStore
from protocol.mqtt import BrokerLogin

ROOT = Path(__file__).resolve().parents[1]
STORE = "s001"
DEVICES = ["s001-k01", "s001-k02"]


def pytest_configure(config):
    """The edge agent refuses an outbox on a RAM disk (a power cut would wipe it). Where /tmp is a tmpfs
    (Fedora, Arch), keep the tests' files on disk under var/ instead, so `make test` works there too."""
    import tempfile

    from edge_agent.storage import mount_of, parse_mountinfo, volatile_reason
    if config.option.basetemp:
        return
    try:
        mounts = parse_mountinfo(Path("/proc/self/mountinfo").read_text())
    except OSError:
        return
    if volatile_reason(mount_of(str(Path(tempfile.gettempdir()).resolve()), mounts)):
        config.option.basetemp = str(ROOT / "var" / "pytest")


@pytest.fixture
def broker(tmp_path: Path):
    broker = Broker(tmp_path / "broker", STORE, list(DEVICES)).start()
    yield broker
    broker.stop()


def login_for(broker: Broker, user: str, password: str | None = None) -> BrokerLogin:
    return BrokerLogin(host=broker.host, port=broker.port, username=user,
                       password=broker.passwords[user] if password is None else password, keepalive=10)


def raw_client(broker: Broker, user: str, client_id: str | None = None):
    """A bare connected MQTT client with `user`'s credentials (to play a device, the hub, or an intruder)."""
    import threading

    from protocol.mqtt import build_client, connect
    from protocol.topics import Topics
    topics = Topics(STORE)
    client = build_client(client_id or f"raw-{user}", login_for(broker, user),
                          will_topic=topics.hub_status if user == broker.hub_user else topics.status(user),
                          will_payload=b'{"state":"offline","session":0,"version":"t","ts":"x"}')
    connected = threading.Event()
    client.on_connect = lambda *a: connected.set()
    connect(client, login_for(broker, user))
    client.loop_start()
    assert connected.wait(10), f"{user} could not connect"
    return client


def wait_for(condition: Callable[[], object], timeout: float = 20.0, interval: float = 0.05, what: str = ""):
    """Poll until condition() is truthy; fail with `what` when it never is."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what or condition}")


@pytest.fixture(scope="session")
def store(tmp_path_factory):
    """A whole demo store as real processes (the launcher behind `make demo`), shared by the slow tests."""
    store = DemoStore(tmp_path_factory.mktemp("store"), hub_port=0, online_port=0, broker_port=0,
                      kiosk_ports={"s001-k01": 0, "s001-k02": 0}, scan_fps=10)
    store.start()
    yield store
    store.stop()


def demo_cli(store: DemoStore, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "demo", "--state", str(store.root), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def browsers():
    """Open headless Chromium pages (tests/browser.py) at a size, `browsers(width, height)`; all closed after."""
    from browser import Browser
    opened: list[Browser] = []

    def open_one(width: int = 1280, height: int = 800) -> Browser:
        opened.append(Browser(width, height))
        return opened[-1]
    yield open_one
    for browser in opened:
        browser.close()
