"""The rendered bridge against a real central broker: a store's events and presence go out, commands come in."""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import wait_for
from example_store import EXAMPLES

from firmware_config import tls
from firmware_config.broker import password_line
from firmware_config.broker_check import Client, find_mosquitto, free_port, start
from firmware_config.inventory import load_inventory
from firmware_config.render import plan, write
from firmware_config.secrets import Secrets


@pytest.fixture
def central(tmp_path: Path):
    """The chain's central broker: its own CA and certificate, the store's bridge login and ACL block from
    the render, and an operator login that sees everything."""
    folder = tmp_path / "central"
    folder.mkdir()
    ca_key, key = tls.new_key(), tls.new_key()
    ca = tls.make_ca("central", "Central", ca_key)
    (folder / "ca.crt").write_text(tls.cert_pem(ca))
    (folder / "server.crt").write_text(tls.cert_pem(tls.make_server_cert(ca, ca_key, key, "localhost", "127.0.0.1")))
    (folder / "server.key").write_text(tls.key_pem(key))
    return folder, free_port()


def start_central(folder: Path, port: int, store_passwd: str, store_acl: str) -> subprocess.Popen:
    (folder / "passwd").write_text(store_passwd + password_line("operator", "operator-pw") + "\n")
    (folder / "acl").write_text(store_acl + "\nuser operator\ntopic readwrite #\n")
    for name in ("passwd", "acl", "server.key"):
        (folder / name).chmod(0o600)
    (folder / "mosquitto.conf").write_text("\n".join([
        *([f"user {getpass.getuser()}"] if os.geteuid() == 0 else []),
        "per_listener_settings false", "allow_anonymous false", f"password_file {folder / 'passwd'}",
        f"acl_file {folder / 'acl'}", f"listener {port} 127.0.0.1", f"certfile {folder / 'server.crt'}",
        f"keyfile {folder / 'server.key'}", f"log_dest file {folder / 'log'}", ""]))
    process = subprocess.Popen([find_mosquitto(), "-c", str(folder / "mosquitto.conf")])
    wait_for(lambda: _listening(port), timeout=10, what="the central broker listening")
    return process


def _listening(port: int) -> bool:
    import socket
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


def test_bridge_carries_events_out_and_commands_in(tmp_path, central):
    folder, port = central
    stores = tmp_path / "stores"
    stores.mkdir()
    text = (EXAMPLES / "s001.toml").read_text().replace('address = "mqtt.central.omnikiosk.example"',
                                                       'address = "localhost"')
    (stores / "s001.toml").write_text(text)
    shutil.copy(EXAMPLES / "online-jwks.json", stores)
    shutil.copy(folder / "ca.crt", stores / "central-ca.crt")
    out = tmp_path / "out"
    write(plan(load_inventory(stores / "s001.toml"), Secrets(stores / "secrets")), out)
    central_process = start_central(folder, port, (out / "central/passwd").read_text(),
                                    (out / "central/acl.conf").read_text())
    store_broker = None
    clients = []
    try:
        store_broker = start(out / "hub", tmp_path / "store-broker", bridge_address=f"localhost:{port}")
        operator = Client(port, "operator", "operator-pw", ca=folder / "ca.crt")
        clients.append(operator)
        operator.client.tls_insecure_set(False)
        assert operator.connect()
        operator.subscribe("#")
        wait_for(lambda: any(t == "omnikiosk/s001/bridge/state" and p == b"1" for t, p in operator.received),
                 timeout=10, what="the bridge connecting")
        kiosk = Client(store_broker.tls_port, "s001-k01", (out / "kiosks/s001-k01/mqtt.password").read_text().strip(),
                       ca=out / "kiosks/s001-k01/ca.crt")
        clients.append(kiosk)
        assert kiosk.connect()
        kiosk.subscribe("omnikiosk/s001/devices/s001-k01/commands")
        kiosk.publish("omnikiosk/s001/devices/s001-k01/events", b'{"seq": 1}')
        kiosk.publish("omnikiosk/s001/devices/s001-k01/status", b'{"state": "online"}', retain=True)
        kiosk.publish("omnikiosk/s001/devices/s001-k01/telemetry", b'{"fps": 10}')
        wait_for(lambda: ("omnikiosk/s001/devices/s001-k01/events", b'{"seq": 1}') in operator.received,
                 timeout=10, what="the event at the central broker")
        wait_for(lambda: ("omnikiosk/s001/devices/s001-k01/status", b'{"state": "online"}') in operator.received,
                 timeout=10, what="the status at the central broker")
        operator.publish("omnikiosk/s001/devices/s001-k01/commands", b'{"id": "c1"}')
        wait_for(lambda: ("omnikiosk/s001/devices/s001-k01/commands", b'{"id": "c1"}') in kiosk.received,
                 timeout=10, what="the command at the kiosk")
        # telemetry stays in the store; the bridge forwards what the chain needs, not everything
        assert not any(t.endswith("/telemetry") for t, _ in operator.received)
    finally:
        for c in clients:
            c.close()
        if store_broker:
            store_broker.stop()
        central_process.kill()
        central_process.wait()
