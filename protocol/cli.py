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
    except RecursionError:
        sys.exit(f"{path}: not a usable config: tables or arrays nested too deep")


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


def read_or_create_secret(path: str, what: str) -> str:
    """A secret two local processes share (the kiosk ↔ agent API token): whoever starts first
    creates it (mode 0600, never overwritten), the other reads it."""
    import os
    import secrets
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return read_secret(path, what)
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_urlsafe(32) + "\n")
        out.flush()
        os.fsync(out.fileno())
    return read_secret(path, what)


def write_atomically(path: str | Path, text: str, mode: int = 0o644) -> None:
    """Write a file so that a reader (or a power cut) sees the old or the new content, never half."""
    import os
    import tempfile
    target = Path(path)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
