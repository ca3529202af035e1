"""A store broken on purpose: real Mosquitto, a real hub process and real edge-agent processes, with
kiosks appending numbered events while the broker, an agent or the hub is killed and restarted.

Used by the failure tests (tests/test_chaos.py) and by `bench/chaos.py`, so the benchmark
measures exactly what the tests prove. Every count comes from the real files: what the
kiosk's `append` returned (acknowledged to the kiosk: on disk), and what the hub's
database holds.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import requests

from demo.broker import Broker, free_port
from edge_agent.outbox import Outbox, open_device_db
from protocol.settings import to_toml

STORE = "s001"
ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Outcome:
    """One scenario's figures."""

    name: str
    sent: int = 0            # appends the kiosks attempted
    acknowledged: int = 0    # appends that returned: on disk, the shopper may see the result
    stored: int = 0          # distinct events in the hub's database
    lost: int = 0            # acknowledged but not stored
    duplicated: int = 0      # stored more than once (the hub's unique id forbids it; counted, not assumed)
    redelivered: int = 0     # copies the hub received again and absorbed (its duplicate counter)
    gaps: int = 0            # missing seqs below each device's highest stored seq
    faults: int = 0
    recoveries_s: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def max_recovery_s(self) -> float:
        return max(self.recoveries_s, default=0.0)


class Kiosk:
    """Stands in for a kiosk process: appends numbered scan.product events to the device outbox."""

    def __init__(self, outbox: Outbox):
        self.outbox = outbox
        self.ids: list[str] = []
        self.attempts = 0
        self._lock = threading.Lock()

    def append(self, n: int = 1) -> None:
        for _ in range(n):
            number = len(self.ids)
            self.attempts += 1
            envelope = self.outbox.append("scan.product", {"session": "chaos", "gtin": f"{number:014d}",
                                                           "source": "ean13"})
            with self._lock:
                self.ids.append(envelope.id)

    def append_over(self, n: int, seconds: float, stop: threading.Event | None = None) -> threading.Thread:
        """Append n events spread over `seconds`, on a thread."""
        def run():
            started = time.monotonic()
            for i in range(n):
                if stop is not None and stop.is_set():
                    return
                self.append()
                lag = started + seconds * (i + 1) / n - time.monotonic()
                if lag > 0:
                    time.sleep(lag)
        thread = threading.Thread(target=run, name="kiosk-appender", daemon=True)
        thread.start()
        return thread


