"""A kiosk's first boot: cloud-init user-data, meta-data and network-config checked by the real cloud-init,
read back with PyYAML, and the Raspberry Pi config.txt fragment."""

from __future__ import annotations

import base64
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from firmware_config import boot, cloud_init
from firmware_config.bundle import BundleFile
from firmware_config.cloud_init import (
    check_network_config,
    check_user_data,
    meta_data,
    network_config,
    to_yaml,
    user_data,
)
from firmware_config.inventory import load_inventory
from yaml_reader import YAML_PYTHON, load_yaml, needs_pyyaml  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "firmware_config" / "examples" / "s001.toml"
MQTT_PASSWORD = "mqtt-pw: 'with quotes' and \\ backslash\n"
needs_cloud_init = pytest.mark.skipif(shutil.which("cloud-init") is None,
                                      reason="cloud-init is not installed (apt-get install cloud-init)")


@pytest.fixture
def inv():
    return load_inventory(EXAMPLE)


@pytest.fixture
def wifi_inv(inv):
    return replace(inv, network=replace(inv.network, mode="wifi", ssid="store devices", country="NL"))


def kiosk_files(kiosk_id: str) -> list[BundleFile]:
    return [
        BundleFile("kiosk.toml", f'[kiosk]\nid = "{kiosk_id}"\n', "/etc/omnikiosk/kiosk.toml", 0o640, "root",
                   "omnikiosk", restarts=("omnikiosk-kiosk.service",)),
        BundleFile("mqtt.password", MQTT_PASSWORD, "/etc/omnikiosk/mqtt.password", 0o600, "omnikiosk", "omnikiosk",
                   secret=True, restarts=("omnikiosk-agent.service",)),
        BundleFile("systemd/omnikiosk-kiosk.service", "[Unit]\nDescription=Omnikiosk scanner\n\n[Service]\n"
                   "ExecStart=/opt/omnikiosk/venv/bin/omnikiosk-kiosk\n", "/etc/systemd/system/omnikiosk-kiosk.service"),
        BundleFile("systemd/omnikiosk-browser.service", "[Unit]\nDescription=Omnikiosk screen\n",
                   "/etc/systemd/system/omnikiosk-browser.service"),
        BundleFile("README.txt", "how to flash the card\n", ""),   # not installed on the device
    ]


# --- user-data ----------------------------------------------------------------------------------

@needs_cloud_init
def test_user_data_of_every_example_kiosk_passes_cloud_init_schema(inv, tmp_path):
    for kiosk in inv.kiosks:
        path = tmp_path / f"{kiosk.id}-user-data"
        path.write_text(user_data(inv, kiosk, kiosk_files(kiosk.id)))
        check = check_user_data(path)
        assert check.ok, check.detail
        assert not check.skipped


@needs_cloud_init
def test_wifi_user_data_passes_cloud_init_schema(wifi_inv, tmp_path):
    path = tmp_path / "user-data"
    path.write_text(user_data(wifi_inv, wifi_inv.kiosks[0], kiosk_files(wifi_inv.kiosks[0].id)))
    assert check_user_data(path).ok


@needs_cloud_init
def test_a_broken_user_data_is_caught_with_cloud_inits_message(inv, tmp_path):
    good = user_data(inv, inv.kiosks[0], kiosk_files(inv.kiosks[0].id))
    wrong_type = tmp_path / "wrong-type"
    wrong_type.write_text(good.replace('permissions: "0640"', "permissions: 0640"))
    check = check_user_data(wrong_type)
    assert not check.ok and "permissions" in check.detail

    no_header = tmp_path / "no-header"
    no_header.write_text(good.replace("#cloud-config\n", "", 1))
    check = check_user_data(no_header)
    assert not check.ok and "#cloud-config" in check.detail

    not_yaml = tmp_path / "not-yaml"
    not_yaml.write_text(good + "runcmd: [unclosed\n")
    assert not check_user_data(not_yaml).ok


