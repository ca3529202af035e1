"""The edge agent in a whole demo store (real processes): the kiosk's requests answered by the hub,
telemetry at the hub, IT's commands carried out and answered, the local API locked to its token."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor

import requests
from conftest import ROOT, wait_for

from demo.store import DemoStore
from protocol.commands import command_payload

KIOSK = "s001-k02"


def ask(store: DemoStore, method: str, params: dict, *, device: str = KIOSK, timeout_s: float = 2.0,
        token: str | None = None, content_type: str = "application/json") -> requests.Response:
    token = token if token is not None else (store.kiosk_dir(device) / "local-api.token").read_text().strip()
    return requests.post(f"http://127.0.0.1:{store.agent_ports[device]}/v1/requests",
                         data=json.dumps({"method": method, "params": params, "timeout_s": timeout_s}),
                         headers={"Authorization": f"Bearer {token}", "Content-Type": content_type}, timeout=10)


def hub_command(store: DemoStore, device: str, name: str, *args: str, wait: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hub", "command", device, name, *args, "--wait", str(wait),
                           "--config", str(store.root / "hub" / "hub.toml")],
                          cwd=ROOT, capture_output=True, text=True, timeout=wait + 30)


def result_of(completed: subprocess.CompletedProcess) -> dict:
    return json.loads(completed.stdout[completed.stdout.index("{"):])


def hub_rows(store: DemoStore, sql: str, params=()) -> list:
    with sqlite3.connect(store.root / "hub" / "hub.db", timeout=10) as conn:
        return conn.execute(sql, params).fetchall()


def a_product(store: DemoStore) -> str:
    from demo import seed
    return seed.build().products[3]["gtin"]


# --- requests

def test_member_welcome_through_the_agent_carries_offers_and_nothing_more_about_the_member(store):
    answer = ask(store, "member.welcome", {"member": "M0001"})
    assert answer.status_code == 200, answer.text
    result = answer.json()["result"]
    assert set(result) == {"first_name", "tier", "points", "offers", "wishlist_here"}
    assert (result["first_name"], result["tier"]) == ("Jane", "Gold") and result["points"] > 0
    assert result["offers"] and all(o["code"].startswith("OK-") and o["reason"] for o in result["offers"])
    assert "Cooper" not in answer.text and "@" not in answer.text


def test_product_detail_and_an_unknown_product_get_clear_answers(store):
    gtin = a_product(store)
    found = ask(store, "product.detail", {"gtin": gtin})
    assert found.status_code == 200 and found.json()["result"]["gtin"] == gtin
    assert set(found.json()["result"]["stock"]) == {"here", "nearby", "online"}
    missing = ask(store, "product.detail", {"gtin": "00000000000000"})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


def test_cart_add_puts_one_line_in_the_online_cart_however_often_it_is_asked(store):
    gtin, event_id = a_product(store), str(uuid.uuid4())
    for _ in range(3):
        answer = ask(store, "cart.add", {"member": "M0005", "gtin": gtin, "event_id": event_id})
        assert answer.status_code == 200 and answer.json()["result"]["status"] in ("added", "queued")
    api_key = (store.root / "online" / "api_key").read_text().strip()

    def lines():
        profile = requests.get(f"http://127.0.0.1:{store.online_port}/api/v1/customers/M0005", timeout=5,
                               headers={"Authorization": f"Bearer {api_key}"}).json()
        return [line for line in profile["cart"]["items"] if line["gtin"] == gtin]
    wait_for(lines, what="the line in the online cart")
    assert len(lines()) == 1 and lines()[0]["quantity"] == 1


def test_catalog_changes_are_paged_for_a_device(store):
    page = ask(store, "catalog.changes", {"since": 0, "limit": 5}).json()["result"]
    assert page["version"] >= 1 and len(page["changes"]) <= 5 and page["next_cursor"]
    more = ask(store, "catalog.changes", {"since": 0, "limit": 5, "cursor": page["next_cursor"]}).json()
    assert more["ok"] and more["result"]["changes"][0]["key"] != page["changes"][0]["key"]


def test_twenty_requests_at_once_are_all_answered(store):
    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda n: ask(store, "member.welcome", {"member": f"M{n + 1:04d}"}), range(20)))
    assert [a.status_code for a in answers] == [200] * 20
    assert len({a.json()["result"]["first_name"] for a in answers}) > 5


def test_the_local_api_wants_its_token_and_json(store):
    assert ask(store, "member.welcome", {"member": "M0001"}, token="wrong").status_code == 401
    assert ask(store, "member.welcome", {"member": "M0001"}, token="").status_code == 401
    assert ask(store, "member.welcome", {"member": "M0001"}, content_type="text/plain").status_code == 415
    unknown = ask(store, "member.export", {})
    assert unknown.status_code == 400 and unknown.json()["error"]["code"] == "unknown_method"
    health = requests.get(f"http://127.0.0.1:{store.agent_ports[KIOSK]}/healthz", timeout=5).json()
    assert health["connected"] and health["hub_online"] and "M0001" not in json.dumps(health)


# --- telemetry

def test_every_device_reports_its_health_to_the_hub(store):
    def reports():
        return {device: json.loads(t) for device, t in hub_rows(store, "SELECT id, telemetry FROM devices") if t}
    got = wait_for(lambda: len(reports()) == len(store.kiosks) and reports(), timeout=30, what="telemetry")
    report = got[KIOSK]
    assert report["device"] == KIOSK and report["versions"]["agent"]
    assert set(report["outbox"]) >= {"depth", "bytes", "oldest_age_s", "dropped", "refused", "awaiting_receipt"}
    assert report["scan"]["camera"] in ("ok", "waiting") and report["mqtt"]["hub_online"] is True
    assert report["catalog_version"] >= 1 and report["disk_free_mb"] > 0


# --- commands from IT

def test_a_screen_message_is_shown_and_answered(store):
    completed = hub_command(store, KIOSK, "screen.message", "--arg", "text=Store closes in 10 minutes",
                            "--arg", "seconds=30")
    assert completed.returncode == 0, completed.stderr
    result = result_of(completed)
    assert result["ok"] and result["device"] == KIOSK and result["result"]["shown_until"].endswith("Z")


def test_a_config_update_with_a_bad_value_is_answered_with_the_reason_and_changes_nothing(store):
    config = store.kiosk_dir(KIOSK) / "kiosk.toml"
    before = config.read_bytes()
    completed = hub_command(store, KIOSK, "config.update", "--args", '{"settings": {"scan.fps": 0}}')
    result = result_of(completed)
    assert completed.returncode == 1 and result["ok"] is False
    assert result["error"]["code"] == "bad_args" and "scan.fps" in result["error"]["message"]
    assert config.read_bytes() == before


def test_a_good_config_update_is_applied_and_written(store):
    completed = hub_command(store, KIOSK, "config.update", "--args", '{"settings": {"scan.debounce_s": 2.5}}')
    assert completed.returncode == 0, completed.stderr
    assert result_of(completed)["result"]["applied"] == ["scan.debounce_s"]
    assert "debounce_s = 2.5" in (store.kiosk_dir(KIOSK) / "kiosk.toml").read_text()


def test_a_command_the_cli_refuses_is_not_sent(store):
    completed = hub_command(store, KIOSK, "screen.message", "--arg", "text=", wait=0)
    assert completed.returncode == 2 and "text must be" in completed.stderr


def test_unknown_garbage_and_repeated_commands_get_clear_answers_and_the_agent_lives_on(store, broker_as_hub):
    publish = broker_as_hub
    publish(KIOSK, command_payload("cmd-unknown-1", "self.destruct"))
    publish(KIOSK, b"\x00\xffnot a command")
    publish(KIOSK, command_payload("cmd-twice-1", "catalog.resync"))
    publish(KIOSK, command_payload("cmd-twice-1", "catalog.resync"))

    def results():
        rows = hub_rows(store, "SELECT data FROM events WHERE type = 'command.result' AND device = ?", [KIOSK])
        return {json.loads(r[0])["command_id"]: json.loads(r[0]) for r in rows}
    wait_for(lambda: {"cmd-unknown-1", "cmd-twice-1"} <= set(results()), timeout=30, what="both results")
    unknown = results()["cmd-unknown-1"]
    assert unknown["ok"] is False and unknown["error"]["code"] == "unknown_command"
    assert results()["cmd-twice-1"]["ok"] is True
    count = hub_rows(store, "SELECT count(*) FROM events WHERE type = 'command.result' "
                            "AND json_extract(data, '$.command_id') = 'cmd-twice-1'")[0][0]
    assert count == 1, "a redelivered command is carried out once"
    metrics = requests.get(f"http://127.0.0.1:{store.agent_ports[KIOSK]}/metrics", timeout=5).text
    assert 'omnikiosk_agent_commands_total{outcome="bad_command"} 1' in metrics
    assert 'omnikiosk_agent_commands_total{outcome="duplicate"} 1' in metrics


def test_restart_ends_the_agent_which_comes_back_and_answers(store):
    completed = hub_command(store, KIOSK, "restart", wait=0)
    assert completed.returncode == 0, completed.stderr
    command_id = completed.stdout.split("(id ")[1].split(")")[0]
    process = store.processes[f"{KIOSK}-agent"]
    process.wait(20)
    assert process.returncode == 0, "a restart is a clean exit; systemd (here: the demo) starts it again"
    assert store.supervise() == [f"{KIOSK}-agent"]
    from hub.fleet import wait_for_result
    result = wait_for_result(str(store.root / "hub" / "hub.db"), command_id, timeout_s=30)
    assert result and result["ok"] and result["result"] == {"restarting": "agent"}
    wait_for(lambda: agent_health(store, KIOSK).get("hub_online"), timeout=30, what="the agent back and delivering")


def agent_health(store: DemoStore, device: str) -> dict:
    try:
        return requests.get(f"http://127.0.0.1:{store.agent_ports[device]}/healthz", timeout=2).json()
    except (requests.RequestException, ValueError):
        return {}


# --- fixtures

import pytest  # noqa: E402


@pytest.fixture
def broker_as_hub(store):
    """Publish raw bytes on a device's commands topic with the hub's credentials (as IT's tools would)."""
    import threading

    import paho.mqtt.client as mqtt
    login_user = store.broker.hub_user
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-it-tool", protocol=mqtt.MQTTv5)
    client.username_pw_set(login_user, store.broker.passwords[login_user])
    connected = threading.Event()
    client.on_connect = lambda *a: connected.set()
    client.connect(store.broker.host, store.broker.port)
    client.loop_start()
    assert connected.wait(10)

    def publish(device: str, payload: bytes) -> None:
        client.publish(f"omnikiosk/s001/devices/{device}/commands", payload, qos=1).wait_for_publish(10)
    yield publish
    client.disconnect()
    client.loop_stop()


def test_the_agent_measures_the_hubs_clock_for_the_kiosk(store):
    from datetime import datetime, timezone

    from protocol.envelope import parse_ts
    answer = ask(store, "clock.now", {})
    assert answer.status_code == 200, answer.text
    hub_now = parse_ts(answer.json()["result"]["now"])
    assert abs((hub_now - datetime.now(timezone.utc)).total_seconds()) < 5
    # on the hub coming online the agent measured the offset into the file the kiosk reads
    outbox = store.kiosk_dir(KIOSK) / "outbox.db"
    wait_for(lambda: sqlite3.connect(outbox).execute("SELECT count(*) FROM sqlite_master WHERE name = 'hub_clock'")
             .fetchone()[0] and sqlite3.connect(outbox).execute("SELECT count(*) FROM hub_clock").fetchone()[0],
             timeout=30, what="the agent's clock measurement in outbox.db")
    offset_ms, rtt_ms = sqlite3.connect(outbox).execute("SELECT offset_ms, rtt_ms FROM hub_clock").fetchone()
    assert abs(offset_ms) < 1000 and 0 <= rtt_ms < 5000   # same machine: the same clock
