"""`python -m hub staff`: accounts with hashed passwords, a password policy, and demo logins only in demo mode."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

import pytest

from conftest import ROOT


@pytest.fixture
def hub_config(tmp_path):
    def write(demo: bool):
        path = tmp_path / "hub.toml"
        lines = [f"demo = {'true' if demo else 'false'}", 'store = "s001"']
        if not demo:
            lines += ['[web]', 'secret_key_file = "k"', 'tls_cert = "c"', 'tls_key = "k"']
        lines += ['[mqtt]', 'password_file = "p"', '[online]', 'base_url = "http://x"', 'api_key_file = "k"',
                  '[db]', f'path = "{tmp_path / "hub.db"}"']
        path.write_text("\n".join(lines) + "\n")
        return path
    return write


def staff(config, *args, password=""):
    return subprocess.run([sys.executable, "-m", "hub", "staff", *args, "--config", str(config), "--password-stdin"],
                          input=password + "\n", capture_output=True, text=True, cwd=ROOT, timeout=60)


def test_add_stores_a_scrypt_hash_never_the_password(hub_config, tmp_path):
    config = hub_config(demo=False)
    result = staff(config, "add", "maria", "--role", "manager", password="correct horse battery")
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(tmp_path / "hub.db") as conn:
        (stored,) = conn.execute("SELECT password_hash FROM staff WHERE username = 'maria'").fetchone()
    assert stored.startswith("scrypt:") and "correct horse" not in stored
    listed = staff(config, "list")
    assert "maria" in listed.stdout and "manager" in listed.stdout and "active" in listed.stdout


def test_short_passwords_and_the_demo_login_are_refused_outside_demo_mode(hub_config):
    config = hub_config(demo=False)
    assert "at least 10 characters" in staff(config, "add", "sam", password="short").stderr
    assert "only in demo mode" in staff(config, "add", "demo", password="demo").stderr


def test_demo_login_is_allowed_in_demo_mode(hub_config):
    assert staff(hub_config(demo=True), "add", "demo", password="demo").returncode == 0


def test_disable_then_enable_an_account(hub_config):
    config = hub_config(demo=False)
    staff(config, "add", "lee", password="a long enough secret")
    assert staff(config, "disable", "lee").returncode == 0
    assert "disabled" in staff(config, "list").stdout
    assert staff(config, "disable", "nobody").returncode == 1


def test_a_pin_is_checked_hashed_and_can_be_removed(hub_config, tmp_path):
    config = hub_config(demo=False)
    staff(config, "add", "maria", password="a long enough secret")
    assert "repeated or consecutive" in staff(config, "set-pin", "maria", password="1234").stderr
    assert "4 to 8 digits" in staff(config, "set-pin", "maria", password="12a4").stderr
    assert staff(config, "set-pin", "maria", password="4829").returncode == 0
    with sqlite3.connect(tmp_path / "hub.db") as conn:
        (stored,) = conn.execute("SELECT pin_hash FROM staff WHERE username = 'maria'").fetchone()
    assert stored.startswith("scrypt:") and "4829" not in stored
    assert staff(config, "clear-pin", "maria").returncode == 0
    with sqlite3.connect(tmp_path / "hub.db") as conn:
        assert conn.execute("SELECT pin_hash FROM staff WHERE username = 'maria'").fetchone() == (None,)
    assert staff(config, "set-pin", "nobody", password="4829").returncode == 1


def test_registered_tablets_are_listed_and_revoked(hub_config, tmp_path):
    from hub.store import HubStore, open_hub_db
    config = hub_config(demo=False)
    staff(config, "list")  # creates the database
    tablet_id, token = HubStore(open_hub_db(tmp_path / "hub.db")).register_tablet("Shoes tablet", "maria")

    def tablets(*args):
        return subprocess.run([sys.executable, "-m", "hub", "tablets", *args, "--config", str(config)],
                              capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert "Shoes tablet" in tablets("list").stdout and "active" in tablets("list").stdout
    assert tablets("revoke", str(tablet_id)).returncode == 0
    assert "revoked" in tablets("list").stdout
    assert tablets("revoke", str(tablet_id)).returncode == 1
    assert HubStore(open_hub_db(tmp_path / "hub.db")).tablet_for_token(token) is None
