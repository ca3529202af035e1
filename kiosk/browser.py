"""`python -m kiosk.browser`: the kiosk's screen (cage + Chromium on the shopper page), watched by systemd.

Runs the Wayland kiosk compositor `cage` with Chromium in kiosk mode on the shopper page as its
child, and tells systemd (Type=notify, WatchdogSec=) how the screen is doing:

- READY=1 once the kiosk reports that the page has loaded (its first heartbeat reached the kiosk);
- WATCHDOG=1 only while cage runs and the page keeps beating. The page sends "alive" over its
  Socket.IO connection every few seconds (kiosk/static/kiosk.js) and the kiosk reports the age
  of the last one as `page_seen_s_ago` in /healthz. A page that went quiet for STALE_AFTER_S
  stops the pings, and systemd restarts the browser unit. A kiosk that does not answer at all
  is not the browser's fault: the page shows "Offline — reconnecting…" and the pings go on.
- when cage exits, this exits with its status (a stop asked by systemd exits 0).

The command line and every decision are pure functions (`browser_command`, `PageWatch`,
`should_ping`), tested without a screen.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping
from urllib.parse import urljoin

from firmware_config.layout import KIOSK_PORT

log = logging.getLogger("kiosk.browser")

DEFAULT_URL = f"http://127.0.0.1:{KIOSK_PORT}/"
ROTATIONS = (0, 90, 180, 270)
STALE_AFTER_S = 30.0     # the page beats every 5 s; six missed beats is a page that stopped, not a slow one
POLL_S = 2.0             # how often the kiosk's /healthz is asked
DISK_CACHE_BYTES = 32 * 2**20   # the profile lives in RAM (/run): keep Chromium's cache small

# Quiet, offline-safe Chromium for a screen nobody can close: nothing may pop up over the shopper
# page, nothing may call home, nothing a shopper's fingers do may leave the page.
CHROMIUM_FLAGS = (
    "--kiosk",                            # full screen, no address bar, no way out
    "--no-first-run",                     # no welcome page on a fresh profile (every start: it lives in /run)
    "--no-default-browser-check",
    "--noerrdialogs",                     # no error dialogs over the page
    "--disable-infobars",                 # no "controlled by automated software" bars
    "--disable-session-crashed-bubble",   # after a power cut: no "Restore pages?"
    "--disable-background-networking",    # offline-safe: no safe-browsing, variations or other calls home
    "--disable-component-update",         # no component downloads on a store LAN
    "--disable-sync",
    "--disable-translate",                # older builds
    "--disable-features=Translate",       # the translate bubble on a page whose language differs from the OS
    "--password-store=basic",             # no keyring unlock prompt
    "--deny-permission-prompts",          # no camera/notification/location prompts
    "--disable-pinch",                    # no pinch zoom: the layout is made for this screen
    "--overscroll-history-navigation=0",  # a swipe does not go "back"
    "--ozone-platform=wayland",           # a native Wayland client of cage, no Xwayland
    f"--disk-cache-size={DISK_CACHE_BYTES}",
)

ALIVE, LOADING, STALE, KIOSK_DOWN = "alive", "loading", "stale", "kiosk down"


def rotate_outputs(rotation: int) -> list[str]:
    """A prefix that turns every output of cage by `rotation` degrees, then runs the rest of the command.

    cage 0.1.5 and later (Raspberry Pi OS Trixie, the first with cloud-init) turn outputs through the
    wlr-output-management protocol, i.e. `wlr-randr --transform`; 0.1.4's `-r` flag is gone. Touch
    follows the picture through the udev rule firmware_config installs (WL_OUTPUT)."""
    if rotation not in ROTATIONS:
        raise ValueError(f"rotation {rotation!r} is not one of {', '.join(map(str, ROTATIONS))}")
    if rotation == 0:
        return []
    script = (f"for output in $(wlr-randr | awk '/^[^ ]/ {{print $1}}'); do "
              f'wlr-randr --output "$output" --transform {rotation}; done; exec "$@"')
    return ["sh", "-c", script, "omnikiosk-screen"]


def browser_command(url: str, rotation: int = 0, *, profile_dir: str, cage: str = "cage",
                    chromium: str = "chromium") -> list[str]:
    """The screen's command line: cage (-d: no client-side decorations), the output turned when asked, then
    Chromium in kiosk mode on `url` with its profile in `profile_dir`."""
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"url {url!r} must be an http:// or https:// address (the kiosk page)")
    return [cage, "-d", "--", *rotate_outputs(rotation), chromium, *CHROMIUM_FLAGS,
            f"--user-data-dir={profile_dir}", url]


def child_environment(environ: Mapping[str, str], runtime_dir: str | None) -> dict[str, str]:
    """What cage and Chromium run with: nothing of systemd's notify protocol (only this process speaks
    for the unit), and under systemd the unit's writable runtime directory as XDG_RUNTIME_DIR (the
    Wayland socket goes there; /run/user is out of reach with ProtectHome= and ProtectSystem=strict)."""
    env = {k: v for k, v in environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
    if runtime_dir:
        env["XDG_RUNTIME_DIR"] = runtime_dir
    return env


def health_url(page_url: str) -> str:
    return urljoin(page_url, "/healthz")


def exit_status(returncode: int) -> int:
    """A child killed by signal N (Popen says -N) exits the shell way: 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


