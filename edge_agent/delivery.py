"""The agent's delivery ledger: which outbox rows are in flight, which await the hub's receipt,
which must go again. Pure bookkeeping (time is passed in); the agent does the I/O around it.

A row's life: handed to paho (in flight, keyed by MQTT message id) → PUBACK from the broker
→ an event now awaits the hub's receipt (a telemetry row is done) → the receipt covers its
`seq` → the outbox forgets it. An event the broker acknowledged but the hub never receipted
may have died with the broker (which acknowledges from memory), so it goes again after a
reconnect, or when it has waited `receipt_timeout_s` while the hub was online; the hub
stores each event id once, so sending twice costs a duplicate, never a loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from edge_agent.outbox import TELEMETRY, PendingRow


@dataclass(frozen=True)
class Acked:
    """What a PUBACK settled: a telemetry row to forget, an event now awaiting its receipt, or a refusal."""

    row: PendingRow
    ok: bool
    reason: str = ""


class Ledger:
    def __init__(self, *, window: int = 100, unconfirmed_max: int = 1000, receipt_timeout_s: float = 30.0):
        self.window = window
        self.unconfirmed_max = unconfirmed_max
        self.receipt_timeout_s = receipt_timeout_s
        self.in_flight: dict[int, PendingRow] = {}   # MQTT mid → row handed to paho, no PUBACK yet
        self.awaiting: dict[int, float] = {}          # seq → when its PUBACK came; waits for the hub's receipt
        self.resend: list[int] = []                    # seqs to publish again, oldest first
        self.next_pos = 0                              # rows with pos > this have not been handed out yet
        self._flying_seqs: set[int] = set()
        self._flying_pos: set[int] = set()
        self._receipted_in_flight: set[int] = set()  # the hub's receipt overtook the broker's PUBACK

    # --- how much may go now
    def room(self) -> int:
        """Rows that may be handed to paho now: the in-flight window, and a cap on events awaiting
        receipts, so a hub that stopped answering costs the broker at most that many."""
        return max(0, min(self.window - len(self.in_flight),
                          self.unconfirmed_max - len(self.awaiting) - len(self.in_flight)))

    def wanted(self, row: PendingRow) -> bool:
        """False for a row already on its way (a resend picked it, or it awaits its receipt)."""
        return row.pos not in self._flying_pos and (row.seq is None or (
            row.seq not in self._flying_seqs and row.seq not in self.awaiting))

    # --- events from paho and the hub
    def handed(self, mid: int, row: PendingRow) -> None:
        self.in_flight[mid] = row
        self._flying_pos.add(row.pos)
        if row.seq is not None:
            self._flying_seqs.add(row.seq)
        self.next_pos = max(self.next_pos, row.pos)

    def acked(self, mid: int, ok: bool, now: float, reason: str = "") -> Acked | None:
        """A PUBACK (or a refusal) for message `mid`; None when it is not one of ours (a status, a request)."""
        row = self.in_flight.pop(mid, None)
        if row is None:
            return None
        self._flying_pos.discard(row.pos)
        receipted_already = row.seq in self._receipted_in_flight
        if row.seq is not None:
            self._flying_seqs.discard(row.seq)
            self._receipted_in_flight.discard(row.seq)
        if ok and row.leaf != TELEMETRY and row.seq is not None and not receipted_already:
            self.awaiting[row.seq] = now
        if not ok:
            # Refused by the broker (ACL, quota): hand it out again later, in order.
            self.next_pos = min(self.next_pos, row.pos - 1)
        return Acked(row, ok, reason)

    def receipted(self, ranges: Iterable[tuple[int, int]]) -> int:
        """Seqs a hub receipt covers stop waiting; returns how many were waiting."""
        settled = 0
        ranges = list(ranges)

        def covered(seq: int) -> bool:
            return any(a <= seq <= b for a, b in ranges)
        for seq in [s for s in self.awaiting if covered(s)]:
            del self.awaiting[seq]
            settled += 1
        self._receipted_in_flight |= {s for s in self._flying_seqs if covered(s)}
        if self.resend:
            self.resend = [s for s in self.resend if not covered(s)]
        return settled

    def reconnected(self) -> None:
        """The broker connection was lost and is back: whatever the broker acknowledged but the hub
        has not receipted may be gone with the broker's memory. (paho itself sends again what was in
        flight, under the same message ids.)"""
        self.queue_resend(list(self.awaiting))

    def overdue(self, now: float, hub_online_since: float | None) -> list[int]:
        """Events waiting longer than the timeout for a receipt while the hub was online: send again."""
        if hub_online_since is None:
            return []
        due = [seq for seq, since in self.awaiting.items()
               if now - max(since, hub_online_since) >= self.receipt_timeout_s]
        self.queue_resend(due)
        return due

    def queue_resend(self, seqs: list[int]) -> None:
        for seq in seqs:
            self.awaiting.pop(seq, None)
        self.resend = sorted(set(self.resend) | set(seqs))

    def take_resend(self, limit: int) -> list[int]:
        taken, self.resend = self.resend[:limit], self.resend[limit:]
        return taken

    def forget_unsent(self, seqs: Iterable[int]) -> None:
        """Seqs picked for a resend whose rows are gone from the outbox (receipted or dropped meanwhile)."""
        for seq in seqs:
            self.awaiting.pop(seq, None)

    @property
    def idle(self) -> bool:
        return not self.in_flight and not self.awaiting and not self.resend
