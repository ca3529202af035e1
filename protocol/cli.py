"""Shared shape of the process CLIs: `run --config FILE`, `--check-config`, settings listed in --help."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Iterable, Sequence

from protocol.settings import Config, ConfigError, Setting


def settings_epilog(settings: Iterable[Setting], example: str) -> str:
    lines = ["example:", f"  {example}", "", "settings (TOML key = environment override):"]
    for s in settings:
        default = "required" if s.default is None else repr(s.default)
        lines.append(f"  {s.key:<24} {s.env_name:<34} {default}: {s.help}")
    return "\n".join(lines)


def load_or_exit(load: Callable[[str | None], Config], path: str | None) -> Config:
    """Load a config or print an actionable message and exit 2."""
    try:
        return load(path)
    except FileNotFoundError:
        sys.exit(f"config file not found: {path}")
    except ConfigError as exc:
        sys.exit(f"invalid configuration:\n{exc}")
    except ValueError as exc:  # tomllib.TOMLDecodeError is a ValueError
        sys.exit(f"{path}: not valid TOML: {exc}")


def read_secret(path: str, what: str) -> str:
    """Secrets live in files (mode 0600), never in the config itself or the environment."""
    try:
        value = Path(path).read_text().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read {what} from {path}: {exc.strerror}") from None
    if not value:
        raise ConfigError(f"{what} file {path} is empty")
    return value


def run_parser(prog: str, description: str, settings: Sequence[Setting], example: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=settings_epilog(settings, example))
    parser.add_argument("--config", metavar="FILE", help="TOML config file (OMNIKIOSK_* variables override it)")
    parser.add_argument("--check-config", action="store_true", help="validate the config, print it, exit")
    return parser


def interrupt_on_sigterm() -> None:
    """systemd stops a service with SIGTERM: treat it like Ctrl-C so `finally:` blocks clean up."""
    import signal

    def _raise(*_):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, _raise)
