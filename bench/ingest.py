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

  fleet    20 devices publish at once (QoS 1, each its own client) to a real hub process
           (`python -m hub run`) whose database already caches 100,000 customer profiles: events
           committed per second (acknowledged after commit, receipted), against a raw paho
           subscriber that only counts the same 20 devices' messages; and the hub process's RSS.

Targets (issue 5, fleet): committed >= 0.5x raw and >= 1,500 events/s; hub RSS < 300 MB.
Usage: python bench/ingest.py [--events N] [--mode queued|live|fleet|all]
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

from measure import rss_mb  # noqa: E402

from demo.broker import Broker, free_port  # noqa: E402
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


FLEET = [f"s001-k{n:02d}" for n in range(1, 21)]
FLEET_CUSTOMERS = 100_000
FLEET_TARGETS = {"ratio": 0.5, "committed_per_s": 1500, "hub_rss_mb": 300}


def fleet_publish(broker: Broker, per_device: int, started: threading.Event) -> None:
    """Each of the 20 devices publishes its own numbered envelopes at QoS 1, all at once."""
    now = datetime.now(timezone.utc)
    threads = []
    for device in FLEET:
        bodies = [make_envelope(store=STORE, device=device, type="scan.product", seq=i + 1, now=now,
                                data={"session": "bench", "gtin": f"{i:014d}", "source": "ean13"}).to_json()
                  for i in range(per_device)]
        threads.append(threading.Thread(target=_device_publishes, args=(broker, device, bodies, started), daemon=True))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _device_publishes(broker: Broker, device: str, bodies: list[str], started: threading.Event) -> None:
    client = build_client(f"bench-{device}", login(broker, device), will_topic=TOPICS.status(device),
                          will_payload=b"{}")
    client.max_inflight_messages_set(100)
    connected = threading.Event()
    client.on_connect = lambda *a: connected.set()
    connect(client, login(broker, device))
    client.loop_start()
    assert connected.wait(10)
    started.wait()
    infos = [client.publish(TOPICS.events(device), body, qos=1) for body in bodies]
    for info in infos:
        info.wait_for_publish(120)
    client.disconnect()
    client.loop_stop()


def seed_customers(db_path: Path, count: int) -> None:
    """A hub database that already caches `count` profiles (the demo's, under new ids)."""
    from demo import seed
    from hub.store import HubStore, open_hub_db
    store = HubStore(open_hub_db(db_path))
    profiles = seed.build().customers
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    rows = []
    for n in range(count):
        profile = dict(profiles[n % len(profiles)], id=f"B{n:06d}")
        rows.append((profile["id"], json.dumps(profile), stamp))
    with store.transaction():
        store.db.conn.executemany("INSERT INTO customers (id, profile, fetched_at) VALUES (?, ?, ?)", rows)
    store.db.conn.close()


