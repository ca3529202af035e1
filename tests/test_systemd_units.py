"""The systemd units rendered for the example store: what each one says, that they are the same on
every render, and that `systemd-analyze verify` accepts them (and refuses a broken one)."""

from __future__ import annotations

import dataclasses
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from firmware_config import layout, systemd
from firmware_config.inventory import load_inventory
from firmware_config.systemd import hub_units, kiosk_units, parse_unit, verify_units

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "firmware_config" / "examples" / "s001.toml"
PYTHON_UNITS = (layout.KIOSK_UNIT, layout.AGENT_UNIT, layout.HUB_UNIT)


@pytest.fixture(scope="module")
def inv():
    return load_inventory(EXAMPLE)


@pytest.fixture(scope="module")
def units(inv) -> dict[str, dict[str, dict[str, list[str]]]]:
    """unit name → section → key → values, for the first kiosk and the hub."""
    files = kiosk_units(inv, inv.kiosks[0]) + hub_units(inv)
    return {Path(f.dest).name: as_dict(f.content) for f in files}


def as_dict(text: str) -> dict[str, dict[str, list[str]]]:
    parsed: dict[str, dict[str, list[str]]] = {}
    for section, pairs in parse_unit(text).items():
        for key, value in pairs:
            parsed.setdefault(section, {}).setdefault(key, []).append(value)
    return parsed


def one(unit: dict, section: str, key: str) -> str:
    values = unit[section][key]
    assert len(values) == 1, f"{key} is set {len(values)} times"
    return values[0]


def words(unit: dict, section: str, key: str) -> set[str]:
    return {word for value in unit[section].get(key, []) for word in value.split()}


# --- what the bundle holds ---------------------------------------------------------------------------

def test_a_kiosk_gets_its_three_units_installed_and_restarted_when_they_change(inv):
    files = kiosk_units(inv, inv.kiosks[0])
    assert [f.name for f in files] == [f"systemd/{u}" for u in (layout.KIOSK_UNIT, layout.AGENT_UNIT,
                                                                  layout.BROWSER_UNIT)]
    for f in files:
        unit = f.name.split("/")[1]
        assert f.dest == f"/etc/systemd/system/{unit}"
        assert f.restarts == (unit,)
        assert f.mode == 0o644 and f.owner == "root" and not f.secret


def test_the_hub_gets_its_unit(inv):
    [f] = hub_units(inv)
    assert (f.name, f.dest, f.restarts) == (f"systemd/{layout.HUB_UNIT}", f"/etc/systemd/system/{layout.HUB_UNIT}",
                                           (layout.HUB_UNIT,))


def test_rendering_is_deterministic_and_names_no_local_path(inv):
    first = [(f.name, f.content) for k in inv.kiosks for f in kiosk_units(inv, k)] + \
            [(f.name, f.content) for f in hub_units(inv)]
    again = [(f.name, f.content) for k in inv.kiosks for f in kiosk_units(inv, k)] + \
            [(f.name, f.content) for f in hub_units(inv)]
    assert first == again
    assert all(str(EXAMPLE.parent) not in content for _, content in first)


# --- what every unit says ------------------------------------------------------------------------------

def test_every_unit_is_a_watched_notify_service_restarted_at_a_pace(units):
    for name, unit in units.items():
        service = unit["Service"]
        assert one(unit, "Service", "Type") == "notify", name
        assert one(unit, "Service", "NotifyAccess") == "main", name
        assert int(one(unit, "Service", "WatchdogSec")) >= 10, name
        assert one(unit, "Service", "Restart") == "always", name
        restart_s = int(one(unit, "Service", "RestartSec"))
        # The limit belongs in [Unit] (in [Service] it is an old alias) and never stops self-recovery.
        assert "StartLimitBurst" not in service and "StartLimitIntervalSec" not in service
        interval, burst = int(one(unit, "Unit", "StartLimitIntervalSec")), int(one(unit, "Unit", "StartLimitBurst"))
        assert burst > interval / restart_s, name


def test_every_unit_is_sandboxed(units):
    for name, unit in units.items():
        for key, value in (("ProtectSystem", "strict"), ("NoNewPrivileges", "yes"), ("PrivateTmp", "yes"),
                           ("ProtectHome", "yes"), ("ProtectKernelTunables", "yes"), ("ProtectKernelModules", "yes"),
                           ("ProtectControlGroups", "yes"), ("LockPersonality", "yes"),
                           ("RestrictSUIDSGID", "yes")):
            assert one(unit, "Service", key) == value, f"{name}: {key}"
        assert words(unit, "Service", "RestrictAddressFamilies") <= {"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"}
        # writable: its StateDirectory= and, for the kiosk and the agent, the settings a config.update rewrites
        expected = [layout.SETTINGS_DIR] if name in (layout.KIOSK_UNIT, layout.AGENT_UNIT) else None
        assert unit["Service"].get("ReadWritePaths") == expected, name
        assert one(unit, "Service", "User") in (layout.SERVICE_USER, layout.BROWSER_USER)