@dataclass
class PageWatch:
    """What the kiosk's /healthz answers say about the page. Pure: `now` is passed in.

    alive       the page was heard from within `stale_after_s`
    loading     the kiosk answers but has not heard from the page yet (since it started), for
                less than `stale_after_s` since this watch first saw it so
    stale       the page has been quiet for longer: stop pinging, systemd restarts the browser
    kiosk down  the kiosk does not answer: the browser is not at fault, keep it
    """

    stale_after_s: float = STALE_AFTER_S
    _unseen_since: float | None = field(default=None, repr=False)

    def judge(self, health: Mapping[str, Any] | None, now: float) -> str:
        if health is None:
            self._unseen_since = None   # a kiosk that comes back gives its page a fresh grace period
            return KIOSK_DOWN
        seen = health.get("page_seen_s_ago")
        if isinstance(seen, (int, float)) and not isinstance(seen, bool):
            self._unseen_since = None
            return ALIVE if seen <= self.stale_after_s else STALE
        if self._unseen_since is None:
            self._unseen_since = now
        return LOADING if now - self._unseen_since <= self.stale_after_s else STALE


def should_ping(child_running: bool, state: str) -> bool:
    """WATCHDOG=1 only while cage runs and the page is not known to be stuck."""
    return child_running and state != STALE


def should_be_ready(state: str) -> bool:
    """READY=1 once the page has been heard from: the screen shows the shopper page."""
    return state == ALIVE


