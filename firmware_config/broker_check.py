"""Prove a rendered store broker on this machine: real Mosquitto with the generated config, logins and ACL.

The generated conf.d file is used as written except for what only makes sense on the store's
hub: the listener ports become free ports here and /etc/mosquitto/omnikiosk/ becomes a
temporary copy of the rendered files. Then real clients show that the TLS listener verifies
with the store CA under the hub's name, that anonymous and wrong-password logins are refused,
that a kiosk can publish its own events but not another's, cannot read another's commands,
and that an oversized message is refused.
"""

from __future__ import annotations

import getpass
import os
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt

from firmware_config import layout
from firmware_config.bundle import Check
from protocol.topics import Topics


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def find_mosquitto() -> str:
    for candidate in (shutil.which("mosquitto"), "/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"):
        if candidate and Path(candidate).exists():
            return candidate
    raise FileNotFoundError("mosquitto is not installed: run `make deps` (apt-get install mosquitto)")


def local_conf(conf: str, files_dir: Path, tls_port: int, local_port: int) -> str:
    """The rendered conf with this machine's ports and file paths; everything else as rendered."""
    conf = conf.replace(layout.MOSQUITTO_FILES, str(files_dir))
    conf = re.sub(rf"^listener {layout.MQTT_TLS_PORT}$", f"listener {tls_port} 127.0.0.1", conf, flags=re.M)
    conf = re.sub(rf"^listener {layout.MQTT_LOCAL_PORT} 127\.0\.0\.1$", f"listener {local_port} 127.0.0.1",
                  conf, flags=re.M)
    return conf


@dataclass
class RunningBroker:
    process: subprocess.Popen
    tls_port: int
    local_port: int
    log: Path

    def stop(self) -> None:
        stop_process(self.process)


