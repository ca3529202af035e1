"""IT's hand on the store's devices: send a command to one and wait for its `command.result`; push a device
the configs rendered for it.

The command goes out with the hub's MQTT credentials under a client id of its own (so the
running hub keeps its session), QoS 1 on `devices/{device}/commands`, with an expiry so a
device that comes back a day later does not show yesterday's screen message. The result is
an ordinary event: it is read from the hub's database once the hub has stored it.

A config push reads the device's rendered kiosk.toml / agent.toml through the fleet file (hub.roster) and
sends each as one `config.update` of dotted settings; the device checks them as it checks any update.
"""

from __future__ import annotations

import json
import math
import secrets
import sqlite3
import threading
import time
import tomllib
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable, Mapping

import paho.mqtt.client as mqtt

from hub.roster import ExpectedDevice
from protocol.commands import COMMANDS, MAX_COMMAND_BYTES, check_args, command_payload
from protocol.envelope import format_ts
from protocol.mqtt import BrokerLogin
from protocol.settings import Config
from protocol.topics import Topics

COMMAND_TTL = timedelta(minutes=10)


class CommandNotSent(Exception):
    """The command did not reach the broker (unknown command, bad arguments, no connection)."""


def new_command_id(now: datetime) -> str:
    return f"cmd-{now.strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(4)}"


