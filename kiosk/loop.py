"""The scan loop: latest frame → decode → debounce → shopper. One bad frame never ends it."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

from kiosk.camera import FrameSource
from kiosk.decode import Code
from kiosk.scanner import Scanner
from kiosk.shopper import Shopper

Decoder = Callable[[object], list[Code]]

log = logging.getLogger("kiosk.loop")


class ScanLoop:
    def __init__(self, source: FrameSource, shopper: Shopper, *, decoder: Decoder, fps: float, debounce_s: float,
                 confirm_window_s: float = 1.0, on_camera_state: Callable[[str], None] = lambda state: None,
                 clock: Callable[[], float] = time.monotonic):
        self.source = source
        self.shopper = shopper
        self.decoder = decoder
        self.interval = 1.0 / fps
        self.scanner = Scanner(debounce_s=debounce_s, confirm_window_s=confirm_window_s)
        self.on_camera_state = on_camera_state
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.stats: dict[str, Any] = {"frames": 0, "decode_ms": 0.0, "camera": "waiting", "errors": 0}

    def step(self) -> list[Code]:
        """One iteration: returns the codes that acted."""
        now = self._clock()
        frame = self.source.read()
        state = self.source.state
        if state != self.stats["camera"]:
            self.stats["camera"] = state
            self.on_camera_state(state)
        fresh: list[Code] = []
        if frame is not None:
            started = time.perf_counter()
            codes = self.decoder(frame)
            self.stats["decode_ms"] = round((time.perf_counter() - started) * 1000, 2)
            self.stats["frames"] += 1
            fresh = self.scanner.scans(codes, now)
            for code in fresh:
                self.shopper.scan(code, now)
        self.shopper.tick(now)
        return fresh

    def run(self) -> None:
        while not self._stop.is_set():
            started = self._clock()
            try:
                self.step()
            except Exception:
                self.stats["errors"] += 1
                log.exception("scan step failed; continuing")
            self._stop.wait(max(0.0, self.interval - (self._clock() - started)))

    def start(self) -> "ScanLoop":
        self._thread = threading.Thread(target=self.run, name="scan-loop", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(3)
        self.source.close()
