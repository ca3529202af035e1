"""Debounce: a code held in front of the camera for a while is one scan, not thirty. Pure."""

from __future__ import annotations

from typing import Iterable

from kiosk.decode import Code


class Debouncer:
    """A code acts when it has not been seen for `window_s`; every sighting extends the window,
    so a code that stays in view acts once."""

    def __init__(self, window_s: float):
        self.window_s = window_s
        self._last_seen: dict[Code, float] = {}

    def fresh(self, codes: Iterable[Code], now: float) -> list[Code]:
        fresh = []
        for code in codes:
            previous = self._last_seen.get(code)
            if previous is None or now - previous > self.window_s:
                fresh.append(code)
            self._last_seen[code] = now
        if len(self._last_seen) > 256:  # forget codes long gone, keep memory flat
            self._last_seen = {c: t for c, t in self._last_seen.items() if now - t <= self.window_s}
        return fresh
