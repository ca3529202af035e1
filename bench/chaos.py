"""Failures on purpose, counted: the failure scenarios of tests/test_chaos.py at a size you choose.

Each scenario runs a fresh store of real processes (Mosquitto, the hub, two edge agents; the
kiosks' side appends from this process) and prints, per scenario: events sent (appends
attempted), acknowledged to the kiosk (append returned: on disk), stored at the hub, lost,
duplicated (stored twice), redelivered (copies the hub absorbed), gaps in seq, and the
longest recovery: from healing a fault (the process started again) until the hub holds
every event appended before.

  broker      Mosquitto SIGKILLed and restarted --restarts times while the kiosks append
  agent       both edge agents SIGKILLed and restarted --restarts times while they drain
  hub         the hub SIGKILLed and restarted --restarts times during ingest
  hub+broker  the hub frozen (the broker queues for it), then hub and broker SIGKILLed together
              before the broker saved: events it acknowledged are gone from it

Usage: python bench/chaos.py [--events N] [--restarts R] [--scenario NAME ...]
The last line is one JSON object (bench, scenarios, sent, stored, lost, duplicated, max_recovery_s, …).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from demo.chaos import SCENARIOS, ChaosStore, to_json, work_dir  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=5000, help="events per scenario, over both kiosks (default 5000)")
    parser.add_argument("--restarts", type=int, default=5, help="faults per scenario (default 5)")
    parser.add_argument("--scenario", action="append", choices=sorted(SCENARIOS),
                        help="run only these (repeat); default: all")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    names = args.scenario or list(SCENARIOS)
    print(f"\nchaos: {args.events} events and {args.restarts} faults per scenario; real Mosquitto, hub and "
          f"agent processes\n")
    header = f"{'scenario':<40} {'sent':>6} {'acked':>6} {'stored':>7} {'lost':>5} {'dup':>4} {'redeliv':>8} " \
             f"{'gaps':>5} {'faults':>6} {'max recovery s':>15}"
    print(header)
    outcomes = []
    for name in names:
        print(f"  {name} …", file=sys.stderr, flush=True)
        with work_dir() as tmp:
            store = ChaosStore(Path(tmp)).start()
            try:
                outcome = SCENARIOS[name](store, events=args.events, restarts=args.restarts)
            finally:
                store.stop()
        outcomes.append(outcome)
        print(f"{outcome.name:<40} {outcome.sent:>6} {outcome.acknowledged:>6} {outcome.stored:>7} {outcome.lost:>5} "
              f"{outcome.duplicated:>4} {outcome.redelivered:>8} {outcome.gaps:>5} {outcome.faults:>6} "
              f"{outcome.max_recovery_s:>15.2f}", flush=True)
    print(to_json(outcomes))


if __name__ == "__main__":
    main()
