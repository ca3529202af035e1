"""Presence payloads (retained `status` and its last will), shared by devices and the hub."""

from __future__ import annotations

import json
from datetime import datetime

from protocol.envelope import format_ts

STATES = ("online", "offline", "stopped")


def status_payload(state: str, *, session: int, version: str, now: datetime) -> bytes:
    """`session` rises with every process start, so a stale `offline` cannot mark a fresh session dead."""
    if state not in STATES:
        raise ValueError(f"unknown presence state {state!r}")
    return json.dumps({"state": state, "session": session, "version": version, "ts": format_ts(now)},
                      separators=(",", ":")).encode()


def parse_status(payload: bytes) -> dict | None:
    """The status a device announced, or None when it is not one."""
    try:
        obj = json.loads(payload)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(obj, dict) or obj.get("state") not in STATES or not isinstance(obj.get("session"), int):
        return None
    if not -(2**63) <= obj["session"] < 2**63:  # the hub keeps it in an SQLite INTEGER
        return None
    return obj