def test_the_python_services_write_only_their_state_directory_and_hold_no_capabilities(units):
    for name in PYTHON_UNITS:
        unit = units[name]
        assert one(unit, "Service", "User") == layout.SERVICE_USER
        assert one(unit, "Service", "StateDirectory") == Path(layout.STATE_DIR).name
        assert one(unit, "Service", "StateDirectoryMode") == "0750"
        assert one(unit, "Service", "SystemCallFilter") == "@system-service"
    for name in (layout.KIOSK_UNIT, layout.AGENT_UNIT):
        assert one(units[name], "Service", "CapabilityBoundingSet") == ""
        assert "AmbientCapabilities" not in units[name]["Service"]


def test_the_python_services_run_the_real_cli_with_the_device_config(units):
    expected = {layout.KIOSK_UNIT: ["-m", "kiosk", "run", "--config", "/etc/omnikiosk/settings/kiosk.toml"],
                layout.AGENT_UNIT: ["-m", "edge_agent", "--config", "/etc/omnikiosk/settings/agent.toml"],
                layout.HUB_UNIT: ["-m", "hub", "run", "--config", "/etc/omnikiosk/hub.toml"]}
    for name, args in expected.items():
        argv = shlex.split(one(units[name], "Service", "ExecStart"))
        assert argv == [layout.VENV_PYTHON, *args]
        # The program takes these arguments: with no such config file it says so, not "usage: ..." (exit 2).
        result = subprocess.run([sys.executable, *argv[1:], "--check-config"], cwd=ROOT, capture_output=True,
                                text=True, timeout=60)
        assert result.returncode == 1 and "config file not found: /etc/omnikiosk/" in result.stderr, result.stderr


def test_the_kiosk_reaches_the_camera_and_nothing_beyond_this_device(units):
    kiosk = units[layout.KIOSK_UNIT]
    assert one(kiosk, "Service", "SupplementaryGroups") == "video"
    assert "PrivateDevices" not in kiosk["Service"]      # /dev/video*, /dev/media*, /dev/dma_heap
    assert "ProtectClock" not in kiosk["Service"]        # it implies a device allow-list without the camera
    assert "DeviceAllow" not in kiosk["Service"]
    assert layout.AGENT_UNIT in words(kiosk, "Unit", "Wants")
    assert one(kiosk, "Service", "IPAddressDeny") == "any"
    assert one(kiosk, "Service", "IPAddressAllow") == "localhost"


def test_the_agent_starts_once_the_network_is_up_without_devices(units):
    agent = units[layout.AGENT_UNIT]
    assert "network-online.target" in words(agent, "Unit", "After")
    assert "network-online.target" in words(agent, "Unit", "Wants")
    assert one(agent, "Service", "PrivateDevices") == "yes"


def test_the_hub_follows_the_broker_and_may_bind_port_443(units):
    hub = units[layout.HUB_UNIT]
    assert {"mosquitto.service", "network-online.target"} <= words(hub, "Unit", "After")
    assert {"mosquitto.service", "network-online.target"} <= words(hub, "Unit", "Wants")
    assert "Requires" not in hub["Unit"]
    assert one(hub, "Service", "AmbientCapabilities") == "CAP_NET_BIND_SERVICE"
    assert one(hub, "Service", "CapabilityBoundingSet") == "CAP_NET_BIND_SERVICE"


def test_a_hub_on_a_high_port_gets_no_capability(inv):
    high = dataclasses.replace(inv, hub=dataclasses.replace(inv.hub, web_port=8443))
    [f] = hub_units(high)
    hub = as_dict(f.content)
    assert "AmbientCapabilities" not in hub["Service"]
    assert one(hub, "Service", "CapabilityBoundingSet") == ""


def test_the_browser_owns_tty1_as_cages_documented_unit_does(units):
    browser = units[layout.BROWSER_UNIT]
    assert one(browser, "Service", "User") == layout.BROWSER_USER
    assert one(browser, "Service", "PAMName")
    assert one(browser, "Service", "TTYPath") == "/dev/tty1"
    assert one(browser, "Service", "UtmpIdentifier") == "tty1"
    assert one(browser, "Service", "StandardInput") == "tty-fail"
    assert "getty@tty1.service" in words(browser, "Unit", "Conflicts")
    assert {"systemd-user-sessions.service", layout.KIOSK_UNIT} <= words(browser, "Unit", "After")
    assert one(browser, "Install", "WantedBy") == "graphical.target"
    # Never the kiosk's state directory: the screen's user has no business with the outbox or tokens.
    assert one(browser, "Service", "StateDirectory") != Path(layout.STATE_DIR).name


