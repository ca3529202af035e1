"""The kiosk's screen: cage + Chromium's command line, the page heartbeat in real Chromium, and when
the browser's watchdog tells systemd the screen is ready, alive, or stuck."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest
import requests
from conftest import wait_for
from werkzeug.serving import make_server

import kiosk.config
from kiosk.browser import (ALIVE, CHROMIUM_FLAGS, KIOSK_DOWN, LOADING, STALE, PageWatch, browser_command,
                           child_environment, exit_status, health_url, run, should_be_ready, should_ping)
from kiosk.web import Screen, create_app
from protocol.settings import parse

URL = "http://127.0.0.1:8080/"


# --- the command line -----------------------------------------------------------------------------

def test_cage_runs_chromium_in_kiosk_mode_on_the_page():
    command = browser_command(URL, profile_dir="/run/omnikiosk-screen/chromium")
    assert command[:2] == ["cage", "-d"]
    separator = command.index("--")
    assert command[separator + 1] == "chromium"
    assert command[-1] == URL
    chromium_args = command[separator + 2:-1]
    for flag in ("--kiosk", "--no-first-run", "--noerrdialogs", "--disable-infobars",
                 "--disable-session-crashed-bubble", "--disable-background-networking", "--disable-component-update",
                 "--disable-features=Translate", "--disable-pinch", "--overscroll-history-navigation=0",
                 "--ozone-platform=wayland", "--user-data-dir=/run/omnikiosk-screen/chromium"):
        assert flag in chromium_args
    # Chromium keeps only the last --disable-features: a second one would silently undo the first.
    assert sum(arg.startswith("--disable-features=") for arg in chromium_args) == 1
    assert "-r" not in command


WLR_RANDR = """#!/bin/sh
# a stand-in for wlr-randr: lists two outputs, records every change asked of it
if [ $# -eq 0 ]; then
  printf 'DSI-1 "Raspberry Pi DSI panel"\n  Enabled: yes\n  Modes:\n    800x480 px\nHDMI-A-1 "Monitor"\n  Enabled: yes\n'
else
  echo "$@" >> "$RANDR_LOG"
fi
"""


@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
def test_rotation_turns_every_output_before_chromium_starts(tmp_path, rotation):
    """Run the part of the command inside cage for real, with a stand-in wlr-randr and Chromium."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "wlr-randr").write_text(WLR_RANDR)
    (bin_dir / "chromium").write_text('#!/bin/sh\necho "chromium $#" > "$CHROMIUM_LOG"\n')
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    command = browser_command(URL, rotation, profile_dir="/p")
    assert command[:3] == ["cage", "-d", "--"]
    inside = command[3:]
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "RANDR_LOG": str(tmp_path / "randr"),
           "CHROMIUM_LOG": str(tmp_path / "chromium")}
    subprocess.run(inside, env=env, check=True, timeout=10)
    turned = (tmp_path / "randr").read_text().splitlines() if (tmp_path / "randr").exists() else []
    expected = [] if rotation == 0 else [f"--output DSI-1 --transform {rotation}",
                                         f"--output HDMI-A-1 --transform {rotation}"]
    assert turned == expected
    assert (tmp_path / "chromium").read_text().strip() == f"chromium {len(inside) - inside.index('chromium') - 1}"


def test_the_executables_can_be_named():
    command = browser_command(URL, profile_dir="/p", cage="/usr/bin/cage", chromium="/usr/bin/chromium-browser")
    assert command[0] == "/usr/bin/cage" and command[command.index("--") + 1] == "/usr/bin/chromium-browser"


@pytest.mark.parametrize("rotation", [45, -90, 360])
def test_a_rotation_cage_cannot_do_is_refused(rotation):
    with pytest.raises(ValueError, match="rotation"):
        browser_command(URL, rotation, profile_dir="/p")


def test_only_a_web_address_is_opened():
    with pytest.raises(ValueError, match="http"):
        browser_command("file:///etc/passwd", profile_dir="/p")


def test_the_command_is_the_same_every_time():
    assert browser_command(URL, 90, profile_dir="/p") == browser_command(URL, 90, profile_dir="/p")
    assert len(set(CHROMIUM_FLAGS)) == len(CHROMIUM_FLAGS)


