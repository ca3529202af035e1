"""Commands the hub (IT) sends a device on `commands`, and their checks. Pure.

Payload: {"id": "…", "command": "screen.message", "args": {…}, "expires_at": "…Z" (optional)}.
The device answers every command it can read with a `command.result` event:
{"command_id", "ok", "command", "result"} or {"command_id", "ok": false, "command", "error": {"code", "message"}}.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from protocol.envelope import parse_ts

MAX_COMMAND_BYTES = 16 * 1024
COMMAND_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
MAX_MESSAGE_CHARS = 200
MAX_MESSAGE_SECONDS = 3600
TARGETS = ("kiosk", "agent")

# command → what it does (docs/protocol.md lists these)
COMMANDS = {
    "config.update": "change settings of the kiosk (default) or the agent: validated, written atomically, applied",
    "catalog.resync": "fetch the whole catalog again from the hub",
    "screen.message": "show a text on the kiosk screen for some seconds, over whatever is on it",
    "restart": "restart the agent (default) or the kiosk process; systemd starts it again",
}

# Why a command was not carried out; each is a metric label and the `error.code` of its result.
ERROR_CODES = ("bad_command", "unknown_command", "bad_args", "expired", "failed")


@dataclass(frozen=True)
class Command:
    id: str
    command: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CommandError:
    code: str
    message: str
    id: str | None = None        # known when the payload named one: then the device can answer
    command: str | None = None

    def __bool__(self) -> bool:
        return False


def parse_command(payload: bytes, *, now: datetime) -> Command | CommandError:
    if len(payload) > MAX_COMMAND_BYTES:
        return CommandError("bad_command", f"command is {len(payload)} bytes; at most {MAX_COMMAND_BYTES}")
    try:
        obj = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return CommandError("bad_command", "command is not UTF-8 JSON")
    if not isinstance(obj, dict):
        return CommandError("bad_command", "command must be a JSON object")
    command_id = obj.get("id")
    if not isinstance(command_id, str) or not COMMAND_ID.match(command_id):
        return CommandError("bad_command", "command needs an 'id' of 1-64 letters, digits or ._:-")
    name = obj.get("command")
    if not isinstance(name, str) or name not in COMMANDS:
        shown = name[:40] if isinstance(name, str) else type(name).__name__
        return CommandError("unknown_command", f"unknown command {shown!r}; known: {', '.join(COMMANDS)}",
                            command_id, name if isinstance(name, str) else None)
    args = obj.get("args", {})
    if not isinstance(args, dict):
        return CommandError("bad_args", "args must be a JSON object", command_id, name)
    expires = obj.get("expires_at")
    if expires is not None:
        try:
            if parse_ts(expires) <= now:
                return CommandError("expired", f"the command expired at {expires}", command_id, name)
        except (TypeError, ValueError, AttributeError):
            return CommandError("bad_command", "expires_at must be an ISO 8601 UTC time", command_id, name)
    problem = check_args(name, args)
    if problem:
        return CommandError("bad_args", f"{name}: {problem}", command_id, name)
    return Command(command_id, name, args)


def check_args(name: str, args: dict[str, Any]) -> str | None:
    """What is wrong with a command's arguments, or None."""
    allowed = {"config.update": {"target", "settings"}, "catalog.resync": set(),
               "screen.message": {"text", "seconds"}, "restart": {"target"}}[name]
    unknown = sorted(set(args) - allowed)
    if unknown:
        return f"unknown argument {str(unknown[0])[:40]!r}; allowed: {', '.join(sorted(allowed)) or 'none'}"
    if "target" in args and args["target"] not in TARGETS:
        return f"target must be one of {', '.join(TARGETS)}"
    if name == "config.update":
        settings = args.get("settings")
        if not isinstance(settings, dict) or not settings:
            return "settings must be a non-empty object of dotted keys, e.g. {\"scan.fps\": 8}"
        if not all(isinstance(k, str) and 0 < len(k) <= 64 for k in settings):
            return "settings keys must be dotted names such as scan.fps"
    if name == "screen.message":
        text = args.get("text")
        if not isinstance(text, str) or not text.strip() or len(text) > MAX_MESSAGE_CHARS:
            return f"text must be 1-{MAX_MESSAGE_CHARS} characters"
        seconds = args.get("seconds", 30)
        if not isinstance(seconds, int) or isinstance(seconds, bool) or not 1 <= seconds <= MAX_MESSAGE_SECONDS:
            return f"seconds must be a whole number from 1 to {MAX_MESSAGE_SECONDS}"
    return None


def result_data(command_id: str, command: str | None, *, result: Any = None,
                error: tuple[str, str] | None = None) -> dict[str, Any]:
    """The `data` of a command.result event."""
    data: dict[str, Any] = {"command_id": command_id, "ok": error is None, "command": command or ""}
    if error is None:
        data["result"] = result if result is not None else {}
    else:
        data["error"] = {"code": error[0], "message": error[1][:300]}
    return data


def command_payload(command_id: str, command: str, args: dict[str, Any] | None = None,
                    expires_at: str | None = None) -> bytes:
    obj: dict[str, Any] = {"id": command_id, "command": command, "args": args or {}}
    if expires_at:
        obj["expires_at"] = expires_at
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
