"""Frame sources: a lost camera is reported, shown to the shopper, and reopened by itself."""

from __future__ import annotations

import threading

import cv2
import numpy as np
import pytest

from conftest import wait_for
from kiosk.camera import CameraSource, FolderSource, open_source


class FlakyCapture:
    """Stands in for a USB camera (there is none on a CI machine): delivers frames, then is unplugged,
    then comes back. Shared state across reopen attempts, like the device node."""

    def __init__(self, plan: dict):
        self.plan = plan
        self.plan["opens"] += 1
        self.settings: dict[int, float] = {}

    def set(self, prop, value):
        self.settings[prop] = value
        self.plan["settings"].update(self.settings)
        return True

    def isOpened(self):
        return not self.plan["unplugged"].is_set()

    def read(self):
        if self.plan["unplugged"].is_set():
            return False, None
        self.plan["frames"] += 1
        return True, np.full((48, 64, 3), self.plan["opens"], dtype=np.uint8)

    def release(self):
        """The device stays; only this handle goes."""


@pytest.fixture
def plan():
    return {"opens": 0, "frames": 0, "unplugged": threading.Event(), "settings": {}}


def test_camera_is_reported_lost_and_reopens_with_backoff_without_a_restart(plan):
    camera = CameraSource(0, width=640, height=480, fps=30, fourcc="MJPG", opener=lambda i: FlakyCapture(plan),
                          max_backoff_s=0.05)
    try:
        wait_for(lambda: camera.state == "ok" and camera.read() is not None, what="first frames")
        plan["unplugged"].set()
        wait_for(lambda: camera.state == "lost", what="camera lost")
        assert camera.read() is None  # no stale frame is decoded while the camera is gone
        opens_while_lost = plan["opens"]
        wait_for(lambda: plan["opens"] > opens_while_lost + 1, what="reopen attempts")
        plan["unplugged"].clear()
        wait_for(lambda: camera.state == "ok" and camera.read() is not None, what="camera back")
    finally:
        camera.close()
    assert plan["settings"][cv2.CAP_PROP_FOURCC] == cv2.VideoWriter_fourcc(*"MJPG")
    assert plan["settings"][cv2.CAP_PROP_BUFFERSIZE] == 1 and plan["settings"][cv2.CAP_PROP_FPS] == 30


def test_lost_camera_shows_scanner_unavailable_then_idle_again(plan, tmp_path):
    from kiosk.loop import ScanLoop
    states: list[str] = []
    camera = CameraSource(0, opener=lambda i: FlakyCapture(plan), max_backoff_s=0.05)

    class Shopper:  # the loop only needs tick(); the screen part is what is tested here
        def tick(self, now):
            """No session to time out in this test."""
    loop = ScanLoop(camera, Shopper(), decoder=lambda frame: [], fps=100, debounce_s=1, on_camera_state=states.append)
    try:
        wait_for(lambda: (loop.step(), camera.state == "ok")[1], what="camera ok")
        plan["unplugged"].set()
        wait_for(lambda: (loop.step(), "lost" in states)[1], what="lost reported")
        plan["unplugged"].clear()
        wait_for(lambda: (loop.step(), states[-1] == "ok")[1], what="ok again")
    finally:
        camera.close()
    assert states[-3:] == ["ok", "lost", "ok"]


def test_folder_source_shows_the_newest_image_and_waits_when_empty(tmp_path):
    source = FolderSource(tmp_path)
    assert source.read() is None and source.state == "waiting"
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((10, 10, 3), np.uint8))
    assert source.read().shape == (10, 10, 3) and source.state == "ok"


@pytest.mark.parametrize("spec, message", [("camera:x", "needs an index"), ("webcam:0", "unknown frame source"),
                                           ("picamera:0", "Picamera2")])
def test_bad_source_specs_say_what_to_write(spec, message):
    with pytest.raises(ValueError, match=message):
        open_source(spec)


class FakePicamera2:
    """Stands in for picamera2.Picamera2: fails to open while `missing`, then gives frames until `unplug`."""

    missing = True
    opened = 0

    def __init__(self, index):
        if FakePicamera2.missing:
            raise IndexError("list index out of range")  # what Picamera2 raises when no camera is attached
        FakePicamera2.opened += 1
        self.unplugged = False

    def create_video_configuration(self, main, buffer_count):
        return {"main": main}

    def configure(self, config):
        self.size = config["main"]["size"]

    def start(self):
        pass

    def capture_array(self, stream):
        if FakePicamera2.missing:
            raise RuntimeError("camera frontend has timed out")
        import numpy as np
        return np.zeros((self.size[1], self.size[0], 3), np.uint8)

    def stop(self):
        pass

    def close(self):
        pass


def test_a_missing_camera_module_is_a_degraded_state_that_recovers(monkeypatch):
    import sys
    import types

    from kiosk.camera import PicameraSource
    monkeypatch.setitem(sys.modules, "picamera2", types.SimpleNamespace(Picamera2=FakePicamera2))
    now = [0.0]
    FakePicamera2.missing, FakePicamera2.opened = True, 0
    source = PicameraSource(0, width=64, height=48, clock=lambda: now[0])
    assert source.state == "lost" and source.read() is None           # no crash at start
    FakePicamera2.missing = False
    assert source.read() is None                                       # backoff: not retried at once
    now[0] += 1.0
    frame = source.read()
    assert source.state == "ok" and frame.shape == (48, 64, 3) and FakePicamera2.opened == 1
    FakePicamera2.missing = True                                       # the ribbon cable comes loose
    assert source.read() is None and source.state == "lost"
    FakePicamera2.missing = False
    now[0] += 1.0
    assert source.read() is not None and source.state == "ok" and FakePicamera2.opened == 2
