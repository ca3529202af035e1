"""`python -m hub`: run the store hub, manage staff accounts, send a device a command or its rendered configs,
or import stock counts or sales from the till."""

from __future__ import annotations

import argparse
import getpass
import logging
import socket
import sys
import threading
import time
from urllib.parse import urlsplit

from hub.config import SETTINGS, load_config
from hub.staff import ROLES, hash_password, hash_pin, password_problem, pin_problem
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
  python -m hub staff set-pin maria --config hub.toml       # sign in with a PIN on registered tablets
  python -m hub tablets list --config hub.toml
  python -m hub tablets revoke 3 --config hub.toml
  python -m hub command s001-k01 screen.message --arg text="Store closes in 10 minutes" --arg seconds=60 --config hub.toml
  python -m hub command s001-k01 config.update --args '{"settings": {"scan.fps": 8}}' --config hub.toml
  python -m hub command s001-k02 catalog.resync --config hub.toml
  python -m hub command s001-k02 restart --arg target=kiosk --config hub.toml
  python -m hub device push-config s001-k01 --target kiosk --config hub.toml
  python -m hub import-stock pos-export.csv --config hub.toml
  python -m hub import-stock pos-export.csv --config hub.toml --dry-run --report bad-rows.csv
  python -m hub import-sales pos-sales.csv --config hub.toml --dry-run --report bad-rows.csv
"""

IMPORT_STOCK_HELP = """The file (CSV, UTF-8) has a header naming its columns, in any order:
  gtin       EAN-13, UPC-A, EAN-8 or GTIN-14 with a valid check digit
  quantity   a whole number, 0 or more
  store      optional: a store id (s001); absent or empty means this hub's store
  location   optional: where it is in the store; absent or empty keeps the current location

  gtin,store,quantity,location
  4006381333931,s001,12,Shoes · aisle 4
  036000291452,,3,

Bad rows are skipped and reported (line and reason; the first 20 here, all with --report);
the others become one catalog version, in which only rows whose quantity or location changed
move. A gtin+store on several lines is not applied at all. Exit status: 0 imported (even with
bad rows), 2 the file is unusable (missing, no header, wrong columns), 1 the catalog could not
be written. A running hub announces the new version to the kiosks within seconds.

examples:
  python -m hub import-stock pos-export.csv --config hub.toml
  python -m hub import-stock pos-export.csv --config hub.toml --dry-run --report bad-rows.csv
"""

IMPORT_SALES_HELP = """The file (CSV, UTF-8; a comma, or a semicolon or tab) has one row per sale line and a
header naming its columns, in any order (docs/pos.md):
  sale_id         the till's id of the sale (A-Z a-z 0-9 . _ : -, at most 64); its lines share it
  ts              ISO 8601; without an offset it is local time in the hub's timezone setting
  gtin            EAN-13, UPC-A, EAN-8 or GTIN-14 with a valid check digit
  quantity        a whole number, not 0; negative for a returned item
  amount          the line's total price: 12.50 or 12,50 (negative for a return)
  member_id       optional: the member who bought (M0001)
  loyalty_number  optional: their loyalty card, matched to a cached profile
  currency        optional: empty means the store's (analytics.currency); another one is refused

  sale_id,ts,gtin,quantity,amount,member_id
  T1-000123,2026-03-14T15:04:05+01:00,4006381333931,2,59.90,M0001
  T1-000123,2026-03-14T15:04:05+01:00,036000291452,1,12.50,M0001

Bad rows are skipped and reported (line and reason; the first 20 here, all with --report); a sale
with a bad line, or whose lines disagree on ts, member_id, loyalty_number or currency, is not
imported at all. A sale id imported before is a duplicate, skipped and counted: importing the same
file again imports nothing. Exit status: 0 sales were imported or were there already (even with
bad rows), 3 every row was bad (nothing imported), 2 the file is unusable (missing, no header,
wrong columns), 1 the database could not be written (nothing changed).

examples:
  python -m hub import-sales pos-sales.csv --config hub.toml
  python -m hub import-sales pos-sales.csv --config hub.toml --dry-run --report bad-rows.csv
