"""A store run from what firmware_config rendered: the generated broker, hub and edge agent work together.

Only what cannot exist on this machine is moved: /etc/omnikiosk and /var/lib/omnikiosk become
temporary folders, ports become free ports, and the kiosk reaches the hub as `localhost` (a
name the hub certificate carries) instead of the store's DNS name. Everything else is the
rendered files: TLS with the store CA, the per-device password and ACL, the fleet file.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from conftest import wait_for
from example_store import copy_example_store

from edge_agent.outbox import Outbox, open_device_db
from firmware_config import layout
from firmware_config.broker_check import free_port, start, stop_process
from firmware_config.inventory import load_inventory
from firmware_config.render import plan, write
from firmware_config.secrets import Secrets
from hub.store import HubStore, open_hub_db

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = {"session": "s", "gtin": "04006381333931", "source": "ean13"}


def localised(text: str, etc: Path, var: Path) -> str:
    return text.replace(layout.CONFIG_DIR, str(etc)).replace(layout.STATE_DIR, str(var))


def install(out: Path, host: str, etc: Path, var: Path) -> None:
    """What cloud-init or Ansible does with a host's bundle (each file to its dest, from store.json), into
    folders of this test. Mosquitto's files and the units are not the services' business."""
    manifest = json.loads((out / "store.json").read_text())["hosts"][host]
    for entry in manifest["files"]:
        if not entry["dest"].startswith(layout.CONFIG_DIR + "/"):
            continue
        target = Path(localised(entry["dest"], etc, var))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(localised((out / manifest["folder"] / entry["name"]).read_text(), etc, var))
        target.chmod(int(entry["mode"], 8))
    var.mkdir(parents=True, exist_ok=True)


def hub_url(log: Path) -> str | None:
    match = re.search(r"(https://[0-9.]+:\d+/)", log.read_text() if log.exists() else "")
    return match and match.group(1)


@pytest.fixture
def rendered(tmp_path: Path) -> Path:
    inventory = copy_example_store(tmp_path / "stores")
    out = tmp_path / "out"
    write(plan(load_inventory(inventory), Secrets(inventory.parent / "secrets")), out)
    return out


def test_a_kiosk_provisioned_from_the_inventory_reaches_the_provisioned_hub(rendered, tmp_path):
    out = rendered
    hub_etc, hub_var = tmp_path / "hub/etc", tmp_path / "hub/var"
    kiosk_etc, kiosk_var = tmp_path / "k01/etc", tmp_path / "k01/var"
    install(out, "s001-hub", hub_etc, hub_var)
    install(out, "s001-k01", kiosk_etc, kiosk_var)
    (hub_etc / "online-api-key").write_text("key-from-the-online-store\n")   # what IT puts there
    broker = start(out / "hub", tmp_path / "broker")
    web_port, api_port = free_port(), free_port()
    processes: list[subprocess.Popen] = []
    try:
        hub_env = {**os.environ, "OMNIKIOSK_MQTT_PORT": str(broker.local_port), "OMNIKIOSK_WEB_HOST": "127.0.0.1",
                   "OMNIKIOSK_WEB_PORT": str(web_port),
                   # the example's online store does not exist: fail fast instead of waiting on DNS
                   "OMNIKIOSK_ONLINE_BASE_URL": f"https://127.0.0.1:{free_port()}/api/"}
        hub_config = hub_etc / "hub.toml"
        added = subprocess.run([sys.executable, "-m", "hub", "staff", "add", "ines", "--role", "it",
                                "--password-stdin", "--config", str(hub_config)], input="a long store password\n",
                               capture_output=True, text=True, env=hub_env, cwd=ROOT, timeout=60)
        assert added.returncode == 0, added.stderr
        hub_log = tmp_path / "hub.log"
        with hub_log.open("w") as log:
            processes.append(subprocess.Popen([sys.executable, "-m", "hub", "run", "--config", str(hub_config)],
                                              env=hub_env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT))
        agent_config = kiosk_etc / "settings" / "agent.toml"
        outbox = Outbox(open_device_db(kiosk_var / "outbox.db"), store="s001", device="s001-k01")
        ids = [outbox.append("scan.product", PRODUCT).id for _ in range(5)]
        agent_env = {**os.environ, "OMNIKIOSK_MQTT_HOST": "localhost", "OMNIKIOSK_MQTT_PORT": str(broker.tls_port),
                     "OMNIKIOSK_API_PORT": str(api_port)}
        with (tmp_path / "agent.log").open("w") as log:
            processes.append(subprocess.Popen([sys.executable, "-m", "edge_agent", "--config", str(agent_config)],
                                              env=agent_env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT))
        hub_db = hub_var / "hub.db"
        wait_for(lambda: hub_db.exists() and _stored(hub_db) >= 5, timeout=60,
                 what=f"the provisioned hub storing the kiosk's events (hub log: {hub_log})")
        assert sorted(r[0] for r in HubStore(open_hub_db(hub_db)).db.execute("SELECT id FROM events")) == sorted(ids)
        wait_for(lambda: outbox.stats()["depth"] == 0, timeout=30, what="receipts reaching the kiosk")

        # Staff sign in over HTTPS with the hub certificate the store CA signed, and see the fleet file's devices.
        wait_for(lambda: hub_url(hub_log), timeout=30, what="the hub's startup banner")
        base = f"https://localhost:{web_port}/"
        http, ca = requests.Session(), str(out / "hub/ca.crt")   # verify= on each call: REQUESTS_CA_BUNDLE
        page = http.get(base + "login", timeout=10, verify=ca).text   # would override a session's verify
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        answer = http.post(base + "login", data={"username": "ines", "password": "a long store password",
                                                 "csrf_token": token}, allow_redirects=False, timeout=10, verify=ca)
        assert answer.status_code == 302, answer.text
        devices = {d["id"]: d for d in http.get(base + "api/devices", timeout=10, verify=ca).json()["items"]}
        assert devices["s001-k01"]["state"] == "online"
        assert devices["s001-k02"]["state"] == "never_seen" and devices["s001-k02"]["location"] == "Shoes, aisle 4"
        assert devices["s001-k03"]["state"] == "never_seen"
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(base + "login", timeout=10)   # not trusted without the store CA
    finally:
        for process in processes:
            stop_process(process)
        broker.stop()


def _stored(hub_db: Path) -> int:
    try:
        return HubStore(open_hub_db(hub_db)).db.execute("SELECT count(*) FROM events").fetchone()[0]
    except Exception:  # the hub is still creating its tables
        return 0
