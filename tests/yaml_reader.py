"""Read generated YAML back as cloud-init and Ansible will: with the system's PyYAML (not in our venv)."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest


def _yaml_python() -> str | None:
    for candidate in ("/usr/bin/python3", shutil.which("python3")):
        if candidate and subprocess.run([candidate, "-c", "import yaml"], capture_output=True, check=False).returncode == 0:
            return candidate
    return None


YAML_PYTHON = _yaml_python()
needs_pyyaml = pytest.mark.skipif(YAML_PYTHON is None, reason="no python3 with PyYAML (apt-get install python3-yaml)")


def load_yaml(*texts: str) -> list:
    result = subprocess.run(
        [YAML_PYTHON, "-c", "import json, sys, yaml; print(json.dumps([yaml.safe_load(t) for t in json.load(sys.stdin)]))"],
        input=json.dumps(texts), capture_output=True, text=True, check=True)
    return json.loads(result.stdout)