@dataclass
class ChaosStore:
    root: Path
    devices: tuple[str, ...] = ("s001-k01", "s001-k02")
    receipt_timeout_s: float = 10.0
    window: int = 100
    broker: Broker | None = None
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    kiosks: dict[str, Kiosk] = field(default_factory=dict)
    agent_ports: dict[str, int] = field(default_factory=dict)

    def __post_init__(self):
        self.root = Path(self.root).resolve()
        (self.root / "logs").mkdir(parents=True, exist_ok=True)

    @property
    def hub_db(self) -> Path:
        return self.root / "hub" / "hub.db"

    # --- set-up
    def start(self, timeout: float = 30.0, *, broker_up: bool = True) -> "ChaosStore":
        """Broker, hub and agents; with broker_up=False the broker's files are written (same port and
        passwords as when it starts later) but it is not started: hub and agents retry meanwhile."""
        if self.broker is None:
            self.broker = Broker(self.root / "broker", STORE, list(self.devices))
        if broker_up and not (self.broker.process and self.broker.process.poll() is None):
            self.broker.start()
        elif not broker_up:
            self.broker.write_files()
        (self.root / "hub").mkdir(exist_ok=True)
        (self.root / "hub" / "api_key").write_text("unused-in-chaos\n")
        _write(self.root / "hub" / "hub.toml", {
            "store": STORE, "demo": True,
            "mqtt": {"host": "127.0.0.1", "port": self.broker.port, "reconnect_min_s": 0.2, "reconnect_max_s": 2.0,
                     "password_file": str(self.broker.password_file_for(self.broker.hub_user))},
            "db": {"path": str(self.hub_db)}, "web": {"port": free_port()},
            "online": {"base_url": "http://127.0.0.1:9", "api_key_file": str(self.root / "hub" / "api_key")},
        })
        for device in self.devices:
            folder = self.root / device
            folder.mkdir(exist_ok=True)
            self.agent_ports[device] = free_port()
            _write(folder / "agent.toml", {
                "store": STORE, "device": device,
                "mqtt": {"host": "127.0.0.1", "port": self.broker.port, "keepalive_s": 5,
                         "reconnect_min_s": 0.2, "reconnect_max_s": 2.0,
                         "password_file": str(self.broker.password_file_for(device))},
                "outbox": {"path": str(folder / "outbox.db"), "max_mb": 64},
                "catalog": {"path": str(folder / "catalog.db")},
                "drain": {"window": self.window, "receipt_timeout_s": self.receipt_timeout_s},
                "api": {"port": self.agent_ports[device]},
                "kiosk": {"url": f"http://127.0.0.1:{free_port()}"},  # no kiosk process: health reads None
                "local_api": {"token_file": str(folder / "local-api.token")},
                "telemetry": {"interval_s": 5.0},
            })
            self.kiosks[device] = Kiosk(Outbox(open_device_db(folder / "outbox.db"), store=STORE, device=device))
        self.start_hub()
        for device in self.devices:
            self.start_agent(device)
        if broker_up:
            self.wait(lambda: all(self.agent_health(d).get("hub_online") for d in self.devices), timeout,
                      "every agent sees the hub online")
        return self

    def stop(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self.broker:
            self.broker.stop()
        for kiosk in self.kiosks.values():
            kiosk.outbox.db.conn.close()

    # --- the parts, started and killed
    def _spawn(self, name: str, args: list[str]) -> None:
        log = open(self.root / "logs" / f"{name}.log", "ab")
        self.processes[name] = subprocess.Popen([sys.executable, *args], stdout=log, stderr=subprocess.STDOUT,
                                                cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def start_hub(self) -> None:
        self._spawn("hub", ["-m", "hub", "run", "--config", str(self.root / "hub" / "hub.toml")])

    def start_agent(self, device: str) -> None:
        self._spawn(f"{device}-agent", ["-m", "edge_agent", "--config", str(self.root / device / "agent.toml")])

    def kill(self, name: str) -> None:
        """SIGKILL: no clean-up, no last words (a power cut for that process)."""
        process = self.processes[name]
        process.send_signal(signal.SIGKILL)
        process.wait(10)

    def agent_health(self, device: str) -> dict:
        try:
            return requests.get(f"http://127.0.0.1:{self.agent_ports[device]}/healthz", timeout=1).json()
        except (requests.RequestException, ValueError):
            return {}

    # --- what the hub holds
    def _query(self, sql: str, params: tuple = ()) -> list[tuple]:
        try:
            with sqlite3.connect(self.hub_db, timeout=10) as conn:
                return conn.execute(sql, params).fetchall()
        except sqlite3.OperationalError:
            return []  # the hub has not created its database yet

    def stored_count(self) -> int:
        rows = self._query("SELECT count(*) FROM events")
        return rows[0][0] if rows else 0

    def sent_count(self) -> int:
        return sum(len(k.ids) for k in self.kiosks.values())

    def outcome(self, name: str) -> Outcome:
        sent_ids = {i for k in self.kiosks.values() for i in k.ids}
        rows = self._query("SELECT id, device, seq FROM events")
        stored_ids = [r[0] for r in rows]
        outcome = Outcome(name, sent=sum(k.attempts for k in self.kiosks.values()), acknowledged=len(sent_ids),
                          stored=len(set(stored_ids) & sent_ids),
                          lost=len(sent_ids - set(stored_ids)), duplicated=len(stored_ids) - len(set(stored_ids)))
        redelivered = self._query("SELECT coalesce(sum(duplicates), 0) FROM devices")
        outcome.redelivered = redelivered[0][0] if redelivered else 0
        for device in self.devices:
            seqs = sorted(r[2] for r in rows if r[1] == device)
            outcome.gaps += (seqs[-1] - len(set(seqs))) if seqs else 0
        return outcome

    # --- waiting and measuring
    @staticmethod
    def wait(condition: Callable[[], object], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout} s waiting until {what}")
            time.sleep(0.05)

    def recovery_after_heal(self, timeout: float = 120.0) -> float:
        """Seconds from now (a fault just healed) until the hub holds every event appended before now."""
        target, started = self.sent_count(), time.monotonic()
        self.wait(lambda: self.stored_count() >= target, timeout, f"the hub holds the {target} events sent before")
        return time.monotonic() - started

    def drain_all(self, timeout: float = 180.0) -> None:
        self.wait(lambda: self.stored_count() >= self.sent_count(), timeout, "the hub holds every event sent")
        self.wait(lambda: all(self.agent_health(d).get("outbox", {}).get("depth") == 0 for d in self.devices),
                  timeout, "every outbox is empty (receipted)")


def work_dir() -> "tempfile.TemporaryDirectory":
    """A temporary folder on disk (under var/): the agent refuses an outbox on a RAM disk, and some
    systems mount /tmp as one."""
    (ROOT / "var").mkdir(exist_ok=True)
    return tempfile.TemporaryDirectory(dir=ROOT / "var", prefix="bench-")


def _write(path: Path, document: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_toml(document))


# --- the scenarios (each returns an Outcome; the caller checks or prints it)

def under_faults(store: ChaosStore, name: str, *, events: int, restarts: int, seconds: float,
                 fault: Callable[[], None], faults_per_round: int = 1) -> Outcome:
    """The kiosks append `events` in all over `seconds`; `restarts` times, evenly spaced, `fault()` breaks
    something and heals it. Then wait until the hub holds everything and count."""
    started = time.monotonic()
    recoveries = []
    per_kiosk = events // len(store.kiosks)
    threads = [k.append_over(per_kiosk, seconds) for k in store.kiosks.values()]
    for _ in range(restarts):
        time.sleep(seconds / (restarts + 1))
        fault()
        recoveries.append(_recovery_in_background(store))
    for thread in threads:
        thread.join()
    store.drain_all()
    outcome = store.outcome(name)
    outcome.faults = restarts * faults_per_round
    outcome.recoveries_s = [r() for r in recoveries]
    outcome.seconds = time.monotonic() - started
    return outcome


def broker_restarts(store: ChaosStore, *, events: int, restarts: int, seconds: float = 12.0,
                    down_s: float = 0.5) -> Outcome:
    """Mosquitto SIGKILLed and restarted `restarts` times while the kiosks append `events` in all."""
    def fault():
        store.broker.kill()
        time.sleep(down_s)
        store.broker.start()
    return under_faults(store, "broker killed and restarted", events=events, restarts=restarts, seconds=seconds,
                        fault=fault)


def agent_kills(store: ChaosStore, *, events: int, restarts: int, seconds: float = 10.0,
                down_s: float = 0.3) -> Outcome:
    """Each edge agent SIGKILLed and restarted `restarts` times while it drains."""
    def fault():
        for device in store.devices:
            store.kill(f"{device}-agent")
        time.sleep(down_s)
        for device in store.devices:
            store.start_agent(device)
    return under_faults(store, "edge agents SIGKILLed during drains", events=events, restarts=restarts,
                        seconds=seconds, fault=fault, faults_per_round=len(store.devices))


def hub_kills(store: ChaosStore, *, events: int, restarts: int, seconds: float = 10.0,
              down_s: float = 0.5) -> Outcome:
    """The hub SIGKILLed and restarted `restarts` times during ingest: it acknowledges only after commit."""
    def fault():
        store.kill("hub")
        time.sleep(down_s)
        store.start_hub()
    return under_faults(store, "hub SIGKILLed during ingest", events=events, restarts=restarts, seconds=seconds,
                        fault=fault)


def hub_and_broker_kills(store: ChaosStore, *, events: int, restarts: int, seconds: float = 12.0,
                         stalled_s: float = 0.6) -> Outcome:
    """The worst case for a broker's memory: the hub stalls (frozen, still connected, so devices keep
    sending and the broker queues for it), then the broker and the hub are both SIGKILLed before the
    broker saved what it queued. Every event the broker acknowledged and lost must come again from
    the devices, because no receipt ever covered it."""
    def fault():
        store.processes["hub"].send_signal(signal.SIGSTOP)
        time.sleep(stalled_s)
        store.broker.kill()
        store.kill("hub")
        store.broker.start()
        store.start_hub()
    return under_faults(store, "hub stalled, then hub and broker killed", events=events, restarts=restarts,
                        seconds=seconds, fault=fault)


def _recovery_in_background(store: ChaosStore) -> Callable[[], float]:
    """Measure one recovery on a thread (appends go on meanwhile); call the result to get seconds."""
    box: dict[str, float | BaseException] = {}

    def run():
        try:
            box["s"] = store.recovery_after_heal()
        except BaseException as exc:  # reported when the caller asks
            box["e"] = exc
    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    def result() -> float:
        thread.join()
        if "e" in box:
            raise box["e"]
        return round(box["s"], 2)
    return result


SCENARIOS = {"broker": broker_restarts, "agent": agent_kills, "hub": hub_kills, "hub+broker": hub_and_broker_kills}


def summary(outcomes: list[Outcome]) -> dict:
    return {"bench": "chaos", "scenarios": len(outcomes), "sent": sum(o.sent for o in outcomes),
            "acknowledged": sum(o.acknowledged for o in outcomes),
            "stored": sum(o.stored for o in outcomes), "lost": sum(o.lost for o in outcomes),
            "duplicated": sum(o.duplicated for o in outcomes), "gaps": sum(o.gaps for o in outcomes),
            "redelivered": sum(o.redelivered for o in outcomes),
            "max_recovery_s": max((o.max_recovery_s for o in outcomes), default=0.0),
            "per_scenario": {o.name: {"sent": o.sent, "acknowledged": o.acknowledged, "stored": o.stored, "lost": o.lost,
                                      "duplicated": o.duplicated, "faults": o.faults,
                                      "max_recovery_s": o.max_recovery_s} for o in outcomes}}


def to_json(outcomes: list[Outcome]) -> str:
    return json.dumps(summary(outcomes))
