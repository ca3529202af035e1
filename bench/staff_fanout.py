"""Staff fan-out: one arrival, every tablet. 50 signed-in Socket.IO clients on the hub's /staff namespace,
1,000 arrivals through the whole store; the time from the hub's emit to receipt at each client.

A whole demo store as real processes (the demo online store, Mosquitto, the hub, two kiosks with
their edge agents). This process appends `scan.member` events to a kiosk's outbox (so every
arrival travels the real path) and holds the 50 tablets: python-socketio clients, each signed in
with its own session, on websockets. Each "floor" item of kind "arrival" carries `at`, the hub's
clock when it was written and emitted; the latency is the client's clock at receipt minus `at`
(same machine, same clock; `at` has millisecond precision). The hub process's RSS is read from
/proc at the end.

For reference in the same run: a bare Flask-SocketIO server (threading mode, as the hub) in a
process of its own, emitting one of the hub's own arrival items (the same bytes) at the same rate
to the same number of clients: the cost of the fan-out itself, without the hub.

Targets (issue 6): p99 < 100 ms; hub RSS < 300 MB.
Usage: python bench/staff_fanout.py [--clients N] [--arrivals N] [--rate PER_S]
The last line is one JSON object (bench, clients, p50_ms, p99_ms, hub_rss_mb, …).
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import statistics
import sys
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path

import requests
import socketio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from measure import rss_mb, percentile  # noqa: E402

from demo.chaos import work_dir  # noqa: E402
from demo.store import DemoStore  # noqa: E402
from edge_agent.outbox import Outbox, open_device_db  # noqa: E402

KIOSK = "s001-k01"
TARGETS = {"p99_ms": 100.0, "hub_rss_mb": 300.0}


class Tablet:
    def __init__(self, url: str, cookie: str):
        self.latencies: dict[str, float] = {}
        self.sample: dict | None = None
        self.client = socketio.Client(reconnection=False)
        self.client.on("floor", self._floor, namespace="/staff")
        self.client.connect(url, namespaces=["/staff"], headers={"Cookie": cookie}, transports=["websocket"],
                            wait_timeout=10)

    def _floor(self, item: dict) -> None:
        received = time.time()
        if item.get("kind") == "arrival":
            self.sample = item
            emitted = datetime.fromisoformat(item["at"].replace("Z", "+00:00")).timestamp()
            self.latencies[item["data"]["event_id"]] = (received - emitted) * 1000


RAW_SERVER = """
import json, sys, threading, time
from flask import Flask
from flask_socketio import SocketIO
port, clients, n, rate, path = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
payload = json.load(open(path))
app = Flask("raw")
io = SocketIO(app, async_mode="threading", logger=False, engineio_logger=False)
connected = []
io.on_event("connect", lambda auth=None: connected.append(1))
def emit_all():
    while len(connected) < clients:
        time.sleep(0.05)
    time.sleep(0.5)
    for _ in range(n):
        io.emit("tick", {**payload, "sent": time.time()})
        time.sleep(1 / rate)
