"""The kiosk's local control API, as the edge agent calls it for IT: config.update applied live,
screen.message as a banner in real Chromium, restart, and /healthz telemetry.

Real HTTP against the real kiosk web app with the real scan loop, shopper, outbox and config file.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from importlib.metadata import version
from pathlib import Path

import pytest
import requests
from browser import Browser
from conftest import ROOT, wait_for
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from test_kiosk_pages import GOLD10, JANE, load, member, no_page_scroll, product, resize, show
from werkzeug.serving import make_server

from demo.broker import free_port
from demo.issuer import Issuer
from edge_agent.outbox import Outbox, open_device_db
from kiosk.camera import FolderSource, open_source
from kiosk.config import SETTINGS, load_config, load_keys
from kiosk.control import KioskControl, changed_keys, is_live, plan_update
from kiosk.decode import Code
from kiosk.decoders import make_live_decoder
from kiosk.hub_requests import HubRequests
from kiosk.loop import ScanLoop
from kiosk.shopper import Shopper
from kiosk.web import Screen, create_app
from protocol.envelope import parse_ts
from protocol.settings import Config

TOKEN = "kiosk-control-test-token-5f1c0e"
RESTART_ONLY = {"store", "device", "outbox.path", "catalog.path", "web.port", "agent.url", "local_api.token_file"}
PRODUCT_EAN = "4006381333931"


def write_jwks(path: Path) -> Issuer:
    issuer = Issuer(Ed25519PrivateKey.generate())
    path.write_text(json.dumps(issuer.jwks()))
    return issuer


def write_config(folder: Path, **tables) -> Path:
    """A kiosk.toml as IT writes one, mode 0640 (the update must keep it)."""
    write_jwks(folder / "jwks.json")
    (folder / "cam").mkdir(exist_ok=True)
    text = (f'store = "s001"\ndevice = "s001-k01"\n'
            f'[outbox]\npath = "{folder / "outbox.db"}"\n[catalog]\npath = "{folder / "catalog.db"}"\n'
            f'[camera]\nsource = "folder:{folder / "cam"}"\n[scan]\nfps = 10.0\n'
            f'[tokens]\njwks_file = "{folder / "jwks.json"}"\n'
            f'[local_api]\ntoken_file = "{folder / "local-api.token"}"\n')
    text += "".join(f"[{name}]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items())
                    for name, values in tables.items())
    path = folder / "kiosk.toml"
    path.write_text(text)
    path.chmod(0o640)
    return path


class RunningKiosk:
    """The kiosk's parts wired as `python -m kiosk run` wires them, with its web app on a free port."""

    def __init__(self, folder: Path, *, environ: dict[str, str] | None = None, with_file: bool = True):
        self.path = write_config(folder)
        self.environ = environ or {}
        config = load_config(self.path, self.environ)
        self.outbox = Outbox(open_device_db(config["outbox.path"]), store="s001", device="s001-k01")
        self.screen = Screen()
        self.shopper = Shopper(outbox=self.outbox, keys=load_keys(config["tokens.jwks_file"]), screen=self.screen.show,
                               notice=self.screen.notice, hub=HubRequests(config["agent.url"], timeout_s=0.3),
                               idle_timeout_s=config["session.idle_timeout_s"])
        self.loop = ScanLoop(open_source(config["camera.source"]), self.shopper,
                             decoder=make_live_decoder(config["scan.decoder"], config["scan.symbologies"]),
                             fps=config["scan.fps"], debounce_s=config["scan.debounce_s"],
                             confirm_window_s=config["scan.confirm_window_s"])
        self.control = KioskControl(config, path=self.path if with_file else None, environ=self.environ,
                                    loop=self.loop, shopper=self.shopper, screen=self.screen)
        self.events: list[str] = []
        app, self.socketio = create_app(config, screen=self.screen, on_done=lambda: self.shopper.end_session("done"),
                                        api_token=TOKEN, control=self.control,
                                        on_restart=lambda: self.events.append("restart"), restart_delay_s=0.2)
        self.http = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.http.server_port}/"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()
        self.loop.start()

    def post(self, path: str, body, *, token: str | None = TOKEN, content_type: str = "application/json",
             raw: bytes | None = None) -> requests.Response:
        headers = {"Content-Type": content_type}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        data = raw if raw is not None else json.dumps(body).encode()
        return requests.post(self.url + path.lstrip("/"), data=data, headers=headers, timeout=10)

    def start_session(self) -> str:
        """A shopper scans a product: a session is on and the product screen shows."""
        self.shopper.scan(Code("ean13", PRODUCT_EAN), time.monotonic())
        return self.shopper.session.id

    def close(self) -> None:
        self.loop.stop()
        self.http.shutdown()
        self.http.server_close()


