"""Settings: TOML plus OMNIKIOSK_* overrides, typed, with messages that say where and what is allowed."""

from __future__ import annotations

import pytest

from hub.config import load_config as load_hub_config
from protocol.settings import ConfigError, Setting, parse

SETTINGS = [Setting("store", None, "store id", kind=str), Setting("mqtt.port", 1883, "port", minimum=1),
            Setting("demo", False, "demo mode"), Setting("log.level", "INFO", "level", choices=("INFO", "DEBUG")),
            Setting("scan.symbologies", ["qr"], "types")]


def test_defaults_toml_and_environment_merge_in_that_order():
    config = parse(SETTINGS, {"store": "s001", "mqtt": {"port": 1884}}, {"OMNIKIOSK_MQTT_PORT": "1885",
                                                                         "OMNIKIOSK_DEMO": "yes"})
    assert (config["store"], config["mqtt.port"], config["demo"], config["log.level"]) == ("s001", 1885, True, "INFO")


def test_environment_list_is_comma_separated():
    config = parse(SETTINGS, {"store": "s"}, {"OMNIKIOSK_SCAN_SYMBOLOGIES": "qr, ean13"})
    assert config["scan.symbologies"] == ["qr", "ean13"]


@pytest.mark.parametrize("document, environ, message", [
    ({}, {}, "store is required"),
    ({"store": "s", "mqtt": {"prot": 1}}, {}, "unknown key 'mqtt.prot'"),
    ({"store": "s", "mqtt": {"port": "1883"}}, {}, "mqtt.port must be int"),
    ({"store": "s", "mqtt": {"port": 0}}, {}, "below the minimum"),
    ({"store": "s", "log": {"level": "LOUD"}}, {}, "choose one of: INFO, DEBUG"),
    ({"store": "s"}, {"OMNIKIOSK_DEMO": "maybe"}, "OMNIKIOSK_DEMO: demo must be true or false"),
    ({"store": "s"}, {"OMNIKIOSK_MQTT_PORT": "x"}, "must be a number"),
])
def test_bad_config_names_the_source_and_the_key(document, environ, message):
    with pytest.raises(ConfigError, match=message):
        parse(SETTINGS, document, environ, source="kiosk.toml")


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as error:
        parse(SETTINGS, {"mqtt": {"port": 0}, "bogus": 1}, {})
    assert str(error.value).count("\n") == 2


HUB_REQUIRED = ('store = "s001"\n[mqtt]\npassword_file = "p"\n[online]\nbase_url = "http://x"\napi_key_file = "k"\n')


def test_hub_refuses_to_run_without_tls_and_session_key_outside_demo_mode(tmp_path):
    path = tmp_path / "hub.toml"
    path.write_text(HUB_REQUIRED)
    with pytest.raises(ConfigError) as error:
        load_hub_config(path, environ={})
    assert "secret_key_file is required outside demo mode" in str(error.value)
    assert "tls_cert and web.tls_key are required" in str(error.value)


def test_hub_refuses_demo_mode_on_a_network_address(tmp_path):
    path = tmp_path / "hub.toml"
    path.write_text('demo = true\n' + HUB_REQUIRED.replace("[mqtt]", '[web]\nhost = "0.0.0.0"\n[mqtt]'))
    with pytest.raises(ConfigError, match="web.host must be loopback"):
        load_hub_config(path, environ={})


def test_hub_demo_mode_on_loopback_is_accepted(tmp_path):
    path = tmp_path / "hub.toml"
    path.write_text('demo = true\n' + HUB_REQUIRED)
    assert load_hub_config(path, environ={})["demo"] is True


def test_a_float_setting_refuses_nan_and_infinity():
    from edge_agent.config import parse_document
    for raw in (float("nan"), float("inf")):
        with pytest.raises(ConfigError, match="must be a finite number"):
            parse_document({"store": "s001", "device": "s001-k01", "mqtt": {"password_file": "p",
                                                                            "reconnect_min_s": raw}}, {}, "agent.toml")
    with pytest.raises(ConfigError, match="must be a finite number"):
        parse_document({"store": "s001", "device": "s001-k01", "mqtt": {"password_file": "p"}},
                       {"OMNIKIOSK_DRAIN_POLL_S": "nan"}, "agent.toml")


def test_a_config_nested_too_deep_is_a_clear_exit(tmp_path):
    import subprocess
    import sys
    path = tmp_path / "agent.toml"
    path.write_text("a = " + "[" * 5000 + "]" * 5000 + "\n")
    run = subprocess.run([sys.executable, "-m", "edge_agent", "--config", str(path), "--check-config"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode != 0 and "nested too deep" in run.stderr and "Traceback" not in run.stderr
