"""From an inventory and its secrets folder, every file of a store's rollout, written deterministically.

`plan()` gathers the bundles (one per device: the files and where each goes on the device)
and the files around them (Ansible, the central broker's part of a bridge, the manifest);
`write()` puts them in the output folder, leaves identical files untouched, and removes
what an earlier render wrote but this one does not (a kiosk taken out of the inventory).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from firmware_config import ansible, boot, cloud_init, configs, layout, systemd
from firmware_config.broker import (acl_text, bridge_conf, central_acl, hub_username, password_file,
                                    password_line, derived_salt, store_broker_conf)
from firmware_config.bundle import BundleFile
from firmware_config.inventory import Inventory, Kiosk
from firmware_config.secrets import Secrets

MANIFEST = "store.json"
MOSQUITTO = "mosquitto.service"


class RenderError(ValueError):
    """The output folder cannot be written as asked (says why and what to do)."""


@dataclass(frozen=True)
class OutFile:
    content: str
    secret: bool = False


@dataclass
class Plan:
    inventory: Inventory
    bundles: dict[str, list[BundleFile]]        # host → its files ("hub" bundle under the hub's id)
    files: dict[str, OutFile] = field(default_factory=dict)   # relative path in the output → file
    notes: list[str] = field(default_factory=list)            # what IT still has to do


def kiosk_bundle(inv: Inventory, kiosk: Kiosk, secrets: Secrets, ca_pem: str, jwks: str) -> list[BundleFile]:
    kiosk_unit, agent_unit = layout.KIOSK_UNIT, layout.AGENT_UNIT
    user = layout.SERVICE_USER
    files = [
        # owned by the service user: a config.update from the hub rewrites them (in a folder of their own)
        BundleFile("kiosk.toml", configs.kiosk_toml(inv, kiosk), configs.KIOSK_CONFIG, owner=user, group=user,
                   restarts=(kiosk_unit,)),
        BundleFile("agent.toml", configs.agent_toml(inv, kiosk), configs.AGENT_CONFIG, owner=user, group=user,
                   restarts=(agent_unit,)),
        BundleFile("mqtt.password", secrets.mqtt_password(kiosk.id) + "\n", configs.MQTT_PASSWORD, mode=0o600,
                   owner=user, group=user, secret=True, restarts=(agent_unit,)),
        BundleFile("ca.crt", ca_pem, configs.CA_CERT, restarts=(agent_unit,)),
        BundleFile("online-jwks.json", jwks, configs.JWKS, restarts=(kiosk_unit,)),
        # touch follows the picture when the compositor rotates the screen (boot.py says why)
        BundleFile("udev/90-omnikiosk-touch.rules", boot.touch_rule(), boot.TOUCH_RULE_DEST,
                   restarts=(layout.BROWSER_UNIT,)),
        *systemd.kiosk_units(inv, kiosk),
    ]
    return files


def hub_bundle(inv: Inventory, secrets: Secrets, ca_pem: str) -> list[BundleFile]:
    store, user = inv.store.id, layout.SERVICE_USER
    hub_unit, files_dir = layout.HUB_UNIT, layout.MOSQUITTO_FILES
    cert_pem, key_pem = secrets.hub_certificate(inv)
    logins = {hub_username(store): secrets.mqtt_password(hub_username(store)),
              **{k.id: secrets.mqtt_password(k.id) for k in inv.kiosks}}
    files = [
        BundleFile("hub.toml", configs.hub_toml(inv), layout.config_path("hub.toml"), restarts=(hub_unit,)),
        BundleFile("fleet.toml", configs.fleet_toml(inv), configs.FLEET, restarts=(hub_unit,)),
        *[BundleFile(f"devices/{k.id}/{name}", text, layout.config_path(f"devices/{k.id}/{name}"))
          for k in inv.kiosks for name, text in (("kiosk.toml", configs.kiosk_toml(inv, k)),
                                                 ("agent.toml", configs.agent_toml(inv, k)))],
        BundleFile("mqtt.password", logins[hub_username(store)] + "\n", configs.MQTT_PASSWORD, mode=0o600,
                   owner=user, group=user, secret=True, restarts=(hub_unit,)),
        BundleFile("tls/hub.crt", cert_pem, configs.HUB_TLS_CERT, restarts=(hub_unit,)),
        BundleFile("tls/hub.key", key_pem, configs.HUB_TLS_KEY, mode=0o600, owner=user, group=user, secret=True,
                   restarts=(hub_unit,)),
        BundleFile("web-session.key", secrets.session_key() + "\n", configs.SESSION_KEY, mode=0o600, owner=user,
                   group=user, secret=True, restarts=(hub_unit,)),
        BundleFile("webhook-secret", secrets.webhook_secret(inv.online.webhook_secret_file) + "\n",
                   configs.WEBHOOK_SECRET, mode=0o600, owner=user, group=user, secret=True, restarts=(hub_unit,)),
        BundleFile("pos-api.key", secrets.pos_api_key() + "\n", configs.POS_API_KEY, mode=0o600, owner=user,
                   group=user, secret=True, restarts=(hub_unit,)),
        BundleFile("ca.crt", ca_pem, configs.CA_CERT),
        BundleFile("mosquitto/omnikiosk.conf",
                   store_broker_conf(files_dir=files_dir, max_message_kb=inv.hub.max_message_kb,
                                     tls_port=layout.MQTT_TLS_PORT, local_port=layout.MQTT_LOCAL_PORT),
                   f"{layout.MOSQUITTO_CONF_D}/omnikiosk.conf", restarts=(MOSQUITTO,)),
        BundleFile("mosquitto/passwd", password_file(logins), f"{files_dir}/passwd", mode=0o600,
                   owner="mosquitto", group="mosquitto", secret=True, restarts=(MOSQUITTO,)),
        BundleFile("mosquitto/acl", acl_text(store, [k.id for k in inv.kiosks], inv.store.topic_prefix) + "\n",
                   f"{files_dir}/acl", mode=0o640, group="mosquitto", restarts=(MOSQUITTO,)),
        BundleFile("mosquitto/ca.crt", ca_pem, f"{files_dir}/ca.crt", restarts=(MOSQUITTO,)),
        BundleFile("mosquitto/server.crt", cert_pem, f"{files_dir}/server.crt", restarts=(MOSQUITTO,)),
        BundleFile("mosquitto/server.key", key_pem, f"{files_dir}/server.key", mode=0o600, owner="mosquitto",
                   group="mosquitto", secret=True, restarts=(MOSQUITTO,)),
        *systemd.hub_units(inv),
    ]
    if inv.bridge:
        bridge = inv.bridge
        files += [
            BundleFile("mosquitto/omnikiosk-bridge.conf",
                       bridge_conf(store=store, prefix=inv.store.topic_prefix, name=f"central-{store}",
                                   address=bridge.address, port=bridge.port, username=bridge.username,
                                   password=secrets.mqtt_password(bridge.username),
                                   ca_file=f"{files_dir}/central-ca.crt"),
                       f"{layout.MOSQUITTO_CONF_D}/omnikiosk-bridge.conf", mode=0o640, group="mosquitto",
                       secret=True, restarts=(MOSQUITTO,)),
            BundleFile("mosquitto/central-ca.crt", bridge.ca_file.read_text(), f"{files_dir}/central-ca.crt",
                       restarts=(MOSQUITTO,)),
        ]
    return files


def plan(inv: Inventory, secrets: Secrets) -> Plan:
    """Every file of the rollout. Reads the secrets folder, creating what is missing."""
    ca_pem, _ = secrets.store_ca(inv)
    jwks = inv.online.jwks_file.read_text()
    bundles: dict[str, list[BundleFile]] = {inv.hub.id: hub_bundle(inv, secrets, ca_pem)}
    result = Plan(inv, bundles)
    psk = secrets.provided(inv.network.psk_file, "the Wi-Fi passphrase") if inv.network.mode == "wifi" else None
    if inv.network.mode == "wifi" and psk is None:
        raise RenderError(f"network.mode is wifi but the passphrase is missing: put it in "
                          f"{secrets.root / inv.network.psk_file} (one line, mode 0600) and render again")
    for kiosk in inv.kiosks:
        files = kiosk_bundle(inv, kiosk, secrets, ca_pem, jwks)
        bundles[kiosk.id] = files
        base = f"kiosks/{kiosk.id}"
        installed = [f for f in files if f.dest]
        result.files[f"{base}/boot/config.txt"] = OutFile(boot.config_txt(inv, kiosk))
        result.files[f"{base}/cloud-init/user-data"] = OutFile(cloud_init.user_data(inv, kiosk, installed),
                                                               secret=True)
        result.files[f"{base}/cloud-init/meta-data"] = OutFile(cloud_init.meta_data(inv, kiosk))
        result.files[f"{base}/cloud-init/network-config"] = OutFile(cloud_init.network_config(inv, kiosk, psk),
                                                                    secret=psk is not None)
    for host, files in bundles.items():
        folder = "hub" if host == inv.hub.id else f"kiosks/{host}"
        for f in files:
            result.files[f"{folder}/{f.name}"] = OutFile(f.content, f.secret)
    for name, text in ansible.ansible_files(inv, bundles, secrets_dir=secrets.root).items():
        result.files[f"ansible/{name}"] = OutFile(text)
    if inv.bridge:
        password = secrets.mqtt_password(inv.bridge.username)
        user = inv.bridge.username
        result.files["central/acl.conf"] = OutFile(central_acl(store=inv.store.id, prefix=inv.store.topic_prefix,
                                                               username=user))
        result.files["central/passwd"] = OutFile(password_line(user, password, derived_salt(user, password)) + "\n",
                                                 secret=True)
        result.notes.append(f"add central/passwd and central/acl.conf to the central broker "
                            f"({inv.bridge.address}) so the bridge can log in")
    if secrets.provided(inv.online.api_key_file, "the online store API key") is None:
        result.notes.append(f"put the online store's API key in {secrets.root / inv.online.api_key_file} "
                            "before deploying (the playbook stops without it)")
    result.notes.append(f"give the online store the webhook secret in "
                        f"{secrets.root / inv.online.webhook_secret_file}")
    result.notes.append(f"give the till (POS) the key in {secrets.root / 'pos-api-key'} for sending its sales "
                        "to the hub (docs/pos.md)")
    result.files["inventory.toml"] = OutFile(inv.path.read_text())
    result.files[MANIFEST] = OutFile(manifest(result))
    return result


def manifest(result: Plan) -> str:
    """What was rendered, for `validate` and for people: store, hosts, and every file's place and hash."""
    inv = result.inventory
    hosts = {}
    for host, files in result.bundles.items():
        hosts[host] = {
            "role": "hub" if host == inv.hub.id else "kiosk",
            "folder": "hub" if host == inv.hub.id else f"kiosks/{host}",
            "files": [{"name": f.name, "dest": f.dest, "mode": f"{f.mode:04o}", "owner": f"{f.owner}:{f.group}",
                       "secret": f.secret, "restarts": list(f.restarts)} for f in files],
        }
    document = {
        "format": 1,
        "store": inv.store.id, "topic_prefix": inv.store.topic_prefix, "hub": inv.hub.id,
        "hub_host": inv.store.hub_host, "hub_ip": inv.store.hub_ip,
        "kiosks": [k.id for k in inv.kiosks], "bridge": bool(inv.bridge),
        "max_message_kb": inv.hub.max_message_kb,
        "hosts": hosts,
        "sha256": {path: hashlib.sha256(f.content.encode()).hexdigest()
                   for path, f in sorted(result.files.items()) if path != MANIFEST},
        "secret_files": sorted(path for path, f in result.files.items() if f.secret),
    }
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


