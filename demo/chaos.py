"""A store broken on purpose: real Mosquitto, a real hub process and real edge-agent processes, with
kiosks appending numbered events while the broker, an agent or the hub is killed and restarted.

Used by the failure tests (tests/test_chaos.py) and by `bench/chaos.py`, so the benchmark
measures exactly what the tests prove. Every count comes from the real files: what the
kiosk's `append` returned (acknowledged to the kiosk: on disk), and what the hub's
database holds.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path

import requests

from demo.broker import Broker, free_port
from demo.netproxy import NetProxy
from demo.online_store import FAULTS_OFF
from edge_agent.outbox import (
    HIGH,
    PRIORITY,
    TELEMETRY,
    Outbox,
    OutboxDiskFull,
    OutboxFull,
    open_device_db,
)
from protocol.settings import to_toml

STORE = "s001"
ROOT = Path(__file__).resolve().parents[1]
# Debian's libfaketime, under the machine's multiarch folder (x86_64-linux-gnu, aarch64-linux-gnu, ...)
FAKETIME_LIB = next(iter(sorted(Path("/usr/lib").glob("*/faketime/libfaketime.so.1"))),
                    Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"))


@dataclass
class Outcome:
    """One scenario's figures."""

    name: str
    sent: int = 0            # appends the kiosks attempted
    acknowledged: int = 0    # appends that returned: on disk, the shopper may see the result
    stored: int = 0          # distinct events in the hub's database
    dropped_by_policy: int = 0  # intended and counted by the outbox: refused (OutboxFull) + evicted for room + expired
    lost: int = 0            # acknowledged, not stored, and not explained by a counted policy drop: must be 0
    duplicated: int = 0      # stored more than once (the hub's unique id forbids it; counted, not assumed)
    redelivered: int = 0     # copies the hub received again and absorbed (its duplicate counter)
    gaps: int = 0            # missing seqs below each device's highest stored seq
    faults: int = 0
    recoveries_s: list[float] = field(default_factory=list)
    seconds: float = 0.0
    notes: dict = field(default_factory=dict)  # what a scenario measures beyond the common columns

    @property
    def max_recovery_s(self) -> float:
        return max(self.recoveries_s, default=0.0)


class Kiosk:
    """Stands in for a kiosk process: appends numbered events to the device outbox (scan.product unless
    told otherwise), and remembers what each append answered."""

    def __init__(self, outbox: Outbox):
        self.outbox = outbox
        self.ids: list[str] = []          # acknowledged: append returned, the event is on disk
        self.types: dict[str, str] = {}   # id -> event type
        self.attempts = 0
        self.refused: dict[str, int] = {}  # type -> appends refused with OutboxFull (the kiosk was told)
        self.disk_full = 0                 # of those, refused because the device's disk was full
        self._lock = threading.Lock()

    def append(self, n: int = 1, type: str = "scan.product") -> None:
        for _ in range(n):
            self.append_event(type, _data(type, len(self.ids)))

    def append_event(self, type: str, data: dict) -> str | None:
        """One event with this data: its id once on disk, None when the outbox refused it (counted)."""
        self.attempts += 1
        try:
            envelope = self.outbox.append(type, data)
        except OutboxFull as exc:
            self.refused[type] = self.refused.get(type, 0) + 1
            self.disk_full += isinstance(exc, OutboxDiskFull)
            return None
        with self._lock:
            self.ids.append(envelope.id)
            self.types[envelope.id] = type
        return envelope.id

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


def _data(type: str, number: int) -> dict:
    """Valid `data` for each event type the scenarios append."""
    if type == "scan.member":
        return {"session": "chaos", "member": f"m{number}", "jti": f"chaos-{number}", "typ": "card"}
    if type == "offer.shown":
        return {"session": "chaos", "offer": f"o{number}"}
    return {"session": "chaos", "gtin": f"{number:014d}", "source": "ean13"}


class SkewedClock:
    """A kiosk's wall clock `skew_s` away from the truth; a test may move it (an NTP step)."""

    def __init__(self, skew_s: float = 0.0):
        self.skew_s = skew_s

    def __call__(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.skew_s)


