"""Where the device keeps its outbox: refuse storage that forgets on power loss or cannot hold the bound.

`volatile_reason` and `mount_of` are pure (the mount table is passed in); `check_outbox_location`
reads /proc/self/mountinfo and the free space, and says plainly what is wrong and what to do.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

RAM_FILESYSTEMS = ("tmpfs", "ramfs")


@dataclass(frozen=True)
class Mount:
    point: str
    fstype: str
    source: str


def _unescape(field: str) -> str:
    # mountinfo writes a space as \040, a tab as \011, a newline as \012 and a backslash as \134.
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 3 < len(field) and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def parse_mountinfo(text: str) -> list[Mount]:
    """The mounts of /proc/self/mountinfo (see proc(5)): mount point, filesystem type, source."""
    mounts = []
    for line in text.splitlines():
        fields = line.split(" ")
        if "-" not in fields or len(fields) < 10:
            continue
        dash = fields.index("-")
        if dash + 2 >= len(fields):
            continue
        mounts.append(Mount(_unescape(fields[4]), fields[dash + 1], _unescape(fields[dash + 2])))
    return mounts


def mount_of(path: str, mounts: list[Mount]) -> Mount | None:
    """The mount a (resolved, absolute) path lives on: the longest mount point above it; the
    last one listed wins when several are stacked on the same point."""
    best: Mount | None = None
    for mount in mounts:
        point = mount.point.rstrip("/") or "/"
        inside = path == point or path.startswith(point + "/") or point == "/"
        if inside and (best is None or len(point) >= len(best.point.rstrip("/") or "/")):
            best = mount
    return best


def volatile_reason(mount: Mount | None) -> str | None:
    """Why files on this mount would not survive a power cut, or None."""
    if mount is None:
        return None
    if mount.fstype in RAM_FILESYSTEMS:
        return f"is on a {mount.fstype} (RAM) mounted at {mount.point}"
    if mount.fstype == "overlay" and mount.source == "overlayroot":
        # Raspberry Pi OS "overlay file system": the root is a RAM overlay, every write is lost at reboot.
        return f"is on Raspberry Pi OS's overlay file system (writes to {mount.point} live in RAM)"
    return None


def check_outbox_location(path: str | Path, *, max_bytes: int, mountinfo: str | None = None) -> str | None:
    """A plain reason to refuse to start with this outbox path, or None when it is fit."""
    target = Path(path).resolve()
    folder = target.parent
    folder.mkdir(parents=True, exist_ok=True)
    if mountinfo is None:
        try:
            mountinfo = Path("/proc/self/mountinfo").read_text()
        except OSError:
            mountinfo = ""
    problem = volatile_reason(mount_of(str(folder), parse_mountinfo(mountinfo)))
    if problem:
        return (f"the outbox {target} {problem}: events would be lost on a power cut. "
                "Put outbox.path on the SD card or a disk (default /var/lib/omnikiosk/outbox.db).")
    have = shutil.disk_usage(folder).free + _size_on_disk(target)
    if have < max_bytes:
        return (f"only {have // 2**20} MiB are free for the outbox at {folder}, less than its bound "
                f"outbox.max_mb = {max_bytes // 2**20} MiB. Free some space or lower outbox.max_mb.")
    return None


def _size_on_disk(db: Path) -> int:
    """What the outbox already holds counts towards its bound (the database and its WAL)."""
    total = 0
    for suffix in ("", "-wal", "-shm"):
        try:
            total += os.stat(f"{db}{suffix}").st_size
        except OSError:
            continue  # not created yet: it holds nothing
    return total


def disk_free_bytes(path: str | Path) -> int | None:
    try:
        return shutil.disk_usage(Path(path).resolve().parent).free
    except OSError:
        return None


def cpu_temperature_c(root: str = "/sys/class/thermal") -> float | None:
    """The CPU's temperature where the kernel reports one (a Raspberry Pi's cpu-thermal zone), else None."""
    zones = sorted(Path(root).glob("thermal_zone*")) if Path(root).is_dir() else []
    readings = []
    for zone in zones:
        try:
            kind = (zone / "type").read_text().strip()
            millidegrees = int((zone / "temp").read_text().strip())
        except (OSError, ValueError):
            continue
        readings.append((kind, millidegrees / 1000))
    for kind, celsius in readings:
        if "cpu" in kind or "soc" in kind or "x86_pkg" in kind:
            return round(celsius, 1)
    return round(readings[0][1], 1) if readings else None