def measure_fleet(n: int) -> dict:
    """Raw counting subscriber, then a real hub process, each fed by the 20 devices at once."""
    import subprocess
    per_device = n // len(FLEET)
    total = per_device * len(FLEET)
    from demo.chaos import work_dir
    with work_dir() as tmp:
        workdir = Path(tmp)
        broker = Broker(workdir / "broker", STORE, FLEET).start()
        try:
            print(f"  fleet/raw: {total} events from 20 devices …", file=sys.stderr, flush=True)
            prime_session(broker, "bench-raw")
            started = threading.Event()
            feeder = threading.Thread(target=fleet_publish, args=(broker, per_device, started), daemon=True)
            feeder.start()
            raw = run_raw(broker, total, workdir, started.set)  # subscribes, then lets the devices go
            feeder.join()
            print(f"  fleet/hub process with {FLEET_CUSTOMERS} customers cached …", file=sys.stderr, flush=True)
            hub_db = workdir / "hub.db"
            seed_customers(hub_db, FLEET_CUSTOMERS)
            (workdir / "api_key").write_text("unused\n")
            (workdir / "hub.toml").write_text(
                f'store = "{STORE}"\ndemo = true\n[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\n'
                f'password_file = "{broker.password_file_for(broker.hub_user)}"\n[db]\npath = "{hub_db}"\n'
                f'[web]\nport = {free_port()}\n[online]\nbase_url = "http://127.0.0.1:9"\n'
                f'api_key_file = "{workdir / "api_key"}"\n')
            hub = subprocess.Popen([sys.executable, "-m", "hub", "run", "--config", str(workdir / "hub.toml")],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   cwd=Path(__file__).resolve().parents[1])
            try:
                deadline = time.monotonic() + 30
                while committed(hub_db) is None and time.monotonic() < deadline:
                    time.sleep(0.1)
                time.sleep(2.0)  # the hub subscribes and announces itself
                started = threading.Event()
                feeder = threading.Thread(target=fleet_publish, args=(broker, per_device, started), daemon=True)
                feeder.start()
                first = time.perf_counter()
                started.set()
                peak_rss = 0.0
                while (committed(hub_db) or 0) < total:
                    peak_rss = max(peak_rss, rss_mb(hub.pid))
                    time.sleep(0.1)
                    if time.perf_counter() - first > 600:
                        raise SystemExit("fleet: the hub did not commit everything in 10 minutes")
                hub_s = time.perf_counter() - first
                peak_rss = max(peak_rss, rss_mb(hub.pid))
                feeder.join()
                stored = committed(hub_db)
            finally:
                hub.terminate()
                hub.wait(15)
        finally:
            broker.stop()
    return {"events": total, "raw_per_s": total / raw["seconds"], "committed_per_s": total / hub_s,
            "hub_rss_mb": peak_rss, "stored": stored}


def committed(db: Path) -> int | None:
    try:
        with sqlite3.connect(db, timeout=10) as conn:
            return conn.execute("SELECT count(*) FROM events").fetchone()[0]
    except sqlite3.OperationalError:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=5000, help="events per variant (default 5000)")
    parser.add_argument("--mode", choices=("queued", "live", "fleet", "all"), default="all")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the variants' own connect/disconnect chatter is not the result
    n = args.events
    modes = ("queued", "live") if args.mode == "all" else tuple(m for m in (args.mode,) if m != "fleet")
    summary: dict = {"bench": "ingest", "events": n}
    print(f"\nhub ingest: {n} events per variant, real Mosquitto on loopback\n")
    if modes:
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
    if modes:
        summary["ingest_events_per_s"] = min(summary[m]["ingest_events_per_s"] for m in modes)
        summary["lost"] = sum(summary[m]["lost"] for m in modes)
        summary["duplicated"] = sum(summary[m]["duplicated"] for m in modes)
    if args.mode in ("fleet", "all"):
        fleet = measure_fleet(max(n, 20_000))
        ratio = fleet["committed_per_s"] / fleet["raw_per_s"]
        print(f"\nfleet: 20 devices at once, a real hub process with {FLEET_CUSTOMERS:,} customers cached")
        print(f"{'variant':<34} {'events/s':>10}  target")
        print(f"{'raw subscriber (counts only)':<34} {fleet['raw_per_s']:>10,.0f}")
        print(f"{'hub: committed, then acknowledged':<34} {fleet['committed_per_s']:>10,.0f}  >= 1,500 and >= 0.5x raw "
              f"({ratio:.2f}x)")
        print(f"{'hub process RSS (peak), MB':<34} {fleet['hub_rss_mb']:>10.1f}  < 300")
        summary.update({"committed_per_s": round(fleet["committed_per_s"]), "raw_per_s": round(fleet["raw_per_s"]),
                        "ratio": round(ratio, 3), "hub_rss_mb": round(fleet["hub_rss_mb"], 1),
                        "fleet_events": fleet["events"], "customers_cached": FLEET_CUSTOMERS})
        summary["fleet_targets_met"] = (ratio >= FLEET_TARGETS["ratio"]
                                        and fleet["committed_per_s"] >= FLEET_TARGETS["committed_per_s"]
                                        and fleet["hub_rss_mb"] < FLEET_TARGETS["hub_rss_mb"])
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