def test_the_children_cannot_speak_for_the_unit_and_get_a_writable_runtime_dir():
    env = child_environment({"NOTIFY_SOCKET": "/run/systemd/notify", "WATCHDOG_USEC": "30000000",
                             "WATCHDOG_PID": "12", "XDG_RUNTIME_DIR": "/run/user/999", "LANG": "C.UTF-8"},
                            "/run/omnikiosk-screen")
    assert env == {"XDG_RUNTIME_DIR": "/run/omnikiosk-screen", "LANG": "C.UTF-8"}
    assert child_environment({"XDG_RUNTIME_DIR": "/run/user/1000"}, None) == {"XDG_RUNTIME_DIR": "/run/user/1000"}


def test_health_is_asked_of_the_kiosk_serving_the_page():
    assert health_url(URL) == "http://127.0.0.1:8080/healthz"
    assert health_url("http://127.0.0.1:9000/kiosk?x=1") == "http://127.0.0.1:9000/healthz"


def test_a_child_killed_by_a_signal_exits_the_shell_way():
    assert exit_status(0) == 0 and exit_status(3) == 3
    assert exit_status(-9) == 137 and exit_status(-15) == 143


# --- the watchdog's decisions -------------------------------------------------------------------------

def test_a_page_heard_from_recently_is_alive_and_makes_the_screen_ready():
    watch = PageWatch(stale_after_s=30)
    assert watch.judge({"ok": True, "page_seen_s_ago": 2.5}, now=0) == ALIVE
    assert should_be_ready(ALIVE) and should_ping(True, ALIVE)


def test_a_page_quiet_for_too_long_is_stale_and_stops_the_pings():
    watch = PageWatch(stale_after_s=30)
    assert watch.judge({"page_seen_s_ago": 30.0}, now=0) == ALIVE
    assert watch.judge({"page_seen_s_ago": 30.1}, now=2) == STALE
    assert not should_ping(True, STALE) and not should_be_ready(STALE)


def test_a_page_not_heard_from_yet_gets_a_grace_period_then_counts_as_stuck():
    watch = PageWatch(stale_after_s=30)
    assert watch.judge({"page_seen_s_ago": None}, now=100) == LOADING
    assert watch.judge({"page_seen_s_ago": None}, now=129) == LOADING
    assert should_ping(True, LOADING) and not should_be_ready(LOADING)
    assert watch.judge({"page_seen_s_ago": None}, now=131) == STALE


def test_a_kiosk_that_does_not_answer_is_not_the_browsers_fault():
    watch = PageWatch(stale_after_s=30)
    assert watch.judge({"page_seen_s_ago": None}, now=0) == LOADING
    assert watch.judge(None, now=20) == KIOSK_DOWN
    assert should_ping(True, KIOSK_DOWN)
    # the kiosk came back (restarted): its page gets a fresh grace period to reconnect
    assert watch.judge({"page_seen_s_ago": None}, now=40) == LOADING
    assert watch.judge({"page_seen_s_ago": None}, now=69) == LOADING
    assert watch.judge({"page_seen_s_ago": 1.0}, now=71) == ALIVE


def test_a_page_that_beats_again_is_alive_again():
    watch = PageWatch(stale_after_s=30)
    assert watch.judge({"page_seen_s_ago": 45}, now=0) == STALE
    assert watch.judge({"page_seen_s_ago": 0.4}, now=2) == ALIVE


def test_nothing_is_pinged_once_the_browser_is_gone():
    for state in (ALIVE, LOADING, KIOSK_DOWN, STALE):
        assert not should_ping(False, state)


def test_an_answer_without_a_number_counts_as_not_heard_from():
    watch = PageWatch(stale_after_s=30)
    assert watch.judge({"page_seen_s_ago": True}, now=0) == LOADING
    assert watch.judge({}, now=31) == STALE


# --- the loop, with a real child process and a recording watchdog -------------------------------------

class RecordingWatchdog:
    def __init__(self):
        self.events: list[str] = []

    def ready(self):
        self.events.append("ready")

    def tick(self):
        self.events.append("tick")

    def status(self, text):
        self.events.append(f"status: {text}")

    def stopping(self):
        self.events.append("stopping")


