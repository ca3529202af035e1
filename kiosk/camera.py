"""Frame sources: a camera (OpenCV or Picamera2), a video file or a folder of images, from one small registry.

Every source hands out only its latest frame: a kiosk that falls behind skips frames
instead of building a queue. `state` says what a shopper or IT should know. A camera mounted
turned (`camera.rotation`) has every frame turned upright before anyone sees it.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Callable, Protocol

import cv2
import numpy as np

log = logging.getLogger("kiosk.camera")

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}
ROTATIONS = (0, 90, 180, 270)   # degrees clockwise
_ROTATE_CODES = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}


class FrameSource(Protocol):
    state: str  # "ok", "waiting" (nothing to show yet) or "lost"

    def read(self) -> np.ndarray | None: ...

    def close(self) -> None: ...


class FolderSource:
    """The newest image in a folder: the demo's simulated camera (`python -m demo show` drops images here)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.state = "waiting"
        self._cached: tuple[tuple[str, int], np.ndarray] | None = None

    def read(self) -> np.ndarray | None:
        try:
            images = [p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
            newest = max(images, key=lambda p: p.stat().st_mtime_ns, default=None)
            if newest is None:
                self.state = "waiting"
                return None
            key = (newest.name, newest.stat().st_mtime_ns)
        except OSError:  # an image removed between listing and stat
            return None
        if self._cached is None or self._cached[0] != key:
            frame = cv2.imread(str(newest), cv2.IMREAD_COLOR)
            if frame is None:
                return None  # still being written; next read will see it whole
            self._cached = (key, frame)
        self.state = "ok"
        return self._cached[1]

    def close(self) -> None:
        self._cached = None


class VideoSource:
    """A video file played in a loop at its own frame rate (for tests and demos)."""

    def __init__(self, path: str | Path):
        self.path = str(path)
        self._capture = cv2.VideoCapture(self.path)
        if not self._capture.isOpened():
            raise ValueError(f"cannot open video {self.path}")
        self._interval = 1.0 / (self._capture.get(cv2.CAP_PROP_FPS) or 10.0)
        self._next = time.monotonic()
        self._frame: np.ndarray | None = None
        self.state = "ok"

    def read(self) -> np.ndarray | None:
        now = time.monotonic()
        if self._frame is None or now >= self._next:
            ok, frame = self._capture.read()
            if not ok:  # end of file: start over
                self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
                ok, frame = self._capture.read()
            self._frame = frame if ok else None
            self._next = now + self._interval
        return self._frame

    def close(self) -> None:
        self._capture.release()


class CameraSource:
    """An OpenCV camera read by its own thread that keeps only the newest frame; reopens with backoff when lost."""

    def __init__(self, index: int, *, width: int = 640, height: int = 480, fps: float = 0, fourcc: str = "",
                 opener: Callable[[int], "cv2.VideoCapture"] = cv2.VideoCapture, max_backoff_s: float = 10.0):
        self.index, self.width, self.height, self.fps, self.fourcc = index, width, height, fps, fourcc
        self.max_backoff_s = max_backoff_s
        self._opener = opener
        self._latest: np.ndarray | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.state = "waiting"
        self._thread = threading.Thread(target=self._grab_forever, name="camera", daemon=True)
        self._thread.start()

    def _open(self):
        capture = self._opener(self.index)
        if self.fourcc:  # MJPG lets USB cameras deliver full frame rates at 720p over USB 2
            capture.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*self.fourcc))
        if self.fps:
            capture.set(cv2.CAP_PROP_FPS, self.fps)
        capture.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
        capture.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # V4L2 keeps ~4 frames otherwise: that is lag
        return capture

    def _grab_forever(self) -> None:
        delay = 0.5
        while not self._stop.is_set():
            capture = self._open()
            while not self._stop.is_set() and capture.isOpened():
                ok, frame = capture.read()
                if not ok:
                    break
                with self._lock:
                    self._latest = frame
                self.state, delay = "ok", 0.5
            capture.release()
            if self._stop.is_set():
                return
            if self.state != "lost":
                log.warning("camera lost; reopening with backoff", extra={"camera": self.index})
            self.state = "lost"
            with self._lock:
                self._latest = None
            self._stop.wait(delay)
            delay = min(delay * 2, self.max_backoff_s)

    def read(self) -> np.ndarray | None:
        with self._lock:
            return self._latest

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)


