"""`python -m edge_agent`: run a device's edge agent."""

from __future__ import annotations

import logging
import signal
import sys
import threading

from edge_agent.agent import EdgeAgent
from edge_agent.config import SETTINGS, load_config
from edge_agent.outbox import Outbox, open_device_db
from protocol import jsonlog
from protocol.cli import load_or_exit, read_secret, run_parser
from protocol.mqtt import BrokerLogin
from protocol.settings import ConfigError

log = logging.getLogger("edge_agent")


def main(argv: list[str] | None = None) -> None:
    parser = run_parser("python -m edge_agent",
                        "Relay this device's outbox to the store hub over MQTT; lose nothing.",
                        SETTINGS, "python -m edge_agent --config /etc/omnikiosk/agent.toml")
    args = parser.parse_args(argv)
    config = load_or_exit(load_config, args.config)
    try:
        password = read_secret(config["mqtt.password_file"], "MQTT password")
    except ConfigError as exc:
        sys.exit(f"invalid configuration:\n{exc}")
    if args.check_config:
        print(f"{config.source}: ok (device {config['device']} of store {config['store']}, "
              f"broker {config['mqtt.host']}:{config['mqtt.port']})")
        return
    jsonlog.setup("edge_agent", config["log.level"])
    from importlib.metadata import version as dist_version
    login = BrokerLogin(host=config["mqtt.host"], port=config["mqtt.port"],
                        username=config["mqtt.username"] or config["device"], password=password,
                        keepalive=config["mqtt.keepalive_s"], session_expiry_s=config["mqtt.session_expiry_s"],
                        tls_ca=config["mqtt.tls_ca"], tls_cert=config["mqtt.tls_cert"], tls_key=config["mqtt.tls_key"])
    outbox = Outbox(open_device_db(config["outbox.path"]), store=config["store"], device=config["device"])
    agent = EdgeAgent(store=config["store"], device=config["device"], login=login, outbox=outbox,
                      version=dist_version("omnikiosk"), topic_prefix=config["topic_prefix"],
                      window=config["drain.window"], poll_s=config["drain.poll_s"])
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    agent.start()
    log.info("edge agent started", extra={"device": config["device"], "store": config["store"],
                                          "broker": f"{login.host}:{login.port}", "outbox": config["outbox.path"],
                                          "session": agent.session})
    stopping.wait()
    agent.stop()
    log.info("edge agent stopped", extra={"pending": outbox.stats()["depth"]})


if __name__ == "__main__":
    main()
