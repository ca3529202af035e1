"""A camera mounted turned (`camera.rotation`): every frame source hands out frames turned upright, at no
cost when the camera is not turned."""

from __future__ import annotations

import threading

import cv2
import numpy as np
import pytest
from conftest import wait_for
from test_camera import FlakyCapture

from kiosk.camera import ROTATIONS, CameraSource, FolderSource, RotatedSource, open_source, rotate
from kiosk.config import check_document
from protocol.settings import ConfigError


def upright_frame() -> np.ndarray:
    """A 60x80 BGR frame whose corners differ: red top-left, green top-right, blue bottom-left."""
    frame = np.zeros((60, 80, 3), np.uint8)
    frame[:10, :10] = (0, 0, 255)
    frame[:10, -10:] = (0, 255, 0)
    frame[-10:, :10] = (255, 0, 0)
    return frame


# How a camera mounted turned sees the upright scene: the frame turned back the other way.
MOUNTED = {90: cv2.ROTATE_90_COUNTERCLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_CLOCKWISE}


def as_mounted(frame: np.ndarray, degrees: int) -> np.ndarray:
    return frame if degrees == 0 else cv2.rotate(frame, MOUNTED[degrees])


def test_rotate_turns_clockwise():
    frame = upright_frame()
    turned = rotate(frame, 90)
    assert turned.shape == (80, 60, 3)
    assert tuple(turned[0, -1]) == (0, 0, 255)         # top-left went to top-right
    assert tuple(turned[-1, -1]) == (0, 255, 0)        # top-right went to bottom-right
    assert tuple(rotate(frame, 180)[-1, -1]) == (0, 0, 255)
    assert tuple(rotate(frame, 270)[-1, 0]) == (0, 0, 255)
    assert rotate(frame, 0) is frame                   # nothing to do, nothing copied
    with pytest.raises(ValueError, match="0, 90, 180, 270"):
        rotate(frame, 45)


@pytest.mark.parametrize("degrees", ROTATIONS)
def test_a_folder_of_images_from_a_turned_camera_is_read_upright(tmp_path, degrees):
    cv2.imwrite(str(tmp_path / "shot.png"), as_mounted(upright_frame(), degrees))
    source = open_source(f"folder:{tmp_path}", rotation=degrees)
    try:
        assert np.array_equal(source.read(), upright_frame())
        assert source.state == "ok"
    finally:
        source.close()


def test_an_upright_camera_gets_its_source_as_it_is(tmp_path):
    source = open_source(f"folder:{tmp_path}", rotation=0)
    assert isinstance(source, FolderSource)
    assert source.read() is None and source.state == "waiting"


@pytest.mark.parametrize("degrees", [90, 270])
def test_a_video_from_a_turned_camera_is_read_upright(tmp_path, degrees):
    path = tmp_path / "clip.avi"
    mounted = as_mounted(upright_frame(), degrees)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (mounted.shape[1], mounted.shape[0]))
    assert writer.isOpened(), "OpenCV cannot write MJPG video here"
    for _ in range(3):
        writer.write(mounted)
    writer.release()
    source = open_source(f"video:{path}", rotation=degrees)
    try:
        frame = source.read()
        assert frame.shape == upright_frame().shape
        # MJPG is lossy: compare the corners' colours, not the bytes.
        assert frame[2, 2, 2] > 200 and frame[2, -3, 1] > 200 and frame[-3, 2, 0] > 200
    finally:
        source.close()


def test_a_turned_camera_reports_its_own_state_and_no_stale_frame_when_lost():
    plan = {"opens": 0, "frames": 0, "unplugged": threading.Event(), "settings": {}}
    camera = RotatedSource(CameraSource(0, opener=lambda i: FlakyCapture(plan), max_backoff_s=0.05), 270)
    try:
        wait_for(lambda: camera.state == "ok" and camera.read() is not None, what="first frames")
        assert camera.read().shape == (64, 48, 3)      # FlakyCapture delivers 48x64: turned, 64x48
        plan["unplugged"].set()
        wait_for(lambda: camera.state == "lost", what="camera lost")
        assert camera.read() is None
    finally:
        camera.close()


def test_camera_rotation_is_a_kiosk_setting_of_four_choices(tmp_path):
    base = {"store": "s001", "device": "s001-k01", "tokens": {"jwks_file": "j"}}
    assert check_document(base, {}, source="kiosk.toml")["camera.rotation"] == 0
    assert check_document({**base, "camera": {"rotation": 270}}, {}, source="kiosk.toml")["camera.rotation"] == 270
    assert check_document(base, {"OMNIKIOSK_CAMERA_ROTATION": "180"}, source="kiosk.toml")["camera.rotation"] == 180
    with pytest.raises(ConfigError, match=r"kiosk.toml: camera.rotation = 45 is not allowed; choose one of: "
                                          r"0, 90, 180, 270"):
        check_document({**base, "camera": {"rotation": 45}}, {}, source="kiosk.toml")
    with pytest.raises(ValueError, match="rotation must be one of"):
        open_source(f"folder:{tmp_path}", rotation=45)