@needs_pyyaml
def test_user_data_sets_host_time_zone_and_logins(inv):
    kiosk = inv.kiosks[0]
    [doc] = load_yaml(user_data(inv, kiosk, kiosk_files(kiosk.id)))
    assert doc["hostname"] == doc["fqdn"] == kiosk.id
    assert doc["manage_etc_hosts"] is True and doc["preserve_hostname"] is False
    assert doc["timezone"] == "Europe/Amsterdam"
    assert doc["ssh_pwauth"] is False and doc["disable_root"] is True
    users = {user["name"]: user for user in doc["users"]}
    admin = users[inv.store.admin_user]
    assert admin["ssh_authorized_keys"] == list(inv.store.ssh_keys)
    assert admin["sudo"] == "ALL=(ALL) NOPASSWD:ALL" and admin["lock_passwd"] is True
    assert users["omnikiosk"]["system"] is True and users["omnikiosk"]["groups"] == ["video"]
    assert users["omnikiosk-screen"]["groups"] == ["video", "render", "input"]
    assert "default" not in users   # no image default user (pi) with a known password
    [sshd] = [f for f in doc["write_files"] if f["path"].startswith("/etc/ssh/sshd_config.d/")]
    assert {"PermitRootLogin no", "PasswordAuthentication no"} <= set(sshd["content"].splitlines())


@needs_pyyaml
def test_every_installed_file_is_written_with_its_owner_mode_and_the_secret_in_base64(inv):
    kiosk = inv.kiosks[0]
    files = kiosk_files(kiosk.id)
    text = user_data(inv, kiosk, files)
    [doc] = load_yaml(text)
    written = {entry["path"]: entry for entry in doc["write_files"]}
    assert set(written) == {f.dest for f in files if f.dest} | {"/etc/ssh/sshd_config.d/10-omnikiosk.conf"}
    for f in files:
        if not f.dest:
            continue
        entry = written[f.dest]
        assert entry["owner"] == f"{f.owner}:{f.group}"
        assert entry["permissions"] == f"{f.mode:04o}"
        content = base64.b64decode(entry["content"]).decode() if entry.get("encoding") == "b64" else entry["content"]
        assert content == f.content
    secret = written["/etc/omnikiosk/mqtt.password"]
    assert secret["encoding"] == "b64" and "with quotes" not in text
    # Files owned by users cloud-init creates wait for them; root's files need not.
    assert secret["defer"] is True and written["/etc/omnikiosk/kiosk.toml"]["defer"] is True
    assert "defer" not in written["/etc/systemd/system/omnikiosk-kiosk.service"]


@needs_pyyaml
def test_runcmd_builds_the_venv_installs_the_package_and_enables_the_units_found(inv):
    inv = replace(inv, install=replace(inv.install, package="omnikiosk==0.7.0",
                                       index_url="https://pypi.stores.omnikiosk.example/simple"))
    kiosk = inv.kiosks[0]
    [doc] = load_yaml(user_data(inv, kiosk, kiosk_files(kiosk.id)))
    runcmd = doc["runcmd"]
    assert runcmd[0] == "set -eu"
    venv = runcmd.index(["python3", "-m", "venv", "--system-site-packages", "/opt/omnikiosk/venv"])
    pip = next(i for i, c in enumerate(runcmd) if isinstance(c, list) and "pip" in c)
    assert runcmd[pip][-3:] == ["--index-url", "https://pypi.stores.omnikiosk.example/simple", "omnikiosk==0.7.0"]
    reload = runcmd.index(["systemctl", "daemon-reload"])
    enable = runcmd.index(["systemctl", "--no-block", "enable", "--now",
                           "omnikiosk-kiosk.service", "omnikiosk-browser.service"])
    assert venv < pip < reload < enable
    assert ["systemctl", "set-default", "graphical.target"] in runcmd
    assert "/boot/firmware/user-data" in runcmd[-1][-1]   # the seed with the secrets is blanked last


@needs_pyyaml
def test_packages_follow_the_camera(inv):
    picamera, usb = inv.kiosks[0], inv.kiosks[2]
    assert (picamera.camera, usb.camera) == ("picamera", "usb")
    [with_camera, with_usb] = load_yaml(user_data(inv, picamera, []), user_data(inv, usb, []))
    for doc in (with_camera, with_usb):
        assert {"python3-venv", "libzbar0", "cage", "chromium"} <= set(doc["packages"])
    assert "python3-picamera2" in with_camera["packages"]
    assert "python3-picamera2" not in with_usb["packages"]


def test_user_data_is_byte_identical_for_the_same_inventory(inv):
    kiosk = inv.kiosks[1]
    assert user_data(inv, kiosk, kiosk_files(kiosk.id)) == user_data(load_inventory(EXAMPLE), kiosk,
                                                                     kiosk_files(kiosk.id))


def test_checks_are_skipped_with_an_install_hint_when_cloud_init_is_missing(monkeypatch, tmp_path):
    monkeypatch.setattr(cloud_init.shutil, "which", lambda name: None)
    for check in (check_user_data(tmp_path / "user-data"), check_network_config(tmp_path / "network-config")):
        assert check.skipped and not check.ok and "apt-get install cloud-init" in check.detail


