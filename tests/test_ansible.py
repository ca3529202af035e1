"""The store's Ansible folder: written next to fake bundles, checked by the real ansible-playbook, and its
restart-only-what-changed logic run for real against this machine."""

from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from firmware_config import ansible
from firmware_config.ansible import ansible_files, check_playbook
from firmware_config.bundle import BundleFile
from firmware_config.inventory import load_inventory
from yaml_reader import YAML_PYTHON, load_yaml, needs_pyyaml  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "firmware_config" / "examples" / "s001.toml"
PLAYBOOK = shutil.which("ansible-playbook")
needs_ansible = pytest.mark.skipif(PLAYBOOK is None, reason="ansible-playbook is not installed (apt-get install "
                                                           "ansible-core)")


@pytest.fixture
def inv():
    return load_inventory(EXAMPLE)


def hub_bundle() -> list[BundleFile]:
    return [
        BundleFile("hub.toml", "[hub]\n", "/etc/omnikiosk/hub.toml", 0o640, "root", "omnikiosk",
                   restarts=("omnikiosk-hub.service",)),
        BundleFile("mosquitto/omnikiosk.conf", "listener 8883\n", "/etc/mosquitto/conf.d/omnikiosk.conf",
                   restarts=("mosquitto.service",)),
        BundleFile("mosquitto/passwd", "hub-s001:$7$...\n", "/etc/mosquitto/omnikiosk/passwd", 0o640, "root",
                   "mosquitto", secret=True, restarts=("mosquitto.service",)),
        BundleFile("systemd/omnikiosk-hub.service", "[Unit]\n", "/etc/systemd/system/omnikiosk-hub.service",
                   restarts=("omnikiosk-hub.service",)),
    ]


def kiosk_bundle(kiosk_id: str) -> list[BundleFile]:
    return [
        BundleFile("kiosk.toml", f'id = "{kiosk_id}"\n', "/etc/omnikiosk/kiosk.toml", 0o640, "root", "omnikiosk",
                   restarts=("omnikiosk-kiosk.service",)),
        BundleFile("mqtt.password", "not-for-logs\n", "/etc/omnikiosk/mqtt.password", 0o600, "omnikiosk",
                   "omnikiosk", secret=True, restarts=("omnikiosk-agent.service",)),
        *(BundleFile(f"systemd/{unit}", "[Unit]\n", f"/etc/systemd/system/{unit}", restarts=(unit,))
          for unit in ("omnikiosk-kiosk.service", "omnikiosk-agent.service", "omnikiosk-browser.service")),
        BundleFile("config.txt", "dtoverlay=vc4-kms-v3d\n", ""),   # for the boot partition, not installed
    ]


def bundles_for(inv) -> dict[str, list[BundleFile]]:
    return {inv.hub.id: hub_bundle(), **{k.id: kiosk_bundle(k.id) for k in inv.kiosks}}


def write_output(inv, out: Path, *, api_key: bool = True) -> Path:
    """A render's output folder: DIR/hub/, DIR/kiosks/<id>/, DIR/ansible/, and secrets/ beside it."""
    bundles = bundles_for(inv)
    for host, files in bundles.items():
        folder = out / ("hub" if host == inv.hub.id else f"kiosks/{host}")
        for f in files:
            (folder / f.name).parent.mkdir(parents=True, exist_ok=True)
            (folder / f.name).write_text(f.content)
    secrets = out / "secrets"
    secrets.mkdir(parents=True, exist_ok=True)
    if api_key:
        (secrets / inv.online.api_key_file).write_text("online-store-key\n")
    for rel, text in ansible_files(inv, bundles, secrets, ansible_dir=out / "ansible").items():
        (out / "ansible" / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / "ansible" / rel).write_text(text)
    return out / "ansible"


# --- the real ansible-playbook ---------------------------------------------------------------------