@dataclass
class ChaosStore:
    root: Path
    devices: tuple[str, ...] = ("s001-k01", "s001-k02")
    receipt_timeout_s: float = 10.0
    window: int = 100
    keepalive_s: int = 5
    proxied: bool = False          # each agent reaches the broker through its own NetProxy (cut the network)
    max_rows: int = 500_000        # the outbox's row bound (outbox.max_rows)
    clock_skew_s: dict[str, float] = field(default_factory=dict)  # device -> its clocks' offset (kiosk and agent)
    outbox_max_mb: int = 64        # the outbox's byte bound (the agent wants this much free disk to start)
    small_disk_mb: int = 0         # > 0: each device's folder is a loop-mounted ext4 of this size (a small SD card)
    online: bool = False           # an online store (demo/online_store.py, in this process) the hub syncs with
    webhook_retry_s: float = 1.0   # the online store's first webhook retry (compressed with a compressed morning)
    broker: Broker | None = None
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    kiosks: dict[str, Kiosk] = field(default_factory=dict)
    clocks: dict[str, SkewedClock] = field(default_factory=dict)
    proxies: dict[str, NetProxy] = field(default_factory=dict)
    agent_ports: dict[str, int] = field(default_factory=dict)
    mounts: list[Path] = field(default_factory=list)
    online_store: OnlineStoreUnderTest | None = None

    def __post_init__(self):
        self.root = Path(self.root).resolve()
        (self.root / "logs").mkdir(parents=True, exist_ok=True)

    @property
    def hub_db(self) -> Path:
        return self.root / "hub" / "hub.db"

    # --- set-up
    def start(self, timeout: float = 30.0, *, broker_up: bool = True) -> ChaosStore:
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
        hub_port = free_port()
        online = {"base_url": "http://127.0.0.1:9", "api_key_file": str(self.root / "hub" / "api_key")}
        extra = {}
        if self.online and self.online_store is None:
            self.online_store = OnlineStoreUnderTest(self.root / "online", hub_url=f"http://127.0.0.1:{hub_port}",
                                                     webhook_retry_s=self.webhook_retry_s).start()
        if self.online_store is not None:
            (self.root / "hub" / "api_key").write_text(self.online_store.api_key + "\n")
            (self.root / "hub" / "webhook_secret").write_text(self.online_store.webhook_secret + "\n")
            online = {"base_url": self.online_store.url_for_hub, "api_key_file": str(self.root / "hub" / "api_key"),
                      "webhook_secret_file": str(self.root / "hub" / "webhook_secret"),
                      # Compressed like the morning: a 30 s circuit-breaker pause would be hours here.
                      "breaker_cooldown_s": 2.0}
            extra = {"sync": {"interval_s": 2.0}}
        _write(self.root / "hub" / "hub.toml", {
            "store": STORE, "demo": True,
            "mqtt": {"host": "127.0.0.1", "port": self.broker.port, "reconnect_min_s": 0.2, "reconnect_max_s": 2.0,
                     "password_file": str(self.broker.password_file_for(self.broker.hub_user))},
            "db": {"path": str(self.hub_db)}, "web": {"port": hub_port},
            "online": online, **extra,
        })
        for device in self.devices:
            folder = self.root / device
            folder.mkdir(exist_ok=True)
            if self.small_disk_mb and folder not in self.mounts:
                mount_small_disk(self.root / f"{device}.img", folder, self.small_disk_mb)
                self.mounts.append(folder)
            self.agent_ports[device] = free_port()
            port = self.broker.port
            if self.proxied:
                self.proxies[device] = NetProxy("127.0.0.1", self.broker.port).start()
                port = self.proxies[device].port
            _write(folder / "agent.toml", {
                "store": STORE, "device": device,
                "mqtt": {"host": "127.0.0.1", "port": port, "keepalive_s": self.keepalive_s,
                         "reconnect_min_s": 0.2, "reconnect_max_s": 2.0,
                         "password_file": str(self.broker.password_file_for(device))},
                "outbox": {"path": str(folder / "outbox.db"), "max_mb": self.outbox_max_mb, "max_rows": self.max_rows},
                "catalog": {"path": str(folder / "catalog.db")},
                "drain": {"window": self.window, "receipt_timeout_s": self.receipt_timeout_s},
                "api": {"port": self.agent_ports[device]},
                "kiosk": {"url": f"http://127.0.0.1:{free_port()}"},  # no kiosk process: health reads None
                "local_api": {"token_file": str(folder / "local-api.token")},
                "telemetry": {"interval_s": 5.0},
            })
            self.clocks[device] = SkewedClock(self.clock_skew_s.get(device, 0.0))
            self.kiosks[device] = Kiosk(Outbox(open_device_db(folder / "outbox.db"), store=STORE, device=device,
                                               clock=self.clocks[device]))
        self.start_hub()
        for device in self.devices:
            self.start_agent(device)
        if broker_up:
            self.wait(lambda: all(self.agent_health(d).get("hub_online") for d in self.devices), timeout,
                      "every agent sees the hub online")
        return self

    def stop(self, grace_s: float = 3.0) -> None:
        """SIGTERM everything, SIGKILL what has not exited after `grace_s` (the figures are taken before
        this; the hub takes about 10 s to stop cleanly, which would only slow the tests down)."""
        for name, process in self.processes.items():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for process in self.processes.values():
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for proxy in self.proxies.values():
            proxy.stop()
        if self.broker:
            self.broker.stop()
        for kiosk in self.kiosks.values():
            kiosk.outbox.db.conn.close()
        if self.online_store is not None:
            self.online_store.stop()
        for folder in self.mounts:
            unmount_small_disk(folder)
        self.mounts.clear()

    # --- the parts, started and killed
    def _spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> None:
        log = open(self.root / "logs" / f"{name}.log", "ab")
        self.processes[name] = subprocess.Popen([sys.executable, *args], stdout=log, stderr=subprocess.STDOUT,
                                                cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})

    def start_hub(self) -> None:
        self._spawn("hub", ["-m", "hub", "run", "--config", str(self.root / "hub" / "hub.toml")])

    def start_agent(self, device: str) -> None:
        config = ["--config", str(self.root / device / "agent.toml")]
        if self.clock_skew_s.get(device):
            self._spawn(f"{device}-agent", ["-c", SLEEP_SHIM, *config], faketime_env(self.clock_skew_s[device]))
        else:
            self._spawn(f"{device}-agent", ["-m", "edge_agent", *config])

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

    def evicted(self) -> dict[str, dict[str, int]]:
        """device -> {event type: rows} its outbox dropped after acknowledging them, by its policy (pushed
        out for room, expired). Read from the outbox's own counters (outbox_drops), not inferred."""
        result = {}
        for device, kiosk in self.kiosks.items():
            drops = kiosk.outbox.drops()
            counts: dict[str, int] = {}
            for reason in ("full", "expired"):
                for row_type, count in drops.get(reason, {}).items():
                    if row_type != TELEMETRY:
                        counts[row_type] = counts.get(row_type, 0) + count
            result[device] = counts
        return result

    def expected_count(self) -> int:
        """Events the hub must end up holding: acknowledged ones the outbox's policy did not drop."""
        return self.sent_count() - sum(sum(c.values()) for c in self.evicted().values())

    def outcome(self, name: str) -> Outcome:
        sent = {i: (device, k.types[i]) for device, k in self.kiosks.items() for i in k.ids}
        rows = self._query("SELECT id, device, seq FROM events")
        stored_ids = [r[0] for r in rows]
        stored = set(stored_ids)
        evicted = self.evicted()
        refused = sum(sum(k.refused.values()) for k in self.kiosks.values())
        # A drop explains a missing event only for the same device and type, and never for a HIGH one
        # (the policy never pushes those out): anything else missing is lost.
        missing: dict[tuple[str, str], int] = {}
        for event_id, key in sent.items():
            if event_id not in stored:
                missing[key] = missing.get(key, 0) + 1
        lost = sum(max(0, count - (evicted[device].get(row_type, 0) if PRIORITY[row_type] < HIGH else 0))
                   for (device, row_type), count in missing.items())
        outcome = Outcome(name, sent=sum(k.attempts for k in self.kiosks.values()), acknowledged=len(sent),
                          stored=len(stored & set(sent)),
                          dropped_by_policy=refused + sum(sum(c.values()) for c in evicted.values()),
                          lost=lost, duplicated=len(stored_ids) - len(stored))
        redelivered = self._query("SELECT coalesce(sum(duplicates), 0) FROM devices")
        outcome.redelivered = redelivered[0][0] if redelivered else 0
        for device in self.devices:
            seqs = sorted(r[2] for r in rows if r[1] == device)
            holes = (seqs[-1] - len(set(seqs))) if seqs else 0
            outcome.gaps += max(0, holes - sum(evicted[device].values()))  # an evicted event leaves a hole
        if refused or outcome.dropped_by_policy:
            outcome.notes["refused"] = refused
            outcome.notes["evicted"] = {d: c for d, c in evicted.items() if c}
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
        target, started = self.expected_count(), time.monotonic()
        self.wait(lambda: self.stored_count() >= target, timeout, f"the hub holds the {target} events sent before")
        return time.monotonic() - started

    def drain_all(self, timeout: float = 180.0) -> None:
        self.wait(lambda: self.stored_count() >= self.expected_count(), timeout, "the hub holds every event sent")
        self.wait(lambda: all(self.agent_health(d).get("outbox", {}).get("depth") == 0 for d in self.devices),
                  timeout, "every outbox is empty (receipted)")


