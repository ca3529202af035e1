"""systemd units for a store's devices, each directive with its reason; and `verify_units`, which runs
`systemd-analyze verify` on them. Rendering is pure and deterministic.

Every Omnikiosk process is a Type=notify service with a watchdog (protocol/sdnotify.py): READY=1
once it is started, WATCHDOG=1 while its real work loop turns, so systemd restarts a hung process,
not only a dead one. Restarts are paced, never abandoned: a kiosk whose camera or hub comes back
must recover on its own, with nobody from IT in the store.

    kiosk_units(inv, kiosk) -> [BundleFile]   omnikiosk-kiosk, -agent and -browser.service
    hub_units(inv) -> [BundleFile]            omnikiosk-hub.service
    verify_units([Path]) -> [Check]           one Check per unit file
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import textwrap
from collections import defaultdict
from pathlib import Path
from typing import Iterable

from firmware_config import layout
from firmware_config.bundle import BundleFile, Check
from firmware_config.inventory import Inventory, Kiosk

UNIT_DIR = "/etc/systemd/system"
HOST_UNITS = Path("/lib/systemd/system")
INSTALL_HINT = ("systemd-analyze is not installed here; on Debian or Ubuntu it comes with systemd "
                "(`sudo apt-get install systemd`) and checks the units before they ship")

COMMENT_WIDTH = 98
START_LIMIT_INTERVAL_S = 60
# Seconds between a unit's end and its restart, and how long its work loop may stay silent before
# systemd counts it as hung (WatchdogSec=; the loops ping every WatchdogSec/2).
RESTART_S = {"kiosk": 5, "agent": 5, "hub": 5, "browser": 3}
WATCHDOG_S = {
    "kiosk": 30,     # the scan loop turns at scan.fps (0.5 to 30 a second), camera or not
    "agent": 60,     # the drain loop turns every drain.poll_s; a long outbox expiry sweep must fit
    "hub": 90,       # the ingest writer turns every second, and every retry of a failed commit (up to 30 s apart)
    "browser": 30,   # the page beats every 5 s; kiosk.browser stops pinging after 30 s of silence
}

# (key, value, why): one directive and the comment above it ("" for none).
Directive = tuple[str, str, str]
Section = tuple[str, list[Directive]]


def start_limit_burst(restart_s: int) -> int:
    """More starts than automatic restarts can make in the interval: the limit only stops restarts
    quicker than RestartSec= (by hand, or a flapping dependency), never a unit's own recovery."""
    return START_LIMIT_INTERVAL_S // restart_s + 3


# --- the parts every unit shares --------------------------------------------------------------------

def _limits(name: str) -> list[Directive]:
    restart_s = RESTART_S[name]
    return [
        ("StartLimitIntervalSec", str(START_LIMIT_INTERVAL_S),
         f"Restarts are paced by RestartSec={restart_s}, never given up: at most "
         f"{START_LIMIT_INTERVAL_S // restart_s} automatic starts fit in {START_LIMIT_INTERVAL_S} s, below the burst, "
         "so a device whose camera, hub or broker comes back recovers by itself"),
        ("StartLimitBurst", str(start_limit_burst(restart_s)), ""),
    ]


def _notify(name: str) -> list[Directive]:
    return [
        ("Type", "notify", "started means READY=1 from the process (protocol/sdnotify.py), not merely forked"),
        ("NotifyAccess", "main", "only the process we started may speak for the unit"),
        ("WatchdogSec", str(WATCHDOG_S[name]),
         "WATCHDOG=1 comes from the loop that does the real work: a hung process is restarted, not only a dead one"),
        ("Restart", "always", "also after a clean exit: IT's `restart` command and config changes exit 0"),
        ("RestartSec", str(RESTART_S[name]), ""),
    ]


def _python_service(module_args: str, config: str) -> list[Directive]:
    return [
        ("ExecStart", f"{layout.VENV_PYTHON} -m {module_args} --config {config}", ""),
        ("User", layout.SERVICE_USER, "never root; the same user as its peers, so they share the state directory"),
        ("Group", layout.SERVICE_USER, ""),
        ("Environment", "PYTHONFAULTHANDLER=1",
         "when the watchdog strikes (SIGABRT), Python writes every thread's stack to the journal: what hung"),
        ("TimeoutStopSec", "20", "a clean stop (the last events written, `stopped` said to the broker) "
                                 "takes seconds"),
    ]


