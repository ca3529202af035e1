"""`python -m edge_agent`: run a device's edge agent."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from importlib.metadata import version as dist_version

from edge_agent.config import SETTINGS, load_config, outbox_policy
from edge_agent.storage import check_outbox_location
from protocol import jsonlog
from protocol.cli import load_or_exit, read_or_create_secret, read_secret, run_parser
from protocol.settings import ConfigError

log = logging.getLogger("edge_agent")

EXAMPLE = "python -m edge_agent --config /etc/omnikiosk/agent.toml"


def main(argv: list[str] | None = None) -> None:
    parser = run_parser("python -m edge_agent",
                        "Relay this device's outbox to the store hub over MQTT and lose nothing; report health, "
                        "carry out IT's commands, answer the kiosk's requests, keep the catalog in sync.",
                        SETTINGS, EXAMPLE)
    args = parser.parse_args(argv)
    config = load_or_exit(load_config, args.config)
    try:
        password = read_secret(config["mqtt.password_file"], "MQTT password")
    except ConfigError as exc:
        sys.exit(f"invalid configuration:\n{exc}")
    policy = outbox_policy(config)
    problem = check_outbox_location(config["outbox.path"], max_bytes=policy.max_bytes)
    if problem:
        sys.exit(f"refusing to start: {problem}")
    if args.check_config:
        print(f"{config.source}: ok (device {config['device']} of store {config['store']}, "
              f"broker {config['mqtt.host']}:{config['mqtt.port']}, outbox {config['outbox.path']} "
              f"bounded at {config['outbox.max_mb']} MiB / {config['outbox.max_rows']} rows)")
        return
    jsonlog.setup("edge_agent", config["log.level"])
    sys.exit(run(config, password, policy, config_path=args.config))


def run(config, password: str, policy, *, config_path: str | None) -> int:
    from edge_agent.agent import EdgeAgent
    from edge_agent.catalog import CatalogCache
    from edge_agent.kiosk_link import KioskLink
    from edge_agent.local_api import LocalApi
    from edge_agent.outbox import Outbox, open_device_db
    from protocol.backoff import Backoff
    from protocol.mqtt import BrokerLogin
    from protocol.sdnotify import Watchdog

    login = BrokerLogin(host=config["mqtt.host"], port=config["mqtt.port"],
                        username=config["mqtt.username"] or config["device"], password=password,
                        keepalive=config["mqtt.keepalive_s"], session_expiry_s=config["mqtt.session_expiry_s"],
                        tls_ca=config["mqtt.tls_ca"], tls_cert=config["mqtt.tls_cert"], tls_key=config["mqtt.tls_key"])
    from edge_agent.hub_clock import HubClock
    # The agent measures it; the kiosk reads it from the same file. A connection of its own: the
    # outbox's is used under the outbox's lock by the drain thread, this one from the worker thread.
    hub_clock = HubClock(open_device_db(config["outbox.path"]))
    outbox = Outbox(open_device_db(config["outbox.path"]), store=config["store"], device=config["device"],
                    clock=hub_clock.now)
    outbox.set_policy(policy)
    token = read_or_create_secret(config["local_api.token_file"], "local API token")
    stopping = threading.Event()
    # Type=notify: READY=1 on the drain loop's first turn, then WATCHDOG=1 while it keeps turning.
    watchdog = Watchdog()
    agent = EdgeAgent(
        store=config["store"], device=config["device"], login=login, outbox=outbox,
        version=dist_version("omnikiosk"), topic_prefix=config["topic_prefix"], window=config["drain.window"],
        unconfirmed_max=config["drain.unconfirmed_max"], receipt_timeout_s=config["drain.receipt_timeout_s"],
        poll_s=config["drain.poll_s"], catalog=CatalogCache(open_device_db(config["catalog.path"])),
        kiosk=KioskLink(config["kiosk.url"], token), telemetry_interval_s=config["telemetry.interval_s"],
        backoff=Backoff(min_s=config["mqtt.reconnect_min_s"], max_s=config["mqtt.reconnect_max_s"]),
        config_path=config_path, on_restart=stopping.set, heartbeat=watchdog.tick, hub_clock=hub_clock)
    try:
        api = LocalApi(port=config["api.port"], token=token, ask=agent.relay.ask, health=lambda: _health(agent),
                       metrics=lambda: _metrics(agent))
    except OSError as exc:
        print(f"cannot listen on 127.0.0.1:{config['api.port']} (api.port): {exc.strerror}", file=sys.stderr)
        return 2
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    agent.start()
    api.start()
    stats = outbox.stats()
    log.info("edge agent started", extra={
        "device": config["device"], "store": config["store"], "broker": f"{login.host}:{login.port}",
        "api": f"http://127.0.0.1:{api.port}/", "outbox": config["outbox.path"], "waiting": stats["depth"],
        "session": agent.session})
    stopping.wait()
    watchdog.stopping()
    api.stop()
    agent.stop()
    log.info("edge agent stopped", extra={"waiting": outbox.stats()["depth"]})
    return 0


def _health(agent) -> dict:
    stats = agent.outbox.stats()
    return {"ok": True, "device": agent.device, "connected": agent.connected.is_set(),
            "hub_online": agent.hub_online.is_set(), "session": agent.session,
            "outbox": {k: stats[k] for k in ("depth", "bytes", "oldest_age_s", "dropped")},
            "awaiting_receipt": len(agent.ledger.awaiting)}


def _metrics(agent) -> str:
    stats = agent.outbox.stats()
    lines = [
        "# TYPE omnikiosk_agent_connected gauge", f"omnikiosk_agent_connected {int(agent.connected.is_set())}",
        "# TYPE omnikiosk_agent_hub_online gauge", f"omnikiosk_agent_hub_online {int(agent.hub_online.is_set())}",
        "# TYPE omnikiosk_agent_outbox_depth gauge", f"omnikiosk_agent_outbox_depth {stats['depth']}",
        "# TYPE omnikiosk_agent_outbox_bytes gauge", f"omnikiosk_agent_outbox_bytes {stats['bytes']}",
        "# TYPE omnikiosk_agent_outbox_oldest_age_seconds gauge",
        f"omnikiosk_agent_outbox_oldest_age_seconds {stats['oldest_age_s']}",
        "# TYPE omnikiosk_agent_awaiting_receipt gauge", f"omnikiosk_agent_awaiting_receipt {len(agent.ledger.awaiting)}",
        "# TYPE omnikiosk_agent_outbox_dropped_total counter",
        *(f'omnikiosk_agent_outbox_dropped_total{{reason="{k}"}} {v}' for k, v in stats["dropped"].items()),
        "# TYPE omnikiosk_agent_messages_total counter",
        *(f'omnikiosk_agent_messages_total{{outcome="{k}"}} {v}' for k, v in sorted(agent.counters.items())),
        "# TYPE omnikiosk_agent_requests_total counter",
        *(f'omnikiosk_agent_requests_total{{outcome="{k}"}} {v}' for k, v in sorted(agent.relay.counters.items())),
        "# TYPE omnikiosk_agent_commands_total counter",
        *(f'omnikiosk_agent_commands_total{{outcome="{k}"}} {v}' for k, v in sorted(agent.commands.counters.items())),
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