@pytest.fixture
def kiosk(tmp_path):
    running = RunningKiosk(tmp_path)
    yield running
    running.close()


def error_of(response: requests.Response) -> dict:
    body = response.json()
    assert body["ok"] is False
    return body["error"]


def result_of(response: requests.Response) -> dict:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["ok"] is True
    return body["result"]


# --- auth and content type ----------------------------------------------------------------


@pytest.mark.parametrize("token", [None, "", "wrong", TOKEN + "x", TOKEN[:-1]], ids=["none", "empty", "wrong",
                                                                                    "longer", "shorter"])
def test_a_missing_or_wrong_token_is_refused_and_nothing_changes(kiosk, token):
    before = kiosk.path.read_bytes()
    for path, body in [("/v1/config", {"settings": {"scan.fps": 8}}),
                       ("/v1/screen-message", {"text": "Store closes in 10 minutes", "seconds": 60}),
                       ("/v1/restart", {})]:
        response = kiosk.post(path, body, token=token)
        assert response.status_code == 401 and error_of(response)["code"] == "unauthorized", path
    time.sleep(0.4)  # longer than restart_delay_s: a refused restart must never come
    assert kiosk.path.read_bytes() == before
    assert kiosk.loop.interval == pytest.approx(1 / 10)
    assert kiosk.screen.banner is None and kiosk.events == []
    metrics = requests.get(kiosk.url + "metrics", timeout=5).text
    assert 'omnikiosk_kiosk_local_api_total{endpoint="/v1/config",outcome="unauthorized"} 1' in metrics


def test_another_scheme_with_the_right_token_is_refused(kiosk):
    response = requests.post(kiosk.url + "v1/restart", data="{}", timeout=5,
                             headers={"Authorization": f"Basic {TOKEN}", "Content-Type": "application/json"})
    assert response.status_code == 401 and kiosk.events == []


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"])
def test_only_json_is_accepted_so_no_web_page_can_post_here_without_a_preflight(kiosk, content_type):
    before = kiosk.path.read_bytes()
    response = kiosk.post("/v1/config", {"settings": {"scan.fps": 8}}, content_type=content_type)
    assert response.status_code == 415 and error_of(response)["code"] == "bad_request"
    assert kiosk.path.read_bytes() == before and kiosk.loop.interval == pytest.approx(1 / 10)


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b'"settings"'])
def test_a_body_that_is_not_a_json_object_is_refused(kiosk, raw):
    response = kiosk.post("/v1/config", None, raw=raw)
    assert response.status_code == 400 and error_of(response)["code"] == "bad_request"


def test_unknown_endpoints_answer_json(kiosk):
    response = kiosk.post("/v1/reboot", {})
    assert response.status_code == 404 and error_of(response)["code"] == "not_found"
    assert "/v1/config" in error_of(response)["message"]


# --- config.update --------------------------------------------------------------------------


def test_bad_values_are_refused_with_every_problem_and_the_file_stays_byte_for_byte(kiosk):
    before = kiosk.path.read_bytes()
    response = kiosk.post("/v1/config", {"settings": {"scan.fps": 0, "scan.fpz": 8, "camera.source": "webcam:0"}})
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "bad_args"
    assert "scan.fps = 0.0 is below the minimum 0.5" in error["message"]
    assert "unknown key 'scan.fpz'" in error["message"]
    assert "camera.source must start with camera:" in error["message"]
    assert kiosk.path.read_bytes() == before
    assert kiosk.loop.interval == pytest.approx(1 / 10) and kiosk.control.config["scan.fps"] == 10.0


