"""A whole store on one machine: Mosquitto, the online store, the hub, and kiosks with their edge agents.

Used by `make demo` and by the end-to-end tests, so the tests prove what a new user runs.
Every part is a real process with its own config file, written here the way
`firmware_config` will write them for real devices.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import requests

from demo.broker import Broker, free_port
from demo.issuer import Issuer
from protocol.settings import to_toml

STORE = "s001"
STORE_NAME = "Omnikiosk Demo Store — Amsterdam Centraal"
KIOSKS = ("s001-k01", "s001-k02")
DEMO_STAFF = ("demo", "demo")


def port_or_free(preferred: int) -> int:
    """The preferred port when it is free (0: any free port)."""
    import socket
    if preferred == 0:
        return free_port()
    with socket.socket() as sock:
        # Like the servers themselves, ignore TIME_WAIT left by the previous run.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            return free_port()


@dataclass
class DemoStore:
    """Lay out the files of a demo store under `root` and run its processes."""

    root: Path
    kiosks: tuple[str, ...] = KIOSKS
    hub_port: int = 8000
    online_port: int = 8010
    broker_port: int = 1883
    kiosk_ports: dict[str, int] = field(default_factory=dict)
    agent_ports: dict[str, int] = field(default_factory=dict)
    scan_fps: float = 5.0
    history_days: int = 0  # > 0: the hub starts with this many days of generated past (demo/history.py)
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    commands: dict[str, list[str]] = field(default_factory=dict)
    restarts: dict[str, list[float]] = field(default_factory=dict)
    broker: Broker | None = None

    def __post_init__(self):
        self.root = Path(self.root).resolve()

    # --- layout
    def kiosk_dir(self, device: str) -> Path:
        return self.root / "kiosks" / device

    def camera_dir(self, device: str) -> Path:
        return self.kiosk_dir(device) / "camera"

    @property
    def issuer_key(self) -> Path:
        return self.root / "online" / "issuer.pem"

    @property
    def jwks_file(self) -> Path:
        return self.root / "online" / "jwks.json"

    @property
    def hub_url(self) -> str:
        return f"http://127.0.0.1:{self.hub_port}/"

    def kiosk_url(self, device: str) -> str:
        return f"http://127.0.0.1:{self.kiosk_ports[device]}/"

    def prepare(self) -> None:
        """Write every config and secret (kept across runs, so restarts keep the same store)."""
        (self.root / "logs").mkdir(parents=True, exist_ok=True)
        self.hub_port = port_or_free(self.hub_port)
        self.online_port = port_or_free(self.online_port)
        self.broker_port = port_or_free(self.broker_port)
        for index, device in enumerate(self.kiosks):
            self.kiosk_ports[device] = port_or_free(self.kiosk_ports.get(device, 8081 + index))
            self.agent_ports[device] = port_or_free(self.agent_ports.get(device, 8091 + index))
        self.broker = Broker(self.root / "broker", STORE, list(self.kiosks), port=self.broker_port)
        self.broker.write_files()
        issuer = Issuer.load_or_create(self.issuer_key)
        self.jwks_file.write_text(json.dumps(issuer.jwks(), indent=2))
        api_key = _secret(self.root / "online" / "api_key")
        webhook_secret = _secret(self.root / "online" / "webhook_secret")
        _secret(self.root / "hub" / "secret_key")
        self._write_toml(self.root / "hub" / "hub.toml", {
            "store": STORE, "store_name": STORE_NAME, "demo": True, "timezone": "Europe/Amsterdam",
            "mqtt": {"host": "127.0.0.1", "port": self.broker_port,
                     "password_file": str(self.broker.password_file_for(self.broker.hub_user))},
            "db": {"path": str(self.root / "hub" / "hub.db")},
            "web": {"host": "127.0.0.1", "port": self.hub_port, "secret_key_file": str(self.root / "hub" / "secret_key")},
            "online": {"base_url": f"http://127.0.0.1:{self.online_port}", "api_key_file": str(api_key),
                       "webhook_secret_file": str(webhook_secret)},
            "sync": {"interval_s": 30.0},
        })
        from hub.staff import hash_password
        from hub.store import HubStore, open_hub_db
        hub_store = HubStore(open_hub_db(self.root / "hub" / "hub.db"))
        if hub_store.staff(DEMO_STAFF[0]) is None:
            hub_store.add_staff(DEMO_STAFF[0], hash_password(DEMO_STAFF[1]), "manager", STORE)
        if self.history_days and hub_store.count_events() == 0:
            # Three months of the store's past, so the manager's analytics page has something to show.
            from demo.history import demo_history, load
            load(hub_store, demo_history(end=datetime.now(timezone.utc), devices=list(self.kiosks),
                                         days=self.history_days), store=STORE)
        hub_store.db.conn.close()
        # The hub pulls the catalog from the online store's changes feed when it starts; every kiosk's
        # agent then syncs its own catalog.db from the hub over MQTT.
        for device in self.kiosks:
            folder = self.kiosk_dir(device)
            self.camera_dir(device).mkdir(parents=True, exist_ok=True)
            outbox, catalog, token = (str(folder / name) for name in ("outbox.db", "catalog.db", "local-api.token"))
            self._write_toml(folder / "kiosk.toml", {
                "store": STORE, "device": device,
                "outbox": {"path": outbox},
                "catalog": {"path": catalog},
                "agent": {"url": f"http://127.0.0.1:{self.agent_ports[device]}"},
                "local_api": {"token_file": token},
                "camera": {"source": f"folder:{self.camera_dir(device)}"},
                "scan": {"fps": self.scan_fps},
                "tokens": {"jwks_file": str(self.jwks_file), "issuer": issuer.issuer},
                "web": {"port": self.kiosk_ports[device]},
                "brand": {"name": STORE_NAME},
            })
            self._write_toml(folder / "agent.toml", {
                "store": STORE, "device": device,
                "mqtt": {"host": "127.0.0.1", "port": self.broker_port,
                         "password_file": str(self.broker.password_file_for(device))},
                "outbox": {"path": outbox, "max_mb": 64},
                "catalog": {"path": catalog},
                "api": {"port": self.agent_ports[device]},
                "kiosk": {"url": f"http://127.0.0.1:{self.kiosk_ports[device]}"},
                "local_api": {"token_file": token},
                "telemetry": {"interval_s": 10.0},
            })
        (self.root / "demo.json").write_text(json.dumps({
            "hub_url": self.hub_url, "online_url": f"http://127.0.0.1:{self.online_port}",
            "broker": f"127.0.0.1:{self.broker_port}",
            "kiosks": {d: {"url": self.kiosk_url(d), "camera": str(self.camera_dir(d)),
                           "agent_api": f"http://127.0.0.1:{self.agent_ports[d]}/"} for d in self.kiosks},
        }, indent=2))

    @staticmethod
    def _write_toml(path: Path, document: dict) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(to_toml(document))

    # --- processes
    def start(self, timeout: float = 60.0) -> "DemoStore":
        try:
            self._start(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, timeout: float) -> None:
        self.prepare()
        self.broker.start()
        self._spawn("online", ["-m", "demo", "--state", str(self.root), "online-store", "--port", str(self.online_port),
                               "--webhook-url", self.hub_url + "webhooks/online",
                               "--webhook-secret-file", str(self.root / "online" / "webhook_secret")])
        self._spawn("hub", ["-m", "hub", "run", "--config", str(self.root / "hub" / "hub.toml")])
        for device in self.kiosks:
            self._spawn(f"{device}-agent", ["-m", "edge_agent", "--config", str(self.kiosk_dir(device) / "agent.toml")])
            self._spawn(f"{device}-kiosk", ["-m", "kiosk", "run", "--config", str(self.kiosk_dir(device) / "kiosk.toml")])
        urls = [f"http://127.0.0.1:{self.online_port}/healthz", self.hub_url + "healthz",
                *(self.kiosk_url(d) + "healthz" for d in self.kiosks),
                *(f"http://127.0.0.1:{self.agent_ports[d]}/healthz" for d in self.kiosks)]
        self.wait_ready(urls, timeout)
        self.wait_for_catalogs(timeout)

    def wait_for_catalogs(self, timeout: float) -> None:
        """The hub has the online store's catalog, and every kiosk's agent has synced it (a product scan answers)."""
        deadline = time.monotonic() + timeout

        def version(url: str) -> int | None:
            try:
                return requests.get(url + "healthz", timeout=1).json().get("catalog_version")
            except (requests.RequestException, ValueError):
                return None
        while True:
            # Read the hub's each time: it may still be paging the online store's feed (a version per page).
            hub = version(self.hub_url)
            kiosks = {device: version(self.kiosk_url(device)) for device in self.kiosks}
            if hub and all(have == hub for have in kiosks.values()):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"catalogs not in sync after {timeout} s (hub {hub}, kiosks {kiosks}); "
                                   f"see the logs in {self.root / 'logs'}")
            time.sleep(0.1)

    def _spawn(self, name: str, args: list[str]) -> None:
        log = open(self.root / "logs" / f"{name}.log", "ab")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.commands[name] = args
        self.processes[name] = subprocess.Popen([sys.executable, *args], stdout=log, stderr=subprocess.STDOUT,
                                                env=env, start_new_session=True)

    def supervise(self, *, burst: int = 5, window_s: float = 60.0) -> list[str]:
        """Start again whatever exited, as systemd's Restart=always does on a device (a `restart`
        command ends the agent or the kiosk on purpose). Returns the names restarted; raises
        RuntimeError when one keeps dying (more than `burst` restarts within `window_s`)."""
        restarted = []
        for name, process in list(self.processes.items()):
            if process.poll() is None:
                continue
            now = time.monotonic()
            recent = [t for t in self.restarts.get(name, []) if now - t < window_s] + [now]
            self.restarts[name] = recent
            if len(recent) > burst:
                raise RuntimeError(f"{name} keeps exiting (last status {process.returncode}); "
                                   f"see {self.root / 'logs' / (name + '.log')}")
            self._spawn(name, self.commands[name])
            restarted.append(name)
        return restarted

    def wait_ready(self, urls: list[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pending = list(urls)
        while pending:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    tail = (self.root / "logs" / f"{name}.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"{name} exited with {process.returncode}:\n{tail}")
            try:
                ready = requests.get(pending[0], timeout=1).status_code == 200
            except requests.RequestException:
                ready = False  # not listening yet
            if ready:
                pending.pop(0)
                continue
            if time.monotonic() > deadline:
                raise TimeoutError(f"not ready after {timeout} s: {pending[0]} (logs in {self.root / 'logs'})")
            time.sleep(0.1)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 8
        for process in self.processes.values():
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        if self.broker:
            self.broker.stop()

    def banner(self) -> str:
        lines = [
            "",
            f"  Omnikiosk demo store {STORE} — {STORE_NAME}",
            "",
            f"  Staff tablet   {self.hub_url}   (sign in: {DEMO_STAFF[0]} / {DEMO_STAFF[1]}, demo mode only)",
            f"  Analytics      {self.hub_url}manager   (the demo login is a manager; {self.history_days} days of past)",
            *(f"  Kiosk {d}  {self.kiosk_url(d)}" for d in self.kiosks),
            f"  Online store   http://127.0.0.1:{self.online_port}/api/v1/  (demo API, see docs/online-api.md)",
            f"  MQTT broker    127.0.0.1:{self.broker_port}  (per-device passwords and ACL, no anonymous access)",
            "",
            "  Try a check-in (in another terminal):",
            f"    .venv/bin/python -m demo checkin M0001 --kiosk {self.kiosks[0]}",
            "",
            f"  Logs: {self.root / 'logs'}    Stop: Ctrl-C",
            "",
        ]
        return "\n".join(lines)


def _secret(path: Path) -> Path:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(32) + "\n")
        path.chmod(0o600)
    return path
