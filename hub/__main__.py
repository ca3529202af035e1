"""`python -m hub`: run the store hub, manage staff accounts, or send a device a command."""

from __future__ import annotations

import argparse
import getpass
import logging
import sys

from hub.config import SETTINGS, load_config
from hub.staff import ROLES, hash_password, password_problem
from hub.store import HubStore, open_hub_db
from protocol import jsonlog
from protocol.cli import interrupt_on_sigterm, load_or_exit, settings_epilog
from protocol.settings import ConfigError

log = logging.getLogger("hub")

EXAMPLES = """examples:
  python -m hub run --config /etc/omnikiosk/hub.toml
  python -m hub run --config hub.toml --check-config
  python -m hub staff add maria --role manager --config hub.toml
  python -m hub staff list --config hub.toml
  python -m hub staff disable maria --config hub.toml
  python -m hub staff reset-password maria --config hub.toml
  python -m hub command s001-k01 screen.message --arg text="Store closes in 10 minutes" --arg seconds=60 --config hub.toml
  python -m hub command s001-k01 config.update --args '{"settings": {"scan.fps": 8}}' --config hub.toml
  python -m hub command s001-k02 catalog.resync --config hub.toml
  python -m hub command s001-k02 restart --arg target=kiosk --config hub.toml
"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m hub", description="The Omnikiosk store hub.",
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="ingest device events and serve the staff app",
                         formatter_class=argparse.RawDescriptionHelpFormatter,
                         epilog=settings_epilog(SETTINGS, "python -m hub run --config /etc/omnikiosk/hub.toml"))
    run.add_argument("--config", metavar="FILE", help="TOML config file (OMNIKIOSK_* variables override it)")
    run.add_argument("--check-config", action="store_true", help="validate the config and exit")
    staff = sub.add_parser("staff", help="manage staff accounts", epilog=EXAMPLES,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    staff.add_argument("action", choices=("add", "list", "disable", "enable", "reset-password"))
    staff.add_argument("username", nargs="?")
    staff.add_argument("--role", choices=ROLES, default="associate")
    staff.add_argument("--config", metavar="FILE", required=True)
    staff.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    command = sub.add_parser("command", help="send a command to a device and show its result",
                             epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    command.add_argument("device", help="device id, e.g. s001-k01")
    command.add_argument("name", metavar="COMMAND", help="config.update, catalog.resync, screen.message or restart")
    command.add_argument("--arg", action="append", default=[], metavar="KEY=VALUE",
                         help="one argument (VALUE read as JSON when it is JSON); repeat for more")
    command.add_argument("--args", dest="args_json", metavar="JSON", help="all arguments as one JSON object")
    command.add_argument("--wait", type=float, default=15.0, metavar="SECONDS",
                         help="how long to wait for the device's answer (default 15; 0: do not wait)")
    command.add_argument("--config", metavar="FILE", required=True)
    args = parser.parse_args(argv)
    config = load_or_exit(load_config, args.config)
    if args.command == "staff":
        sys.exit(staff_command(args, config))
    if args.command == "command":
        sys.exit(device_command(args, config))
    if args.check_config:
        print(f"{config.source}: ok (store {config['store']}, broker {config['mqtt.host']}:{config['mqtt.port']}, "
              f"web {config['web.host']}:{config['web.port']}, demo={config['demo']})")
        return
    jsonlog.setup("hub", config["log.level"])
    from hub.service import Hub
    try:
        hub = Hub(config)
    except ConfigError as exc:
        sys.exit(f"invalid configuration:\n{exc}")
    hub.start()
    log.info("hub started", extra={"store": config["store"], "url": hub.url(), "demo": config["demo"]})
    interrupt_on_sigterm()
    try:
        hub.serve()
    except KeyboardInterrupt:
        log.info("%s stopping on a signal", "hub")
    finally:
        hub.stop()
        log.info("hub stopped")


def staff_command(args, config) -> int:
    store = HubStore(open_hub_db(config["db.path"]))
    if args.action == "list":
        for row in store.list_staff():
            state = "disabled" if row["disabled"] else "active"
            print(f"{row['username']:<20} {row['role']:<10} {row['store']:<8} {state}")
        return 0
    if not args.username:
        print("a username is required", file=sys.stderr)
        return 2
    if args.action in ("disable", "enable"):
        if not store.set_staff_disabled(args.username, args.action == "disable"):
            print(f"no staff account {args.username!r}", file=sys.stderr)
            return 1
        print(f"{args.username} {args.action}d")
        return 0
    password = sys.stdin.readline().rstrip("\n") if args.password_stdin else _ask_password()
    problem = password_problem(args.username, password, demo=config["demo"])
    if problem:
        print(f"password refused: {problem}", file=sys.stderr)
        return 2
    if args.action == "add":
        if store.staff(args.username):
            print(f"{args.username!r} exists; use reset-password", file=sys.stderr)
            return 1
        store.add_staff(args.username, hash_password(password), args.role, config["store"])
        print(f"added {args.username} ({args.role}) to store {config['store']}")
        return 0
    if not store.set_staff_password(args.username, hash_password(password)):
        print(f"no staff account {args.username!r}", file=sys.stderr)
        return 1
    print(f"password of {args.username} changed")
    return 0


def device_command(args, config) -> int:
    import json

    from hub.fleet import CommandNotSent, parse_args, send_command, wait_for_result
    from protocol.cli import read_secret
    from protocol.mqtt import BrokerLogin
    try:
        command_args = parse_args(args.arg, args.args_json)
        login = BrokerLogin(host=config["mqtt.host"], port=config["mqtt.port"],
                            username=config["mqtt.username"] or f"hub-{config['store']}",
                            password=read_secret(config["mqtt.password_file"], "MQTT password"),
                            tls_ca=config["mqtt.tls_ca"])
        command_id = send_command(config, login, args.device, args.name, command_args)
    except (ValueError, ConfigError, CommandNotSent) as exc:
        print(f"command not sent: {exc}", file=sys.stderr)
        return 2
    print(f"sent {args.name} to {args.device} (id {command_id})", flush=True)
    if args.wait <= 0:
        return 0
    result = wait_for_result(config["db.path"], command_id, timeout_s=args.wait)
    if result is None:
        print(f"no answer within {args.wait:g} s; the device answers when it is back online "
              "(look for command.result events)", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return 0 if result.get("ok") else 1


def _ask_password() -> str:
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        sys.exit("the passwords differ")
    return first


if __name__ == "__main__":
    main()