@pytest.mark.parametrize("settings, problem", [
    ({"scan.fps": float("inf")}, "finite"),
    ({"scan.fps": "fast"}, "scan.fps must be float"),
    ({"scan": {"fps": 8}}, "dotted keys"),
    ({"scan.symbologies": ["qr", "aztec"]}, "aztec"),
    ({"scan.decoder": "zbar"}, "choose one of"),
    ({"log.level": "LOUD"}, "log.level"),
    ({"scan.fps.max": 8}, "not a table"),
    ({"brand.name": "Nordvik\x7f"}, "TOML"),  # a control character would make a file that cannot load again
    ({"tokens.jwks_file": "/nonexistent/jwks.json"}, "cannot read tokens.jwks_file"),
])
def test_each_kind_of_bad_value_is_refused_and_changes_nothing(kiosk, settings, problem):
    before = kiosk.path.read_bytes()
    response = kiosk.post("/v1/config", {"settings": settings})
    assert response.status_code == 400 and error_of(response)["code"] == "bad_args"
    assert problem in error_of(response)["message"]
    assert kiosk.path.read_bytes() == before


@pytest.mark.parametrize("body", [{}, {"settings": {}}, {"settings": {"scan.fps": 8}, "target": "agent"},
                                  {"settings": {"scan.fps": 8}, "force": True}])
def test_a_config_update_needs_settings_for_the_kiosk(kiosk, body):
    response = kiosk.post("/v1/config", body)
    assert response.status_code == 400 and error_of(response)["code"] == "bad_args"


def test_a_good_update_rewrites_the_file_applies_live_and_keeps_the_shoppers_session(kiosk):
    session = kiosk.start_session()
    view = kiosk.screen.current
    assert view["view"] == "product"
    response = kiosk.post("/v1/config", {"settings": {"scan.fps": 8, "brand.name": "Nordvik Amsterdam",
                                                      "agent.timeout_s": 0.5, "scan.debounce_s": 2.0}})
    assert result_of(response) == {"applied": ["agent.timeout_s", "brand.name", "scan.debounce_s", "scan.fps"],
                                   "restart_required": [], "overridden": []}
    reloaded = load_config(kiosk.path, {})  # the next start reads what was written
    assert reloaded["scan.fps"] == 8.0 and reloaded["brand.name"] == "Nordvik Amsterdam"
    assert reloaded["store"] == "s001" and reloaded["camera.source"].startswith("folder:")  # the rest is kept
    assert oct(kiosk.path.stat().st_mode & 0o777) == oct(0o640)
    # live, in the running objects
    assert kiosk.loop.interval == pytest.approx(1 / 8)
    assert kiosk.loop.scanner.debouncer.window_s == 2.0
    assert kiosk.shopper.hub.timeout_s == 0.5
    # the shopper in front of the kiosk noticed nothing
    assert kiosk.shopper.session is not None and kiosk.shopper.session.id == session
    assert kiosk.screen.current is view
    assert "Nordvik Amsterdam" in requests.get(kiosk.url, timeout=5).text


def test_a_restart_only_key_is_written_and_reported_but_not_applied(kiosk):
    port = kiosk.control.config["web.port"]
    response = kiosk.post("/v1/config", {"settings": {"web.port": 9123, "session.idle_timeout_s": 45}})
    assert result_of(response) == {"applied": ["session.idle_timeout_s"], "restart_required": ["web.port"],
                                   "overridden": []}
    assert load_config(kiosk.path, {})["web.port"] == 9123
    assert kiosk.control.config["web.port"] == port and kiosk.shopper.idle_timeout_s == 45
    # still pending at the next update, until the kiosk restarts
    again = kiosk.post("/v1/config", {"settings": {"scan.fps": 5}})
    assert result_of(again)["restart_required"] == ["web.port"]


def test_new_frame_source_is_opened_and_a_bad_one_keeps_the_camera_in_use(kiosk, tmp_path):
    old = kiosk.loop.source
    other = tmp_path / "other-cam"
    result_of(kiosk.post("/v1/config", {"settings": {"camera.source": f"folder:{other}"}}))
    assert isinstance(kiosk.loop.source, FolderSource) and kiosk.loop.source.folder == other
    assert kiosk.loop.source is not old
    before = kiosk.path.read_bytes()
    response = kiosk.post("/v1/config", {"settings": {"camera.source": f"video:{tmp_path / 'missing.mp4'}"}})
    assert response.status_code == 400 and "the camera in use before was kept" in error_of(response)["message"]
    assert kiosk.path.read_bytes() == before
    assert isinstance(kiosk.loop.source, FolderSource) and kiosk.loop.source.folder == other


