"""Reconnect delays: exponential with full jitter, reset only after a connection stayed up. Pure.

After a broker restart every kiosk of a store loses its connection in the same instant; if
they all retried on the same schedule they would hit the broker together, again and again.
Each delay is drawn uniformly between `min_s` and a cap that doubles per failed attempt (up
to `max_s`), so twenty kiosks spread their retries; and a connection that drops again within
`stable_after_s` does not reset the growth (a flapping link backs off instead of hammering).
"""

from __future__ import annotations

import random
import time
from typing import Callable


class Backoff:
    def __init__(self, *, min_s: float = 1.0, max_s: float = 60.0, stable_after_s: float = 30.0,
                 rng: random.Random | None = None, clock: Callable[[], float] = time.monotonic):
        if not 0 < min_s <= max_s:
            raise ValueError("need 0 < min_s <= max_s")
        self.min_s, self.max_s, self.stable_after_s = min_s, max_s, stable_after_s
        self._rng = rng or random.Random()
        self._clock = clock
        self.attempt = 0
        self._up_since: float | None = None

    def next_delay(self) -> float:
        """Seconds to wait before the next attempt; each call counts as one more failed attempt."""
        cap = min(self.max_s, self.min_s * 2 ** (self.attempt + 1))
        self.attempt += 1
        return self._rng.uniform(self.min_s, cap)

    def connected(self) -> None:
        self._up_since = self._clock()

    def disconnected(self) -> None:
        """A connection ended: start again from short delays only if it had stayed up long enough."""
        if self._up_since is not None and self._clock() - self._up_since >= self.stable_after_s:
            self.attempt = 0
        self._up_since = None