@dataclass
class WriteReport:
    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


def write(result: Plan, out: Path) -> WriteReport:
    """Write the plan into `out`; a file whose content is the same is not touched."""
    out = Path(out)
    previous = _previous_files(out)
    out.mkdir(parents=True, exist_ok=True)
    out.chmod(0o700)   # bundles hold passwords and keys
    report = WriteReport()
    for rel, f in sorted(result.files.items()):
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        mode = 0o600 if f.secret else 0o644
        data = f.content.encode()
        if path.is_file() and path.read_bytes() == data:
            report.unchanged.append(rel)
            if path.stat().st_mode & 0o777 != mode:
                path.chmod(mode)
            continue
        tmp = path.with_name(f".{path.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
        report.written.append(rel)
    for rel in sorted(previous - set(result.files)):
        (out / rel).unlink(missing_ok=True)
        report.removed.append(rel)
        _prune(out, (out / rel).parent)
    return report


def _previous_files(out: Path) -> set[str]:
    """Files an earlier render wrote here; refuses a non-empty folder that is not a render."""
    if not out.exists() or not any(out.iterdir()):
        return set()
    manifest_path = out / MANIFEST
    if not manifest_path.is_file():
        raise RenderError(f"{out} is not empty and holds no {MANIFEST} from an earlier render; "
                          "choose an empty or new folder (render removes files it no longer makes)")
    try:
        document = json.loads(manifest_path.read_text())
        return set(document["sha256"]) | {MANIFEST}
    except (ValueError, KeyError) as exc:
        raise RenderError(f"{manifest_path} is damaged ({exc}); move the folder away and render again") from None


def _prune(out: Path, folder: Path) -> None:
    while folder != out and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
        folder = folder.parent
