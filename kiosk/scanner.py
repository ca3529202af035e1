"""From per-frame reads to scans: confirmation across frames and debounce. Pure (time is passed in)."""

from __future__ import annotations

from typing import Iterable

from kiosk.decode import Code

# Member tokens carry a signature, so one read is proof; a worn EAN can be misread as another
# valid EAN, so a product needs the same text in two frames.
NEEDS_CONFIRMATION = frozenset({"ean13", "ean8", "upca", "upce", "itf14", "code128"})


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


class Confirmer:
    """Passes a linear barcode only once the same text was read in two frames within `window_s`;
    QR codes pass at once. A single misread never becomes a scan."""

    def __init__(self, window_s: float = 1.0, needs_confirmation: frozenset[str] = NEEDS_CONFIRMATION):
        self.window_s = window_s
        self.needs_confirmation = needs_confirmation
        self._first_read: dict[Code, float] = {}

    def confirmed(self, codes: Iterable[Code], now: float) -> list[Code]:
        passed = []
        for code in codes:
            if code.symbology not in self.needs_confirmation:
                passed.append(code)
                continue
            first = self._first_read.get(code)
            if first is not None and now - first <= self.window_s:
                passed.append(code)
            else:
                self._first_read[code] = now
        self._first_read = {c: t for c, t in self._first_read.items() if now - t <= self.window_s}
        return passed


class Scanner:
    """Confirmation, then debounce: what the scan loop asks of each frame's reads."""

    def __init__(self, *, debounce_s: float, confirm_window_s: float):
        self.confirmer = Confirmer(confirm_window_s)
        self.debouncer = Debouncer(debounce_s)

    def scans(self, codes: Iterable[Code], now: float) -> list[Code]:
        return self.debouncer.fresh(self.confirmer.confirmed(codes, now), now)