class PicameraSource:
    """A Raspberry Pi camera module through Picamera2 (Raspberry Pi OS: `apt install python3-picamera2`,
    and a venv made with --system-site-packages). Imported only when asked for.

    A module that is missing at start or lost later (a loose ribbon cable) is a degraded state, not
    a crash: `state` says "lost", the shopper sees "scanner unavailable", and the camera is opened
    again with backoff (as CameraSource does) until it answers."""

    def __init__(self, index: int, *, width: int = 640, height: int = 480, max_backoff_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic):
        try:
            from picamera2 import Picamera2
        except ImportError:
            raise ValueError("picamera source needs Picamera2: on Raspberry Pi OS install python3-picamera2 and "
                             "create the venv with --system-site-packages") from None
        self._picamera2, self.index, self._size = Picamera2, index, (width, height)
        self._camera, self._clock, self.max_backoff_s = None, clock, max_backoff_s
        self._delay, self._next_try = 0.5, 0.0
        self.state = "waiting"
        self._open()

    def _open(self) -> None:
        try:
            camera = self._picamera2(self.index)
            camera.configure(camera.create_video_configuration(
                main={"size": self._size, "format": "RGB888"}, buffer_count=2))
            camera.start()
        except Exception as exc:  # no module on the cable, busy, driver errors: all mean "try again later"
            self._lost(f"cannot open the camera module: {exc}")
            return
        self._camera, self.state, self._delay = camera, "ok", 0.5

    def _lost(self, why: str) -> None:
        if self.state != "lost":
            log.warning("camera module lost; reopening with backoff", extra={"camera": self.index, "detail": why})
        self.state = "lost"
        if self._camera is not None:
            try:
                self._camera.close()
            except Exception:
                pass
            self._camera = None
        self._next_try = self._clock() + self._delay
        self._delay = min(self._delay * 2, self.max_backoff_s)

    def read(self) -> np.ndarray | None:
        if self._camera is None:
            if self._clock() < self._next_try:
                return None
            self._open()
            if self._camera is None:
                return None
        try:
            return self._camera.capture_array("main")  # RGB888 is laid out BGR in memory, as OpenCV wants
        except Exception as exc:  # the driver raises its own types; a lost module must not end the loop
            self._lost(f"capture failed: {exc}")
            return None

    def close(self) -> None:
        if self._camera is not None:
            self._camera.stop()


def rotate(frame: np.ndarray, degrees: int) -> np.ndarray:
    """The frame turned `degrees` clockwise (0, 90, 180 or 270). Pure; 0 returns the frame itself."""
    if degrees == 0:
        return frame
    if degrees not in _ROTATE_CODES:
        raise ValueError(f"rotation must be one of {', '.join(map(str, ROTATIONS))} degrees, not {degrees!r}")
    return cv2.rotate(frame, _ROTATE_CODES[degrees])


class RotatedSource:
    """Another source's frames turned upright, for a camera mounted turned. Everything downstream (the
    decoder, crops, a debug view) sees the upright frame; the state is the source's own."""

    def __init__(self, source: FrameSource, degrees: int):
        if degrees not in _ROTATE_CODES:
            raise ValueError(f"rotation must be one of {', '.join(map(str, ROTATIONS[1:]))} degrees, not {degrees!r}")
        self.source, self.degrees = source, degrees

    @property
    def state(self) -> str:
        return self.source.state

    def read(self) -> np.ndarray | None:
        frame = self.source.read()
        return None if frame is None else rotate(frame, self.degrees)

    def close(self) -> None:
        self.source.close()


def open_source(spec: str, *, width: int = 640, height: int = 480, fps: float = 0, fourcc: str = "",
                rotation: int = 0) -> FrameSource:
    """`camera:0`, `picamera:0`, `video:/path/clip.mp4` or `folder:/path/dir`; `rotation` (degrees clockwise)
    turns every frame. `width` and `height` are what the camera captures, before the turn."""
    if rotation not in ROTATIONS:
        raise ValueError(f"rotation must be one of {', '.join(map(str, ROTATIONS))} degrees, not {rotation!r}")
    source = _open_unturned(spec, width=width, height=height, fps=fps, fourcc=fourcc)
    # Only a turned camera pays for the turn (a copy of each frame read).
    return RotatedSource(source, rotation) if rotation else source


def _open_unturned(spec: str, *, width: int, height: int, fps: float, fourcc: str) -> FrameSource:
    kind, _, target = spec.partition(":")
    if kind in ("camera", "picamera") and not target.isdigit():
        raise ValueError(f"{kind} source needs an index, e.g. {kind}:0 (got {spec!r})")
    if kind == "camera":
        return CameraSource(int(target), width=width, height=height, fps=fps, fourcc=fourcc)
    if kind == "picamera":
        return PicameraSource(int(target), width=width, height=height)
    if kind == "video":
        return VideoSource(target)
    if kind == "folder":
        return FolderSource(target)
    raise ValueError(f"unknown frame source {spec!r}: use camera:INDEX, picamera:INDEX, video:PATH or folder:PATH")