def test_decoder_settings_rebuild_the_decoder(kiosk):
    decoder = kiosk.loop.decoder
    result_of(kiosk.post("/v1/config", {"settings": {"scan.decoder": "pyzbar"}}))
    assert kiosk.loop.decoder is not decoder and type(kiosk.loop.decoder).__name__ == "AlternatingDecoder"


def test_sending_tokens_settings_reloads_the_member_token_keys(kiosk, tmp_path):
    rotated = write_jwks(tmp_path / "rotated.json")
    result_of(kiosk.post("/v1/config", {"settings": {"tokens.jwks_file": str(tmp_path / "rotated.json"),
                                                     "tokens.issuer": "https://shop.example"}}))
    assert kiosk.shopper.keys.kids == [rotated.kid] and kiosk.shopper.issuer == "https://shop.example"


def test_an_environment_override_still_wins_and_is_reported(tmp_path):
    kiosk = RunningKiosk(tmp_path, environ={"OMNIKIOSK_SCAN_FPS": "5"})
    try:
        result = result_of(kiosk.post("/v1/config", {"settings": {"scan.fps": 8, "scan.debounce_s": 2.5}}))
        assert result == {"applied": ["scan.debounce_s"], "restart_required": [], "overridden": ["scan.fps"]}
        assert load_config(kiosk.path, {})["scan.fps"] == 8.0  # written
        assert kiosk.loop.interval == pytest.approx(1 / 5)     # but the environment decides
    finally:
        kiosk.close()


def test_a_kiosk_without_a_config_file_answers_409(tmp_path):
    kiosk = RunningKiosk(tmp_path, with_file=False)
    try:
        response = kiosk.post("/v1/config", {"settings": {"scan.fps": 8}})
        assert response.status_code == 409 and "--config" in error_of(response)["message"]
        assert kiosk.loop.interval == pytest.approx(1 / 10)
    finally:
        kiosk.close()


def test_calls_are_logged_without_the_token(kiosk, caplog):
    with caplog.at_level(logging.INFO):
        kiosk.post("/v1/config", {"settings": {"scan.fps": 8}})
        kiosk.post("/v1/config", {"settings": {"scan.fps": 8}}, token="guess")
    calls = [r for r in caplog.records if r.getMessage() == "local API call"]
    assert [(r.endpoint, r.status, r.outcome) for r in calls] == [("/v1/config", 200, "ok"),
                                                                  ("/v1/config", 401, "unauthorized")]
    assert calls[0].keys == ["scan.fps"]
    assert not any(TOKEN in json.dumps(vars(r), default=str) for r in caplog.records)


# --- the pure parts ---------------------------------------------------------------------------


def test_every_setting_is_live_or_needs_a_restart_as_documented():
    assert {s.key for s in SETTINGS if not is_live(s.key)} == RESTART_ONLY
    doc = (ROOT / "docs" / "kiosk.md").read_text()
    for key in RESTART_ONLY:
        assert f"`{key}`" in doc.split("## Remote control from IT", 1)[1], key


def test_changed_keys_and_plan_of_an_update():
    running = Config({"scan.fps": 10.0, "web.port": 8080, "brand.name": "A", "log.level": "INFO"})
    new = Config({"scan.fps": 10.0, "web.port": 9000, "brand.name": "B", "log.level": "INFO"})
    assert changed_keys(running, new) == ["brand.name", "web.port"]
    plan = plan_update(running, new, ["scan.fps", "web.port", "log.level"], {"OMNIKIOSK_LOG_LEVEL": "INFO"})
    # brand.name was edited by hand in the file: it takes effect too, so it is reported
    assert plan.applied == ["brand.name", "scan.fps"]
    assert plan.restart_required == ["web.port"] and plan.overridden == ["log.level"]


# --- screen.message ---------------------------------------------------------------------------


