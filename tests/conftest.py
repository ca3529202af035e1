"""Shared fixtures: a real Mosquitto on a free port, real SQLite files, helpers to wait for outcomes."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import pytest

from demo.broker import Broker
from protocol.mqtt import BrokerLogin

STORE = "s001"
DEVICES = ["s001-k01", "s001-k02"]


@pytest.fixture
def broker(tmp_path: Path):
    broker = Broker(tmp_path / "broker", STORE, list(DEVICES)).start()
    yield broker
    broker.stop()


def login_for(broker: Broker, user: str, password: str | None = None) -> BrokerLogin:
    return BrokerLogin(host=broker.host, port=broker.port, username=user,
                       password=broker.passwords[user] if password is None else password, keepalive=10)


def wait_for(condition: Callable[[], object], timeout: float = 20.0, interval: float = 0.05, what: str = ""):
    """Poll until condition() is truthy; fail with `what` when it never is."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what or condition}")
