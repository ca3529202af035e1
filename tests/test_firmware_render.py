"""firmware_config: inventory errors, deterministic renders, secrets kept and rotated, and validation that can fail."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from example_store import EXAMPLES, copy_example_store

from firmware_config.inventory import InventoryError, load_inventory
from firmware_config.render import RenderError, plan, write
from firmware_config.secrets import Secrets
from firmware_config.validate import check_files, check_tls, validate

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = EXAMPLES / "s001.toml"


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    """A copy of the example inventory with its JWKS and central CA, as IT would keep it."""
    return copy_example_store(tmp_path / "stores").parent


def render(inventory: Path, out: Path, secrets: Path | None = None, rotate: bool = False):
    inv = load_inventory(inventory)
    store = Secrets(secrets or inventory.parent / "secrets", rotate=rotate)
    result = plan(inv, store)
    return result, write(result, out), store


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def broken(store_dir: Path, *edits: tuple[str, str]) -> list[str]:
    text = (store_dir / "s001.toml").read_text()
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new, 1)
    path = store_dir / "broken.toml"
    path.write_text(text)
    with pytest.raises(InventoryError) as caught:
        load_inventory(path)
    return caught.value.problems


def line_of(store_dir: Path, needle: str, name: str = "broken.toml") -> int:
    for number, line in enumerate((store_dir / name).read_text().splitlines(), start=1):
        if needle in line:
            return number
    raise AssertionError(needle)


# --- the inventory -------------------------------------------------------------------------------

def test_example_inventory_describes_a_hub_and_three_kiosks():
    inv = load_inventory(EXAMPLE)
    assert inv.hub.id == "s001-hub"
    assert [k.id for k in inv.kiosks] == ["s001-k01", "s001-k02", "s001-k03"]
    shoes = inv.device("s001-k02")
    assert (shoes.location, shoes.display_rotation, shoes.camera_rotation) == ("Shoes, aisle 4", 90, 180)
    assert shoes.decoder == "zxing" and shoes.display_inches == 10.1   # kiosk_defaults, then its own block
    assert inv.device("s001-k03").camera_source == "camera:0"
    assert inv.bridge and inv.bridge.username == "bridge-s001"


def test_duplicate_ids_name_both_lines(store_dir):
    problems = broken(store_dir, ('id = "s001-k02"', 'id = "s001-k01"'))
    first, second = line_of(store_dir, 'id = "s001-k01"'), None
    lines = [n for n, text in enumerate((store_dir / "broken.toml").read_text().splitlines(), 1)
             if 'id = "s001-k01"' in text]
    first, second = lines
    assert problems == [f"{store_dir / 'broken.toml'}:{second}: devices[1].id: 's001-k01' is used twice "
                        f"(first at line {first}, devices[0].id); every device needs its own id"]


@pytest.mark.parametrize("bad_id", ["S001-K03", "s001_k03", "s001/k03", "s001+k03", "-k03", "k" * 64])
def test_ids_must_be_topic_and_hostname_safe(store_dir, bad_id):
    problems = broken(store_dir, ('id = "s001-k03"', f'id = "{bad_id}"'))
    assert len(problems) == 1
    assert problems[0].startswith(f"{store_dir / 'broken.toml'}:{line_of(store_dir, bad_id)}: devices[2].id: ")
    assert "MQTT topic level and a hostname" in problems[0] and "a-z, 0-9 and '-'" in problems[0]


def test_unknown_key_says_what_is_allowed_and_guesses(store_dir):
    problems = broken(store_dir, ('resolution = "640x480"', 'resolutoin = "640x480"'))
    line = line_of(store_dir, "resolutoin")
    assert problems == [f"{store_dir / 'broken.toml'}:{line}: devices[2].resolutoin: unknown key; did you mean "
                        "'resolution'? allowed here: id, role, location, camera, camera_index, resolution, "
                        "camera_rotation, display_inches, display_rotation, decoder, symbologies, scan_fps, "
                        "idle_timeout_s, pi_model, ip"]


def test_unknown_section_is_refused(store_dir):
    problems = broken(store_dir, ("[install]", "[instal]"))
    assert len(problems) == 1 and "instal: unknown section; did you mean [install]?" in problems[0]


def test_resolution_beyond_the_decoder_is_refused(store_dir):
    problems = broken(store_dir, ('resolution = "640x480"', 'resolution = "1920x1080"\ndecoder = "pyzbar"'))
    line = line_of(store_dir, '"1920x1080"')
    assert problems == [f"{store_dir / 'broken.toml'}:{line}: devices[2].resolution: '1920x1080' is more than "
                        "decoder 'pyzbar' can read at the scan rate on a Raspberry Pi: at most 1280x720 (0.9 MP); "
                        "choose e.g. 1280x720 or decoder = \"zxing\""]
    problems = broken(store_dir, ('resolution = "640x480"', 'resolution = "3840x2160"'))
    assert "at most 1920x1080" in problems[0]
    problems = broken(store_dir, ('resolution = "640x480"', 'resolution = "1280 by 720"'))
    assert "must be WIDTHxHEIGHT in pixels, e.g. 1280x720" in problems[0]


def test_every_problem_is_listed_at_once(store_dir):
    problems = broken(store_dir,
                      ('timezone = "Europe/Amsterdam"', 'timezone = "Europe/Amsterdm"'),
                      ('hub_ip = "10.20.1.10"', 'hub_ip = "10.20.1"'),
                      ('display_rotation = 90', 'display_rotation = 45'),
                      ('camera = "usb"', 'camera = "webcam"'),
                      ('idle_timeout_s = 30', 'idle_timeout_s = "30"'),
                      ('mode = "ethernet"', 'mode = "wifi"'))
    text = "\n".join(problems)
    assert "store.timezone: 'Europe/Amsterdm' is not a time zone" in text
    assert "store.hub_ip: '10.20.1' must be an IPv4 or IPv6 address" in text
    assert "devices[1].display_rotation: 45 is not allowed; choose one of: 0, 90, 180, 270" in text
    assert "devices[2].camera: 'webcam' is not allowed; choose one of: picamera, usb" in text
    assert "kiosk_defaults.idle_timeout_s: must be a number, got a string '30'" in text
    assert "network.ssid: is required when mode = \"wifi\"" in text
    assert "network.country: is required when mode = \"wifi\"" in text
    assert all(p.startswith(f"{store_dir / 'broken.toml'}:") for p in problems)
    assert len(problems) == 7


def test_not_toml_names_the_line(store_dir):
    (store_dir / "broken.toml").write_text('[store]\nid = "s001"\nname = "x\n')
    with pytest.raises(InventoryError) as caught:
        load_inventory(store_dir / "broken.toml")
    assert caught.value.problems[0].startswith(f"{store_dir / 'broken.toml'}: 3: not valid TOML")


def test_missing_required_keys_and_files(store_dir):
    problems = broken(store_dir, ('location = "Fitting rooms"\n', ""), ('jwks_file = "online-jwks.json"',
                                                                       'jwks_file = "missing.json"'))
    text = "\n".join(problems)
    assert "devices[2].location: is required (where it stands" in text
    assert "online.jwks_file: 'missing.json' not found next to the inventory" in text


# --- rendering -----------------------------------------------------------------------------------

def test_render_twice_gives_identical_files(store_dir, tmp_path):
    render(store_dir / "s001.toml", tmp_path / "a")
    _, report, store = render(store_dir / "s001.toml", tmp_path / "b")
    assert store.made == []                                   # every secret was reused
    assert tree(tmp_path / "a") == tree(tmp_path / "b")
    _, again, _ = render(store_dir / "s001.toml", tmp_path / "a")
    assert again.written == [] and again.removed == [] and len(again.unchanged) == len(tree(tmp_path / "a"))


def test_secrets_are_private_and_rotate_on_request(store_dir, tmp_path):
    result, _, store = render(store_dir / "s001.toml", tmp_path / "out")
    secrets = store_dir / "secrets"
    assert secrets.stat().st_mode & 0o777 == 0o700
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in secrets.rglob("*") if p.is_file())
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o700
    password = (tmp_path / "out/kiosks/s001-k01/mqtt.password").read_text()
    assert password.strip() == (secrets / "mqtt/s001-k01.password").read_text().strip()
    assert (tmp_path / "out/kiosks/s001-k01/mqtt.password").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "out/kiosks/s001-k01/cloud-init/user-data").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "out/kiosks/s001-k01/kiosk.toml").stat().st_mode & 0o777 == 0o644
    before = tree(tmp_path / "out")
    render(store_dir / "s001.toml", tmp_path / "out", rotate=True)
    after = tree(tmp_path / "out")
    for rel in ("kiosks/s001-k01/mqtt.password", "hub/mosquitto/passwd", "hub/ca.crt", "hub/tls/hub.key",
                "hub/web-session.key", "hub/webhook-secret"):
        assert before[rel] != after[rel], rel
    assert before["kiosks/s001-k01/kiosk.toml"] == after["kiosks/s001-k01/kiosk.toml"]


def test_the_hub_certificate_follows_the_hub(store_dir, tmp_path):
    render(store_dir / "s001.toml", tmp_path / "out")
    key = (tmp_path / "out/hub/tls/hub.key").read_bytes()
    inventory = store_dir / "s001.toml"
    inventory.write_text(inventory.read_text().replace('hub_ip = "10.20.1.10"', 'hub_ip = "10.20.1.11"'))
    render(inventory, tmp_path / "out")
    checks = check_tls(tmp_path / "out", {"hub_host": "hub-s001.stores.omnikiosk.example", "hub_ip": "10.20.1.11"})
    assert all(c.ok for c in checks), [c.line() for c in checks]
    assert (tmp_path / "out/hub/tls/hub.key").read_bytes() == key   # same key, new certificate


def test_a_kiosk_taken_out_is_removed_from_the_output(store_dir, tmp_path):
    render(store_dir / "s001.toml", tmp_path / "out")
    inventory = store_dir / "s001.toml"
    text = inventory.read_text()
    inventory.write_text(text[:text.index('[[devices]]\nid = "s001-k03"')])
    _, report, _ = render(inventory, tmp_path / "out")
    assert not (tmp_path / "out/kiosks/s001-k03").exists()
    assert "kiosks/s001-k03/kiosk.toml" in report.removed
    assert "s001-k03" not in (tmp_path / "out/hub/mosquitto/acl").read_text()
    assert "s001-k03" not in (tmp_path / "out/hub/fleet.toml").read_text()


def test_render_refuses_a_folder_that_is_not_a_render(store_dir, tmp_path):
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "thesis.tex").write_text("precious")
    with pytest.raises(RenderError, match="not empty and holds no store.json"):
        render(store_dir / "s001.toml", tmp_path / "home")
    assert (tmp_path / "home" / "thesis.tex").read_text() == "precious"


def test_wifi_needs_its_passphrase_in_the_secrets_folder(store_dir, tmp_path):
    inventory = store_dir / "s001.toml"
    inventory.write_text(inventory.read_text().replace('mode = "ethernet"', 'mode = "wifi"\nssid = "store-devices"\n'
                                                                                  'country = "NL"'))
    with pytest.raises(RenderError, match=r"put it in .*secrets/wifi-psk"):
        render(inventory, tmp_path / "out")
    (store_dir / "secrets" / "wifi-psk").write_text("correct horse battery staple\n")
    render(inventory, tmp_path / "out")
    network = (tmp_path / "out/kiosks/s001-k01/cloud-init/network-config")
    assert "store-devices" in network.read_text() and network.stat().st_mode & 0o777 == 0o600


def test_configs_point_every_kiosk_at_the_hub_over_tls(store_dir, tmp_path):
    import tomllib
    render(store_dir / "s001.toml", tmp_path / "out")
    agent = tomllib.loads((tmp_path / "out/kiosks/s001-k02/agent.toml").read_text())
    assert agent["mqtt"] == {"host": "hub-s001.stores.omnikiosk.example", "port": 8883, "username": "s001-k02",
                             "password_file": "/etc/omnikiosk/mqtt.password", "tls_ca": "/etc/omnikiosk/ca.crt"}
    kiosk = tomllib.loads((tmp_path / "out/kiosks/s001-k02/kiosk.toml").read_text())
    assert kiosk["camera"]["rotation"] == 180 and kiosk["camera"]["source"] == "picamera:0"
    hub = tomllib.loads((tmp_path / "out/hub/hub.toml").read_text())
    assert hub["demo"] is False and hub["mqtt"]["host"] == "127.0.0.1" and hub["web"]["port"] == 443


# --- validation ----------------------------------------------------------------------------------

def test_validate_passes_on_a_render_with_real_tools(store_dir, tmp_path):
    out = tmp_path / "out"
    render(store_dir / "s001.toml", out)
    checks = validate(out)
    failed = [c.line() for c in checks if not c.ok]
    assert not failed, "\n".join(failed)
    names = " ".join(c.name for c in checks)
    for expected in ("files:", "schema:", "tls:", "broker:", "systemd", "cloud-init", "ansible"):
        assert expected in names, expected
    assert sum(c.name.startswith("broker:") for c in checks) >= 10


def test_validate_catches_an_edited_file_and_an_open_secret(store_dir, tmp_path):
    out = tmp_path / "out"
    render(store_dir / "s001.toml", out)
    import json
    manifest = json.loads((out / "store.json").read_text())
    (out / "kiosks/s001-k01/kiosk.toml").write_text("# edited by hand\n")
    (out / "kiosks/s001-k02/mqtt.password").chmod(0o644)
    files, secrets = check_files(out, manifest)
    assert not files.ok and "kiosks/s001-k01/kiosk.toml" in files.detail
    assert not secrets.ok and "kiosks/s001-k02/mqtt.password (0644)" in secrets.detail


def test_validate_catches_a_config_the_kiosk_would_refuse(store_dir, tmp_path):
    out = tmp_path / "out"
    render(store_dir / "s001.toml", out)
    path = out / "kiosks/s001-k01/kiosk.toml"
    path.write_text(path.read_text().replace('decoder = "zxing"', 'decoder = "quagga"'))
    checks = validate(out, only=["schema"])
    bad = [c for c in checks if not c.ok]
    assert len(bad) == 1 and bad[0].name == "schema: s001-k01 kiosk.toml" and "quagga" in bad[0].detail


def test_the_broker_check_fails_when_the_acl_lets_a_kiosk_impersonate_another(store_dir, tmp_path):
    out = tmp_path / "out"
    render(store_dir / "s001.toml", out)
    acl = out / "hub/mosquitto/acl"
    acl.write_text(acl.read_text().replace("user s001-k01\n", "user s001-k01\ntopic readwrite omnikiosk/#\n"))
    checks = {c.name: c for c in validate(out, only=["broker"])}
    assert checks["broker: s001-k01 publishes its own events to the hub"].ok
    assert not checks["broker: s001-k01 cannot publish as s001-k02 or as the hub"].ok
    assert not checks["broker: s001-k01 reads its own commands, not s001-k02's"].ok


def test_the_broker_check_fails_when_anonymous_is_allowed(store_dir, tmp_path):
    out = tmp_path / "out"
    render(store_dir / "s001.toml", out)
    conf = out / "hub/mosquitto/omnikiosk.conf"
    conf.write_text(conf.read_text().replace("allow_anonymous false", "allow_anonymous true")
                    .replace("listener 1883 127.0.0.1", "listener 1883"))
    checks = {c.name: c for c in validate(out, only=["broker"])}
    assert not checks["broker: plaintext only on 127.0.0.1, TLS everywhere else"].ok


def test_cli_render_then_validate_prints_every_check_and_no_secret(store_dir, tmp_path):
    out = tmp_path / "out"
    run = subprocess.run([sys.executable, "-m", "firmware_config", "render", str(store_dir / "s001.toml"),
                          "--out", str(out)], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "rendered store s001: hub s001-hub and 3 kiosks" in run.stdout
    assert "to do: put the online store's API key in" in run.stdout
    assert "checks passed" in run.stdout and "FAIL" not in run.stdout
    for secret in (store_dir / "secrets").rglob("*"):
        if secret.is_file() and secret.suffix != ".crt":
            value = secret.read_text().strip()
            assert value not in run.stdout and value not in run.stderr, secret.name
    bad = subprocess.run([sys.executable, "-m", "firmware_config", "check", str(EXAMPLES / "missing.toml")],
                         capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and "cannot read the inventory" in bad.stderr


def test_cli_help_has_examples():
    run = subprocess.run([sys.executable, "-m", "firmware_config", "render", "--help"], capture_output=True,
                         text=True, cwd=ROOT)
    assert run.returncode == 0 and "examples:" in run.stdout and "--rotate" in run.stdout
