"""Where things live on a store's devices: one place for every path, user and unit name."""

from __future__ import annotations

CONFIG_DIR = "/etc/omnikiosk"            # configs and credentials (read-only to the services)
SETTINGS_DIR = f"{CONFIG_DIR}/settings"  # kiosk.toml and agent.toml: the hub's config.update rewrites them
STATE_DIR = "/var/lib/omnikiosk"         # the only place the services write (outbox, catalog, hub.db)
INSTALL_DIR = "/opt/omnikiosk"           # the Python package in its own venv
VENV_PYTHON = f"{INSTALL_DIR}/venv/bin/python"
SERVICE_USER = "omnikiosk"               # runs the kiosk, the agent and the hub
BROWSER_USER = "omnikiosk-screen"        # runs cage + Chromium; no access to credentials

MOSQUITTO_DIR = "/etc/mosquitto"
MOSQUITTO_CONF_D = f"{MOSQUITTO_DIR}/conf.d"
MOSQUITTO_FILES = f"{MOSQUITTO_DIR}/omnikiosk"   # passwd, acl, certificates
MOSQUITTO_STATE = "/var/lib/mosquitto"
MQTT_TLS_PORT = 8883
MQTT_LOCAL_PORT = 1883                   # plaintext, 127.0.0.1 only (the hub on the same host)

KIOSK_UNIT = "omnikiosk-kiosk.service"
AGENT_UNIT = "omnikiosk-agent.service"
BROWSER_UNIT = "omnikiosk-browser.service"
HUB_UNIT = "omnikiosk-hub.service"

KIOSK_PORT = 8080                        # the shopper page, 127.0.0.1
AGENT_API_PORT = 8090                    # the agent's local request API, 127.0.0.1


def config_path(name: str) -> str:
    return f"{CONFIG_DIR}/{name}"


def settings_path(name: str) -> str:
    return f"{SETTINGS_DIR}/{name}"


def state_path(name: str) -> str:
    return f"{STATE_DIR}/{name}"