def _sandbox(*, families: tuple[str, str], devices: bool,
             capabilities: tuple[str, str] = ("", "no capabilities at all")) -> list[Directive]:
    """What a Python service may touch: its state directory, the network families it needs, and
    (`devices`) the camera. MemoryDenyWriteExecute= is left off: ctypes/cffi callbacks need it."""
    rules: list[Directive] = [
        ("ProtectSystem", "strict", "the whole file system is read-only to the service..."),
        ("StateDirectory", "omnikiosk",
         f"...except {layout.STATE_DIR} (outbox, catalog, hub.db, the local API token), owned by User="),
        ("StateDirectoryMode", "0750", "the screen's user and everyone else stay out of it"),
        ("UMask", "0027", ""),
        ("ProtectHome", "yes", "no one's home directory is needed"),
        ("PrivateTmp", "yes", "a /tmp of its own"),
        ("NoNewPrivileges", "yes", "no setuid way back to more rights"),
        ("CapabilityBoundingSet", *capabilities),
    ]
    if not devices:
        rules.append(("PrivateDevices", "yes", "no hardware: only /dev/null, /dev/urandom and friends"))
        rules.append(("ProtectClock", "yes", "cannot set the clock (left off where devices are needed: it "
                                             "implies a device allow-list)"))
    rules += [
        ("ProtectKernelTunables", "yes", "/proc/sys and /sys read-only"),
        ("ProtectKernelModules", "yes", "cannot load kernel modules"),
        ("ProtectKernelLogs", "yes", "cannot read the kernel log"),
        ("ProtectControlGroups", "yes", "cgroups read-only"),
        ("ProtectHostname", "yes", ""),
        ("ProtectProc", "invisible", "other users' processes are not visible"),
        ("RestrictAddressFamilies", *families),
        ("RestrictNamespaces", "yes", ""),
        ("RestrictRealtime", "yes", ""),
        ("RestrictSUIDSGID", "yes", ""),
        ("LockPersonality", "yes", ""),
        ("SystemCallArchitectures", "native", ""),
        ("SystemCallFilter", "@system-service", "the system calls an ordinary service makes; others fail..."),
        ("SystemCallErrorNumber", "EPERM", "...with EPERM instead of killing the process"),
    ]
    return rules


def _render(title: str, sections: list[Section]) -> str:
    lines = [f"# {title}",
             "# Generated by firmware_config from the store inventory. Do not edit on the device: re-render."]
    for name, directives in sections:
        lines += ["", f"[{name}]"]
        for key, value, why in directives:
            lines += [f"# {line}" for line in textwrap.wrap(why, COMMENT_WIDTH)]
            lines.append(f"{key}={value}")
    return "\n".join(lines) + "\n"


def _unit_file(unit: str, text: str) -> BundleFile:
    return BundleFile(f"systemd/{unit}", text, f"{UNIT_DIR}/{unit}", restarts=(unit,))


# --- the units ---------------------------------------------------------------------------------------

def kiosk_unit(inv: Inventory, kiosk: Kiosk) -> str:
    return _render(f"{layout.KIOSK_UNIT}: kiosk {kiosk.id} ({kiosk.location}), store {inv.store.id}", [
        ("Unit", [
            ("Description", f"Omnikiosk kiosk {kiosk.id}: camera, scanning and the shopper page", ""),
            ("Wants", layout.AGENT_UNIT, "the agent carries its events to the hub; the kiosk runs without it "
                                         "(events wait in the outbox), so Wants=, not Requires="),
            *_limits("kiosk"),
        ]),
        ("Service", [
            *_notify("kiosk"),
            *_python_service("kiosk run", layout.settings_path("kiosk.toml")),
            ("ReadWritePaths", layout.SETTINGS_DIR, "a config.update from the hub rewrites kiosk.toml there"),
            ("SupplementaryGroups", "video",
             "the camera: /dev/video*, /dev/media* and /dev/dma_heap/* (Picamera2) belong to group video; "
             "so no PrivateDevices= and no ProtectClock= here"),
            *_sandbox(families=("AF_UNIX AF_INET AF_INET6 AF_NETLINK",
                                "loopback HTTP, and udev's netlink (libcamera watches it for cameras)"),
                      devices=True),
            ("IPAddressDeny", "any", "it talks to the agent and the browser on this device only..."),
            ("IPAddressAllow", "localhost", "...over loopback"),
        ]),
        ("Install", [("WantedBy", "multi-user.target", "")]),
    ])


