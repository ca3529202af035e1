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