@needs_ansible
def test_syntax_check_and_pre_check_pass_on_a_complete_render(inv, tmp_path):
    checks = check_playbook(write_output(inv, tmp_path))
    assert [c.name for c in checks] == ["ansible-playbook --syntax-check", "ansible pre-check play",
                                       "ansible pre-check: secrets IT provides"]
    assert all(c.ok and not c.skipped for c in checks), [c.line() for c in checks]


@needs_ansible
def test_pre_check_reports_the_missing_api_key_apart_from_the_render(inv, tmp_path):
    syntax, rendered, provided = check_playbook(write_output(inv, tmp_path, api_key=False))
    assert syntax.ok and rendered.ok       # the render itself is complete
    assert not provided.ok
    assert "online-api-key" in provided.detail and inv.hub.id in provided.detail


@needs_ansible
def test_pre_check_names_a_bundle_file_missing_from_the_render(inv, tmp_path):
    ansible_dir = write_output(inv, tmp_path)
    (tmp_path / "kiosks" / "s001-k02" / "kiosk.toml").unlink()
    _, precheck, provided = check_playbook(ansible_dir)
    assert not precheck.ok and "kiosks/s001-k02/kiosk.toml" in precheck.detail
    assert not provided.ok and "not run" in provided.detail


@needs_ansible
def test_a_broken_playbook_is_caught(inv, tmp_path):
    ansible_dir = write_output(inv, tmp_path)
    site = ansible_dir / "site.yml"
    site.write_text(site.read_text() + "- name: [unclosed\n")
    syntax, precheck, provided = check_playbook(ansible_dir)
    assert not syntax.ok and syntax.detail and not precheck.ok and not provided.ok

    ansible_dir = write_output(inv, tmp_path / "again")
    tasks = ansible_dir / "roles" / "kiosk" / "tasks" / "main.yml"
    tasks.write_text(tasks.read_text().replace("ansible.builtin.apt:", "ansible.builtin.no_such_module:"))
    syntax, _, _ = check_playbook(ansible_dir)
    assert not syntax.ok and "no_such_module" in syntax.detail


def test_checks_are_skipped_with_an_install_hint_when_ansible_is_missing(monkeypatch, tmp_path):
    monkeypatch.setattr(ansible.shutil, "which", lambda name: None)
    checks = check_playbook(tmp_path)
    assert checks and all(c.skipped and not c.ok and "ansible-core" in c.detail for c in checks)