def send_command(config: Config, login: BrokerLogin, device: str, command: str, args: dict[str, Any], *,
                 now: datetime | None = None, timeout_s: float = 10.0) -> str:
    """Publish one command and wait for the broker's PUBACK; returns the command id."""
    if command not in COMMANDS:
        raise CommandNotSent(f"unknown command {command!r}; known: {', '.join(COMMANDS)}")
    problem = check_args(command, args)
    if problem:
        raise CommandNotSent(f"{command}: {problem}")
    now = now or datetime.now(timezone.utc)
    command_id = new_command_id(now)
    topics = Topics(config["store"], config["topic_prefix"])
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{login.username}-cli-{secrets.token_hex(3)}",
                         protocol=mqtt.MQTTv5)
    client.username_pw_set(login.username, login.password)
    if login.tls_ca:
        client.tls_set(ca_certs=login.tls_ca)
    connected = threading.Event()
    refused: list[str] = []

    def on_connect(c, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            refused.append(str(reason_code))
        connected.set()
    client.on_connect = on_connect
    try:
        client.connect(login.host, login.port, keepalive=30, clean_start=True)
    except OSError as exc:
        raise CommandNotSent(f"cannot reach the broker at {login.host}:{login.port}: {exc.strerror or exc}") from None
    client.loop_start()
    try:
        if not connected.wait(timeout_s) or refused:
            raise CommandNotSent(f"the broker refused the hub's login: {refused[0] if refused else 'no answer'}")
        info = client.publish(topics.device(device, "commands"),
                              command_payload(command_id, command, args, format_ts(now + COMMAND_TTL)), qos=1)
        info.wait_for_publish(timeout_s)
        if not info.is_published():
            raise CommandNotSent("the broker did not acknowledge the command")
    finally:
        client.disconnect()
        client.loop_stop()
    return command_id


def wait_for_result(db_path: str, command_id: str, *, timeout_s: float) -> dict[str, Any] | None:
    """The command.result the hub stored for this command, or None if none arrived in time."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with sqlite3.connect(db_path, timeout=5) as conn:
                row = conn.execute("SELECT data, device, ts FROM events WHERE type = 'command.result' "
                                   "AND json_extract(data, '$.command_id') = ?", [command_id]).fetchone()
        except sqlite3.OperationalError:
            row = None  # the hub has not created its database yet
        if row:
            return {**json.loads(row[0]), "device": row[1], "ts": row[2]}
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.2)


def parse_args(pairs: list[str], args_json: str | None) -> dict[str, Any]:
    """`--args '{"settings": {…}}'` and `--arg key=value` (values read as JSON when they are JSON)."""
    args: dict[str, Any] = {}
    if args_json:
        loaded = json.loads(args_json)
        if not isinstance(loaded, dict):
            raise ValueError("--args must be a JSON object")
        args.update(loaded)
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--arg wants KEY=VALUE, got {pair!r}")
        try:
            args[key] = json.loads(raw)
        except ValueError:
            args[key] = raw
    return args


# --- pushing a device its rendered configs

PUSH_TARGETS = ("kiosk", "agent")   # in this order: the agent restarts after its own update


class PushRefused(Exception):
    """The rendered configs cannot be pushed as they are; nothing was sent."""


def flatten_settings(document: Mapping[str, Any], source: str) -> tuple[dict[str, Any], list[str]]:
    """A config document as the dotted settings of a config.update ({"scan": {"fps": 8}} → {"scan.fps": 8}),
    and what cannot be sent: a device takes strings, numbers, booleans and lists of them, nothing else."""
    settings: dict[str, Any] = {}
    problems: list[str] = []

    def walk(node: Mapping[str, Any], prefix: str) -> None:
        for name, value in node.items():
            key = f"{prefix}{name}"
            if isinstance(value, Mapping):
                walk(value, key + ".")
            elif _plain(value) or (isinstance(value, list) and all(_plain(v) for v in value)):
                settings[key] = value
            else:
                problems.append(f"{source}: {key}: a {type(value).__name__} cannot be sent; a device takes strings, "
                                "finite numbers, booleans and lists of them")
    walk(document, "")
    return settings, problems


def _plain(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, (str, int, bool))


def config_updates(device: ExpectedDevice, targets: Iterable[str], *, store: str) -> list[tuple[str, dict[str, Any]]]:
    """(target, config.update args) for each target, from the device's rendered configs.

    Reads the files; raises PushRefused listing every problem, so that either all targets go or none."""
    updates: list[tuple[str, dict[str, Any]]] = []
    problems: list[str] = []
    for target in targets:
        path = device.config_file(target)
        if path is None:
            problems.append(f"the fleet file names no {target}_config for {device.id}; render the store again")
            continue
        try:
            document = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            problems.append(f"{path}: cannot read the {target} config of {device.id}: {exc.strerror or exc}")
            continue
        except (ValueError, UnicodeDecodeError) as exc:  # tomllib.TOMLDecodeError is a ValueError
            problems.append(f"{path}: not valid TOML ({exc}); render it again")
            continue
        settings, bad = flatten_settings(document, str(path))
        problems += bad
        # A file of another device would rename this one (written, taking effect at its next restart).
        for key, expected in (("store", store), ("device", device.id)):
            if key in settings and settings[key] != expected:
                problems.append(f"{path}: {key} = {settings[key]!r}, but this is {key} {expected!r}; "
                                "the fleet file points at another device's config")
        if not settings:
            problems.append(f"{path}: no settings to send")
            continue
        args = {"target": target, "settings": settings}
        size = len(command_payload("x" * 64, "config.update", args, "2000-01-01T00:00:00.000Z"))
        if size > MAX_COMMAND_BYTES:
            problems.append(f"{path}: {len(settings)} settings make a command of {size} bytes; a device takes at "
                            f"most {MAX_COMMAND_BYTES}")
        problem = check_args("config.update", args)
        if problem:
            problems.append(f"{path}: {problem}")
        updates.append((target, args))
    if problems:
        raise PushRefused("\n".join(problems))
    return updates


def describe_result(target: str, result: Mapping[str, Any]) -> str:
    """One line saying what a device did with a pushed config (a command.result's data). Pure."""
    if not result.get("ok"):
        error = result.get("error") or {}
        return f"refused ({error.get('code', 'failed')}): {error.get('message', 'no reason given')}"
    done = result.get("result") or {}
    if target == "agent":
        written = done.get("written") or []
        return f"ok: {len(written)} settings written to agent.toml; the agent restarts to apply them"
    parts = [f"ok: {len(done.get('applied') or [])} settings applied live"]
    if done.get("restart_required"):
        parts.append("changed, in effect after a kiosk restart: " + ", ".join(done["restart_required"]))
    if done.get("overridden"):
        parts.append("an OMNIKIOSK_* variable on the device decides: " + ", ".join(done["overridden"]))
    return "; ".join(parts)
