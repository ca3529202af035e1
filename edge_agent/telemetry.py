"""The device's health report, published on `telemetry` every `telemetry.interval_s`. Pure: the
agent gathers the readings and passes them in.

    {"v": 1, "ts", "device", "uptime_s", "versions": {"agent", "kiosk", "python"},
     "scan": {"fps", "decode_ms", "camera", "session_active"} | null (kiosk not answering),
     "outbox": {"depth", "bytes", "oldest_age_s", "dropped": {reason: n}, "refused", "awaiting_receipt",
                "in_flight", "max_rows", "max_bytes"},
     "mqtt": {"connected", "connects", "disconnects", "hub_online"},
     "catalog_version", "disk_free_mb", "cpu_temp_c", "rss_mb"}
"""

from __future__ import annotations

import platform
from datetime import datetime
from typing import Any

from protocol.envelope import format_ts


def snapshot(*, device: str, now: datetime, uptime_s: float, agent_version: str, kiosk: dict[str, Any] | None,
             outbox: dict[str, Any], awaiting_receipt: int, in_flight: int, mqtt: dict[str, Any],
             catalog_version: int, disk_free_bytes: int | None, cpu_temp_c: float | None,
             rss_mb: float | None) -> dict[str, Any]:
    dropped = dict(outbox.get("dropped", {}))
    return {
        "v": 1, "ts": format_ts(now), "device": device, "uptime_s": round(uptime_s),
        "versions": {"agent": agent_version, "kiosk": (kiosk or {}).get("version"),
                     "python": platform.python_version()},
        "scan": None if kiosk is None else {
            "fps": kiosk.get("scan_fps"), "decode_ms": kiosk.get("decode_ms"), "camera": kiosk.get("camera"),
            "session_active": kiosk.get("session_active")},
        "outbox": {"depth": outbox["depth"], "bytes": outbox["bytes"], "oldest_age_s": outbox["oldest_age_s"],
                   "dropped": {k: v for k, v in dropped.items() if k != "refused"},
                   "refused": dropped.get("refused", 0), "awaiting_receipt": awaiting_receipt,
                   "in_flight": in_flight, "max_rows": outbox["max_rows"], "max_bytes": outbox["max_bytes"]},
        "mqtt": mqtt,
        "catalog_version": catalog_version,
        "disk_free_mb": None if disk_free_bytes is None else disk_free_bytes // 2**20,
        "cpu_temp_c": cpu_temp_c,
        "rss_mb": rss_mb,
    }


def rss_mb() -> float | None:
    """This process's resident memory (Linux), for the agent's own figure."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None
