"""The agent refuses an outbox that a power cut would wipe or that the disk cannot hold, and says so plainly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edge_agent.storage import (
    Mount,
    check_outbox_location,
    cpu_temperature_c,
    mount_of,
    parse_mountinfo,
    volatile_reason,
)

ROOT = Path(__file__).resolve().parents[1]

MOUNTINFO = """\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime - ext4 /dev/mmcblk0p2 rw
30 27 0:27 / /run rw,nosuid - tmpfs tmpfs rw,size=400k
31 27 0:28 / /var/lib/omni\\040kiosk rw - tmpfs none rw
40 27 179:1 / /boot/firmware rw - vfat /dev/mmcblk0p1 rw
"""
OVERLAYROOT = """\
27 1 0:30 / / rw,relatime - overlay overlayroot rw,lowerdir=/media/root-ro,upperdir=/media/root-rw/overlay
"""


def test_mountinfo_is_read_with_escaped_spaces():
    mounts = parse_mountinfo(MOUNTINFO)
    assert Mount("/var/lib/omni kiosk", "tmpfs", "none") in mounts
    assert mount_of("/var/lib/omnikiosk", mounts).fstype == "ext4"
    assert mount_of("/var/lib/omni kiosk/outbox.db", mounts).fstype == "tmpfs"
    assert mount_of("/run/x", mounts).point == "/run"


def test_ram_and_overlay_roots_are_volatile_disks_are_not():
    assert "tmpfs" in volatile_reason(Mount("/run", "tmpfs", "tmpfs"))
    assert "overlay" in volatile_reason(parse_mountinfo(OVERLAYROOT)[0])
    assert volatile_reason(Mount("/", "ext4", "/dev/mmcblk0p2")) is None
    assert volatile_reason(Mount("/", "overlay", "overlay")) is None  # a container's disk-backed overlay
    assert volatile_reason(None) is None


def test_an_outbox_on_a_tmpfs_is_refused_with_what_to_do(tmp_path):
    problem = check_outbox_location(tmp_path / "outbox.db", max_bytes=1024,
                                    mountinfo=f"27 1 0:1 / {tmp_path} rw - tmpfs tmpfs rw\n")
    assert "tmpfs (RAM)" in problem and "power cut" in problem and "outbox.path" in problem


def test_too_little_free_space_for_the_bound_is_refused(tmp_path):
    problem = check_outbox_location(tmp_path / "outbox.db", max_bytes=2**60, mountinfo="")
    assert "free" in problem and "outbox.max_mb" in problem
    assert check_outbox_location(tmp_path / "outbox.db", max_bytes=1024, mountinfo="") is None


@pytest.fixture
def shm(tmp_path):
    """A folder on a real tmpfs: Debian (and this CI) mounts /dev/shm as one."""
    if " /dev/shm " not in Path("/proc/self/mountinfo").read_text():
        pytest.fail("/dev/shm is not mounted here; this test needs a real tmpfs")
    folder = Path("/dev/shm") / f"omnikiosk-test-{tmp_path.name}"
    folder.mkdir(exist_ok=True)
    yield folder
    for leftover in folder.iterdir():
        leftover.unlink()
    folder.rmdir()


def test_the_agent_refuses_to_start_on_a_real_tmpfs(tmp_path, shm):
    password = tmp_path / "password"
    password.write_text("x\n")
    config = tmp_path / "agent.toml"
    config.write_text(f'store = "s001"\ndevice = "s001-k01"\n[mqtt]\npassword_file = "{password}"\n'
                      f'[outbox]\npath = "{shm / "outbox.db"}"\n')
    result = subprocess.run([sys.executable, "-m", "edge_agent", "--config", str(config), "--check-config"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "refusing to start" in result.stderr and "tmpfs" in result.stderr


def test_the_cpu_temperature_is_read_where_the_kernel_reports_it(tmp_path):
    zone = tmp_path / "thermal_zone0"
    zone.mkdir()
    (zone / "type").write_text("cpu-thermal\n")
    (zone / "temp").write_text("48312\n")
    assert cpu_temperature_c(str(tmp_path)) == 48.3
    assert cpu_temperature_c(str(tmp_path / "nowhere")) is None


def test_the_kiosk_refuses_to_start_on_a_real_tmpfs_too(tmp_path, shm):
    """The kiosk appends what the shopper sees: the same refusal as the agent's."""
    import json

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from demo.issuer import Issuer
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(Issuer(Ed25519PrivateKey.generate()).jwks()))
    config = tmp_path / "kiosk.toml"
    config.write_text(f'store = "s001"\ndevice = "s001-k01"\n[outbox]\npath = "{shm / "outbox.db"}"\n'
                      f'[catalog]\npath = "{tmp_path / "catalog.db"}"\n[camera]\nsource = "folder:{tmp_path}"\n'
                      f'[tokens]\njwks_file = "{jwks}"\n[local_api]\ntoken_file = "{tmp_path / "token"}"\n')
    result = subprocess.run([sys.executable, "-m", "kiosk", "run", "--config", str(config)],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "refusing to start" in result.stderr and "tmpfs" in result.stderr