@pytest.mark.parametrize("body", [{"text": ""}, {"text": "   "}, {"text": "x" * 201}, {"text": "Hi", "seconds": 0},
                                  {"text": "Hi", "seconds": 3601}, {"text": "Hi", "seconds": "60"},
                                  {"text": "Hi", "seconds": 1.5}, {"text": "Hi", "colour": "red"}, {"seconds": 60}])
def test_screen_message_arguments_are_checked(kiosk, body):
    response = kiosk.post("/v1/screen-message", body)
    assert response.status_code == 400 and error_of(response)["code"] == "bad_args"
    assert kiosk.screen.banner is None


def test_screen_message_answers_until_when_and_keeps_the_view_and_session(kiosk):
    session = kiosk.start_session()
    view = kiosk.screen.current
    asked = datetime.now(timezone.utc)
    result = result_of(kiosk.post("/v1/screen-message", {"text": "Store closes in 10 minutes", "seconds": 600}))
    assert result["shown_until"].endswith("Z")
    until = parse_ts(result["shown_until"])
    assert asked + timedelta(seconds=599) <= until <= datetime.now(timezone.utc) + timedelta(seconds=600)
    assert kiosk.screen.active_banner() == {"text": "Store closes in 10 minutes",
                                            "until_ms": int(until.timestamp() * 1000)}
    assert kiosk.screen.current is view and kiosk.shopper.session.id == session


# --- restart ----------------------------------------------------------------------------------


def test_restart_answers_first_then_calls_on_restart(kiosk):
    response = kiosk.post("/v1/restart", {})
    kiosk.events.append("answered")
    assert result_of(response) == {"restarting": True}
    wait_for(lambda: "restart" in kiosk.events, timeout=5, what="on_restart")
    assert kiosk.events == ["answered", "restart"]


def test_restart_of_the_agent_is_not_the_kiosks(kiosk):
    response = kiosk.post("/v1/restart", {"target": "agent"})
    assert response.status_code == 400 and error_of(response)["code"] == "bad_args"
    time.sleep(0.4)
    assert kiosk.events == []


# --- the banner and the reload in real Chromium -----------------------------------------------


@pytest.fixture(scope="module")
def chromium():
    browser = Browser(800, 480)
    yield browser
    browser.close()


BANNER_SHOWN = "document.getElementById('banner').classList.contains('is-shown')"


def box(browser: Browser, selector: str) -> dict:
    return browser.evaluate(f"""(() => {{ const view = document.querySelector(
        `.view[data-for='${{document.getElementById('app').dataset.view}}']`);
        const e = [...view.querySelectorAll({json.dumps(selector)})].find(x => x.getBoundingClientRect().width)
          || document.querySelector({json.dumps(selector)});
        const r = e.getBoundingClientRect(), x = r.left + r.width / 2, y = r.top + r.height / 2;
        return {{top: r.top, bottom: r.bottom, hit: e.contains(document.elementFromPoint(x, y))}}; }})()""")


