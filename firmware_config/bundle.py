"""What a render produces: files with their place on the device, and the result of one check. Pure."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BundleFile:
    """One file of a device's bundle: `name` inside the bundle folder, `dest` on the device."""

    name: str                # e.g. "kiosk.toml", "systemd/omnikiosk-kiosk.service"
    content: str
    dest: str                # absolute path on the device; "" for files that are not installed (docs, boot)
    mode: int = 0o644
    owner: str = "root"
    group: str = "root"
    secret: bool = False     # written 0600 in the output folder too, and never printed
    restarts: tuple[str, ...] = ()   # systemd units to restart when this file changes on the device


@dataclass(frozen=True)
class Check:
    """One validation step: what was checked, whether it passed, and why."""

    name: str
    ok: bool
    detail: str = ""
    skipped: bool = False    # the tool is not installed: reported, and a failure unless allowed
    todo: bool = False       # right as rendered, but IT has something to do before deploying

    def line(self) -> str:
        mark = "skip" if self.skipped else ("todo" if self.todo else ("pass" if self.ok else "FAIL"))
        return f"{mark:4}  {self.name}" + (f": {self.detail}" if self.detail else "")