# --- meta-data and network-config --------------------------------------------------------------

@needs_pyyaml
def test_meta_data_gives_each_device_its_own_stable_instance_id(inv):
    docs = load_yaml(*(meta_data(inv, k) for k in inv.kiosks))
    assert [d["local-hostname"] for d in docs] == [k.id for k in inv.kiosks]
    assert len({d["instance-id"] for d in docs}) == len(inv.kiosks)
    assert meta_data(inv, inv.kiosks[0]) == meta_data(load_inventory(EXAMPLE), inv.kiosks[0])


@needs_pyyaml
def test_ethernet_uses_dhcp_or_the_fixed_address_through_network_manager(inv):
    dhcp, fixed = inv.kiosks[0], inv.kiosks[2]
    assert fixed.ip == "10.20.1.23"
    [on_dhcp, on_fixed] = load_yaml(network_config(inv, dhcp, None), network_config(inv, fixed, None))
    assert on_dhcp["network"]["renderer"] == "NetworkManager" and on_dhcp["network"]["version"] == 2
    assert on_dhcp["network"]["ethernets"]["eth0"] == {"dhcp4": True, "optional": False}
    eth0 = on_fixed["network"]["ethernets"]["eth0"]
    assert eth0["addresses"] == ["10.20.1.23/24"] and eth0["dhcp4"] is False
    assert eth0["routes"] == [{"to": "default", "via": "10.20.1.1"}]
    assert eth0["nameservers"] == {"addresses": ["10.20.1.1"]}
    assert "wifis" not in on_fixed["network"]


@needs_pyyaml
def test_wifi_joins_the_store_network_with_its_country(wifi_inv):
    [doc] = load_yaml(network_config(wifi_inv, wifi_inv.kiosks[0], "correct horse battery"))
    wlan0 = doc["network"]["wifis"]["wlan0"]
    assert wlan0["access-points"] == {"store devices": {"password": "correct horse battery"}}
    assert wlan0["regulatory-domain"] == "NL" and wlan0["dhcp4"] is True
    assert "ethernets" not in doc["network"]


@needs_pyyaml
def test_norway_stays_a_country_code_not_a_yaml_false(wifi_inv):
    norway = replace(wifi_inv, network=replace(wifi_inv.network, country="NO"))
    [doc] = load_yaml(network_config(norway, norway.kiosks[0], "correct horse battery"))
    assert doc["network"]["wifis"]["wlan0"]["regulatory-domain"] == "NO"


def test_wifi_without_a_usable_passphrase_is_refused_with_the_file_to_fix(wifi_inv):
    with pytest.raises(ValueError, match="wifi-psk"):
        network_config(wifi_inv, wifi_inv.kiosks[0], None)
    with pytest.raises(ValueError, match="8 to 63"):
        network_config(wifi_inv, wifi_inv.kiosks[0], "short")
    network_config(wifi_inv, wifi_inv.kiosks[0], "a" * 64)   # the 64-hex-digit key itself is fine


@needs_cloud_init
def test_cloud_init_parses_every_network_config_variant(inv, wifi_inv, tmp_path):
    variants = {
        "dhcp": network_config(inv, inv.kiosks[0], None),
        "fixed": network_config(inv, inv.kiosks[2], None),
        "wifi": network_config(wifi_inv, wifi_inv.kiosks[0], "correct horse battery"),
        "wifi-fixed": network_config(wifi_inv, wifi_inv.kiosks[2], "correct horse battery"),
    }
    for name, text in variants.items():
        path = tmp_path / name
        path.write_text(text)
        check = check_network_config(path)
        assert check.ok, f"{name}: {check.detail}"


@needs_cloud_init
def test_a_broken_network_config_is_caught(tmp_path):
    wrong_version = tmp_path / "wrong-version"
    wrong_version.write_text("network:\n  version: 3\n")
    not_yaml = tmp_path / "not-yaml"
    not_yaml.write_text("network: [\n")
    for path in (wrong_version, not_yaml):
        check = check_network_config(path)
        assert not check.ok and check.detail


# --- the YAML writer -----------------------------------------------------------------------------