def test_the_screen_exits_with_its_compositors_status():
    watchdog = RecordingWatchdog()
    code = run([sys.executable, "-c", "import time; time.sleep(0.5); raise SystemExit(3)"], page_url=URL,
               watchdog=watchdog, env={}, poll_s=0.05, fetch=lambda url: {"page_seen_s_ago": 0.1})
    assert code == 3
    assert watchdog.events[:3] == ["status: page alive", "ready", "tick"]


def test_a_stale_page_gets_no_pings_while_the_compositor_runs():
    watchdog = RecordingWatchdog()
    asked = []

    def fetch(url):
        asked.append(url)
        return {"page_seen_s_ago": 120.0}
    code = run([sys.executable, "-c", "import time; time.sleep(0.5)"], page_url=URL, watchdog=watchdog, env={},
               poll_s=0.05, fetch=fetch)
    assert code == 0
    assert asked and set(asked) == {"http://127.0.0.1:8080/healthz"}
    assert watchdog.events == ["status: page stale"]


# --- the heartbeat, from the real page in real Chromium to /healthz ---------------------------------


@pytest.fixture
def kiosk_server():
    config = parse(kiosk.config.SETTINGS, {"store": "s001", "device": "s001-k01", "tokens": {"jwks_file": "x"}}, {})
    app, _ = create_app(config, screen=Screen(), on_done=lambda: None)
    http = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{http.server_port}/"
    http.shutdown()
    http.server_close()


def test_the_kiosk_reports_the_page_unseen_until_it_loads(kiosk_server):
    assert requests.get(kiosk_server + "healthz", timeout=5).json()["page_seen_s_ago"] is None


def test_the_page_heartbeat_reaches_healthz_and_goes_stale_when_the_browser_dies(kiosk_server):
    from browser import Browser, find_chromium
    if find_chromium() is None:
        pytest.skip("chromium is not installed: `make deps` installs it")
    chromium = Browser(800, 480)
    try:
        chromium.goto(kiosk_server)

        def seen_s_ago():
            return requests.get(kiosk_server + "healthz", timeout=5).json()["page_seen_s_ago"]
        wait_for(lambda: seen_s_ago() is not None, timeout=20, what="the page's first sign of life in /healthz")
        watch = PageWatch(stale_after_s=10.0)
        assert watch.judge(requests.get(kiosk_server + "healthz", timeout=5).json(), now=0) == ALIVE
        # Not only the connection counts: the page keeps beating while it sits there.
        wait_for(lambda: seen_s_ago() >= 2.0, timeout=10, interval=0.2, what="time passing")
        wait_for(lambda: seen_s_ago() < 1.0, timeout=10, interval=0.2, what="a later heartbeat")
        assert chromium.errors() == []
    finally:
        chromium.close()
    quick = PageWatch(stale_after_s=1.0)
    wait_for(lambda: quick.judge(requests.get(kiosk_server + "healthz", timeout=5).json(), now=1) == STALE,
             timeout=20, interval=0.2, what="the page going stale after Chromium exited")


def test_python_m_kiosk_browser_documents_itself():
    result = subprocess.run([sys.executable, "-m", "kiosk.browser", "--help"], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 0
    assert "--rotation" in result.stdout and "example" in result.stdout
    printed = subprocess.run([sys.executable, "-m", "kiosk.browser", "--rotation", "180", "--print-command",
                              "--profile", "/p", "--chromium", "chromium"], capture_output=True, text=True, timeout=30)
    import shlex
    assert shlex.split(printed.stdout) == browser_command(URL, 180, profile_dir="/p", chromium="chromium")


def test_a_stop_from_systemd_ends_the_compositor_and_exits_cleanly():
    import os
    import signal
    watchdog = RecordingWatchdog()
    before = signal.getsignal(signal.SIGTERM)
    threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM)).start()
    code = run([sys.executable, "-c", "import time; time.sleep(30)"], page_url=URL, watchdog=watchdog, env={},
               poll_s=0.05, fetch=lambda url: {"page_seen_s_ago": 0.1})
    assert code == 0                      # SIGTERM'd by us on systemd's word: a clean stop, not a failure
    assert "stopping" in watchdog.events
    assert signal.getsignal(signal.SIGTERM) is before
