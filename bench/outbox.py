"""The device outbox and its drain: appends while the broker is down, then the drain to the hub's database,
against a raw paho QoS 1 publish loop of the same messages to the same broker, in the same run.

  raw      a bare paho client publishing the N envelopes at QoS 1 to the device's events topic, on a
           fresh broker with no subscriber yet (the broker's cheapest path), two ways:
             loop      publish, wait for its PUBACK, next: the plain QoS 1 publish loop whose rate the
                       issue and the field notes quote (2,000-4,000 messages/s). `raw_per_s` and
                       `ratio` use this one.
             windowed  everything handed to paho at once with the agent's in-flight window: the
                       broker's ceiling, with no database anywhere. Reported beside it
                       (`raw_windowed_per_s`, `ratio_windowed`) so nobody mistakes one for the other.
  append   the broker is stopped; a real hub process and a real edge-agent process run (both
           retrying); the kiosk side (this process) appends N events with Outbox.append (WAL,
           synchronous=FULL): the latency of each append.
  drain    the broker is started again: time until the hub's database holds all N (every one
           committed there), and until the outbox is empty (every one receipted back).
  memory   the agent process's VmRSS, the highest seen while it drains (sampled every 0.25 s).

Targets (issue 4): drain >= 0.7x raw; append p99 < 10 ms; agent RSS < 60 MB.
Usage: python bench/outbox.py [--events N] [--window W]
The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import logging
import sqlite3
import statistics
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from measure import rss_mb  # noqa: E402

from demo.broker import Broker  # noqa: E402
from demo.chaos import ChaosStore, work_dir  # noqa: E402
from protocol.envelope import make_envelope  # noqa: E402
from protocol.mqtt import BrokerLogin, build_client, connect  # noqa: E402
from protocol.topics import Topics  # noqa: E402

STORE, DEVICE = "s001", "s001-k01"
TOPICS = Topics(STORE)
TARGETS = {"ratio": 0.7, "append_p99_ms": 10.0, "agent_rss_mb": 60.0}


def raw_loop(broker: Broker, bodies: list[str]) -> float:
    """Seconds for a bare paho client to publish each body at QoS 1 and wait for its PUBACK, one by one."""
    login = BrokerLogin(host=broker.host, port=broker.port, username=DEVICE, password=broker.passwords[DEVICE])
    client = build_client("bench-raw-loop", login, will_topic=TOPICS.status(DEVICE), will_payload=b"{}")
    connected = threading.Event()
    client.on_connect = lambda *a: connected.set()
    connect(client, login)
    client.loop_start()
    assert connected.wait(10), "raw client could not connect"
    started = time.perf_counter()
    for body in bodies:
        client.publish(TOPICS.events(DEVICE), body, qos=1).wait_for_publish(10)
    elapsed = time.perf_counter() - started
    client.disconnect()
    client.loop_stop()
    return elapsed


def raw_publish(broker: Broker, bodies: list[str], window: int) -> float:
    """Seconds for a bare paho client to publish every body at QoS 1, `window` awaiting PUBACKs at once.
    (Handing paho all of them at once is slower: it rescans its whole queue on every PUBACK.)"""
    login = BrokerLogin(host=broker.host, port=broker.port, username=DEVICE, password=broker.passwords[DEVICE])
    client = build_client("bench-raw", login, will_topic=TOPICS.status(DEVICE), will_payload=b"{}")
    client.max_inflight_messages_set(window)
    connected, done, acked = threading.Event(), threading.Event(), [0]
    slots = threading.BoundedSemaphore(window)

    def on_publish(c, u, mid, rc, props):
        acked[0] += 1
        slots.release()
        if acked[0] >= len(bodies):
            done.set()
    client.on_connect = lambda *a: connected.set()
    client.on_publish = on_publish
    connect(client, login)
    client.loop_start()
    assert connected.wait(10), "raw client could not connect"
    started = time.perf_counter()
    for body in bodies:
        slots.acquire()
        client.publish(TOPICS.events(DEVICE), body, qos=1)
    assert done.wait(600), f"raw: only {acked[0]} PUBACKs"
    elapsed = time.perf_counter() - started
    client.disconnect()
    client.loop_stop()
    return elapsed


def stored(db: Path) -> int:
    try:
        with sqlite3.connect(db, timeout=10) as conn:
            return conn.execute("SELECT count(*) FROM events").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000, help="events to append and drain (default 100000)")
    parser.add_argument("--window", type=int, default=100,
                        help="messages in flight, agent and windowed raw (default 100, the agent's default)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    n = args.events
    with work_dir() as tmp:
        store = ChaosStore(Path(tmp), devices=(DEVICE,), window=args.window)
        store.broker = Broker(store.root / "broker", STORE, [DEVICE]).start()
        now = datetime.now(timezone.utc)
        bodies = [make_envelope(store=STORE, device=DEVICE, type="scan.product", seq=i + 1, now=now,
                                data={"session": "bench", "gtin": f"{i:014d}", "source": "ean13"}).to_json()
                  for i in range(n)]
        print(f"\noutbox and drain: {n} events, window {args.window}, real Mosquitto on loopback\n", flush=True)
        print("  raw paho QoS 1 publish loop, one by one and windowed …", file=sys.stderr, flush=True)
        raw_s = raw_loop(store.broker, bodies)
        raw_windowed_s = raw_publish(store.broker, bodies, args.window)
        del bodies
        store.broker.kill()
        # The hub and the agent start against a broker that is down; both keep retrying.
        chaos = store
        try:
            chaos.start(broker_up=False)
            kiosk = chaos.kiosks[DEVICE]
            print(f"  appending {n} events with the broker down …", file=sys.stderr, flush=True)
            latencies = []
            for _ in range(n):
                started = time.perf_counter()
                kiosk.append()
                latencies.append((time.perf_counter() - started) * 1000)
            agent_pid = chaos.processes[f"{DEVICE}-agent"].pid
            rss_idle = rss_mb(agent_pid)
            print("  starting the broker; draining …", file=sys.stderr, flush=True)
            chaos.broker.start()
            started = time.perf_counter()
            peak_rss = rss_idle
            while stored(chaos.hub_db) < n:
                peak_rss = max(peak_rss, rss_mb(agent_pid))
                time.sleep(0.25)
                if time.perf_counter() - started > 900:
                    raise SystemExit(f"drain did not finish: {stored(chaos.hub_db)} of {n} stored")
            drain_s = time.perf_counter() - started
            chaos.wait(lambda: chaos.agent_health(DEVICE).get("outbox", {}).get("depth") == 0, 300,
                       "the outbox is empty")
            receipted_s = time.perf_counter() - started
            peak_rss = max(peak_rss, rss_mb(agent_pid))
            outcome = chaos.outcome("drain")
        finally:
            chaos.stop()
    raw_rate, raw_windowed_rate, drain_rate = n / raw_s, n / raw_windowed_s, n / drain_s
    p50, p99 = statistics.median(latencies), sorted(latencies)[int(len(latencies) * 0.99) - 1]
    ratio = drain_rate / raw_rate
    print(f"{'figure':<44} {'target':>10} {'measured':>12}")
    print(f"{'raw paho QoS 1 publish loop, msgs/s':<44} {'':>10} {raw_rate:>12,.0f}")
    print(f"{'raw, windowed (no database anywhere), msgs/s':<44} {'':>10} {raw_windowed_rate:>12,.0f}")
    print(f"{'drain to the hub database, events/s':<44} {'':>10} {drain_rate:>12,.0f}")
    print(f"{'drain vs raw loop':<44} {'>= 0.7x':>10} {ratio:>11.2f}x")
    print(f"{'drain vs raw windowed':<44} {'':>10} {drain_rate / raw_windowed_rate:>11.2f}x")
    print(f"{'until every event was receipted, s':<44} {'':>10} {receipted_s:>12.1f}")
    print(f"{'append p50 / p99, ms':<44} {'< 10':>10} {p50:>5.2f} / {p99:.2f}")
    print(f"{'agent RSS idle / peak while draining, MB':<44} {'< 60':>10} {rss_idle:>5.1f} / {peak_rss:.1f}")
    print(f"{'stored / lost / duplicated':<44} {'':>10} {outcome.stored} / {outcome.lost} / {outcome.duplicated}")
    summary = {"bench": "outbox", "events": n, "window": args.window, "drain_per_s": round(drain_rate),
               "raw_per_s": round(raw_rate), "ratio": round(ratio, 3),
               "raw_windowed_per_s": round(raw_windowed_rate), "ratio_windowed": round(drain_rate / raw_windowed_rate, 3), "receipted_s": round(receipted_s, 2),
               "append_p50_ms": round(p50, 3), "append_p99_ms": round(p99, 3), "agent_rss_mb": round(peak_rss, 1),
               "stored": outcome.stored, "lost": outcome.lost, "duplicated": outcome.duplicated}
    summary["targets_met"] = (ratio >= TARGETS["ratio"] and p99 < TARGETS["append_p99_ms"]
                              and peak_rss < TARGETS["agent_rss_mb"] and outcome.lost == 0)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