def run_files_play(ansible_dir: Path, files: list[dict], *extra: str) -> dict:
    """Run the kiosk role's files.yml against this machine; return the units it would restart and the output."""
    play = [{
        "hosts": "localhost", "connection": "local", "gather_facts": False,
        "vars": {"omnikiosk_files": files},
        "tasks": [{"ansible.builtin.import_tasks": "roles/kiosk/tasks/files.yml"},
                  {"ansible.builtin.copy": {"content": "{{ omnikiosk_changed_file_units | to_json }}",
                                            "dest": str(ansible_dir / "restart.json")}, "check_mode": False}],
    }]
    (ansible_dir / "try-files.yml").write_text(json.dumps(play))   # JSON is YAML
    env = {**os.environ, "ANSIBLE_HOME": str(ansible_dir / ".home"), "ANSIBLE_LOCAL_TEMP": str(ansible_dir / ".tmp"),
           "ANSIBLE_NOCOLOR": "1", "ANSIBLE_LOCALHOST_WARNING": "0", "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0"}
    result = subprocess.run([PLAYBOOK, "try-files.yml", *extra], cwd=ansible_dir, env=env, capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return {"restart": json.loads((ansible_dir / "restart.json").read_text()), "output": result.stdout}


@needs_ansible
def test_only_the_units_whose_files_changed_are_restarted(inv, tmp_path):
    ansible_dir = write_output(inv, tmp_path / "out")
    me, my_group = pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name
    device = tmp_path / "device"
    files = [{"src": "../kiosks/s001-k01/kiosk.toml", "dest": str(device / "etc/omnikiosk/kiosk.toml"),
              "mode": "0640", "owner": me, "group": my_group, "secret": False,
              "restarts": ["omnikiosk-kiosk.service"]},
             {"src": "../kiosks/s001-k01/mqtt.password", "dest": str(device / "etc/omnikiosk/mqtt.password"),
              "mode": "0600", "owner": me, "group": my_group, "secret": True,
              "restarts": ["omnikiosk-agent.service"]}]

    # --check on a device that has none of it: nothing is created, nothing fails.
    run_files_play(ansible_dir, files, "--check")
    assert not device.exists()

    first = run_files_play(ansible_dir, files)
    assert sorted(first["restart"]) == ["omnikiosk-agent.service", "omnikiosk-kiosk.service"]
    assert (device / "etc/omnikiosk/mqtt.password").stat().st_mode & 0o777 == 0o600

    assert run_files_play(ansible_dir, files)["restart"] == []

    (tmp_path / "out/kiosks/s001-k01/mqtt.password").write_text("rotated-password\n")
    predicted = run_files_play(ansible_dir, files, "--check", "--diff")
    assert predicted["restart"] == ["omnikiosk-agent.service"]
    assert "rotated-password" not in predicted["output"]     # no_log hides the secret's diff
    assert (device / "etc/omnikiosk/mqtt.password").read_text() == "not-for-logs\n"

    changed = run_files_play(ansible_dir, files, "-v")
    assert changed["restart"] == ["omnikiosk-agent.service"]
    assert "rotated-password" not in changed["output"]
    assert (device / "etc/omnikiosk/mqtt.password").read_text() == "rotated-password\n"


# --- what is written -------------------------------------------------------------------------------

def test_inventory_groups_hosts_and_reaches_each_by_address_or_name(inv):
    text = ansible_files(inv, bundles_for(inv), Path("../secrets"))["inventory.ini"]
    lines = text.splitlines()
    hub, kiosks = lines.index("[hub]"), lines.index("[kiosks]")
    assert lines[hub + 1] == "s001-hub ansible_host=10.20.1.10"
    assert lines[kiosks + 1:kiosks + 4] == ["s001-k01 ansible_host=s001-k01", "s001-k02 ansible_host=s001-k02",
                                           "s001-k03 ansible_host=10.20.1.23"]
    assert "ansible_user=it" in lines


@needs_pyyaml
def test_host_vars_list_each_installed_file_with_its_source_in_the_bundle(inv):
    written = ansible_files(inv, bundles_for(inv), Path("../secrets"))
    [kiosk, hub] = load_yaml(written["host_vars/s001-k03.yml"], written["host_vars/s001-hub.yml"])
    by_dest = {f["dest"]: f for f in kiosk["omnikiosk_files"]}
    assert "" not in by_dest and len(by_dest) == 5                  # config.txt is not installed
    assert by_dest["/etc/omnikiosk/mqtt.password"] == {
        "src": "../kiosks/s001-k03/mqtt.password", "dest": "/etc/omnikiosk/mqtt.password", "mode": "0600",
        "owner": "omnikiosk", "group": "omnikiosk", "secret": True, "restarts": ["omnikiosk-agent.service"]}
    assert kiosk["omnikiosk_units"] == ["omnikiosk-kiosk.service", "omnikiosk-agent.service",
                                        "omnikiosk-browser.service"]
    assert "python3-picamera2" not in kiosk["omnikiosk_packages"]   # s001-k03 has a USB camera
    assert hub["omnikiosk_files"][0]["src"] == "../hub/hub.toml"
    assert hub["omnikiosk_provided_secrets"] == [{
        "name": "online-api-key", "dest": "/etc/omnikiosk/online-api-key", "mode": "0600", "owner": "omnikiosk",
        "group": "omnikiosk", "restarts": ["omnikiosk-hub.service"]}]


@needs_pyyaml
def test_playbook_checks_first_then_runs_the_roles_as_root(inv):
    [site] = load_yaml(ansible_files(inv, bundles_for(inv), Path("../secrets"))["site.yml"])
    precheck, hub, kiosks = site
    assert precheck["hosts"] == "all" and precheck["any_errors_fatal"] is True
    assert "always" in precheck["tags"]
    assert all(set(task) - {"name", "vars", "tags"} == {"ansible.builtin.assert"} for task in precheck["tasks"])
    assert precheck["tasks"][-1]["tags"] == ["provided_secrets"]   # the API key, checked apart from the render
    assert (hub["hosts"], hub["roles"], hub["become"]) == ("hub", ["hub"], True)
    assert (kiosks["hosts"], kiosks["roles"], kiosks["become"]) == ("kiosks", ["kiosk"], True)


@needs_pyyaml
def test_secret_copies_are_not_logged_and_feed_the_restart_list(inv):
    written = ansible_files(inv, bundles_for(inv), Path("../secrets"))
    [kiosk_files, hub_files, kiosk_main] = load_yaml(written["roles/kiosk/tasks/files.yml"],
                                                     written["roles/hub/tasks/files.yml"],
                                                     written["roles/kiosk/tasks/main.yml"])
    for tasks in (kiosk_files, hub_files):
        copies = [t for t in tasks if "ansible.builtin.copy" in t]
        secret = [t for t in copies if "secret" in t["name"].lower()]
        assert secret and all(t["no_log"] is True for t in secret)
        assert all("no_log" not in t for t in copies if t not in secret)
        restart = tasks[-1]["ansible.builtin.set_fact"]["omnikiosk_changed_file_units"]
        assert all(t["register"] in restart for t in copies)
        assert "selectattr('changed')" in restart and "item.restarts" in restart
    provided = [t for t in hub_files if "ansible.builtin.copy" in t and t["loop"] == "{{ omnikiosk_provided_secrets }}"]
    assert provided and provided[0]["ansible.builtin.copy"]["src"].startswith("{{ omnikiosk_secrets_dir }}")
    restart_task = kiosk_main[-1]
    assert restart_task["ansible.builtin.systemd"]["state"] == "restarted"
    assert "omnikiosk_changed_file_units" in restart_task["loop"]


def test_secrets_dir_is_written_relative_to_the_playbook_when_it_can_be(inv, tmp_path):
    bundles = bundles_for(inv)
    relative = ansible_files(inv, bundles, tmp_path / "store/secrets", ansible_dir=tmp_path / "store/out/ansible")
    assert 'omnikiosk_secrets_dir: "{{ playbook_dir }}/../../secrets"' in relative["group_vars/all.yml"]
    absolute = ansible_files(inv, bundles, Path("/srv/secrets"))
    assert "omnikiosk_secrets_dir: /srv/secrets" in absolute["group_vars/all.yml"]


def test_index_url_and_package_reach_the_playbook(inv):
    inv = replace(inv, install=replace(inv.install, package="omnikiosk==0.7.0",
                                       index_url="https://pypi.stores.omnikiosk.example/simple"))
    text = ansible_files(inv, bundles_for(inv), Path("../secrets"))["group_vars/all.yml"]
    assert 'omnikiosk_package: "omnikiosk==0.7.0"' in text
    assert 'omnikiosk_index_url: "https://pypi.stores.omnikiosk.example/simple"' in text


def test_a_bundle_for_an_unknown_or_missing_host_is_refused(inv):
    bundles = bundles_for(inv)
    del bundles["s001-k02"]
    with pytest.raises(ValueError, match="no bundle for s001-k02"):
        ansible_files(inv, bundles, Path("../secrets"))
    with pytest.raises(ValueError, match="not in the inventory: s001-k99"):
        ansible_files(inv, {**bundles_for(inv), "s001-k99": []}, Path("../secrets"))


def test_ansible_files_are_byte_identical_for_the_same_inventory(inv, tmp_path):
    first = ansible_files(inv, bundles_for(inv), tmp_path / "secrets", ansible_dir=tmp_path / "ansible")
    again = ansible_files(load_inventory(EXAMPLE), bundles_for(inv), tmp_path / "secrets",
                          ansible_dir=tmp_path / "ansible")
    assert first == again and list(first) == list(again)
