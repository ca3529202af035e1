"""Failures on purpose, counted: the failure scenarios of tests/test_chaos.py at a size you choose.

Each scenario runs a fresh store of real processes (Mosquitto, the hub, the edge agents; the
kiosks' side appends from this process) and prints, per scenario: events sent (appends
attempted), acknowledged to the kiosk (append returned: on disk), stored at the hub, dropped
by the outbox's policy (refused with OutboxFull, or pushed out for room, counted by the outbox
itself), lost (acknowledged, not stored and not a counted drop: must be 0), duplicated
(stored twice), redelivered (copies the hub absorbed), gaps in seq, and the longest recovery:
from healing a fault until the hub holds every event appended before.

  broker        Mosquitto SIGKILLed and restarted --restarts times while the kiosks append
  agent         both edge agents SIGKILLed and restarted --restarts times while they drain
  hub           the hub SIGKILLed and restarted --restarts times during ingest
  hub+broker    the hub frozen (the broker queues for it), then hub and broker SIGKILLed together
                before the broker saved: events it acknowledged are gone from it
  netcut        the network between kiosks and broker (demo/netproxy.py) dropped, stalled (half-open:
                only MQTT keepalive notices) and slowed in turn, --restarts cuts under load
  burst         20 kiosks append through --restarts broker outages of 5 s, then all reconnect at
                once: spread of the reconnects (jittered backoff) and drain time
  skew          kiosk clocks +5 and -5 min (kiosk and agent, libfaketime), one steps back 10 min
                midway, broker restarted --restarts times: stored once, seq order, ts kept as sent
  outbox-bound  broker down, kiosks append past a 100-row outbox bound: low priority pushed out
                first, check-ins refused only when nothing else is left; every drop counted
  online-down   the online store unreachable for a compressed morning of 40 s (its API answers
                503, then refuses connections; its webhooks cannot reach the hub) while members
                check in, scan and send products to their online cart, and its back office
                changes profiles; per queue (check-ins, activity, cart lines, webhooks): queued,
                delivered, lost, duplicated (by id) and time to drain after it is back
  disk-full     each device's folder a 16 MiB loop-mounted ext4, filled by another file after the
                agents started: appends refused with OutboxDiskFull and counted, the agent drains
                on the full disk, appends work again once space is freed. Needs root and
                /dev/loop*; printed as skipped (with the reason) where they are missing

Defaults per scenario (events over all kiosks / faults): 5000/5 for the first five, burst
2000/2 (100 per kiosk), skew 5000/3, outbox-bound 640/1, online-down 1000/1, disk-full 6000/1.
--events and --restarts override all.

Usage: python bench/chaos.py --all
       python bench/chaos.py --scenario netcut --scenario burst --events 1000
The last line is one JSON object (bench, scenarios, skipped, sent, stored, dropped_by_policy, lost,
duplicated, max_recovery_s, per_scenario, …).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from demo.chaos import SCENARIOS, ScenarioSkipped, run_scenario, to_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, help="events per scenario, over all its kiosks (default: per scenario)")
    parser.add_argument("--restarts", type=int, help="faults per scenario (default: per scenario)")
    parser.add_argument("--scenario", action="append", choices=list(SCENARIOS),
                        help="run only these (repeat)")
    parser.add_argument("--all", action="store_true", help="run every scenario (the default without --scenario)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    names = list(SCENARIOS) if args.all or not args.scenario else args.scenario
    print(f"\nchaos: {len(names)} scenarios; real Mosquitto, hub and agent processes\n")
    header = f"{'scenario':<42} {'sent':>6} {'acked':>6} {'stored':>7} {'policy':>7} {'lost':>5} {'dup':>4} " \
             f"{'redeliv':>8} {'gaps':>5} {'faults':>6} {'max recovery s':>15}"
    print(header)
    outcomes, skipped = [], {}
    for name in names:
        print(f"  {name} …", file=sys.stderr, flush=True)
        try:
            outcome = run_scenario(name, events=args.events, restarts=args.restarts)
        except ScenarioSkipped as exc:
            skipped[name] = str(exc)
            print(f"{name:<42} skipped: {exc}", flush=True)
            continue
        outcomes.append(outcome)
        print(f"{outcome.name:<42} {outcome.sent:>6} {outcome.acknowledged:>6} {outcome.stored:>7} "
              f"{outcome.dropped_by_policy:>7} {outcome.lost:>5} {outcome.duplicated:>4} {outcome.redelivered:>8} "
              f"{outcome.gaps:>5} {outcome.faults:>6} {outcome.max_recovery_s:>15.2f}", flush=True)
        for key, value in outcome.notes.items():
            print(f"    {key}: {json.dumps(value)}", flush=True)
    print(to_json(outcomes, skipped))


if __name__ == "__main__":
    main()
