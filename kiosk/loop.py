"""The scan loop: latest frame → decode → debounce → shopper. One bad frame never ends it."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any, Callable

from kiosk.camera import FrameSource
from kiosk.decode import Code
from kiosk.scanner import Scanner
from kiosk.shopper import Shopper

Decoder = Callable[[object], list[Code]]

log = logging.getLogger("kiosk.loop")

# scan_fps is measured over this many seconds: long enough to be steady, short enough to show a stall
FPS_WINDOW_S = 10.0


class ScanLoop:
    def __init__(self, source: FrameSource, shopper: Shopper, *, decoder: Decoder, fps: float, debounce_s: float,
                 confirm_window_s: float = 1.0, on_camera_state: Callable[[str], None] = lambda state: None,
                 heartbeat: Callable[[], None] = lambda: None, clock: Callable[[], float] = time.monotonic):
        """`heartbeat` is called once per turn of the loop, camera or not (protocol.sdnotify.Watchdog.tick):
        a loop that stops turning is a hung kiosk, and systemd restarts it."""
        self.source = source
        self.shopper = shopper
        self.decoder = decoder
        self.interval = 1.0 / fps
        self.scanner = Scanner(debounce_s=debounce_s, confirm_window_s=confirm_window_s)
        self.on_camera_state = on_camera_state
        self.heartbeat = heartbeat
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.stats: dict[str, Any] = {"frames": 0, "decode_ms": 0.0, "camera": "waiting", "errors": 0}
        # A step and a change of frame source never overlap (config.update swaps the camera live).
        self._source_lock = threading.Lock()
        self._decoded_at: deque[float] = deque()
        self._decoded_lock = threading.Lock()
        self._started_at = clock()

    def set_fps(self, fps: float) -> None:
        self.interval = 1.0 / fps

    def set_windows(self, *, debounce_s: float, confirm_window_s: float) -> None:
        """New debounce and confirmation windows; codes already seen stay remembered."""
        self.scanner.debouncer.window_s = debounce_s
        self.scanner.confirmer.window_s = confirm_window_s

    def replace_source(self, open_new: Callable[[], FrameSource]) -> None:
        """Close the frame source, then open the next one (a camera cannot be opened twice).
        If opening fails the loop has no frames until a working source is given; the error is raised."""
        with self._source_lock:
            self.source.close()
            self.source = _NoFrames()
            self.source = open_new()

    def scan_fps(self) -> float:
        """Frames decoded per second over the last FPS_WINDOW_S (or since start, if sooner)."""
        now = self._clock()
        with self._decoded_lock:
            self._forget_before(now - FPS_WINDOW_S)
            count = len(self._decoded_at)
        span = min(FPS_WINDOW_S, now - self._started_at)
        return round(count / span, 2) if span > 0 else 0.0

    def step(self) -> list[Code]:
        """One iteration: returns the codes that acted."""
        with self._source_lock:
            return self._step()

    def _step(self) -> list[Code]:
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
            self._count_decoded(now)
            fresh = self.scanner.scans(codes, now)
            for code in fresh:
                self.shopper.scan(code, now)
        self.shopper.tick(now)
        return fresh

    def _count_decoded(self, now: float) -> None:
        with self._decoded_lock:
            self._decoded_at.append(now)
            self._forget_before(now - FPS_WINDOW_S)

    def _forget_before(self, moment: float) -> None:
        while self._decoded_at and self._decoded_at[0] < moment:
            self._decoded_at.popleft()

    def run(self) -> None:
        while not self._stop.is_set():
            started = self._clock()
            try:
                self.step()
            except Exception:
                self.stats["errors"] += 1
                log.exception("scan step failed; continuing")
            # A lost camera is a degraded kiosk (the screen says so and the source reopens), not a hung one.
            self.heartbeat()
            self._stop.wait(max(0.0, self.interval - (self._clock() - started)))

    def start(self) -> "ScanLoop":
        self._started_at = self._clock()
        self._thread = threading.Thread(target=self.run, name="scan-loop", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(3)
        self.source.close()


class _NoFrames:
    """Stands in while one camera is closed and the next one opens, or when it failed to open."""
    state = "lost"

    def read(self) -> None:
        return None

    def close(self) -> None:
        """Nothing was opened."""
