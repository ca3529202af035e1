"""`python -m kiosk`: run a kiosk, or decode images to check what a camera sees."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path

from protocol import jsonlog
from protocol.cli import interrupt_on_sigterm, load_or_exit, read_or_create_secret, settings_epilog
from protocol.settings import ConfigError

log = logging.getLogger("kiosk")

EXAMPLES = """examples:
  python -m kiosk run --config /etc/omnikiosk/kiosk.toml
  python -m kiosk run --config kiosk.toml --check-config
  python -m kiosk decode still-1.png still-2.jpg
"""


def main(argv: list[str] | None = None) -> None:
    from kiosk.config import SETTINGS, load_config, load_keys
    parser = argparse.ArgumentParser(prog="python -m kiosk", description="An Omnikiosk shopper kiosk.",
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="scan and show the shopper screen on 127.0.0.1",
                         formatter_class=argparse.RawDescriptionHelpFormatter,
                         epilog=settings_epilog(SETTINGS, "python -m kiosk run --config /etc/omnikiosk/kiosk.toml"))
    run.add_argument("--config", metavar="FILE", help="TOML config file (OMNIKIOSK_* variables override it)")
    run.add_argument("--check-config", action="store_true", help="validate the config and exit")
    dec = sub.add_parser("decode", help="print the codes found in image files, one JSON line per file",
                         epilog="example:\n  python -m kiosk decode still.png",
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    dec.add_argument("files", nargs="+", metavar="FILE")
    args = parser.parse_args(argv)
    if args.command == "decode":
        sys.exit(decode_command(args.files))
    config = load_or_exit(load_config, args.config)
    try:
        keys = load_keys(config["tokens.jwks_file"])
    except ConfigError as exc:
        sys.exit(f"invalid configuration:\n{exc}")
    if args.check_config:
        print(f"{config.source}: ok (kiosk {config['device']} of store {config['store']}, "
              f"source {config['camera.source']}, {len(keys)} member token key(s))")
        return
    try:
        token = read_or_create_secret(config["local_api.token_file"], "local API token")
    except (ConfigError, OSError) as exc:
        sys.exit(f"cannot read or create local_api.token_file {config['local_api.token_file']}: "
                 f"{getattr(exc, 'strerror', None) or exc}")
    jsonlog.setup("kiosk", config["log.level"])
    run_kiosk(config, keys, token=token, config_path=args.config)


def stop_for_restart() -> None:
    """systemd (Restart=always) starts the kiosk again; SIGTERM is the clean stop (interrupt_on_sigterm)."""
    os.kill(os.getpid(), signal.SIGTERM)


def run_kiosk(config, keys, *, token: str | None = None, config_path: str | None = None) -> None:
    """`token` switches on the local control API (and is sent to the agent); `config_path` is what
    config.update rewrites."""
    from edge_agent.catalog import CatalogCache
    from edge_agent.outbox import Outbox, open_device_db
    from kiosk.camera import open_source
    from kiosk.control import KioskControl
    from kiosk.hub_requests import HubRequests
    from kiosk.loop import ScanLoop
    from kiosk.shopper import Shopper
    from kiosk.web import Screen, create_app

    from edge_agent.hub_clock import HubClock
    from edge_agent.storage import check_outbox_location
    # The hub's time as the agent measured it: tokens (120 s) and event times need it, not a Pi's clock.
    # A connection of its own (the outbox's is used under the outbox's lock).
    hub_clock = HubClock(open_device_db(config["outbox.path"]))
    outbox = Outbox(open_device_db(config["outbox.path"]), store=config["store"], device=config["device"],
                    clock=hub_clock.now)
    # The same refusal as the agent's: a shopper must never see a result a power cut can take back.
    problem = check_outbox_location(config["outbox.path"], max_bytes=outbox.policy.max_bytes)
    if problem:
        sys.exit(f"refusing to start: {problem}")
    catalog = CatalogCache(open_device_db(config["catalog.path"]))
    screen = Screen()
    shopper = Shopper(outbox=outbox, keys=keys, screen=screen.show, notice=screen.notice, catalog=catalog,
                      hub=HubRequests(config["agent.url"], timeout_s=config["agent.timeout_s"], token=token or ""),
                      store=config["store"], idle_timeout_s=config["session.idle_timeout_s"],
                      issuer=config["tokens.issuer"], leeway_s=config["tokens.leeway_s"], wall_clock=hub_clock.now)
    try:
        source = open_source(config["camera.source"], width=config["camera.width"], height=config["camera.height"],
                             fps=config["camera.fps"], fourcc=config["camera.fourcc"],
                             rotation=config["camera.rotation"])
    except ValueError as exc:
        sys.exit(f"cannot open camera.source: {exc}")

    def camera_state(state: str) -> None:
        if state == "lost":
            screen.show({"view": "unavailable", "message": "Scanner unavailable — please ask staff"})
        elif screen.current.get("view") == "unavailable":
            screen.show({"view": "idle"})

    from kiosk.decoders import make_live_decoder
    decoder = make_live_decoder(config["scan.decoder"], tuple(config["scan.symbologies"]),
                                try_inverted=config["scan.try_inverted"])
    from protocol.sdnotify import Watchdog
    # Type=notify: READY=1 on the scan loop's first turn, then WATCHDOG=1 while it keeps turning.
    watchdog = Watchdog()
    loop = ScanLoop(source, shopper, decoder=decoder, fps=config["scan.fps"],
                    debounce_s=config["scan.debounce_s"], confirm_window_s=config["scan.confirm_window_s"],
                    on_camera_state=camera_state, heartbeat=watchdog.tick)

    from importlib.metadata import version as dist_version
    version = dist_version("omnikiosk")

    def health():
        # What the edge agent reports as telemetry; nothing about the shopper beyond "a session is on".
        return {"camera": loop.stats["camera"], "scan_fps": loop.scan_fps(), "decode_ms": loop.stats["decode_ms"],
                "session_active": shopper.session is not None, "outbox_depth": outbox.stats()["depth"],
                "catalog_version": catalog.version, "version": version}

    def metrics():
        rows = [f'omnikiosk_kiosk_scans_total{{outcome="{k}"}} {v}' for k, v in shopper.counters.items()]
        rows += [f"omnikiosk_kiosk_frames_total {loop.stats['frames']}",
                 f"omnikiosk_kiosk_scan_fps {loop.scan_fps()}",
                 f"omnikiosk_kiosk_decode_ms {loop.stats['decode_ms']}",
                 f"omnikiosk_kiosk_outbox_depth {outbox.stats()['depth']}"]
        return "\n".join(rows) + "\n"

    control = KioskControl(config, path=config_path, environ=os.environ, loop=loop, shopper=shopper, screen=screen)
    app, socketio = create_app(config, screen=screen, on_done=lambda: shopper.end_session("done"),
                               on_assist=lambda gtin: shopper.request_assistance(gtin, time.monotonic()),
                               on_send_to_cart=lambda gtin: shopper.send_to_cart(gtin, time.monotonic()),
                               health=health, metrics=metrics, api_token=token, control=control,
                               on_restart=stop_for_restart)
    loop.start()
    url = f"http://127.0.0.1:{config['web.port']}/"
    log.info("kiosk started", extra={"device": config["device"], "url": url, "source": config["camera.source"]})
    interrupt_on_sigterm()
    try:
        # The shopper page is for the screen attached to this device only.
        # So is the control API: only the edge agent on this device calls it.
        socketio.run(app, host="127.0.0.1", port=config["web.port"], allow_unsafe_werkzeug=True,
                     log_output=False, use_reloader=False)
    except KeyboardInterrupt:
        log.info("%s stopping on a signal", "kiosk")
    finally:
        watchdog.stopping()
        loop.stop()
        shopper.end_session("stopped")  # a restart (IT's command, an update) closes the session on record
        log.info("kiosk stopped")


def decode_command(files: list[str]) -> int:
    """One JSON line per file: the union of both decoder backends (kiosk.decoders.decode_still)."""
    from kiosk.decode import decode_file
    status = 0
    for name in files:
        if not Path(name).is_file():
            print(json.dumps({"file": name, "error": "not found"}))
            status = 1
            continue
        codes = decode_file(name)
        print(json.dumps({"file": name, "codes": [{"symbology": c.symbology, "text": c.text} for c in codes]},
                         ensure_ascii=False))
    return status


if __name__ == "__main__":
    main()
