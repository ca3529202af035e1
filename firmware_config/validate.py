"""Check a rendered store before anything ships: everything that can be proven on this machine, is.

Each check is pass or fail with its reason. A missing tool (mosquitto, systemd-analyze,
cloud-init, ansible-playbook) is reported as skipped with how to install it, and counts as
a failure unless the caller allows it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import tomllib
from pathlib import Path
from typing import Callable, Iterable

from firmware_config import ansible, cloud_init, systemd, tls
from firmware_config.broker_check import check_broker
from firmware_config.bundle import Check
from firmware_config.render import MANIFEST
from protocol.settings import ConfigError

SECTIONS = ("files", "schema", "tls", "broker", "systemd", "cloud-init", "ansible")


def validate(out: Path, only: Iterable[str] = SECTIONS,
             progress: Callable[[Check], None] | None = None) -> list[Check]:
    out = Path(out)
    try:
        manifest = json.loads((out / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        check = Check("files: manifest", False, f"{out / MANIFEST}: {exc}; is this a render output folder?")
        if progress:
            progress(check)
        return [check]
    steps: dict[str, Callable[[], list[Check]]] = {
        "files": lambda: check_files(out, manifest),
        "schema": lambda: check_schema(out, manifest),
        "tls": lambda: check_tls(out, manifest),
        "broker": lambda: check_broker(out, manifest),
        "systemd": lambda: systemd.verify_units(sorted(out.glob("*/**/systemd/*.service"))
                                                + sorted(out.glob("hub/systemd/*.service"))),
        "cloud-init": lambda: [check(path) for folder in sorted(out.glob("kiosks/*/cloud-init"))
                               for check, path in ((cloud_init.check_user_data, folder / "user-data"),
                                                   (cloud_init.check_network_config, folder / "network-config"))],
        "ansible": lambda: [_provided_is_a_todo(c) for c in ansible.check_playbook(out / "ansible")],
    }
    checks: list[Check] = []
    for name in only:
        for check in _deduplicated(steps[name]()):
            checks.append(check)
            if progress:
                progress(check)
    return checks


def _provided_is_a_todo(check: Check) -> Check:
    """A secret others issue (the online store's API key) missing from the secrets folder does not make
    the render wrong: the playbook stops until it is there. Say so without failing the render."""
    if check.name == ansible.PROVIDED and not check.ok and not check.skipped and "not run" not in check.detail:
        return Check(check.name, True, check.detail, todo=True)
    return check


def _deduplicated(checks: list[Check]) -> list[Check]:
    seen, kept = set(), []
    for check in checks:
        if check not in seen:
            seen.add(check)
            kept.append(check)
    return kept


def passed(checks: list[Check], allow_skipped: bool = False) -> bool:
    return all(c.ok or (allow_skipped and c.skipped) for c in checks)


# --- the checks ----------------------------------------------------------------------------------

def check_files(out: Path, manifest: dict) -> list[Check]:
    """Every rendered file is there, unedited, and secrets are readable by the owner only."""
    changed, missing, exposed = [], [], []
    for rel, digest in manifest["sha256"].items():
        path = out / rel
        if not path.is_file():
            missing.append(rel)
        elif hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            changed.append(rel)
    for rel in manifest["secret_files"]:
        path = out / rel
        if path.is_file() and path.stat().st_mode & 0o077:
            exposed.append(f"{rel} ({path.stat().st_mode & 0o777:04o})")
    return [
        Check("files: every rendered file present and unedited", not (missing or changed),
              f"missing: {missing[:5]} edited: {changed[:5]} (re-render instead of editing)"
              if missing or changed else f"{len(manifest['sha256'])} files match the manifest"),
        Check("files: secrets readable by their owner only", not exposed,
              f"too open: {exposed[:5]}" if exposed else f"{len(manifest['secret_files'])} secret files, mode 0600"),
    ]


def check_schema(out: Path, manifest: dict) -> list[Check]:
    """Each config file loads through its own process's parser, with the same rules it meets at start."""
    from edge_agent.config import parse_document
    from hub.config import SETTINGS as HUB_SETTINGS, check_security
    from kiosk.config import check_document
    from protocol.settings import parse

    def hub_check(document, environ, source):
        check_security(parse(HUB_SETTINGS, document, environ, source=source))

    loaders = {"kiosk.toml": check_document, "agent.toml": parse_document, "hub.toml": hub_check}
    checks = []
    for host, info in sorted(manifest["hosts"].items()):
        for name, load in loaders.items():
            path = out / info["folder"] / name
            if not path.exists():
                continue
            try:
                load(tomllib.loads(path.read_text()), {}, str(path.relative_to(out)))
            except (ConfigError, tomllib.TOMLDecodeError) as exc:
                checks.append(Check(f"schema: {host} {name}", False, str(exc)))
                continue
            checks.append(Check(f"schema: {host} {name}", True, "loads with the process's own settings"))
    fleet = out / "hub" / "fleet.toml"
    if fleet.exists():
        checks.append(_fleet_check(fleet, manifest))
    return checks


def _fleet_check(path: Path, manifest: dict) -> Check:
    from hub.roster import load_roster_file
    try:
        roster = load_roster_file(path, store=manifest["store"])
    except (ValueError, OSError) as exc:
        return Check("schema: hub fleet.toml", False, str(exc))
    ok = sorted(roster.ids) == sorted(manifest["kiosks"])
    return Check("schema: hub fleet.toml", ok, f"expects {', '.join(roster.ids)}" if ok else f"lists {roster.ids}")


def check_tls(out: Path, manifest: dict, now: dt.datetime | None = None) -> list[Check]:
    """The hub certificate chains to the store CA, names the hub, matches its key and is not about to expire."""
    now = now or dt.datetime.now(dt.timezone.utc)
    hub = out / "hub"
    try:
        ca = tls.load_cert((hub / "ca.crt").read_text())
        cert = tls.load_cert((hub / "tls" / "hub.crt").read_text())
        key = tls.load_key((hub / "tls" / "hub.key").read_text())
    except (OSError, ValueError) as exc:
        return [Check("tls: store CA and hub certificate readable", False, str(exc))]
    checks = []
    try:
        cert.verify_directly_issued_by(ca)
        checks.append(Check("tls: hub certificate signed by the store CA", True))
    except Exception as exc:  # InvalidSignature, ValueError, TypeError
        checks.append(Check("tls: hub certificate signed by the store CA", False, repr(exc)))
    hosts, ips = tls.server_names(cert)
    named = manifest["hub_host"] in hosts and manifest["hub_ip"] in ips
    checks.append(Check("tls: hub certificate names the hub", named,
                        f"DNS {sorted(hosts)}, IP {sorted(ips)}"))
    checks.append(Check("tls: hub key matches its certificate", tls.same_key(cert, key)))
    days = (tls.expires(cert) - now).days
    checks.append(Check("tls: hub certificate valid for 30 days or more", days >= 30, f"{days} days left"))
    copies = [p for p in [out / "hub" / "mosquitto" / "ca.crt", *out.glob("kiosks/*/ca.crt")]
              if p.read_text() != (hub / "ca.crt").read_text()]
    checks.append(Check("tls: every device trusts the same store CA", not copies,
                        f"different: {[str(p.relative_to(out)) for p in copies]}" if copies else ""))
    return checks