def fetch_health(url: str, timeout_s: float = 2.0) -> dict[str, Any] | None:
    """The kiosk's /healthz as a dict, or None when it does not answer."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            body = json.loads(response.read())
    except (OSError, ValueError):
        return None
    return body if isinstance(body, dict) else None


def run(command: list[str], *, page_url: str, watchdog, env: Mapping[str, str],
        stale_after_s: float = STALE_AFTER_S, poll_s: float = POLL_S,
        spawn: Callable[..., subprocess.Popen] = subprocess.Popen,
        fetch: Callable[[str], dict[str, Any] | None] = fetch_health,
        clock: Callable[[], float] = time.monotonic) -> int:
    """Run the screen until cage exits; returns the exit status for this process."""
    child = spawn(command, env=dict(env))
    stopping = []

    def stop(signum, _frame) -> None:
        stopping.append(signum)
        watchdog.stopping()
        child.terminate()
    before = {signum: signal.signal(signum, stop) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        return _watch(child, command, page_url=page_url, watchdog=watchdog, stale_after_s=stale_after_s,
                      poll_s=poll_s, fetch=fetch, clock=clock, stopping=stopping)
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)


def _watch(child: subprocess.Popen, command: list[str], *, page_url: str, watchdog, stale_after_s: float,
           poll_s: float, fetch: Callable[[str], dict[str, Any] | None], clock: Callable[[], float],
           stopping: list[int]) -> int:
    watch = PageWatch(stale_after_s)
    url = health_url(page_url)
    last_state = None
    while True:
        try:
            code = child.wait(timeout=poll_s)
        except subprocess.TimeoutExpired:
            code = None
        if code is not None:
            if stopping:
                log.info("screen stopped", extra={"status": code})
                return 0
            log.warning("the screen's compositor exited", extra={"status": code, "command": command[0]})
            return exit_status(code)
        state = watch.judge(fetch(url), clock())
        if state != last_state:
            level = logging.WARNING if state in (STALE, KIOSK_DOWN) else logging.INFO
            log.log(level, "page %s", state, extra={"page": state, "pinging": should_ping(True, state)})
            watchdog.status(f"page {state}")
            last_state = state
        if should_be_ready(state):
            watchdog.ready()
        if should_ping(True, state):
            watchdog.tick()


EPILOG = """examples:
  python -m kiosk.browser                                  # cage + Chromium on http://127.0.0.1:8080/
  python -m kiosk.browser --rotation 90                    # a portrait screen
  python -m kiosk.browser --rotation 270 --print-command   # show the command line, run nothing

Under systemd (omnikiosk-browser.service, Type=notify, WatchdogSec=) it sends READY=1 once the
page has loaded and WATCHDOG=1 while the page keeps beating; it needs cage (Debian package
`cage`; --rotation needs `wlr-randr` and cage 0.1.5 or later) and Chromium.
"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m kiosk.browser", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="Show the kiosk's shopper page full screen (cage + Chromium) and tell systemd while it lives.")
    parser.add_argument("--url", default=DEFAULT_URL, help=f"the kiosk page (default {DEFAULT_URL})")
    parser.add_argument("--rotation", type=int, default=0, choices=ROTATIONS,
                        help="degrees to turn the picture clockwise, the device's display_rotation (default 0)")
    parser.add_argument("--profile", metavar="DIR",
                        help="Chromium's profile directory (default: $RUNTIME_DIRECTORY/chromium under systemd, "
                             "which starts empty every time; else omnikiosk-chromium-UID in the temp directory)")
    parser.add_argument("--cage", default="cage", help="the cage executable (default: cage on PATH)")
    parser.add_argument("--chromium", help="the Chromium executable (default: chromium or chromium-browser on PATH)")
    parser.add_argument("--stale-after-s", type=float, default=STALE_AFTER_S, metavar="SECONDS",
                        help=f"a page quiet this long gets its browser restarted (default {STALE_AFTER_S:g})")
    parser.add_argument("--print-command", action="store_true", help="print the command line and exit")
    args = parser.parse_args(argv)

    runtime_dir = os.environ.get("RUNTIME_DIRECTORY", "").split(":")[0] or None
    profile = args.profile or os.path.join(runtime_dir or tempfile.gettempdir(),
                                           "chromium" if runtime_dir else f"omnikiosk-chromium-{os.getuid()}")
    chromium = args.chromium or shutil.which("chromium") or shutil.which("chromium-browser") or "chromium"
    command = browser_command(args.url, args.rotation, profile_dir=profile, cage=args.cage, chromium=chromium)
    if args.print_command:
        print(shlex.join(command))
        return
    for needed in (command[0], chromium):
        if shutil.which(needed) is None:
            sys.exit(f"cannot start the screen: {needed!r} not found; install it (apt install cage chromium) "
                     "or give its path with --cage / --chromium")

    from protocol import jsonlog
    from protocol.sdnotify import Watchdog
    jsonlog.setup("browser")
    log.info("screen starting", extra={"url": args.url, "rotation": args.rotation, "profile": profile})
    sys.exit(run(command, page_url=args.url, watchdog=Watchdog(ready_on_tick=False),
                 env=child_environment(os.environ, runtime_dir), stale_after_s=args.stale_after_s))


if __name__ == "__main__":
    main()
