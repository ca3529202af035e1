"""The store's secrets folder: what Omnikiosk generates once and reuses, and what IT puts there.

Generated (and renewed by `render --rotate`): one MQTT password per login (hub, each kiosk,
the bridge), the store CA and the hub's server certificate, the staff app's session key,
the webhook secret. Provided by IT: the online store's API key and the Wi-Fi passphrase.
The folder is 0700 and every file in it 0600; nothing here is ever printed.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets as random
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature

from firmware_config import tls
from firmware_config.inventory import Inventory

RENEW_BEFORE = dt.timedelta(days=30)   # a server certificate this close to expiry is reissued


class SecretsError(ValueError):
    """A secret IT must provide is missing or unreadable; says which file and what to put there."""


@dataclass
class Secrets:
    """Read-or-create access to one store's secrets folder. `made` lists what this run created."""

    root: Path
    rotate: bool = False
    made: list[str] = field(default_factory=list)

    def __post_init__(self):
        self.root = Path(self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o700)

    # --- primitives
    def _path(self, name: str) -> Path:
        return self.root / name

    def _write(self, name: str, text: str) -> None:
        path = self._path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.parent.chmod(0o700)
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
        self.made.append(name)

    def generated(self, name: str, make) -> str:
        """The secret in `name`, made by `make()` when missing (or when rotating)."""
        path = self._path(name)
        if path.exists() and not (self.rotate and name not in self.made):
            path.chmod(0o600)
            return path.read_text()
        self._write(name, make())
        return path.read_text()

    def provided(self, name: str, what: str) -> str | None:
        """A secret IT puts in the folder; None when it is not there yet."""
        path = self._path(name)
        if not path.exists():
            return None
        try:
            value = path.read_text().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise SecretsError(f"{path}: cannot read {what}: {exc}") from None
        if not value:
            raise SecretsError(f"{path}: {what} is empty")
        path.chmod(0o600)
        return value

    # --- what a store needs
    def mqtt_password(self, username: str) -> str:
        return self.generated(f"mqtt/{username}.password", lambda: random.token_urlsafe(24) + "\n").strip()

    def session_key(self) -> str:
        return self.generated("web-session-key", lambda: random.token_urlsafe(48) + "\n").strip()

    def webhook_secret(self, name: str) -> str:
        return self.generated(name, lambda: random.token_urlsafe(32) + "\n").strip()

    def pos_api_key(self) -> str:
        """The key the store's till sends its sales with (POST /api/v1/pos/sales)."""
        return self.generated("pos-api-key", lambda: random.token_urlsafe(32) + "\n").strip()

    def store_ca(self, inv: Inventory) -> tuple[str, str]:
        """(CA certificate PEM, CA key PEM)."""
        key_pem = self.generated("tls/ca.key", lambda: tls.key_pem(tls.new_key()))
        cert_path = self._path("tls/ca.crt")
        key = tls.load_key(key_pem)
        if not cert_path.exists() or not tls.same_key(tls.load_cert(cert_path.read_text()), key):
            self._write("tls/ca.crt", tls.cert_pem(tls.make_ca(inv.store.id, inv.store.name, key)))
        return cert_path.read_text(), key_pem

    def hub_certificate(self, inv: Inventory, *, now: dt.datetime | None = None) -> tuple[str, str]:
        """(server certificate PEM, key PEM) for the hub: reissued when the CA changed, the hub's
        name or address changed, or it expires within 30 days."""
        ca_pem, ca_key_pem = self.store_ca(inv)
        key_pem = self.generated("tls/hub.key", lambda: tls.key_pem(tls.new_key()))
        cert_path = self._path("tls/hub.crt")
        now = now or dt.datetime.now(dt.timezone.utc)
        if not self._hub_cert_fits(cert_path, ca_pem, key_pem, inv, now):
            ca = tls.load_cert(ca_pem)
            cert = tls.make_server_cert(ca, tls.load_key(ca_key_pem), tls.load_key(key_pem),
                                        inv.store.hub_host, inv.store.hub_ip, extra_hosts=(inv.hub.id,), now=now)
            self._write("tls/hub.crt", tls.cert_pem(cert))
        return cert_path.read_text(), key_pem

    def _hub_cert_fits(self, path: Path, ca_pem: str, key_pem: str, inv: Inventory, now: dt.datetime) -> bool:
        if not path.exists():
            return False
        cert, ca = tls.load_cert(path.read_text()), tls.load_cert(ca_pem)
        if not tls.same_key(cert, tls.load_key(key_pem)):
            return False
        try:
            cert.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            return False
        hosts, ips = tls.server_names(cert)
        return (inv.store.hub_host in hosts and inv.hub.id in hosts and inv.store.hub_ip in ips
                and tls.expires(cert) - now > RENEW_BEFORE)