class OnlineStoreUnderTest:
    """The demo online store (demo/online_store.py) served from this process, so a scenario reads what
    it holds by id (activity, cart lines by idempotency key, webhook deliveries), behind two proxies
    a scenario can cut: the hub's calls to it, and its webhooks to the hub."""

    def __init__(self, folder: Path, *, hub_url: str, webhook_retry_s: float = 1.0):
        from demo import seed
        from demo.online_store import create_app
        folder.mkdir(parents=True, exist_ok=True)
        self.api_key, self.webhook_secret = "chaos-online-key", "chaos-webhook-secret"
        self.data = seed.build()
        port = free_port()
        hub_port = hub_url.rpartition(":")[2]
        # online store -> hub: webhooks go through this proxy; hub -> online store: API calls through that one.
        self.webhook_proxy = NetProxy("127.0.0.1", int(hub_port)).start()
        self.api_proxy = NetProxy("127.0.0.1", port).start()
        self.app = create_app(self.data, self.api_key,
                              webhook_url=f"http://127.0.0.1:{self.webhook_proxy.port}/webhooks/online",
                              webhook_secret=self.webhook_secret, webhook_retry_s=webhook_retry_s)
        self.shop = self.app.extensions["omnikiosk_online_store"]
        self.port = port
        self.url_for_hub = f"http://127.0.0.1:{self.api_proxy.port}"
        self._server = None

    def start(self) -> OnlineStoreUnderTest:
        from werkzeug.serving import make_server
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._server = make_server("127.0.0.1", self.port, self.app, threaded=True)
        threading.Thread(target=self._server.serve_forever, name="online-store", daemon=True).start()
        return self

    def stop(self) -> None:
        self.shop.webhooks.stop(1.0)
        if self._server is not None:
            self._server.shutdown()
        self.api_proxy.stop()
        self.webhook_proxy.stop()

    def admin(self, method: str, path: str, body: dict | None = None) -> dict:
        """The online store's back office (never behind the injected faults)."""
        with self.app.test_client() as client:
            response = client.open(f"/api/v1/_admin{path}", method=method, json=body,
                                   headers={"Authorization": f"Bearer {self.api_key}"})
        assert response.status_code == 200, response.get_json()
        return response.get_json()

    def members(self, n: int) -> list[str]:
        """n members who gave clienteling consent (their activity and cart lines are linked to them)."""
        chosen = [c["id"] for c in self.data.customers if c["consent"]["clienteling"]]
        return chosen[:n]

    def gtins(self, n: int) -> list[str]:
        return self.shop.catalog.gtins[:n]

    # --- what it holds, by id
    def activity(self) -> dict[str, int]:
        """event id -> times the hub delivered it (kept once whatever the count)."""
        with self.shop.activity._lock:
            return {key: item["times_received"] for key, item in self.shop.activity._items.items()}

    def cart_keys(self) -> set[str]:
        """Idempotency keys of cart lines it added (one line per key: a retry adds nothing)."""
        with self.shop.customers.carts._lock:
            return set(self.shop.customers.carts._answers)

    def cart_quantity(self, member: str, gtin: str) -> int:
        profile = self.shop.customers.get(member)
        return sum(line["quantity"] for line in profile["cart"]["items"] if line["gtin"] == gtin)

    def webhooks(self) -> list[dict]:
        return self.shop.webhooks.status()["deliveries"]

    def cut(self, how: str) -> None:
        """The store's link to the online store gone: "503" (its API answers 503, the injected fault) or
        "refused" (connections refused); either way its webhooks cannot reach the hub."""
        self.webhook_proxy.drop()
        if how == "503":
            self.api_proxy.pass_()
            self.shop.faults.replace({**FAULTS_OFF, "status": 503})
        else:
            self.shop.faults.replace(dict(FAULTS_OFF))
            self.api_proxy.drop()

    def heal(self) -> None:
        self.shop.faults.replace(dict(FAULTS_OFF))
        self.api_proxy.pass_()
        self.webhook_proxy.pass_()