def stop_process(process: subprocess.Popen | None, timeout_s: float = 5.0) -> None:
    """SIGTERM, then SIGKILL if it has not gone within `timeout_s`."""
    if process and process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def start(hub_dir: Path, work: Path, timeout_s: float = 10.0, bridge_address: str = "") -> RunningBroker:
    """Mosquitto with the hub bundle's broker files, laid out like Debian's main config + conf.d.
    The bridge (if any) goes to `bridge_address` (host:port), by default a port nobody listens on."""
    files = work / "omnikiosk"
    files.mkdir(parents=True)
    for name in ("passwd", "acl", "ca.crt", "server.crt", "server.key"):
        shutil.copy(hub_dir / "mosquitto" / name, files / name)
        (files / name).chmod(0o600)
    conf_d = work / "conf.d"
    conf_d.mkdir()
    tls_port, local_port = free_port(), free_port()
    (conf_d / "omnikiosk.conf").write_text(local_conf((hub_dir / "mosquitto" / "omnikiosk.conf").read_text(),
                                                      files, tls_port, local_port))
    bridge = hub_dir / "mosquitto" / "omnikiosk-bridge.conf"
    if bridge.exists():  # parsed for real; by default it only retries a port nobody listens on
        shutil.copy(hub_dir / "mosquitto" / "central-ca.crt", files / "central-ca.crt")
        address = bridge_address or f"127.0.0.1:{free_port()}"
        text = re.sub(r"^address .*$", f"address {address}", bridge.read_text(), flags=re.M)
        (conf_d / "omnikiosk-bridge.conf").write_text(text.replace(layout.MOSQUITTO_FILES, str(files)))
    (work / "data").mkdir()
    log = work / "mosquitto.log"
    main = [  # what Debian's /etc/mosquitto/mosquitto.conf sets around our conf.d file
        *([f"user {getpass.getuser()}"] if os.geteuid() == 0 else []),
        f"persistence_location {work / 'data'}/", f"log_dest file {log}", "log_type all",
        f"include_dir {conf_d}", ""]
    (work / "mosquitto.conf").write_text("\n".join(main))
    process = subprocess.Popen([find_mosquitto(), "-c", str(work / "mosquitto.conf")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            detail = process.stderr.read().decode(errors="replace") + (log.read_text() if log.exists() else "")
            raise RuntimeError(f"mosquitto refused the generated config: {detail.strip()[-800:]}")
        try:
            socket.create_connection(("127.0.0.1", tls_port), timeout=0.2).close()
            socket.create_connection(("127.0.0.1", local_port), timeout=0.2).close()
            return RunningBroker(process, tls_port, local_port, log)
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("mosquitto did not open both listeners within 10 s")


class Client:
    """A paho client that records what it received and how its connection went."""

    def __init__(self, port: int, username: str | None, password: str | None, *, ca: Path | None = None):
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5,
                                  client_id=f"check-{username or 'anon'}-{os.urandom(3).hex()}")
        if username is not None:
            self.client.username_pw_set(username, password)
        if ca is not None:
            self.client.tls_set(ca_certs=str(ca))
        self.port, self.connected, self.reason = port, threading.Event(), None
        self.received: list[tuple[str, bytes]] = []
        self.disconnected = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_message = lambda c, u, m: self.received.append((m.topic, m.payload))
        self.client.on_disconnect = lambda *a: self.disconnected.set()

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        self.reason = reason_code
        self.connected.set()

    def connect(self, timeout_s: float = 5.0) -> bool:
        """True when the broker accepted the login."""
        try:
            self.client.connect("127.0.0.1", self.port, keepalive=30)
        except (OSError, ssl.SSLError) as exc:
            self.reason = exc
            return False
        self.client.loop_start()
        self.connected.wait(timeout_s)
        return self.reason is not None and not getattr(self.reason, "is_failure", True)

    def subscribe(self, topic: str) -> None:
        done = threading.Event()
        self.client.on_subscribe = lambda *a: done.set()
        self.client.subscribe(topic, qos=1)
        done.wait(5)

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _wait_for(predicate, timeout_s: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def plaintext_listeners(conf: str) -> list[str]:
    """Listeners without a certificate that are not bound to loopback (there must be none)."""
    exposed, current, has_cert = [], None, False
    for line in [*conf.splitlines(), "listener end"]:
        words = line.split()
        if words[:1] == ["listener"]:
            if current and not has_cert and (len(current) < 3 or current[2] not in ("127.0.0.1", "::1", "localhost")):
                exposed.append(" ".join(current))
            current, has_cert = words, False
        elif words[:1] == ["certfile"]:
            has_cert = True
    return exposed


def check_broker(out: Path, manifest: dict) -> list[Check]:
    """Every live broker check, each a pass/fail with its reason."""
    hub_dir = out / "hub"
    exposed = plaintext_listeners((hub_dir / "mosquitto" / "omnikiosk.conf").read_text())
    static = Check("broker: plaintext only on 127.0.0.1, TLS everywhere else", not exposed,
                   f"plaintext listeners open to the network: {exposed}" if exposed else "")
    kiosks = manifest["kiosks"]
    if not kiosks:
        return [Check("broker", False, "the render has no kiosks to test the ACL with")]
    try:
        find_mosquitto()
    except FileNotFoundError as exc:
        return [static, Check("broker: mosquitto", False, str(exc), skipped=True)]
    topics = Topics(manifest["store"], manifest["topic_prefix"])
    hub_user = f"hub-{manifest['store']}"
    password = {hub_user: (hub_dir / "mqtt.password").read_text().strip()}
    for kiosk in kiosks:
        password[kiosk] = (out / "kiosks" / kiosk / "mqtt.password").read_text().strip()
    ca = out / "kiosks" / kiosks[0] / "ca.crt"
    checks: list[Check] = [static]
    with tempfile.TemporaryDirectory(prefix="omnikiosk-broker-check-") as work:
        try:
            broker = start(hub_dir, Path(work))
        except (RuntimeError, OSError) as exc:
            return [static, Check("broker: mosquitto starts with the generated config", False, str(exc))]
        checks.append(Check("broker: mosquitto starts with the generated config", True,
                            "TLS and loopback listeners up, password file and ACL accepted"
                            + (", bridge accepted" if (hub_dir / "mosquitto" / "omnikiosk-bridge.conf").exists()
                               else "")))
        clients: list[Client] = []
        try:
            checks += _checks(broker, manifest, topics, hub_user, password, ca, kiosks, clients)
        finally:
            for c in clients:
                c.close()
            broker.stop()
    return checks


def _checks(broker: RunningBroker, manifest, topics: Topics, hub_user, password, ca, kiosks, clients) -> list[Check]:
    checks = [_tls_name_check(broker.tls_port, ca, manifest["hub_host"])]

    def client(port, user, pw, tls=True):
        c = Client(port, user, pw, ca=ca if tls else None)
        clients.append(c)
        return c

    hub = client(broker.local_port, hub_user, password[hub_user], tls=False)
    ok = hub.connect()
    checks.append(Check("broker: the hub logs in on the loopback listener", ok, str(hub.reason)))
    if ok:
        hub.subscribe(f"{topics.store_root}/#")
    anonymous = client(broker.tls_port, None, None)
    checks.append(Check("broker: anonymous login refused", not anonymous.connect(), str(anonymous.reason)))
    wrong = client(broker.tls_port, kiosks[0], "not-the-password")
    checks.append(Check("broker: wrong password refused", not wrong.connect(), str(wrong.reason)))
    plain = client(broker.tls_port, kiosks[0], password[kiosks[0]], tls=False)
    checks.append(Check("broker: plaintext refused on the TLS listener", not plain.connect(timeout_s=2),
                        "no MQTT without TLS on the store network"))
    first = client(broker.tls_port, kiosks[0], password[kiosks[0]])
    ok = first.connect()
    checks.append(Check(f"broker: {kiosks[0]} logs in over TLS with the store CA", ok, str(first.reason)))
    if not ok:
        return checks
    own = topics.events(kiosks[0])
    first.publish(own, b'{"check":"own"}')
    arrived = _wait_for(lambda: any(t == own for t, _ in hub.received))
    checks.append(Check(f"broker: {kiosks[0]} publishes its own events to the hub", arrived, own))
    other_device = kiosks[1] if len(kiosks) > 1 else "some-other-kiosk"
    forged = topics.events(other_device)
    first.publish(forged, b'{"check":"forged"}')
    first.publish(topics.hub_status, b'{"state":"offline"}', retain=True)
    _wait_for(lambda: False, 0.5)
    leaked = [t for t, _ in hub.received if t in (forged, topics.hub_status)]
    checks.append(Check(f"broker: {kiosks[0]} cannot publish as {other_device} or as the hub", not leaked,
                        f"delivered: {leaked}" if leaked else f"{forged} and hub/status dropped by the ACL"))
    first.subscribe(topics.device(other_device, "commands"))
    first.subscribe(topics.device(kiosks[0], "commands"))
    hub.publish(topics.device(other_device, "commands"), b'{"check":"not yours"}')
    hub.publish(topics.device(kiosks[0], "commands"), b'{"check":"yours"}')
    got_own = _wait_for(lambda: any(t == topics.device(kiosks[0], "commands") for t, _ in first.received))
    snooped = any(t == topics.device(other_device, "commands") for t, _ in first.received)
    checks.append(Check(f"broker: {kiosks[0]} reads its own commands, not {other_device}'s",
                        got_own and not snooped, f"own={got_own} other's={snooped}"))
    limit = manifest["max_message_kb"] * 1024
    big = client(broker.tls_port, kiosks[0], password[kiosks[0]])
    if big.connect():
        big.publish(own, b"x" * (limit + 1))
        refused = big.disconnected.wait(3) and not any(len(p) > limit for _, p in hub.received)
        checks.append(Check(f"broker: a message over {manifest['max_message_kb']} KiB is refused", refused,
                            "the broker closed the connection" if refused else "it was delivered"))
    return checks


def _tls_name_check(port: int, ca: Path, hub_host: str) -> Check:
    """The listener's certificate chains to the store CA and carries the hub's name."""
    context = ssl.create_default_context(cafile=str(ca))
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=3) as raw:
            with context.wrap_socket(raw, server_hostname=hub_host) as tls_socket:
                version = tls_socket.version()
    except (OSError, ssl.SSLError) as exc:
        return Check(f"broker: TLS verifies as {hub_host} with the store CA", False, str(exc))
    return Check(f"broker: TLS verifies as {hub_host} with the store CA", True, version or "")
