"""The example inventory as IT keeps it: the TOML, its JWKS and the central broker's CA, in a folder of its own."""

from __future__ import annotations

import shutil
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "firmware_config" / "examples"
FILES = ("s001.toml", "online-jwks.json", "central-ca.crt")


def copy_example_store(folder: Path) -> Path:
    """Copy the example into `folder` (created); returns the inventory's path there."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        shutil.copy(EXAMPLES / name, folder / name)
    return folder / "s001.toml"
