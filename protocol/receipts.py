"""Receipts: the hub tells a device which of its events are committed, so its outbox may forget them. Pure.

A PUBACK from the broker only says the broker holds an event in memory (Mosquitto saves
to disk now and then), so a broker crash can lose what a device already deleted. The
hub therefore answers every committed batch on the device's `receipts` topic with the
`seq` ranges it stored (new or already there) and the ones it refused for good; the edge
agent deletes a row only when a receipt covers it, and sends again what stays
unreceipted. Payload:

    {"v": 1, "hub_session": 1764320000, "stored": [[1, 480], [482, 500]], "rejected": [[481, 481]]}
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Iterable

MAX_RANGES = 1000  # about 16 KiB at worst: within the broker's packet limit
MAX_RECEIPT_BYTES = 32 * 1024


@dataclass(frozen=True)
class Receipt:
    hub_session: int
    stored: tuple[tuple[int, int], ...]
    rejected: tuple[tuple[int, int], ...] = ()

    def covers(self, seq: int) -> bool:
        return any(a <= seq <= b for a, b in self.stored + self.rejected)


@dataclass(frozen=True)
class ReceiptError:
    reason: str

    def __bool__(self) -> bool:
        return False


def to_ranges(seqs: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted, merged inclusive ranges: [1, 2, 3, 7, 9, 8] → [(1, 3), (7, 9)]."""
    ranges: list[tuple[int, int]] = []
    for seq in sorted(set(seqs)):
        if ranges and seq == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], seq)
        else:
            ranges.append((seq, seq))
    return ranges


def receipt_payload(*, hub_session: int, stored: Iterable[int], rejected: Iterable[int] = ()) -> list[bytes]:
    """One or more payloads (each within MAX_RANGES ranges) covering the given seqs."""
    stored_ranges, rejected_ranges = to_ranges(stored), to_ranges(rejected)
    payloads = []
    while stored_ranges or rejected_ranges or not payloads:
        take_s = stored_ranges[:MAX_RANGES]
        take_r = rejected_ranges[:MAX_RANGES - len(take_s)]
        stored_ranges, rejected_ranges = stored_ranges[len(take_s):], rejected_ranges[len(take_r):]
        payloads.append(json.dumps({"v": 1, "hub_session": hub_session, "stored": take_s, "rejected": take_r},
                                   separators=(",", ":")).encode())
    return payloads


def parse_receipt(payload: bytes) -> Receipt | ReceiptError:
    if len(payload) > MAX_RECEIPT_BYTES:
        return ReceiptError("too_large")
    try:
        obj = json.loads(payload)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return ReceiptError("not_json")
    if not isinstance(obj, dict) or obj.get("v") != 1:
        return ReceiptError("unknown_version")
    session = obj.get("hub_session")
    if not isinstance(session, int) or isinstance(session, bool):
        return ReceiptError("bad_field")
    parsed = []
    for name in ("stored", "rejected"):
        ranges = obj.get(name, [])
        if not isinstance(ranges, list) or len(ranges) > MAX_RANGES:
            return ReceiptError("bad_field")
        out = []
        for item in ranges:
            if (not isinstance(item, list) or len(item) != 2
                    or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 1 for x in item)
                    or item[0] > item[1]):
                return ReceiptError("bad_range")
            out.append((item[0], item[1]))
        parsed.append(tuple(out))
    return Receipt(session, parsed[0], parsed[1])