"""


PUSH_CONFIG_HELP = """Sends DEVICE the configs firmware_config rendered for it, as this hub keeps them: the
fleet file (the hub's fleet.file setting) names each device's kiosk_config and agent_config. Each
target goes as one config.update of dotted settings through the device's edge agent:
  kiosk   the kiosk checks them, rewrites its kiosk.toml and applies the live keys at once;
          keys wired into files and sockets (paths, ports) are listed: they wait for a kiosk restart
  agent   the agent checks them, rewrites its agent.toml and restarts to apply them
  both    the kiosk first, then the agent (the default)
A push sets every key the file has; a key left out of the file keeps the device's current value.
Nothing is sent when a file is missing or unreadable, or names another store or device. A device
that refuses a setting (one its version does not know, a value out of range) changes nothing and
says why. Exit status: 0 every target applied, 1 a device refused or did not answer in time,
2 nothing sent (unknown device, no or bad fleet file, bad config file, broker unreachable).

examples:
  python -m hub device push-config s001-k01
  python -m hub device push-config s001-k01 --target kiosk --config /etc/omnikiosk/hub.toml
  python -m hub device push-config s001-k02 --target agent --timeout 60
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
    staff.add_argument("action", choices=("add", "list", "disable", "enable", "reset-password", "set-pin",
                                          "clear-pin"))
    staff.add_argument("username", nargs="?")
    staff.add_argument("--role", choices=ROLES, default="associate")
    staff.add_argument("--config", metavar="FILE", required=True)
    staff.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    tablets = sub.add_parser("tablets", help="list or revoke the tablets registered for PIN sign-in",
                             epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    tablets.add_argument("action", choices=("list", "revoke"))
    tablets.add_argument("tablet", nargs="?", type=int, help="tablet id (revoke)")
    tablets.add_argument("--config", metavar="FILE", required=True)
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
    device = sub.add_parser("device", help="IT's actions on one device of the fleet file (push-config)",
                            description="IT's actions on one device the fleet file (fleet.file) names.",
                            epilog=PUSH_CONFIG_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    device_actions = device.add_subparsers(dest="action", required=True)
    push = device_actions.add_parser("push-config", help="send a device its rendered kiosk and agent configs",
                                     description="Send a device its rendered kiosk and agent configs.",
                                     epilog=PUSH_CONFIG_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    push.add_argument("device", metavar="DEVICE", help="device id as in the fleet file, e.g. s001-k01")
    push.add_argument("--target", choices=("kiosk", "agent", "both"), default="both",
                      help="which config to push (default both: the kiosk's, then the agent's)")
    push.add_argument("--config", metavar="FILE", default="/etc/omnikiosk/hub.toml",
                      help="the hub's config (default /etc/omnikiosk/hub.toml)")
    push.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS",
                      help="how long to wait for each target's answer (default 30; 0: do not wait)")
    stock = sub.add_parser("import-stock", help="import stock counts from the till (a CSV) into the catalog",
                           description="Import stock counts from the till (POS) into the hub's catalog.",
                           epilog=IMPORT_STOCK_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    stock.add_argument("file", metavar="FILE.csv", help="the CSV to import")
    stock.add_argument("--config", metavar="FILE", required=True)
    stock.add_argument("--dry-run", action="store_true",
                       help="check the file and count what would change; write nothing")
    stock.add_argument("--report", metavar="FILE", help="write every bad row (line, reason, values) to this CSV")
    sales = sub.add_parser("import-sales", help="import the till's sales (a CSV) for store analytics",
                           description="Import sales from the till (POS), matched to members, into the hub.",
                           epilog=IMPORT_SALES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    sales.add_argument("file", metavar="FILE.csv", help="the CSV to import")
    sales.add_argument("--config", metavar="FILE", required=True)
    sales.add_argument("--dry-run", action="store_true", help="check the file and count what would be imported; "
                       "write nothing")
    sales.add_argument("--report", metavar="FILE", help="write every bad row (line, reason, values) to this CSV")
    args = parser.parse_args(argv)
    config = load_or_exit(load_config, args.config)
    if args.command == "staff":
        sys.exit(staff_command(args, config))
    if args.command == "command":
        sys.exit(device_command(args, config))
    if args.command == "device":
        sys.exit(push_config_command(args, config))
    if args.command == "tablets":
        sys.exit(tablets_command(args, config))
    if args.command == "import-stock":
        sys.exit(import_stock_command(args, config))
    if args.command == "import-sales":
        sys.exit(import_sales_command(args, config))
    if args.check_config:
        from hub.offers import OfferEngine
        try:
            engine = OfferEngine.from_file(config["offers.rules_file"])
        except ConfigError as exc:
            sys.exit(f"invalid offer rules:\n{exc}")
        print(f"{engine.source}: ok ({len(engine.rules)} offer rules)")
        print(f"{config.source}: ok (store {config['store']}, broker {config['mqtt.host']}:{config['mqtt.port']}, "
              f"web {config['web.host']}:{config['web.port']}, demo={config['demo']})")
        return
    jsonlog.setup("hub", config["log.level"])
    from hub.service import Hub
    from protocol.sdnotify import Watchdog
    # Type=notify: WATCHDOG=1 while the ingest writer turns; READY=1 once the staff app answers.
    watchdog = Watchdog(ready_on_tick=False)
    try:
        hub = Hub(config, heartbeat=watchdog.tick)
    except ConfigError as exc:
        sys.exit(f"invalid configuration:\n{exc}")
    hub.start()
    log.info("hub started", extra={"store": config["store"], "url": hub.url(), "demo": config["demo"],
                                   "timezone": config["timezone"]})
    if config["timezone"] == "UTC":
        log.warning("the store's time zone is UTC (the default): analytics' days and hours, and a till's times "
                    "without an offset, are UTC; set timezone (e.g. Europe/Amsterdam) if the store is elsewhere")
    threading.Thread(target=ready_when_serving, args=(hub.url(), watchdog.ready), name="hub-ready",
                     daemon=True).start()
    interrupt_on_sigterm()
    try:
        hub.serve()
    except KeyboardInterrupt:
        log.info("%s stopping on a signal", "hub")
    finally:
        watchdog.stopping()
        hub.stop()
        log.info("hub stopped")


def ready_when_serving(url: str, ready, poll_s: float = 0.2) -> None:
    """Call `ready` once the web app at `url` accepts connections (it binds inside socketio.run, which
    blocks); if it never does, the process ends with serve()'s error and this daemon thread with it."""
    parts = urlsplit(url)
    while True:
        try:
            socket.create_connection((parts.hostname, parts.port), timeout=1).close()
        except OSError:
            time.sleep(poll_s)
            continue
        ready()
        return


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
    if args.action in ("set-pin", "clear-pin"):
        return pin_command(args, store)
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


def pin_command(args, store: HubStore) -> int:
    """A PIN signs in only on a tablet a manager registered (the staff app's "Register this tablet")."""
    if store.staff(args.username) is None:
        print(f"no staff account {args.username!r}", file=sys.stderr)
        return 1
    if args.action == "clear-pin":
        store.set_staff_pin(args.username, None)
        print(f"PIN of {args.username} removed")
        return 0
    pin = sys.stdin.readline().strip() if args.password_stdin else _ask_password("PIN: ")
    problem = pin_problem(pin)
    if problem:
        print(f"PIN refused: {problem}", file=sys.stderr)
        return 2
    store.set_staff_pin(args.username, hash_pin(pin))
    print(f"PIN of {args.username} set; it works on registered tablets only")
    return 0


def tablets_command(args, config) -> int:
    store = HubStore(open_hub_db(config["db.path"]))
    if args.action == "list":
        for row in store.tablets():
            state = f"revoked {row['revoked_at']}" if row["revoked_at"] else "active"
            print(f"{row['id']:>4}  {row['name']:<24} registered by {row['registered_by']} "
                  f"{row['registered_at']}  {state}")
        return 0
    if args.tablet is None or not store.revoke_tablet(args.tablet):
        print(f"no active tablet {args.tablet!r}; see `python -m hub tablets list`", file=sys.stderr)
        return 1
    print(f"tablet {args.tablet} revoked: PIN sign-in no longer works on it")
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


def push_config_command(args, config) -> int:
    from hub.fleet import PUSH_TARGETS, CommandNotSent, PushRefused, config_updates, describe_result
    from hub.fleet import send_command, wait_for_result
    from hub.roster import load_roster
    from protocol.cli import read_secret
    from protocol.mqtt import BrokerLogin
    try:
        roster = load_roster(config)
    except ConfigError as exc:
        print(f"nothing sent: the fleet file is unusable:\n{exc}", file=sys.stderr)
        return 2
    if roster is None:
        print(f"nothing sent: {config.source} sets no fleet.file, so this hub knows no device's rendered configs; "
              "set fleet.file to the fleet.toml firmware_config rendered for this store", file=sys.stderr)
        return 2
    device = roster.device(args.device)
    if device is None:
        print(f"nothing sent: unknown device {args.device!r}: it is not in the fleet file {roster.source} "
              f"(devices there: {', '.join(roster.ids) or 'none'})", file=sys.stderr)
        return 2
    targets = PUSH_TARGETS if args.target == "both" else (args.target,)
    try:
        updates = config_updates(device, targets, store=config["store"])
        login = BrokerLogin(host=config["mqtt.host"], port=config["mqtt.port"],
                            username=config["mqtt.username"] or f"hub-{config['store']}",
                            password=read_secret(config["mqtt.password_file"], "MQTT password"),
                            tls_ca=config["mqtt.tls_ca"])
    except (PushRefused, ConfigError) as exc:
        print(f"nothing sent:\n{exc}", file=sys.stderr)
        return 2
    status = 0
    for target, command_args in updates:
        try:
            command_id = send_command(config, login, device.id, "config.update", command_args)
        except CommandNotSent as exc:
            print(f"{device.id} {target}: not sent: {exc}", file=sys.stderr)
            return 2
        print(f"{device.id} {target}: sent {len(command_args['settings'])} settings from "
              f"{device.config_file(target)} (id {command_id})", flush=True)
        if args.timeout <= 0:
            continue
        result = wait_for_result(config["db.path"], command_id, timeout_s=args.timeout)
        if result is None:
            print(f"{device.id} {target}: no answer within {args.timeout:g} s; the device carries it out when it is "
                  f"back online (look for its command.result, id {command_id})", file=sys.stderr)
            status = 1
            continue
        print(f"{device.id} {target}: {describe_result(target, result)}", flush=True)
        if not result.get("ok"):
            status = 1
    return status


def import_stock_command(args, config) -> int:
    from hub.catalog import HubCatalog
    from hub.stock_import import import_stock

    def open_catalog():
        HubStore(open_hub_db(config["db.path"])).db.conn.close()  # creates or migrates the catalog tables
        return HubCatalog(open_hub_db(config["db.path"]))

    status, _ = _run_file_import(args, config, open_catalog, "the catalog", lambda catalog, report, progress:
                                 import_stock(args.file, catalog, store=config["store"], dry_run=args.dry_run,
                                              report=report, progress=progress))
    return status


def import_sales_command(args, config) -> int:
    from zoneinfo import ZoneInfo

    from hub.pos_sales import import_sales

    status, result = _run_file_import(
        args, config, lambda: HubStore(open_hub_db(config["db.path"])), "the sales",  # creates or migrates the tables
        lambda store, report, progress: import_sales(
            args.file, store, tz=ZoneInfo(config["timezone"]), currency=config["analytics.currency"],
            dry_run=args.dry_run, report=report, progress=progress))
    if result is not None and result.bad and not (result.imported or result.duplicates):
        print(f"{args.file}: nothing imported: every row is bad", file=sys.stderr)
        return 3
    return status


def _run_file_import(args, config, open_target, what: str, run):
    """What import-stock and import-sales share: the file must exist; the database (`open_target`, with a
    .db) and the --report file are opened; `run(target, report, progress)` imports with a progress line
    on a terminal; the bad rows and the summary are printed. Returns (exit status, the result or None)."""
    import sqlite3
    from pathlib import Path

    from hub.stock_import import UnusableFile

    if not Path(args.file).is_file():
        print(f"{args.file}: not imported: no such file", file=sys.stderr)
        return 2, None
    progress = _file_progress(Path(args.file)) if sys.stderr.isatty() else None
    try:
        target = open_target()
        report = open(args.report, "w", newline="", encoding="utf-8") if args.report else None
    except (OSError, sqlite3.Error) as exc:
        print(f"cannot open {args.report if isinstance(exc, OSError) else config['db.path']}: {exc}", file=sys.stderr)
        return 1, None
    try:
        result = run(target, report, progress)
    except UnusableFile as exc:
        print(f"\r\033[K{args.file}: not imported: {exc}" if sys.stderr.isatty() else
              f"{args.file}: not imported: {exc}", file=sys.stderr)
        return 2, None
    except sqlite3.Error as exc:
        print(f"{args.file}: not imported, {what} could not be written ({exc}); nothing changed", file=sys.stderr)
        return 1, None
    finally:
        if report is not None:
            report.close()
        target.db.conn.close()
    _print_import_result(result, args)
    return 0, result


def _file_progress(path):
    """A progress line for importing `path`, redrawn at most five times a second (printing every call
    would cost more than the import)."""
    import time

    from hub.stock_import import progress_text
    total, started, shown = path.stat().st_size, time.monotonic(), [0.0]

    def progress(rows: int, done: int) -> None:
        if time.monotonic() - shown[0] >= 0.2:
            shown[0] = time.monotonic()
            print(f"\r{progress_text(rows, done, total, shown[0] - started)}\033[K", end="", file=sys.stderr,
                  flush=True)
    return progress


def _print_import_result(result, args) -> None:
    """The first bad rows (all of them in --report), then the summary."""
    if sys.stderr.isatty():
        print("\r\033[K", end="", file=sys.stderr, flush=True)
    for row in result.first_bad:
        print(f"line {row.line}: {row.reason}", file=sys.stderr)
    if result.bad > len(result.first_bad):
        more = f"; all of them are in {args.report}" if args.report else "; --report FILE lists them all"
        print(f"… and {result.bad - len(result.first_bad)} more bad rows{more}", file=sys.stderr)
    print(result.summary())


def _ask_password(prompt: str = "password: ") -> str:
    first = getpass.getpass(prompt)
    if getpass.getpass("again: ") != first:
        sys.exit("they differ")
    return first


if __name__ == "__main__":
    main()
