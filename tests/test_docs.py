"""Docs cannot drift: every setting, topic, event type and CLI command is documented."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edge_agent.config import SETTINGS as AGENT
from firmware_config.inventory import DEVICE, SECTIONS as INVENTORY_SECTIONS
from hub.config import SETTINGS as HUB
from kiosk.config import SETTINGS as KIOSK
from protocol.envelope import EVENT_TYPES
from protocol.topics import all_topic_patterns

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


@pytest.mark.parametrize("setting", KIOSK + AGENT + HUB, ids=lambda s: s.key)
def test_every_setting_is_in_the_configuration_doc(setting):
    assert f"`{setting.key}`" in (DOCS / "configuration.md").read_text()


@pytest.mark.parametrize("section,key", [(name, f.key) for name, fields in INVENTORY_SECTIONS.items() for f in fields]
                         + [("devices", f.key) for f in DEVICE], ids=lambda v: v)
def test_every_inventory_key_is_in_the_deploy_doc(section, key):
    deploy = (DOCS / "deploy.md").read_text()
    row = next(line for line in deploy.splitlines() if line.startswith(f"| `[{section}]") or
               line.startswith(f"| `[[{section}]]`"))
    assert f"`{key}`" in row


@pytest.mark.parametrize("topic", all_topic_patterns())
def test_every_topic_is_in_the_protocol_doc(topic):
    assert f"`{topic}`" in (DOCS / "protocol.md").read_text()


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_every_event_type_is_in_the_protocol_doc(event_type):
    assert f"`{event_type}`" in (DOCS / "protocol.md").read_text()


@pytest.mark.parametrize("command", [["kiosk", "--help"], ["kiosk", "run", "--help"], ["kiosk", "decode", "--help"],
                                     ["edge_agent", "--help"], ["hub", "--help"], ["hub", "run", "--help"],
                                     ["hub", "command", "--help"], ["hub", "staff", "--help"],
                                     ["hub", "tablets", "--help"], ["hub", "import-stock", "--help"], ["hub", "import-sales", "--help"],
                                     ["demo", "--help"], ["firmware_config", "--help"], ["kiosk.browser", "--help"],
                                     ["hub", "device", "push-config", "--help"],
                                     ["firmware_config", "render", "--help"],
                                     ["firmware_config", "validate", "--help"]])
def test_every_cli_has_help_with_an_example(command):
    result = subprocess.run([sys.executable, "-m", *command], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 0 and "example" in result.stdout


def test_readme_opens_with_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    first_block = readme.split("```sh", 1)[1].split("```", 1)[0]
    assert "make demo" in first_block and "make test" in first_block