def agent_unit(inv: Inventory, kiosk: Kiosk) -> str:
    return _render(f"{layout.AGENT_UNIT}: edge agent of {kiosk.id}, store {inv.store.id}", [
        ("Unit", [
            ("Description", f"Omnikiosk edge agent {kiosk.id}: the outbox to the hub, IT's commands", ""),
            ("Wants", "network-online.target", "the hub's broker is on the store network: start once it is up "
                                               "(paho reconnects by itself after that)"),
            ("After", "network-online.target", ""),
            *_limits("agent"),
        ]),
        ("Service", [
            *_notify("agent"),
            *_python_service("edge_agent", layout.settings_path("agent.toml")),
            ("ReadWritePaths", layout.SETTINGS_DIR, "a config.update from the hub rewrites agent.toml there"),
            *_sandbox(families=("AF_UNIX AF_INET AF_INET6", "the broker on the store network, the local API"),
                      devices=False),
        ]),
        ("Install", [("WantedBy", "multi-user.target", "")]),
    ])


def browser_unit(inv: Inventory, kiosk: Kiosk) -> str:
    screen_dir = "omnikiosk-screen"
    url = f"http://127.0.0.1:{layout.KIOSK_PORT}/"
    return _render(f"{layout.BROWSER_UNIT}: the screen of {kiosk.id}, store {inv.store.id}", [
        ("Unit", [
            ("Description", f"Omnikiosk screen {kiosk.id}: the shopper page full screen (cage + Chromium)", ""),
            ("Wants", f"{layout.KIOSK_UNIT} dbus.socket systemd-logind.service",
             "the page comes from the kiosk; logind (over D-Bus) gives cage the screen and the touch input"),
            ("After", f"{layout.KIOSK_UNIT} dbus.socket systemd-logind.service", ""),
            ("After", "systemd-user-sessions.service plymouth-quit-wait.service getty@tty1.service",
             "started once logins are allowed and the boot splash is gone, as cage documents"),
            ("Conflicts", "getty@tty1.service", "it owns tty1 in place of the login prompt"),
            ("Before", "graphical.target", "part of the graphical boot (the device boots to graphical.target)"),
            ("ConditionPathExists", "/dev/tty0", "no virtual consoles, no screen: do not start"),
            *_limits("browser"),
        ]),
        ("Service", [
            *_notify("browser"),
            ("ExecStart", f"{layout.VENV_PYTHON} -m kiosk.browser --url {url} --rotation {kiosk.display_rotation}",
             f"cage + Chromium as the child of kiosk.browser, which pings only while the page beats "
             f"(display_rotation {kiosk.display_rotation})"),
            ("WatchdogSignal", "SIGTERM", "a stuck page ends like a stop (kiosk.browser closes cage), not with "
                                          "a core dump of Chromium"),
            ("TimeoutStartSec", "120", "READY=1 waits for the page's first heartbeat"),
            ("TimeoutStopSec", "10", ""),
            ("User", layout.BROWSER_USER, "no access to the kiosk's state or credentials"),
            ("PAMName", "login", "a logind session on seat0, so cage may open the display and input devices"),
            ("TTYPath", "/dev/tty1", "a virtual terminal is needed..."),
            ("TTYReset", "yes", ""),
            ("TTYVHangup", "yes", ""),
            ("TTYVTDisallocate", "yes", ""),
            ("StandardInput", "tty-fail", "...and fail to start without controlling it"),
            ("StandardOutput", "journal", ""),
            ("StandardError", "journal", ""),
            ("UtmpIdentifier", "tty1", "logged in utmp as a getty would be (w, who)"),
            ("UtmpMode", "user", ""),
            ("Environment", "XDG_SESSION_TYPE=wayland", "logind records the session as Wayland"),
            ("Environment", "WLR_LIBINPUT_NO_DEVICES=1", "show the page even with the touch panel unplugged"),
            ("StateDirectory", screen_dir, f"its home ({layout.STATE_DIR}-screen): the only lasting place it "
                                           "may write"),
            ("StateDirectoryMode", "0700", ""),
            ("RuntimeDirectory", screen_dir, "Chromium's profile and the Wayland socket in RAM (kiosk.browser "
                                             "sets XDG_RUNTIME_DIR to it): a fresh profile on every start, "
                                             "no session to restore after a power cut"),
            ("RuntimeDirectoryMode", "0700", ""),
            ("ProtectSystem", "strict", "read-only everywhere else"),
            ("ProtectHome", "yes", ""),
            ("PrivateTmp", "yes", ""),
            ("NoNewPrivileges", "yes", "Chromium's sandbox uses user namespaces, not its setuid helper"),
            ("ProtectKernelTunables", "yes", ""),
            ("ProtectKernelModules", "yes", ""),
            ("ProtectKernelLogs", "yes", ""),
            ("ProtectControlGroups", "yes", ""),
            ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6 AF_NETLINK",
             "AF_NETLINK: udev tells cage about input devices"),
            ("RestrictSUIDSGID", "yes", ""),
            ("LockPersonality", "yes", ""),
            # No IPAddressDeny=: PAMName= moves cage into a logind session scope, out of this unit's
            # cgroup, where it would not apply. No SystemCallFilter=, MemoryDenyWriteExecute= or
            # RestrictNamespaces=: Chromium's JIT and sandbox need what they forbid.
        ]),
        ("Install", [("WantedBy", "graphical.target", "")]),
    ])


