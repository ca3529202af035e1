"""Arrival latency: a member checks in at a kiosk → the card on a signed-in staff tablet.

A whole demo store as real processes (the demo online store, Mosquitto, the hub, two kiosks
with their edge agents). This process plays the kiosk's side and the tablet:

  kiosk   appends `scan.member` events (a fresh session and token id each) to a real kiosk's
          outbox.db with Outbox.append — the moment measured from;
  tablet  a python-socketio client signed in as staff on the /staff namespace — the moment
          measured to is when it receives the `arrival` card for that event.

  cold    every demo member once, with nothing cached: the hub fetches each profile from the
          online store (over HTTP, its 0.8 s budget) before the card goes out.
  warm    --events check-ins cycling through the members again: the profiles are cached.

Also, for reference in the same run: the raw path without the hub's work — an MQTT message from
a device client to a subscriber on the same broker (one hop), so the table shows what the
outbox, the agent, the commit, the receipt, the profile and Socket.IO add on top.

Targets (issue 5): warm p99 < 250 ms, cold p99 < 1 s.
Usage: python bench/arrival.py [--events N] [--rate PER_S]
The last line is one JSON object (bench, warm_p50_ms, warm_p99_ms, cold_p99_ms, …).
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
from pathlib import Path

import requests
import socketio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from demo.chaos import work_dir  # noqa: E402
from demo.store import DemoStore  # noqa: E402
from edge_agent.outbox import Outbox, open_device_db  # noqa: E402
from protocol.mqtt import BrokerLogin, build_client, connect  # noqa: E402
from protocol.topics import Topics  # noqa: E402

KIOSK = "s001-k01"
ONE_HOP_TOPIC = "omnikiosk/s001/bench/one-hop"  # inside the hub's ACL
TARGETS = {"warm_p99_ms": 250.0, "cold_p99_ms": 1000.0}


def signed_in(store: DemoStore) -> requests.Session:
    http = requests.Session()
    page = http.get(store.hub_url + "login", timeout=5)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    answer = http.post(store.hub_url + "login", data={"username": "demo", "password": "demo", "csrf_token": token},
                       timeout=5, allow_redirects=False)
    assert answer.status_code == 302, "demo sign-in failed"
    return http


class Tablet:
    """The staff tablet: records when each arrival card reaches it."""

    def __init__(self, store: DemoStore):
        self.received: dict[str, float] = {}
        self.cards: dict[str, dict] = {}
        self.client = socketio.Client(reconnection=False)
        self.client.on("floor", self._floor, namespace="/staff")
        http = signed_in(store)
        cookie = "; ".join(f"{c.name}={c.value}" for c in http.cookies)
        self.client.connect(store.hub_url, namespaces=["/staff"], headers={"Cookie": cookie},
                            transports=["websocket"], wait_timeout=10)

    def _floor(self, item: dict) -> None:
        if item.get("kind") == "arrival":
            card = item["data"]
            self.received[card["event_id"]] = time.perf_counter()
            self.cards[card["event_id"]] = card


def check_ins(outbox: Outbox, tablet: Tablet, members: list[str], rate: float, label: str) -> list[float]:
    """Append one check-in per member at `rate` a second; latency (ms) of each card."""
    sent: dict[str, float] = {}
    for index, member in enumerate(members):
        started = time.perf_counter()
        envelope = outbox.append("scan.member", {"session": str(uuid.uuid4()), "member": member,
                                                 "jti": str(uuid.uuid4()), "typ": "app"})
        sent[envelope.id] = started
        if index % 100 == 0:
            print(f"  {label}: {index}/{len(members)} …", file=sys.stderr, flush=True)
        pause = started + 1 / rate - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
    deadline = time.monotonic() + 60
    while len(set(sent) & set(tablet.received)) < len(sent) and time.monotonic() < deadline:
        time.sleep(0.05)
    missing = set(sent) - set(tablet.received)
    if missing:
        raise SystemExit(f"{label}: {len(missing)} of {len(sent)} arrivals never reached the tablet")
    return [(tablet.received[i] - t) * 1000 for i, t in sent.items()]


def one_hop(store: DemoStore, n: int = 300) -> list[float]:
    """Device → broker → subscriber, QoS 1, no hub: the floor under every figure here."""
    topics = Topics("s001")
    got: dict[bytes, float] = {}
    broker = store.broker
    hub_login = BrokerLogin(host=broker.host, port=broker.port, username=broker.hub_user,
                            password=broker.passwords[broker.hub_user])
    listener = build_client("bench-listener", hub_login, will_topic=topics.hub_status, will_payload=b"{}")
    ready = threading.Event()
    listener.on_connect = lambda c, *a: c.subscribe(ONE_HOP_TOPIC, qos=1)
    listener.on_subscribe = lambda *a: ready.set()
    listener.on_message = lambda c, u, m: got.setdefault(m.payload, time.perf_counter())
    connect(listener, hub_login)
    listener.loop_start()
    assert ready.wait(10)
    talker = build_client("bench-talker", hub_login, will_topic=topics.hub_status, will_payload=b"{}")
    connect(talker, hub_login)
    talker.loop_start()
    time.sleep(0.5)
    sent = {}
    for i in range(n):
        payload = f"{i}".encode()
        sent[payload] = time.perf_counter()
        talker.publish(ONE_HOP_TOPIC, payload, qos=1)
        time.sleep(0.005)
    time.sleep(1)
    for client in (talker, listener):
        client.disconnect()
        client.loop_stop()
    return [(got[p] - t) * 1000 for p, t in sent.items() if p in got]


def percentiles(values: list[float]) -> tuple[float, float, float]:
    ordered = sorted(values)
    return (statistics.median(ordered), ordered[max(0, int(len(ordered) * 0.99) - 1)], ordered[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1000, help="warm check-ins (default 1000)")
    parser.add_argument("--rate", type=float, default=10.0, help="check-ins a second (default 10)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    from demo import seed
    members = [c["id"] for c in seed.build().customers]
    with work_dir() as tmp:
        store = DemoStore(Path(tmp), hub_port=0, online_port=0, broker_port=0,
                          kiosk_ports={"s001-k01": 0, "s001-k02": 0}, agent_ports={"s001-k01": 0, "s001-k02": 0})
        print(f"\narrivals: {len(members)} cold and {args.events} warm check-ins at {args.rate:g}/s, "
              "a whole demo store as real processes\n", flush=True)
        store.start()
        try:
            tablet = Tablet(store)
            outbox = Outbox(open_device_db(store.kiosk_dir(KIOSK) / "outbox.db"), store="s001", device=KIOSK)
            floor = one_hop(store)
            cold = check_ins(outbox, tablet, members, args.rate / 2, "cold")
            warm_members = [members[i % len(members)] for i in range(args.events)]
            warm = check_ins(outbox, tablet, warm_members, args.rate, "warm")
            sources = {card["profile_source"] for card in tablet.cards.values()}
            tablet.client.disconnect()
        finally:
            store.stop()
    rows = [("one MQTT hop, no hub (floor)", floor), (f"cold: profile fetched online ({len(cold)})", cold),
            (f"warm: profile cached ({len(warm)})", warm)]
    print(f"{'path':<44} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for name, values in rows:
        p50, p99, top = percentiles(values)
        print(f"{name:<44} {p50:>8.1f} {p99:>8.1f} {top:>8.1f}")
    warm_p50, warm_p99, _ = percentiles(warm)
    cold_p50, cold_p99, _ = percentiles(cold)
    floor_p50, floor_p99, _ = percentiles(floor)
    print(f"targets: warm p99 < {TARGETS['warm_p99_ms']:g} ms, cold p99 < {TARGETS['cold_p99_ms']:g} ms; "
          f"profile sources seen: {', '.join(sorted(sources))}")
    summary = {"bench": "arrival", "events": args.events, "cold_events": len(cold), "rate_per_s": args.rate,
               "warm_p50_ms": round(warm_p50, 1), "warm_p99_ms": round(warm_p99, 1),
               "cold_p50_ms": round(cold_p50, 1), "cold_p99_ms": round(cold_p99, 1),
               "one_hop_p50_ms": round(floor_p50, 2), "one_hop_p99_ms": round(floor_p99, 2)}
    summary["targets_met"] = warm_p99 < TARGETS["warm_p99_ms"] and cold_p99 < TARGETS["cold_p99_ms"]
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