def test_the_browser_runs_the_screen_watchdog_with_each_devices_rotation(inv):
    from kiosk.browser import main as browser_main
    for kiosk in inv.kiosks:
        browser = as_dict(next(f for f in kiosk_units(inv, kiosk) if f.dest.endswith(layout.BROWSER_UNIT)).content)
        argv = shlex.split(one(browser, "Service", "ExecStart"))
        assert argv[:3] == [layout.VENV_PYTHON, "-m", "kiosk.browser"]
        assert argv[argv.index("--rotation") + 1] == str(kiosk.display_rotation)
        browser_main([*argv[3:], "--print-command"])   # arguments kiosk.browser accepts (argparse exits otherwise)
    assert {k.display_rotation for k in inv.kiosks} == {0, 90}


def test_every_directive_is_explained_where_it_is_not_obvious(units):
    """Each [Service] carries its reasons as comments (Anthias style), not a bare list."""
    for f in kiosk_units(load_inventory(EXAMPLE), load_inventory(EXAMPLE).kiosks[0]):
        service = f.content.split("[Service]")[1].split("[Install]")[0]
        comments = [line for line in service.splitlines() if line.startswith("#")]
        directives = [line for line in service.splitlines() if line and not line.startswith("#")]
        assert len(comments) * 2 >= len(directives), f.name
        assert all(len(line) <= 100 for line in f.content.splitlines()), f.name


# --- systemd-analyze verify ----------------------------------------------------------------------------

needs_systemd_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                           reason="systemd-analyze is not installed (apt-get install systemd)")


def write_units(inv, out: Path) -> list[Path]:
    paths = []
    for kiosk in inv.kiosks:
        for f in kiosk_units(inv, kiosk):
            paths.append(out / "kiosks" / kiosk.id / f.name)
    for f in hub_units(inv):
        paths.append(out / "hub" / f.name)
    contents = [f.content for k in inv.kiosks for f in kiosk_units(inv, k)] + [f.content for f in hub_units(inv)]
    for path, content in zip(paths, contents):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return paths


@needs_systemd_analyze
def test_systemd_analyze_accepts_every_rendered_unit(inv, tmp_path):
    paths = write_units(inv, tmp_path)
    checks = verify_units(paths)
    assert len(checks) == len(paths) == 3 * len(inv.kiosks) + 1
    failed = [c.line() for c in checks if not c.ok]
    assert failed == []
    assert all(not c.skipped for c in checks)


@needs_systemd_analyze
def test_systemd_analyze_catches_a_misspelled_directive(inv, tmp_path):
    paths = write_units(inv, tmp_path)
    kiosk_paths = [p for p in paths if p.parent == tmp_path / "kiosks" / inv.kiosks[0].id / "systemd"]
    broken = next(p for p in kiosk_paths if p.name == layout.AGENT_UNIT)
    broken.write_text(broken.read_text().replace("\nProtectKernelTunables=yes\n", "\nProtectKernelTunabels=yes\n"))
    checks = {Path(c.name.split(": ", 1)[1]).name: c for c in verify_units(kiosk_paths)}
    assert not checks[layout.AGENT_UNIT].ok
    assert "ProtectKernelTunabels" in checks[layout.AGENT_UNIT].detail
    assert "/tmp" not in checks[layout.AGENT_UNIT].detail.split(":")[0]   # the unit's path on the device
    # The kiosk unit names the agent (Wants=), but the agent's mistake is reported once, on the agent.
    assert checks[layout.KIOSK_UNIT].ok and checks[layout.BROWSER_UNIT].ok


@needs_systemd_analyze
def test_systemd_analyze_catches_a_bad_value(inv, tmp_path):
    [path] = [p for p in write_units(inv, tmp_path) if p.name == layout.HUB_UNIT]
    path.write_text(path.read_text().replace("Type=notify", "Type=notifyy"))
    [check] = verify_units([path])
    assert not check.ok and "notifyy" in check.detail


def test_without_systemd_analyze_the_check_is_skipped_with_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setattr(systemd.shutil, "which", lambda name: None)
    unit = tmp_path / "omnikiosk-hub.service"
    unit.write_text("[Service]\nExecStart=/bin/true\n")
    [check] = verify_units([unit])
    assert check.skipped and not check.ok
    assert "apt-get install systemd" in check.detail
