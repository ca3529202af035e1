"""Hub ingest throughput: our commit-then-ack writer against a raw paho subscriber and the naive way.

Two modes, both against a real Mosquitto, each variant getting the same N events:
  queued  the events wait at the broker while the variant is offline (persistent session);
          it connects and drains them: time from connect to all handled and acknowledged.
          The publisher's speed does not enter this figure.
  live    a device publishes the N events (QoS 1, 200 in flight) while the variant is
          connected: time from the first publish to all handled and acknowledged.

  raw      paho subscriber, automatic PUBACK, no database (the ceiling)
  naive    manual_ack, commit each event and ack inside on_message (what was seen crawling)
  omnikiosk  hub.ingest.Ingest: on_message queues, one writer commits a batch, then acks it

Usage: python bench/ingest.py [--events N] [--mode queued|live|both]
The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import logging
import json
import sqlite3
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import paho.mqtt.client as mqtt

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from demo.broker import Broker  # noqa: E402
from hub.ingest import Ingest  # noqa: E402
from hub.store import HubStore, open_hub_db  # noqa: E402
from protocol.envelope import make_envelope  # noqa: E402
from protocol.mqtt import BrokerLogin, build_client, connect  # noqa: E402
from protocol.topics import Topics  # noqa: E402

STORE, DEVICE = "s001", "s001-k01"
TOPICS = Topics(STORE)


def login(broker: Broker, user: str) -> BrokerLogin:
    return BrokerLogin(host=broker.host, port=broker.port, username=user, password=broker.passwords[user])


def subscriber(broker: Broker, client_id: str, *, manual_ack: bool) -> mqtt.Client:
    client = build_client(client_id, login(broker, broker.hub_user), will_topic=TOPICS.hub_status,
                          will_payload=b'{"state":"offline","session":0,"version":"bench","ts":"x"}',
                          manual_ack=manual_ack)
    return client


def prime_session(broker: Broker, client_id: str) -> None:
    """Create the persistent session and its subscription, then leave, so events queue for it."""
    client = subscriber(broker, client_id, manual_ack=False)
    done = threading.Event()
    client.on_connect = lambda c, *a: c.subscribe(TOPICS.all_devices("events"), qos=1)
    client.on_subscribe = lambda *a: done.set()
    connect(client, login(broker, broker.hub_user))
    client.loop_start()
    assert done.wait(10), "subscription not confirmed"
    client.disconnect()
    client.loop_stop()


def publish(broker: Broker, payloads: list[str]) -> None:
    client = build_client("bench-publisher", login(broker, DEVICE), will_topic=TOPICS.status(DEVICE),
                          will_payload=b"{}")
    client.max_inflight_messages_set(200)
    connected = threading.Event()
    client.on_connect = lambda *a: connected.set()
    connect(client, login(broker, DEVICE))
    client.loop_start()
    assert connected.wait(10)
    infos = [client.publish(TOPICS.events(DEVICE), body, qos=1) for body in payloads]
    for info in infos:
        info.wait_for_publish(60)
    client.disconnect()
    client.loop_stop()


def envelopes(n: int) -> list[str]:
    now = datetime.now(timezone.utc)
    return [make_envelope(store=STORE, device=DEVICE, type="scan.product", seq=i + 1, now=now,
                          data={"session": "bench", "gtin": f"{i:014d}", "source": "ean13"}).to_json()
            for i in range(n)]


def run_raw(broker: Broker, n: int, workdir: Path, feed) -> dict:
    got = []
    finished = threading.Event()
    client = subscriber(broker, "bench-raw", manual_ack=False)

    def on_message(c, u, m):
        got.append(m.mid)
        if len(got) >= n:
            finished.set()
    client.on_message = on_message
    started = time.perf_counter()
    connect(client, login(broker, broker.hub_user))
    client.loop_start()
    feed()
    ok = finished.wait(300)
    elapsed = time.perf_counter() - started
    client.disconnect()
    client.loop_stop()
    return {"handled": len(got), "stored": None, "seconds": elapsed, "ok": ok}


def run_naive(broker: Broker, n: int, workdir: Path, feed) -> dict:
    conn = sqlite3.connect(workdir / "naive.db", check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE events (id TEXT PRIMARY KEY, body TEXT)")
    finished = threading.Event()
    count = [0]
    client = subscriber(broker, "bench-naive", manual_ack=True)

    def on_message(c, u, m):
        body = json.loads(m.payload)
        conn.execute("INSERT OR IGNORE INTO events VALUES (?, ?)", [body["id"], m.payload.decode()])
        c.ack(m.mid, m.qos)
        count[0] += 1
        if count[0] >= n:
            finished.set()
    client.on_message = on_message
    started = time.perf_counter()
    connect(client, login(broker, broker.hub_user))
    client.loop_start()
    feed()
    ok = finished.wait(600)
    elapsed = time.perf_counter() - started
    client.disconnect()
    client.loop_stop()
    stored = conn.execute("SELECT count(*) FROM events").fetchone()[0]
    return {"handled": count[0], "stored": stored, "seconds": elapsed, "ok": ok}


def run_omnikiosk(broker: Broker, n: int, workdir: Path, feed) -> dict:
    store = HubStore(open_hub_db(workdir / "hub.db"))
    ingest = Ingest(store_id=STORE, login=login(broker, broker.hub_user), hub_store=store, version="bench")
    started = time.perf_counter()
    ingest.start()
    feed()
    deadline = time.monotonic() + 300
    while ingest.counters.acked < n and time.monotonic() < deadline:
        time.sleep(0.002)
    elapsed = time.perf_counter() - started
    ingest.stop()
    stored = store.count_events()
    return {"handled": ingest.counters.acked, "stored": stored, "seconds": elapsed, "ok": stored == n,
            "batches": ingest.counters.batches, "duplicates": ingest.counters.duplicates}


def measure(mode: str, n: int) -> dict:
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        broker = Broker(workdir / "broker", STORE, [DEVICE]).start()
        try:
            payloads = envelopes(n)
            variants = {"raw": ("bench-raw", run_raw), "naive": ("bench-naive", run_naive),
                        "omnikiosk": (f"hub-{STORE}", run_omnikiosk)}
            for name, (client_id, runner) in variants.items():
                prime_session(broker, client_id)
                if mode == "queued":
                    publish(broker, payloads)
                    feed = lambda: None  # noqa: E731
                else:
                    ready = threading.Event()
                    feed = ready.set
                    threading.Thread(target=lambda: (ready.wait(), time.sleep(0.2), publish(broker, payloads)),
                                     daemon=True).start()
                print(f"  {mode}/{name}: {n} events …", file=sys.stderr, flush=True)
                (workdir / f"{mode}-{name}").mkdir()
                results[name] = runner(broker, n, workdir / f"{mode}-{name}", feed)
        finally:
            broker.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=5000, help="events per variant (default 5000)")
    parser.add_argument("--mode", choices=("queued", "live", "both"), default="both")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the variants' own connect/disconnect chatter is not the result
    n = args.events
    modes = ("queued", "live") if args.mode == "both" else (args.mode,)
    summary: dict = {"bench": "ingest", "events": n}
    print(f"\nhub ingest: {n} events per variant, real Mosquitto on loopback\n")
    print(f"{'mode':<7} {'variant':<10} {'events/s':>10} {'seconds':>9} {'stored':>8}  vs raw")
    for mode in modes:
        results = measure(mode, n)
        rate = {name: r["handled"] / r["seconds"] for name, r in results.items()}
        for name, r in results.items():
            stored = "-" if r["stored"] is None else str(r["stored"])
            print(f"{mode:<7} {name:<10} {rate[name]:>10,.0f} {r['seconds']:>9.2f} {stored:>8}  "
                  f"{rate[name] / rate['raw']:.2f}x", flush=True)
        om = results["omnikiosk"]
        summary[mode] = {
            "raw_events_per_s": round(rate["raw"]), "naive_events_per_s": round(rate["naive"]),
            "ingest_events_per_s": round(rate["omnikiosk"]),
            "ratio_vs_raw": round(rate["omnikiosk"] / rate["raw"], 3),
            "speedup_vs_naive": round(rate["omnikiosk"] / rate["naive"], 2),
            "stored": om["stored"], "lost": n - om["stored"], "duplicated": om["duplicates"],
            "batches": om["batches"],
        }
    summary["ingest_events_per_s"] = min(summary[m]["ingest_events_per_s"] for m in modes)
    summary["lost"] = sum(summary[m]["lost"] for m in modes)
    summary["duplicated"] = sum(summary[m]["duplicated"] for m in modes)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