threading.Thread(target=emit_all, daemon=True).start()
io.run(app, host="127.0.0.1", port=port, allow_unsafe_werkzeug=True, log_output=False, use_reloader=False)
"""


def raw_clients(port: int, count: int, expected: int, ready, results) -> None:
    got: list[float] = []
    lock = threading.Lock()
    sockets = []
    for _ in range(count):
        client = socketio.Client(reconnection=False)

        def tick(message):
            with lock:
                got.append((time.time() - message["sent"]) * 1000)
        client.on("tick", tick)
        deadline = time.monotonic() + 20
        while True:
            try:
                client.connect(f"http://127.0.0.1:{port}", transports=["websocket"], wait_timeout=10)
                break
            except socketio.exceptions.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        sockets.append(client)
    ready.set()
    finish = time.monotonic() + expected + 60
    while time.monotonic() < finish and len(got) < count * expected:
        time.sleep(0.1)
    results.put(got)
    for client in sockets:
        client.disconnect()


def raw_emit_baseline(clients: int, payload: dict, rate: float, workdir: Path, *, processes: int,
                      n: int = 200) -> list[float]:
    """A bare Flask-SocketIO server (threading mode, as the hub) in a process of its own, emitting one of the
    hub's own arrival items (the same bytes) at the same rate to the same number of clients, spread over
    the same number of processes."""
    import multiprocessing
    import subprocess

    from demo.broker import free_port
    context = multiprocessing.get_context("fork")
    port = free_port()
    (workdir / "payload.json").write_text(json.dumps(payload))
    server = subprocess.Popen([sys.executable, "-c", RAW_SERVER, str(port), str(clients), str(n), str(rate),
                               str(workdir / "payload.json")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        results = context.Queue()
        share = [clients // processes + (1 if i < clients % processes else 0) for i in range(processes)]
        workers = []
        for count in share:
            ready = context.Event()
            worker = context.Process(target=raw_clients, args=(port, count, n, ready, results), daemon=True)
            worker.start()
            workers.append(worker)
        got = [results.get(timeout=n / rate + 120) for _ in workers]
        for worker in workers:
            worker.join(10)
    finally:
        server.kill()
        server.wait()
    return [v for part in got for v in part]


def tablet_worker(hub_url: str, count: int, expected: int, ready, results) -> None:
    """One process holding `count` tablets (real tablets are separate devices: one Python process for all 50
    would measure its own decoding queue, not the hub)."""
    tablets = []
    for _ in range(count):
        http = signed_in_at(hub_url)
        tablets.append(Tablet(hub_url, "; ".join(f"{c.name}={c.value}" for c in http.cookies)))
    ready.set()
    deadline = time.monotonic() + expected / 2 + 300
    while time.monotonic() < deadline and any(len(t.latencies) < expected for t in tablets):
        time.sleep(0.1)
    results.put({"latencies": [ms for t in tablets for ms in t.latencies.values()],
                 "missing": sum(max(0, expected - len(t.latencies)) for t in tablets),
                 "sample": next((t.sample for t in tablets if t.sample), None)})
    for tablet in tablets:
        tablet.client.disconnect()


def signed_in_at(hub_url: str) -> requests.Session:
    http = requests.Session()
    page = http.get(hub_url + "login", timeout=10)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    answer = http.post(hub_url + "login", data={"username": "demo", "password": "demo", "csrf_token": token},
                       timeout=10, allow_redirects=False)
    assert answer.status_code == 302, f"sign-in failed: {answer.status_code}"
    return http


def main() -> None:
    import multiprocessing
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--processes", type=int, default=5, help="processes the tablets are spread over (default 5)")
    parser.add_argument("--arrivals", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=10.0, help="arrivals a second (default 10)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    from demo import seed
    members = [c["id"] for c in seed.build().customers]
    print(f"\nstaff fan-out: {args.clients} signed-in tablets in {args.processes} processes, {args.arrivals} "
          f"arrivals at {args.rate:g}/s, a whole demo store as real processes\n", flush=True)
    context = multiprocessing.get_context("fork")
    with work_dir() as tmp:
        store = DemoStore(Path(tmp), hub_port=0, online_port=0, broker_port=0,
                          kiosk_ports={"s001-k01": 0, "s001-k02": 0}, agent_ports={"s001-k01": 0, "s001-k02": 0})
        store.start()
        try:
            print(f"  signing in {args.clients} tablets …", file=sys.stderr, flush=True)
            results = context.Queue()
            workers = []
            share = [args.clients // args.processes + (1 if i < args.clients % args.processes else 0)
                     for i in range(args.processes)]
            for count in share:
                ready = context.Event()
                worker = context.Process(target=tablet_worker, args=(store.hub_url, count, args.arrivals, ready,
                                                                     results), daemon=True)
                worker.start()
                workers.append((worker, ready))
            for worker, ready in workers:
                assert ready.wait(60), "a tablet process did not sign in"
            outbox = Outbox(open_device_db(store.kiosk_dir(KIOSK) / "outbox.db"), store="s001", device=KIOSK)
            for index in range(args.arrivals):
                started = time.perf_counter()
                outbox.append("scan.member", {"session": str(uuid.uuid4()), "member": members[index % len(members)],
                                              "jti": str(uuid.uuid4()), "typ": "app"})
                if index % 200 == 0:
                    print(f"  {index}/{args.arrivals} arrivals …", file=sys.stderr, flush=True)
                pause = started + 1 / args.rate - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
            gathered = [results.get(timeout=400) for _ in workers]
            hub_rss = rss_mb(store.processes["hub"].pid)
            for worker, _ in workers:
                worker.join(10)
        finally:
            store.stop()
    latencies = [ms for part in gathered for ms in part["latencies"]]
    missing = sum(part["missing"] for part in gathered)
    sample = next(part["sample"] for part in gathered if part["sample"])
    print("  raw Flask-SocketIO emit to the same number of clients …", file=sys.stderr, flush=True)
    with work_dir() as tmp:
        raw = raw_emit_baseline(args.clients, sample, args.rate, Path(tmp), processes=args.processes)
    p50, p99 = statistics.median(latencies), percentile(latencies, 0.99)
    raw_p50, raw_p99 = statistics.median(raw), percentile(raw, 0.99)
    print(f"{'path':<52} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    print(f"{'hub: arrival written and emitted → each tablet':<52} {p50:>8.1f} {p99:>8.1f} {max(latencies):>8.1f}")
    print(f"{'raw Flask-SocketIO emit → each client':<52} {raw_p50:>8.1f} {raw_p99:>8.1f} {max(raw):>8.1f}")
    print(f"deliveries: {len(latencies)} of {args.arrivals * args.clients} ({missing} missing); payload "
          f"{len(json.dumps(sample)):,} bytes; hub RSS {hub_rss:.1f} MB; targets: p99 < {TARGETS['p99_ms']:g} ms, "
          f"RSS < {TARGETS['hub_rss_mb']:g} MB")
    summary = {"bench": "staff_fanout", "clients": args.clients, "arrivals": args.arrivals,
               "deliveries": len(latencies), "missing": missing, "p50_ms": round(p50, 1), "p99_ms": round(p99, 1),
               "raw_p50_ms": round(raw_p50, 1), "raw_p99_ms": round(raw_p99, 1), "hub_rss_mb": round(hub_rss, 1),
               "payload_bytes": len(json.dumps(sample))}
    summary["targets_met"] = p99 < TARGETS["p99_ms"] and hub_rss < TARGETS["hub_rss_mb"] and missing == 0
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