def hub_unit(inv: Inventory) -> str:
    privileged = inv.hub.web_port < 1024
    capabilities = (("CAP_NET_BIND_SERVICE", f"the staff app binds port {inv.hub.web_port} (hub.web_port) as "
                                             "an ordinary user; no other capability") if privileged
                    else ("", "no capabilities at all"))
    return _render(f"{layout.HUB_UNIT}: the hub of store {inv.store.id} ({inv.store.name})", [
        ("Unit", [
            ("Description", f"Omnikiosk store hub {inv.hub.id}: ingest, staff app, online store sync", ""),
            ("Wants", "network-online.target mosquitto.service",
             f"Debian's mosquitto.service runs the store broker (our conf in {layout.MOSQUITTO_CONF_D}); "
             "the hub reconnects if it restarts, so Wants=, not Requires="),
            ("After", "network-online.target mosquitto.service", ""),
            *_limits("hub"),
        ]),
        ("Service", [
            *_notify("hub"),
            *_python_service("hub run", layout.config_path("hub.toml")),
            *([("AmbientCapabilities", capabilities[0], "")] if privileged else []),
            *_sandbox(families=("AF_UNIX AF_INET AF_INET6", "the broker, the staff app, the online store"),
                      devices=False, capabilities=capabilities),
        ]),
        ("Install", [("WantedBy", "multi-user.target", "")]),
    ])


def kiosk_units(inv: Inventory, kiosk: Kiosk) -> list[BundleFile]:
    return [_unit_file(layout.KIOSK_UNIT, kiosk_unit(inv, kiosk)),
            _unit_file(layout.AGENT_UNIT, agent_unit(inv, kiosk)),
            _unit_file(layout.BROWSER_UNIT, browser_unit(inv, kiosk))]


def hub_units(inv: Inventory) -> list[BundleFile]:
    return [_unit_file(layout.HUB_UNIT, hub_unit(inv))]


# --- reading units back ------------------------------------------------------------------------------