def loop_mount_unavailable() -> str | None:
    """Why a small loop-mounted ext4 cannot be made here (the disk-full scenario), or None."""
    if os.geteuid() != 0:
        return "needs root to loop-mount a small ext4 file system"
    if not list(Path("/dev").glob("loop*")):
        return "no /dev/loop* devices (loop mounts unavailable)"
    for tool in ("mkfs.ext4", "mount", "umount"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    try:
        with work_dir() as tmp:
            folder = Path(tmp) / "probe"
            folder.mkdir()
            mount_small_disk(Path(tmp) / "probe.img", folder, 1)
            unmount_small_disk(folder)
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", None) or exc
        return f"cannot loop-mount an ext4 image here: {str(detail).strip()[:200]}"
    return None


def mount_small_disk(image: Path, folder: Path, mb: int) -> None:
    """A real ext4 file system of `mb` MiB at `folder` (no reserved blocks: the device may fill all of it)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(image, "wb") as handle:
        handle.truncate(mb * 2**20)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", str(image)], check=True, capture_output=True, text=True)
    subprocess.run(["mount", "-o", "loop", str(image), str(folder)], check=True, capture_output=True, text=True)


def unmount_small_disk(folder: Path) -> None:
    if subprocess.run(["umount", str(folder)], capture_output=True, check=False).returncode != 0:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True, check=False)  # still busy: detach it anyway


def fill_disk(filler: Path, leave_bytes: int) -> int:
    """Write `filler` until the file system is full, then give back `leave_bytes`: nearly full. Returns
    the bytes free after."""
    with open(filler, "wb", buffering=0) as handle:
        for chunk in (2**20, 2**12):
            while True:
                try:
                    if handle.write(b"\0" * chunk) < chunk:
                        break
                except OSError:
                    break
    size = filler.stat().st_size
    os.truncate(filler, max(0, size - leave_bytes))
    os.sync()
    return shutil.disk_usage(filler.parent).free


def work_dir() -> tempfile.TemporaryDirectory:
    """A temporary folder on disk (under var/): the agent refuses an outbox on a RAM disk, and some
    systems mount /tmp as one."""
    (ROOT / "var").mkdir(exist_ok=True)
    return tempfile.TemporaryDirectory(dir=ROOT / "var", prefix="bench-")


def faketime_env(skew_s: float) -> dict[str, str]:
    """Environment that runs a process with its wall clock `skew_s` off and its monotonic clock true, as
    a kiosk whose NTP is wrong would run (libfaketime; `apt-get install faketime`). Run Python under
    it through SLEEP_SHIM."""
    if not FAKETIME_LIB.exists():
        raise RuntimeError(f"{FAKETIME_LIB} is missing: install libfaketime (apt-get install -y faketime) to "
                           "run an agent with a skewed clock")
    return {"LD_PRELOAD": str(FAKETIME_LIB), "FAKETIME": f"{skew_s:+.0f}", "FAKETIME_DONT_FAKE_MONOTONIC": "1"}


# libfaketime 0.9.10 fails Python's time.sleep with EINVAL when only the wall clock is faked (its
# clock_nanosleep wrapper mixes the clocks), and faking the monotonic clock too makes every timed
# wait (Event.wait, Queue.get) last the skew. Timed waits work with the monotonic clock left true,
# so the skewed agent runs with time.sleep made of one.
SLEEP_SHIM = ("import runpy, threading, time; _pause = threading.Event(); "
              "time.sleep = lambda seconds: _pause.wait(max(0.0, seconds)); "
              "runpy.run_module('edge_agent', run_name='__main__', alter_sys=True)")


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


def agents_and_hub_kills(store: ChaosStore, *, events: int, restarts: int, seconds: float = 10.0,
                         down_s: float = 0.5) -> Outcome:
    """Every edge agent and the hub SIGKILLed at the same moment, `restarts` times, during drains and
    ingest: events in flight on both sides of the broker, receipts owed to processes that are gone."""
    def fault():
        for name in ("hub", *[f"{device}-agent" for device in store.devices]):
            store.kill(name)
        time.sleep(down_s)
        store.start_hub()
        for device in store.devices:
            store.start_agent(device)
    return under_faults(store, "edge agents and hub SIGKILLed at once", events=events, restarts=restarts,
                        seconds=seconds, fault=fault, faults_per_round=len(store.devices) + 1)


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


def network_cuts(store: ChaosStore, *, events: int, restarts: int, seconds: float = 20.0, down_s: float = 1.0,
                 slow_s: float = 3.0, slow_delay_s: float = 0.05) -> Outcome:
    """The store network between the kiosks and the hub cut `restarts` times under load, in turn: dropped
    (connections reset, new ones refused) for `down_s`; stalled (a half-open connection: nothing flows,
    nothing closes) until MQTT keepalive notices on every agent; slowed (each chunk held
    `slow_delay_s`) for `slow_s`. Needs a store with proxied=True."""
    if not store.proxies:
        raise ValueError("network_cuts needs ChaosStore(proxied=True): agents must reach the broker through NetProxy")
    modes = ("drop", "stall", "slow")
    turn = iter(range(restarts))
    noticed: list[float] = []

    def fault():
        mode = modes[next(turn) % len(modes)]
        proxies = list(store.proxies.values())
        if mode == "drop":
            for proxy in proxies:
                proxy.drop()
            time.sleep(down_s)
        elif mode == "stall":
            started = time.monotonic()
            for proxy in proxies:
                proxy.stall()
            # Half-open: no FIN, no RST. Only the keepalive (PINGREQ unanswered) can end the connection.
            store.wait(lambda: not any(store.agent_health(d).get("connected", True) for d in store.proxies),
                       4 * store.keepalive_s + 10, "MQTT keepalive noticed the stalled connection on every agent")
            noticed.append(round(time.monotonic() - started, 2))
        else:
            for proxy in proxies:
                proxy.slow(slow_delay_s)
            time.sleep(slow_s)
        for proxy in proxies:
            proxy.pass_()
    outcome = under_faults(store, "network cut: drop / stall / slow", events=events, restarts=restarts,
                           seconds=seconds, fault=fault)
    outcome.notes["cuts"] = [modes[i % len(modes)] for i in range(restarts)]
    outcome.notes["keepalive_s"] = store.keepalive_s
    outcome.notes["stall_noticed_after_s"] = noticed
    return outcome


def reconnect_burst(store: ChaosStore, *, events: int, restarts: int = 1, down_s: float = 5.0) -> Outcome:
    """Every kiosk of a big store (run it with 20 devices) appends while the broker is down for `down_s`;
    then the broker comes back and every agent reconnects at once. Each agent's reconnect is read
    from its own log (the first "connected to broker" after the broker came back), so the report
    shows how the jittered backoff spreads them (no thundering herd), and how long the drain took.
    `restarts` outages in a row; `events` in all, over all kiosks and outages."""
    started = time.monotonic()
    per_round = max(1, events // len(store.kiosks) // max(1, restarts))
    drains, spreads, peaks, all_offsets = [], [], [], []
    for _ in range(restarts):
        store.broker.kill()
        store.wait(lambda: not any(store.agent_health(d).get("connected", True) for d in store.devices), 30,
                   "every agent saw the broker go")
        threads = [k.append_over(per_round, down_s) for k in store.kiosks.values()]
        for thread in threads:
            thread.join()
        up_wall, up = time.time(), time.monotonic()
        store.broker.start()
        store.drain_all()
        drains.append(round(time.monotonic() - up, 2))
        offsets = sorted(t - up_wall for t in (_first_connect_after(store, d, up_wall) for d in store.devices)
                         if t is not None)
        all_offsets.append(offsets)
        if offsets:
            spreads.append(round(offsets[-1] - offsets[0], 2))
            peaks.append(max(sum(1 for o in offsets if a <= o < a + 0.1) for a in offsets))
    outcome = store.outcome(f"{len(store.devices)} kiosks reconnect after an outage")
    outcome.faults = restarts
    outcome.recoveries_s = drains
    outcome.seconds = time.monotonic() - started
    last = all_offsets[-1] if all_offsets else []
    outcome.notes.update({
        "kiosks": len(store.devices), "outage_s": down_s, "reconnected": [len(o) for o in all_offsets],
        "reconnect_first_s": round(last[0], 2) if last else None,
        "reconnect_median_s": round(last[len(last) // 2], 2) if last else None,
        "reconnect_last_s": round(last[-1], 2) if last else None,
        "reconnect_spread_s": spreads, "most_reconnects_in_100ms": peaks, "drain_s": drains})
    return outcome


def _first_connect_after(store: ChaosStore, device: str, after_wall: float) -> float | None:
    """Wall-clock time of the agent's first successful connect after `after_wall`, from its JSON log."""
    try:
        lines = (store.root / "logs" / f"{device}-agent.log").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if '"connected to broker"' not in line:
            continue
        try:
            moment = datetime.fromisoformat(json.loads(line)["ts"]).timestamp()
        except (ValueError, KeyError):
            continue
        if moment >= after_wall:
            return moment
    return None


def clock_skew(store: ChaosStore, *, events: int, restarts: int, seconds: float = 10.0) -> Outcome:
    """Kiosks whose clocks are wrong (run it with clock_skew_s, e.g. k01 +300 s and k02 -300 s: both the
    kiosk's appends and the agent process, under libfaketime). Halfway, the first kiosk's clock steps
    back to the opposite skew (an NTP correction), so its `ts` and its UUIDv7 ids go backwards while
    `seq` goes on rising; the broker is restarted `restarts` times so resends interleave. Every
    event must still be stored once with no seq gap; the notes say what the hub did with the `ts`."""
    first = store.devices[0]
    skew = store.clocks[first].skew_s

    def step_back():
        time.sleep(seconds / 2)
        store.clocks[first].skew_s = -skew
    stepper = threading.Thread(target=step_back, daemon=True)
    stepper.start()

    def fault():
        store.broker.kill()
        time.sleep(0.5)
        store.broker.start()
    outcome = under_faults(store, "kiosk clocks skewed +-5 min", events=events, restarts=restarts,
                           seconds=seconds, fault=fault)
    stepper.join()
    for device in store.devices:
        rows = store._query("SELECT seq, ts, received_at, id FROM events WHERE device = ? ORDER BY seq", (device,))
        offsets = sorted((_epoch(ts) - _epoch(received)) for _, ts, received, _ in rows)
        status = store._query("SELECT status_ts, last_seen FROM devices WHERE id = ?", (device,))
        outcome.notes[device] = {
            "kiosk_skew_s": store.clock_skew_s.get(device, 0.0),
            "ts_minus_received_s": [round(offsets[0], 1), round(offsets[-1], 1)] if offsets else None,
            "seq_contiguous": [r[0] for r in rows] == list(range(1, len(rows) + 1)),
            "ts_steps_back_as_seq_rises": sum(1 for a, b in pairwise(rows) if b[1] < a[1]),
            "ids_step_back_as_seq_rises": sum(1 for a, b in pairwise(rows) if b[3] < a[3]),
            "agent_status_ts_minus_hub_s": round(_epoch(status[0][0]) - _epoch(status[0][1]), 1)
            if status and status[0][0] and status[0][1] else None,
        }
    return outcome


def _epoch(ts: str) -> float:
    return datetime.fromisoformat(ts).timestamp()


MIXED = ("offer.shown", "scan.product", "scan.member", "scan.product")  # low, normal, high, normal


def outbox_at_bound(store: ChaosStore, *, events: int, restarts: int = 1, mixed_share: float = 0.625) -> Outcome:
    """Run it with a small bound (max_rows=100). The broker is down; each kiosk appends events/kiosks:
    first a mix (offer.shown low, scan.product normal, scan.member high), then check-ins only, well
    past the bound. The outbox must push out low-priority rows first, then normal ones, never a
    high one, and refuse with OutboxFull what it cannot keep; every drop is counted by the outbox
    itself, and `lost` (missing and not explained by a counted drop of that device and type)
    must stay 0. Then the broker comes back and what was kept is delivered."""
    started = time.monotonic()
    per_kiosk = events // len(store.kiosks)
    mixed = int(per_kiosk * mixed_share)
    recoveries = []
    for _ in range(restarts):
        store.broker.kill()
        store.wait(lambda: not any(store.agent_health(d).get("connected", True) for d in store.devices), 30,
                   "every agent saw the broker go")
        for kiosk in store.kiosks.values():
            for i in range(mixed // restarts):
                kiosk.append(type=MIXED[i % len(MIXED)])
            kiosk.append((per_kiosk - mixed) // restarts, type="scan.member")
        up = time.monotonic()
        store.broker.start()
        store.drain_all()
        recoveries.append(round(time.monotonic() - up, 2))
    outcome = store.outcome(f"outbox at its bound ({store.max_rows} rows)")
    outcome.faults = restarts
    outcome.recoveries_s = recoveries
    outcome.seconds = time.monotonic() - started
    outcome.notes["refused_by_type"] = _sum_by_type(k.refused for k in store.kiosks.values())
    outcome.notes["evicted_by_type"] = _sum_by_type(store.evicted().values())
    outcome.notes["stored_by_type"] = dict(store._query("SELECT type, count(*) FROM events GROUP BY type"))
    return outcome


def _sum_by_type(counts) -> dict[str, int]:
    total: dict[str, int] = {}
    for count in counts:
        for row_type, n in count.items():
            total[row_type] = total.get(row_type, 0) + n
    return total


def online_store_down(store: ChaosStore, *, events: int, restarts: int = 1, morning_s: float = 40.0) -> Outcome:
    """Run it with online=True. The store's link to the online store is gone for a compressed morning
    (`morning_s`, `restarts` times): its API answers 503 for the first half, refuses connections for
    the second, and its webhooks cannot reach the hub throughout. The store keeps working: members
    check in (arrivals from the hub's cached profile, or the token alone), scan products (activity
    the hub queues for the online store), send products to their online cart (the hub's durable
    cart queue), and the online store's back office keeps changing profiles (webhooks it queues).
    Then the link comes back. For each queue: sent, delivered, lost, duplicated, and the time to
    drain after the heal; every id is checked on the other side. `events`: kiosk events in all."""
    online = store.online_store
    if online is None:
        raise ValueError("online_store_down needs ChaosStore(online=True)")
    started = time.monotonic()
    kiosks = list(store.kiosks.values())
    visits_total = max(len(kiosks), events // 5)  # a visit: session.started, scan.member, 2 scans, cart.sent
    members = online.members(max(4, visits_total // 4))
    regulars, newcomers = members[: len(members) // 2], members[len(members) // 2:]
    gtins = online.gtins(50)
    sent = {"check_in": [], "activity": [], "cart": {}, "webhook": []}  # cart: event id -> (member, gtin)
    counter = iter(range(10**9))

    def visit(kiosk: Kiosk, member: str, record: bool = True) -> None:
        n = next(counter)
        session = f"chaos-visit-{n}"
        kiosk.append_event("session.started", {"session": session})
        check_in = kiosk.append_event("scan.member", {"session": session, "member": member,
                                                      "jti": f"chaos-jti-{n}", "typ": "card"})
        scans = [kiosk.append_event("scan.product", {"session": session, "gtin": gtins[(n + i) % len(gtins)],
                                                     "source": "ean13"}) for i in range(2)]
        gtin = gtins[(n * 7) % len(gtins)]
        cart = kiosk.append_event("cart.sent", {"session": session, "gtin": gtin, "member": member})
        if record:
            sent["check_in"].append(check_in)
            sent["activity"] += scans
            sent["cart"][cart] = (member, gtin)

    # Yesterday: the regulars came in while all was well, so the hub holds their profiles.
    for i, member in enumerate(regulars):
        visit(kiosks[i % len(kiosks)], member, record=False)
    store.drain_all()
    store.wait(lambda: len(store._query("SELECT 1 FROM arrivals")) >= len(regulars), 60,
               "the regulars' arrivals (their profiles now cached at the hub)")
    store.wait(lambda: not store._query("SELECT 1 FROM online_updates WHERE done_at IS NULL"), 60,
               "yesterday's activity and cart lines delivered")
    baseline = {(m, g): online.cart_quantity(m, g) for m in members for g in gtins}

    drains: dict[str, list[float]] = {"activity": [], "cart": [], "webhook": [], "profiles_feed": []}
    per_outage = max(1, visits_total // max(1, restarts))
    back_office = max(2, per_outage // 5)
    for outage in range(restarts):
        online.cut("503")
        halfway_cut = threading.Timer(morning_s / 2, online.cut, args=("refused",))
        halfway_cut.start()
        morning_started = time.monotonic()
        steps = per_outage + back_office
        for step in range(steps):
            if step % (steps // back_office) == 0 and len(sent["webhook"]) < back_office * (outage + 1):
                member = regulars[step % len(regulars)]
                points = 1000 + next(counter)
                online.admin("PATCH", f"/customers/{member}", {"points": points})
                sent["webhook"].append((online.webhooks()[-1]["id"], member, points))
            else:
                pool = regulars if step % 2 else newcomers
                visit(kiosks[step % len(kiosks)], pool[step % len(pool)])
            lag = morning_started + morning_s * (step + 1) / steps - time.monotonic()
            if lag > 0:
                time.sleep(lag)
        halfway_cut.join()
        # What was queued on both sides while the link was down, before it comes back.
        sent.setdefault("queued_at_heal", []).append({
            "hub_online_updates_waiting": store._query(
                "SELECT kind, count(*) FROM online_updates WHERE done_at IS NULL GROUP BY kind"),
            "webhooks_waiting_at_online_store": sum(1 for d in online.webhooks() if d["status"] == "pending"),
            "webhooks_given_up": sum(1 for d in online.webhooks() if d["status"] == "failed"),
        })
        store.drain_all()  # the kiosks' side never depended on the online store
        healed = time.monotonic()
        online.heal()
        done_at: dict[str, float] = {}
        webhook_ids = [w[0] for w in sent["webhook"]]
        checks = {
            "activity": lambda: set(sent["activity"]) <= set(online.activity()),
            "cart": lambda: set(sent["cart"]) <= online.cart_keys(),
            "webhook": lambda ids=tuple(webhook_ids): set(ids) <= {r[0] for r in store._query(
                "SELECT id FROM webhook_events")},
            "profiles_feed": lambda: all(_cached_points(store, m) == p
                                         for m, p in {m: p for _, m, p in sent["webhook"]}.items()),
        }
        deadline = healed + 180
        while len(done_at) < len(checks) and time.monotonic() < deadline:
            for name, check in checks.items():
                if name not in done_at and check():
                    done_at[name] = round(time.monotonic() - healed, 2)
            time.sleep(0.1)
        for name in checks:
            drains[name].append(done_at.get(name))
    store.drain_all()
    time.sleep(1.0)  # anything sent twice would have arrived by now

    outcome = store.outcome("online store down for a morning")
    outcome.faults = restarts
    outcome.recoveries_s = [max((d for d in ds if d is not None), default=0.0) for ds in zip(*drains.values())]
    outcome.seconds = time.monotonic() - started
    # Check-ins: every one became an arrival, from the cached profile or the token alone.
    arrivals = {row[0]: json.loads(row[1]).get("profile_source") for row in
                store._query("SELECT event_id, payload FROM arrivals")}
    served = [arrivals.get(i) for i in sent["check_in"]]
    # Activity: kept once by event id at the online store (times_received says how often it came).
    activity = online.activity()
    delivered_activity = [i for i in sent["activity"] if i in activity]
    # Cart lines: one line per idempotency key (the cart.sent event id); the quantities must agree.
    cart_keys = online.cart_keys()
    delivered_cart = [k for k in sent["cart"] if k in cart_keys]
    added = Counter(sent["cart"][k] for k in delivered_cart)
    extra_quantity = sum(online.cart_quantity(m, g) - baseline[(m, g)] - n for (m, g), n in added.items())
    # Webhooks: by delivery id, at the hub (webhook_events is keyed by it; the hub counts redeliveries).
    hub_webhooks = {r[0] for r in store._query("SELECT id FROM webhook_events")}
    deliveries = {d["id"]: d for d in online.webhooks()}
    webhook_ids = [w[0] for w in sent["webhook"]]
    outcome.notes.update({
        "morning_s": morning_s, "cut": "503 then connection refused; webhooks to the hub refused throughout",
        "check_ins": {"sent": len(sent["check_in"]), "arrivals": sum(1 for s in served if s),
                      "lost": sum(1 for s in served if not s),
                      "from_cache": served.count("cache"), "token_only": served.count("unavailable"),
                      "online": served.count("online")},
        "activity": {"queued": len(sent["activity"]), "delivered": len(delivered_activity),
                     "lost": len(sent["activity"]) - len(delivered_activity),
                     "duplicated": 0 if len(activity) == len(set(activity)) else len(activity) - len(set(activity)),
                     "redelivered": sum(activity[i] - 1 for i in delivered_activity),
                     "drain_s": drains["activity"]},
        "cart_lines": {"queued": len(sent["cart"]), "delivered": len(delivered_cart),
                       "lost": len(sent["cart"]) - len(delivered_cart), "duplicated": max(0, extra_quantity),
                       "missing_quantity": max(0, -extra_quantity), "drain_s": drains["cart"]},
        "webhooks": {"queued": len(webhook_ids), "delivered": sum(1 for i in webhook_ids if i in hub_webhooks),
                     "lost": sum(1 for i in webhook_ids if i not in hub_webhooks),
                     "duplicated": 0,  # webhook_events is keyed by delivery id: a redelivery is refused as such
                     "given_up_by_sender": sum(1 for i in webhook_ids if deliveries.get(i, {}).get("status") == "failed"),
                     "attempts_max": max((deliveries[i]["attempts"] for i in webhook_ids if i in deliveries), default=0),
                     "drain_s": drains["webhook"]},
        "profile_changes_at_hub_s": drains["profiles_feed"],
        "queued_at_heal": sent.get("queued_at_heal", []),
    })
    return outcome


def _cached_points(store: ChaosStore, member: str) -> int | None:
    rows = store._query("SELECT json_extract(profile, '$.points') FROM customers WHERE id = ?", (member,))
    return rows[0][0] if rows else None


def disk_almost_full(store: ChaosStore, *, events: int, restarts: int = 1, leave_kb: int = 64) -> Outcome:
    """Run it with small_disk_mb (each device's folder a small ext4: outbox.db, its WAL, catalog.db).
    After the agents started, a filler file takes all but `leave_kb` of the disk, and the kiosks keep
    appending, with the broker down (the outbox must grow), then with it back (the agent drains on a
    full disk). What must happen: each append that cannot be written is refused with OutboxDiskFull
    (an OutboxFull: the kiosk tells the shopper) and counted by the outbox; no process dies; the agent
    drains what is there; once the filler is deleted, appends succeed again; everything acknowledged
    is stored once. `restarts` fill-and-free rounds; `events` over all kiosks and rounds."""
    started = time.monotonic()
    per_round = max(10, events // len(store.kiosks) // max(1, restarts))
    before, while_down, while_draining = per_round // 5, per_round * 3 // 5, per_round // 10
    after = per_round - before - while_down - while_draining
    rounds, recoveries = [], []
    for _ in range(restarts):
        for kiosk in store.kiosks.values():
            kiosk.append(before)
        store.drain_all()
        free_left = {d: fill_disk(store.root / d / "filler", leave_kb * 1024) for d in store.devices}
        store.broker.kill()
        store.wait(lambda: not any(store.agent_health(d).get("connected", True) for d in store.devices), 30,
                   "every agent saw the broker go")
        refused0 = {d: k.disk_full for d, k in store.kiosks.items()}
        acked0 = {d: len(k.ids) for d, k in store.kiosks.items()}
        first_refusal: dict[str, int | None] = {}
        for device, kiosk in store.kiosks.items():
            first_refusal[device] = None
            for i in range(while_down):
                kiosk.append()
                if first_refusal[device] is None and kiosk.disk_full > refused0[device]:
                    first_refusal[device] = i
        full_refused = {d: k.disk_full - refused0[d] for d, k in store.kiosks.items()}
        full_acked = {d: len(k.ids) - acked0[d] for d, k in store.kiosks.items()}
        # The disk still full: the broker comes back, the agents must drain what the outbox holds.
        up = time.monotonic()
        store.broker.start()
        refused_before_drain = {d: k.disk_full for d, k in store.kiosks.items()}
        threads = [k.append_over(while_draining, 2.0) for k in store.kiosks.values()]
        for thread in threads:
            thread.join()
        store.wait(lambda: store.stored_count() >= store.expected_count(), 120,
                   "the hub holds every event acknowledged, the disk still full")
        recoveries.append(round(time.monotonic() - up, 2))
        # Deleting needs disk space too (WAL): receipted rows may wait on disk until space is freed.
        depth_when_full = {d: store.agent_health(d).get("outbox", {}).get("depth") for d in store.devices}
        # Space freed: every append is taken again.
        for device in store.devices:
            (store.root / device / "filler").unlink()
        os.sync()  # ext4 hands freed blocks out again once its journal committed the delete
        refused1 = {d: k.disk_full for d, k in store.kiosks.items()}
        for kiosk in store.kiosks.values():
            kiosk.append(after)
        store.drain_all()
        rounds.append({
            "free_bytes_when_full": free_left, "appended_while_full": while_down,
            "acknowledged_while_full": full_acked, "refused_disk_full": full_refused,
            "first_refusal_after": first_refusal, "appended_while_draining_full": while_draining,
            "refused_while_draining_full": {d: k.disk_full - refused_before_drain[d] for d, k in store.kiosks.items()},
            "delivered_while_full_s": recoveries[-1],
            "receipted_rows_waiting_for_space": depth_when_full,
            "refused_after_space_freed": sum(k.disk_full - refused1[d] for d, k in store.kiosks.items()),
        })
    outcome = store.outcome(f"device disk almost full ({store.small_disk_mb} MiB ext4)")
    outcome.faults = restarts
    outcome.recoveries_s = recoveries
    outcome.seconds = time.monotonic() - started
    counted = {d: k.outbox.drops().get("refused", {}) for d, k in store.kiosks.items()}
    outcome.notes.update({
        "rounds": rounds,
        "refused_disk_full": sum(k.disk_full for k in store.kiosks.values()),
        "refusals_counted_by_outbox": sum(sum(c.values()) for c in counted.values()),
        "processes_died": sorted(name for name, p in store.processes.items() if p.poll() is not None),
        "agent_disk_full_log_lines": sum(_log_count(store, f"{d}-agent", "disk is full") for d in store.devices),
    })
    return outcome


def _log_count(store: ChaosStore, name: str, needle: str) -> int:
    try:
        return (store.root / "logs" / f"{name}.log").read_text(errors="replace").count(needle)
    except OSError:
        return 0


@dataclass(frozen=True)
class Scenario:
    run: Callable[..., Outcome]
    events: int                  # default events, over all the store's kiosks
    restarts: int                # default faults
    store: dict = field(default_factory=dict)  # ChaosStore options
    about: str = ""
    unavailable: Callable[[], str | None] = lambda: None  # why it cannot run on this machine (it is skipped)


class ScenarioSkipped(Exception):
    """The scenario needs something this machine lacks (the reason is the message)."""


BURST_DEVICES = tuple(f"{STORE}-k{n:02d}" for n in range(1, 21))
SKEWS = {"s001-k01": 300.0, "s001-k02": -300.0}

SCENARIOS: dict[str, Scenario] = {
    "broker": Scenario(broker_restarts, 5000, 5, about="Mosquitto SIGKILLed and restarted while the kiosks append"),
    "agent": Scenario(agent_kills, 5000, 5, about="both edge agents SIGKILLed and restarted while they drain"),
    "hub": Scenario(hub_kills, 5000, 5, about="the hub SIGKILLed and restarted during ingest"),
    "agents+hub": Scenario(agents_and_hub_kills, 5000, 5,
                           about="every edge agent and the hub SIGKILLed at the same moment, during drains and ingest"),
    "hub+broker": Scenario(hub_and_broker_kills, 5000, 5,
                           about="the hub frozen (the broker queues for it), then hub and broker SIGKILLed together"),
    "netcut": Scenario(network_cuts, 5000, 5, {"proxied": True},
                       about="the kiosk-hub network dropped / stalled (half-open) / slowed in turn, under load"),
    "burst": Scenario(reconnect_burst, 2000, 2, {"devices": BURST_DEVICES},
                      about="20 kiosks append through a broker outage, then all reconnect at once"),
    "skew": Scenario(clock_skew, 5000, 3, {"clock_skew_s": SKEWS},
                     about="kiosk clocks +5 / -5 min (kiosk and agent), one steps back 10 min midway"),
    "outbox-bound": Scenario(outbox_at_bound, 640, 1, {"max_rows": 100},
                             about="broker down, kiosks append past a 100-row outbox bound: evictions and refusals"),
    "online-down": Scenario(online_store_down, 1000, 1, {"online": True, "webhook_retry_s": 0.05},
                            about="the online store unreachable for a compressed morning (503, then refused) "
                                  "while members check in, scan and send to their online cart"),
    "disk-full": Scenario(disk_almost_full, 6000, 1, {"small_disk_mb": 16, "outbox_max_mb": 4},
                          about="each device's folder a 16 MiB ext4 filled by another file: refusals, drain, recovery",
                          unavailable=loop_mount_unavailable),
}


def run_scenario(name: str, *, events: int | None = None, restarts: int | None = None,
                 root: Path | None = None) -> Outcome:
    """One scenario on a fresh store in its own folder (under var/ unless `root` is given)."""
    if root is None:
        with work_dir() as tmp:
            return run_scenario(name, events=events, restarts=restarts, root=Path(tmp))
    scenario = SCENARIOS[name]
    reason = scenario.unavailable()
    if reason:
        raise ScenarioSkipped(reason)
    store = ChaosStore(root, **scenario.store)
    try:
        store.start(timeout=60)
        return scenario.run(store, events=events or scenario.events,
                            restarts=scenario.restarts if restarts is None else restarts)
    finally:
        store.stop()


def summary(outcomes: list[Outcome], skipped: dict[str, str] | None = None) -> dict:
    return {"bench": "chaos", "scenarios": len(outcomes), "skipped": dict(skipped or {}),
            "sent": sum(o.sent for o in outcomes),
            "acknowledged": sum(o.acknowledged for o in outcomes),
            "stored": sum(o.stored for o in outcomes),
            "dropped_by_policy": sum(o.dropped_by_policy for o in outcomes), "lost": sum(o.lost for o in outcomes),
            "duplicated": sum(o.duplicated for o in outcomes), "gaps": sum(o.gaps for o in outcomes),
            "redelivered": sum(o.redelivered for o in outcomes),
            "max_recovery_s": max((o.max_recovery_s for o in outcomes), default=0.0),
            "per_scenario": {o.name: {"sent": o.sent, "acknowledged": o.acknowledged, "stored": o.stored,
                                      "dropped_by_policy": o.dropped_by_policy, "lost": o.lost,
                                      "duplicated": o.duplicated, "gaps": o.gaps, "faults": o.faults,
                                      "max_recovery_s": o.max_recovery_s, **o.notes} for o in outcomes}}


def to_json(outcomes: list[Outcome], skipped: dict[str, str] | None = None) -> str:
    return json.dumps(summary(outcomes, skipped))
