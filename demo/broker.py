"""A real Mosquitto for the demo and the tests: its own config, users and ACL, on a free port."""

from __future__ import annotations

import getpass
import os
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from firmware_config.broker import acl_text, hub_username, mosquitto_conf, password_line
from firmware_config.broker_check import find_mosquitto, free_port, stop_process


@dataclass
class Broker:
    """A running Mosquitto with one password per client (hub and each device)."""

    directory: Path
    store: str
    devices: list[str]
    port: int = 0
    host: str = "127.0.0.1"
    passwords: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen | None = None

    @property
    def hub_user(self) -> str:
        return hub_username(self.store)

    def password_file_for(self, user: str) -> Path:
        return self.directory / "secrets" / f"{user}.password"

    def write_files(self) -> Path:
        import secrets
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "secrets").mkdir(mode=0o700, exist_ok=True)
        (self.directory / "data").mkdir(exist_ok=True)
        self.port = self.port or free_port(self.host)
        lines = []
        for user in [self.hub_user, *self.devices]:
            secret_path = self.password_file_for(user)
            if not secret_path.exists():
                secret_path.write_text(secrets.token_urlsafe(24) + "\n")
                secret_path.chmod(0o600)
            self.passwords[user] = secret_path.read_text().strip()
            lines.append(password_line(user, self.passwords[user]))
        passwd = self.directory / "passwd"
        passwd.write_text("\n".join(lines) + "\n")
        passwd.chmod(0o600)
        acl = self.directory / "acl"
        acl.write_text(acl_text(self.store, self.devices))
        conf = self.directory / "mosquitto.conf"
        conf.write_text(mosquitto_conf(port=self.port, bind=self.host, password_file=str(passwd),
                                       acl_file=str(acl), persistence_dir=str(self.directory / "data"),
                                       log_file=str(self.directory / "mosquitto.log"),
                                       run_as=getpass.getuser() if os.geteuid() == 0 else ""))
        return conf

    def start(self, timeout: float = 10.0) -> "Broker":
        conf = self.write_files()
        self.process = subprocess.Popen([find_mosquitto(), "-c", str(conf)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.process.stderr.read().decode(errors='replace')}")
            try:
                socket.create_connection((self.host, self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"mosquitto did not listen on {self.host}:{self.port}")

    def stop(self) -> None:
        stop_process(self.process)

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