def parse_unit(text: str) -> dict[str, list[tuple[str, str]]]:
    """Section → its (key, value) pairs in order (a key may repeat); comments and blank lines dropped."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
        elif current is not None and "=" in line:
            key, _, value = line.partition("=")
            current.append((key.strip(), value.strip()))
    return sections


def executables(text: str) -> list[str]:
    """The programs a unit runs (Exec*= lines), without systemd's -@:+! prefixes."""
    found = []
    for pairs in parse_unit(text).values():
        for key, value in pairs:
            if key.startswith("Exec") and value:
                program = value.split()[0].lstrip("-@:+!|")
                if program.startswith("/") and program not in found:
                    found.append(program)
    return found


# --- verifying ----------------------------------------------------------------------------------------

def verify_units(paths: Iterable[Path], *, systemd_analyze: str | None = None,
                 host_units: Path = HOST_UNITS, timeout_s: float = 60.0) -> list[Check]:
    """`systemd-analyze verify` on each unit file, one Check each. Any output on stderr fails the unit:
    an unknown or misspelled directive only warns (and exits 0).

    Each folder of units is checked in a root of its own (--root): the host's units, stub
    executables at every Exec path (verify refuses a unit whose program is missing), and that
    folder's units, so units of two devices with the same names do not meet."""
    paths = list(dict.fromkeys(Path(p) for p in paths))
    tool = systemd_analyze or shutil.which("systemd-analyze")
    if tool is None:
        return [Check(f"systemd: {p}", ok=False, skipped=True, detail=INSTALL_HINT) for p in paths] or [
            Check("systemd: units", ok=False, skipped=True, detail=INSTALL_HINT)]
    folders: dict[Path, list[Path]] = defaultdict(list)
    for path in paths:
        folders[path.parent].append(path)
    checks: list[Check] = []
    for folder_paths in folders.values():
        checks += _verify_folder(tool, folder_paths, host_units, timeout_s)
    return checks


def _verify_folder(tool: str, paths: list[Path], host_units: Path, timeout_s: float) -> list[Check]:
    with tempfile.TemporaryDirectory(prefix="omnikiosk-units-") as tmp:
        root = Path(tmp)
        system = root / "usr/lib/systemd/system"
        if host_units.is_dir():
            shutil.copytree(host_units, system, symlinks=True)
        else:
            system.mkdir(parents=True)
        mine = root / UNIT_DIR.lstrip("/")
        mine.mkdir(parents=True)
        readable: list[Path] = []
        checks: list[Check] = []
        for path in paths:
            try:
                text = path.read_text()
            except OSError as exc:
                checks.append(Check(f"systemd: {path}", False, f"cannot read it: {exc.strerror or exc}"))
                continue
            (mine / path.name).write_text(text)
            for program in executables(text):
                stub = root / program.lstrip("/")
                stub.parent.mkdir(parents=True, exist_ok=True)
                stub.write_text("#!/bin/sh\nexit 0\n")
                stub.chmod(0o755)
            readable.append(path)
        for path in readable:
            others = [p.name for p in readable if p.name != path.name]
            checks.append(_verify_one(tool, root, path, others, timeout_s))
        return checks


def _verify_one(tool: str, root: Path, shown: Path, others: list[str], timeout_s: float) -> Check:
    """Verify loads the units a unit names (Wants=, After=) and warns about them too: what is said about
    one of `others` belongs to that unit's own Check."""
    name = f"systemd: {shown}"
    unit = f"{UNIT_DIR}/{shown.name}"
    try:
        result = subprocess.run([tool, "verify", f"--root={root}", "--man=no", str(root) + unit],
                                capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return Check(name, False, f"systemd-analyze verify did not finish within {timeout_s:g} s")
    except OSError as exc:
        return Check(name, False, f"cannot run {tool}: {exc.strerror or exc}")
    said = (result.stderr + (result.stdout if result.returncode else "")).replace(str(root), "")
    lines = [line.strip() for line in said.splitlines() if line.strip()
             and not any(line.strip().startswith(f"{UNIT_DIR}/{other}:") for other in others)]
    if result.returncode != 0 or lines:
        return Check(name, False, " | ".join(lines) or f"systemd-analyze verify exited {result.returncode}")
    return Check(name, True)
