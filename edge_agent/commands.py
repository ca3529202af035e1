"""IT's commands to this device: check, carry out once, answer with a `command.result` event.

A dispatcher routes each command through a {command: handler} table. Whatever arrives —
garbage, an unknown command, bad arguments, a handler that fails — gets a logged, counted
answer and never ends the agent. A command id is claimed in `outbox.db` before it runs, so a
redelivery (QoS 1 after a restart) is not carried out twice; the result is an event in the
outbox, so it reaches the hub even across an outage or the agent's own restart.
"""

from __future__ import annotations

import logging
import os
import tomllib
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from edge_agent.config import parse_document
from edge_agent.kiosk_link import KioskLink, KioskUnreachable
from edge_agent.outbox import Outbox, OutboxFull
from protocol.cli import write_atomically
from protocol.commands import parse_command, result_data
from protocol.settings import ConfigError, merge, to_toml

log = logging.getLogger("edge_agent.commands")

After = Callable[[], None]


class CommandFailed(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


class CommandDesk:
    def __init__(self, *, outbox: Outbox, kiosk: KioskLink, resync_catalog: Callable[[], dict[str, Any]],
                 restart_agent: After, config_path: str | None, clock: Callable[[], datetime]):
        self.outbox = outbox
        self.kiosk = kiosk
        self.resync_catalog = resync_catalog
        self.restart_agent = restart_agent
        self.config_path = config_path
        self._clock = clock
        self.counters: Counter = Counter()
        self.handlers: dict[str, Callable[[dict[str, Any]], tuple[dict[str, Any], After | None]]] = {
            "config.update": self._config_update,
            "catalog.resync": self._catalog_resync,
            "screen.message": self._screen_message,
            "restart": self._restart,
        }

    def handle(self, payload: bytes) -> dict[str, Any] | None:
        """Carry out one command from the `commands` topic; returns the result data it answered, if any."""
        command = parse_command(payload, now=self._clock())
        if not command:
            self.counters[command.code] += 1
            log.warning("command refused", extra={"code": command.code, "detail": command.message,
                                                  "command_id": command.id})
            if command.id is None or not self.outbox.claim_command(command.id):
                return None  # nothing to answer to, or answered already
            return self._answer(result_data(command.id, command.command, error=(command.code, command.message)))
        if not self.outbox.claim_command(command.id):
            self.counters["duplicate"] += 1
            log.info("command already carried out; ignoring the redelivery", extra={"command_id": command.id})
            return None
        after: After | None = None
        try:
            result, after = self.handlers[command.command](command.args)
            data = result_data(command.id, command.command, result=result)
            self.counters["ok"] += 1
        except CommandFailed as exc:
            data = result_data(command.id, command.command, error=(exc.code, exc.message))
            self.counters[exc.code] += 1
        except Exception:
            log.exception("command failed", extra={"command_id": command.id, "command": command.command})
            data = result_data(command.id, command.command, error=("failed", "the command failed; see the agent's log"))
            self.counters["failed"] += 1
        log.info("command carried out", extra={"command_id": command.id, "command": command.command,
                                              "ok": data["ok"]})
        answered = self._answer(data)
        if after is not None:
            after()  # a restart goes last: its result is already safe in the outbox
        return answered

    def _answer(self, data: dict[str, Any]) -> dict[str, Any]:
        try:
            self.outbox.append("command.result", data)
        except OutboxFull:
            log.error("no room in the outbox for a command result", extra={"command_id": data["command_id"]})
        return data

    # --- handlers: (result, what to do after the result is stored)
    def _config_update(self, args: dict[str, Any]) -> tuple[dict[str, Any], After | None]:
        if args.get("target", "kiosk") == "kiosk":
            return self._kiosk("/v1/config", {"settings": args["settings"]}), None
        if not self.config_path:
            raise CommandFailed("failed", "the agent runs without a config file; nothing to update")
        path = Path(self.config_path)
        document = merge(tomllib.loads(path.read_text()), args["settings"])
        try:
            parse_document(document, os.environ, source=str(path))
        except ConfigError as exc:
            raise CommandFailed("bad_args", str(exc)) from None
        write_atomically(path, to_toml(document), mode=path.stat().st_mode & 0o777)
        log.info("agent config updated; restarting to apply it", extra={"keys": sorted(args["settings"])})
        return {"written": sorted(args["settings"]), "restarting": "agent"}, self.restart_agent

    def _catalog_resync(self, args: dict[str, Any]) -> tuple[dict[str, Any], After | None]:
        return self.resync_catalog(), None

    def _screen_message(self, args: dict[str, Any]) -> tuple[dict[str, Any], After | None]:
        return self._kiosk("/v1/screen-message", {"text": args["text"], "seconds": args.get("seconds", 30)}), None

    def _restart(self, args: dict[str, Any]) -> tuple[dict[str, Any], After | None]:
        if args.get("target", "agent") == "kiosk":
            return self._kiosk("/v1/restart", {}), None
        return {"restarting": "agent"}, self.restart_agent

    def _kiosk(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            answer = self.kiosk.call(path, body)
        except KioskUnreachable as exc:
            raise CommandFailed("failed", str(exc)) from None
        if not answer["ok"]:
            error = answer.get("error") or {}
            code = "bad_args" if error.get("code") == "bad_args" else "failed"
            raise CommandFailed(code, f"the kiosk refused: {str(error.get('message', ''))[:250]}")
        return answer.get("result") or {}