@pytest.mark.parametrize("size", [(800, 480), (1280, 800)])
def test_banner_shows_over_the_product_screen_then_goes_and_the_view_stays(kiosk, chromium, size):
    resize(chromium, *size)
    load(chromium, kiosk.url)
    show(kiosk, chromium, product(member=JANE, member_offer=GOLD10, can_send_to_cart=True))
    text = ("The store closes in 10 minutes. Please bring your purchases to the tills at the front. "
            "Click & collect orders can be picked up at the service desk until 21:00.")
    result_of(kiosk.post("/v1/screen-message", {"text": text, "seconds": 5}))
    chromium.wait_for(BANNER_SHOWN)
    chromium.evaluate("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
    assert chromium.evaluate("document.getElementById('banner-text').textContent") == text
    assert chromium.evaluate("document.getElementById('banner').getAttribute('aria-live')") == "polite"
    # the shopper's screen is still the product, whole: nothing covers Done or runs into the buttons
    assert chromium.evaluate("document.getElementById('app').dataset.view") == "product"
    assert chromium.evaluate("document.getElementById('product-name').textContent") == "Knit Ankle Boot, Rust"
    banner, done, actions = box(chromium, "#banner"), box(chromium, "[data-action='done']"), box(chromium, ".actions")
    assert done["hit"] and banner["bottom"] <= done["top"]
    assert box(chromium, ".product-main")["bottom"] <= actions["top"] + 0.5
    assert box(chromium, ".product-side")["bottom"] <= actions["top"] + 0.5
    assert no_page_scroll(chromium)
    # a reloaded page shows it again for the time that is left
    load(chromium, kiosk.url)
    chromium.wait_for(f"document.getElementById('app').dataset.view === 'product' && {BANNER_SHOWN}")
    # then it goes by itself (the server sends nothing more), and the view stays
    chromium.wait_for(f"!{BANNER_SHOWN}", timeout=10)
    assert chromium.evaluate("document.getElementById('banner-text').textContent") == ""
    assert chromium.evaluate("document.getElementById('app').dataset.view") == "product"
    assert not chromium.errors(), chromium.errors()


def test_a_banner_whose_time_has_passed_is_not_shown(kiosk, chromium):
    resize(chromium, 800, 480)
    load(chromium, kiosk.url)
    kiosk.socketio.emit("banner", {"text": "Old news", "until_ms": int(time.time() * 1000) - 1000})
    kiosk.socketio.emit("notice", {"kind": "cart", "text": "marker"})  # arrives after the banner
    chromium.wait_for("document.getElementById('toast-text').textContent === 'marker'")
    assert not chromium.evaluate(BANNER_SHOWN)


def test_new_brand_settings_reload_the_page_and_keep_the_members_screen(kiosk, chromium):
    resize(chromium, 800, 480)
    load(chromium, kiosk.url)
    show(kiosk, chromium, member())
    chromium.evaluate("window.__previous = true")
    result_of(kiosk.post("/v1/config", {"settings": {"brand.name": "Nordvik Amsterdam", "brand.primary": "#7a1f5c"}}))
    chromium.wait_for("!window.__previous && document.body.dataset.socket === 'connected'")
    chromium.wait_for("document.getElementById('app').dataset.view === 'member'")
    assert chromium.evaluate("document.querySelector('.brand-name').textContent") == "Nordvik Amsterdam"
    assert chromium.evaluate("getComputedStyle(document.documentElement).getPropertyValue('--primary')") == "#7a1f5c"
    assert "Welcome back, Jane" in chromium.evaluate("document.body.innerText")


# --- the real process: /healthz telemetry, a live update and a clean restart ------------------


def test_a_running_kiosk_reports_telemetry_updates_live_and_restarts_cleanly(tmp_path):
    path = write_config(tmp_path, web={"port": free_port()})
    port = load_config(path, {})["web.port"]
    url = f"http://127.0.0.1:{port}/"
    environ = {k: v for k, v in os.environ.items() if not k.startswith("OMNIKIOSK_")}
    process = subprocess.Popen([sys.executable, "-m", "kiosk", "run", "--config", str(path)], cwd=ROOT, env=environ,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        def health():
            try:
                return requests.get(url + "healthz", timeout=2).json()
            except requests.RequestException:
                assert process.poll() is None, process.stdout.read()
                return None
        state = wait_for(health, timeout=60, what="the kiosk's /healthz")
        assert {"ok", "camera", "scan_fps", "decode_ms", "session_active", "outbox_depth", "catalog_version",
                "version"} <= set(state)
        assert state["version"] == version("omnikiosk")
        assert state["session_active"] is False and state["outbox_depth"] == 0
        assert isinstance(state["scan_fps"], (int, float)) and state["camera"] in ("waiting", "ok")
        token_file = tmp_path / "local-api.token"
        assert token_file.stat().st_mode & 0o777 == 0o600  # created by the kiosk
        token = token_file.read_text().strip()
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        update = requests.post(url + "v1/config", json={"settings": {"scan.fps": 4}}, headers=headers, timeout=10)
        assert update.json() == {"ok": True, "result": {"applied": ["scan.fps"], "restart_required": [],
                                                        "overridden": []}}
        assert requests.post(url + "v1/restart", json={}, headers=headers, timeout=10).json()["result"] == {
            "restarting": True}
        assert process.wait(20) == 0
        output = process.stdout.read()
        assert "local API call" in output and token not in output
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(10)
