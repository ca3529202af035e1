"""IT's hand on the store's devices: send a command to one and wait for its `command.result`.

The command goes out with the hub's MQTT credentials under a client id of its own (so the
running hub keeps its session), QoS 1 on `devices/{device}/commands`, with an expiry so a
device that comes back a day later does not show yesterday's screen message. The result is
an ordinary event: it is read from the hub's database once the hub has stored it.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import paho.mqtt.client as mqtt

from protocol.commands import COMMANDS, check_args, command_payload
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