TRICKY = ["", " ", "yes", "No", "ON", "null", "~", "0644", "1_000", "1e3", ".inf", "-1", "-m", "--now", "- x", "-",
          "---", "a: b", "a #b", "#x", "'q'", '"q"', "{{ item.dest }}", "[a]", "a, b", "é ü 漢字", "tab\there",
          "\x00\x07\x1b", "\u2028", "\ufeff", "\U0001F600", "nbsp\xa0x", "line1\nline2", "line1\nline2\n", "a\n\n",
          "\n", "\n\n", "\nlead", "  indented\nx", "x\n  y\n", "\tt\nx", "x\r\ny", "trailing  \nspace \n",
          "   \n  \nx\n", "2001-12-14", "0x1F", "+1", ".5", "1:20", "=", "<<", "@at", "!t", "&a", "*a", "|x", ">x",
          "?x", "%p", "ends with \\", "/etc/omnikiosk/kiosk.toml"]


@needs_pyyaml
def test_yaml_writer_round_trips_awkward_strings_through_pyyaml():
    values = [{"k": s, "list": [s, {"in": s}], "flow": [[s, "a"]], "nested": {"deep": [s, 1, True, None]}}
              for s in TRICKY]
    values.append({"empty_map": {}, "empty_list": [], "int": 5, "bool": False, "none": None, "key with space": "v"})
    assert load_yaml(*(to_yaml(v) for v in values)) == values


def test_yaml_writer_quotes_only_what_yaml_would_misread():
    text = to_yaml({"mode": "0600", "answer": "no", "path": "/etc/x", "flag": "--now", "list": ["a", "b"]})
    assert text == 'mode: "0600"\nanswer: "no"\npath: /etc/x\nflag: --now\nlist: [a, b]\n'


# --- config.txt --------------------------------------------------------------------------------

def active(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def test_config_txt_loads_kms_and_detects_the_display_without_a_splash(inv):
    lines = active(boot.config_txt(inv, inv.kiosks[0]))
    assert lines[0] == "[all]" and lines[-1] == "[all]"   # ends any section of the stock file, leaves [all]
    for setting in ("dtoverlay=vc4-kms-v3d", "display_auto_detect=1", "disable_splash=1"):
        assert setting in lines


def test_config_txt_probes_the_csi_camera_only_for_a_camera_module(inv):
    picamera, usb = inv.kiosks[0], inv.kiosks[2]
    assert "camera_auto_detect=1" in active(boot.config_txt(inv, picamera))
    usb_lines = active(boot.config_txt(inv, usb))
    assert "camera_auto_detect=0" in usb_lines and "camera_auto_detect=1" not in usb_lines


def test_config_txt_rotates_nothing_because_the_compositor_turns_picture_and_touch(inv):
    portrait = inv.kiosks[1]
    assert portrait.display_rotation == 90
    text = boot.config_txt(inv, portrait)
    rotation_settings = ("display_rotate", "lcd_rotate", "display_lcd_rotate", "swapxy", "invx", "invy", "rotate=")
    assert not [line for line in active(text) if any(word in line for word in rotation_settings)]
    assert "90 degrees" in text and "cage" in text and boot.TOUCH_RULE_DEST in text
    upright = replace(portrait, display_rotation=0)
    assert boot.config_txt(inv, upright) != text and active(boot.config_txt(inv, upright)) == active(text)


def test_config_txt_names_each_models_overlays_in_its_own_section(inv):
    lines = active(boot.config_txt(inv, inv.kiosks[0]))
    pi4, pi5 = lines.index("[pi4]"), lines.index("[pi5]")
    assert "dtoverlay=disable-bt" in lines[pi4:pi5] and "arm_boost=1" in lines[pi4:pi5]
    assert "dtoverlay=disable-bt-pi5" in lines[pi5:]
    assert "dtoverlay=disable-wifi" in lines[pi4:pi5] and "dtoverlay=disable-wifi-pi5" in lines[pi5:]


def test_config_txt_keeps_wifi_on_for_a_wifi_store(wifi_inv):
    assert not [line for line in active(boot.config_txt(wifi_inv, wifi_inv.kiosks[0])) if "disable-wifi" in line]


def test_config_txt_says_which_board_it_was_made_for_and_is_deterministic(inv):
    pi5, pi4 = inv.kiosks[0], inv.kiosks[2]
    assert "Raspberry Pi 5" in boot.config_txt(inv, pi5) and "Raspberry Pi 4" in boot.config_txt(inv, pi4)
    assert boot.config_txt(inv, pi5) == boot.config_txt(load_inventory(EXAMPLE), pi5)


def test_touch_rule_maps_touchscreens_to_the_dsi_output():
    rule = boot.touch_rule()
    assert 'ENV{ID_INPUT_TOUCHSCREEN}=="1"' in rule and 'ENV{WL_OUTPUT}="DSI-1"' in rule
    assert 'ENV{WL_OUTPUT}="HDMI-A-1"' in boot.touch_rule("HDMI-A-1")
