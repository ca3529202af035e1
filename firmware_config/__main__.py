"""`python -m firmware_config`: render a store's rollout from its inventory, and validate it."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from firmware_config.bundle import Check
from firmware_config.inventory import InventoryError, load_inventory
from firmware_config.render import RenderError, plan, write
from firmware_config.secrets import Secrets, SecretsError
from firmware_config.validate import SECTIONS, passed, validate

EXAMPLES = """examples:
  python -m firmware_config check firmware_config/examples/s001.toml
  python -m firmware_config render firmware_config/examples/s001.toml --out build/s001
  python -m firmware_config render stores/s014.toml --out build/s014 --secrets /secure/s014
  python -m firmware_config render stores/s014.toml --out build/s014 --rotate    # new passwords, CA and keys
  python -m firmware_config validate build/s001
  python -m firmware_config validate build/s001 --only broker systemd

Then deploy with Ansible (docs/deploy.md):
  cd build/s001/ansible && ansible-playbook -i inventory.ini site.yml --check --diff
  cd build/s001/ansible && ansible-playbook -i inventory.ini site.yml
"""

RENDER_HELP = """Writes OUT/hub/ and OUT/kiosks/ID/ (each device's configs, credentials, systemd units;
for kiosks also boot/config.txt and cloud-init/ for the SD card), OUT/ansible/ (inventory and
playbook), OUT/central/ when the store bridges to a central broker, and OUT/store.json (the
manifest). The same inventory and secrets give byte-identical files. Secrets are made once into
the secrets folder (default: secrets/ next to the inventory) and reused; --rotate renews them.
Then it validates the output, as `validate` does (skip with --no-validate)."""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m firmware_config",
                                     description="Provision a store's hub and kiosks from one inventory file.",
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = commands.add_parser("check", help="check an inventory file and print what it describes")
    check.add_argument("inventory", type=Path)

    render = commands.add_parser("render", help="render every file of a store's rollout, then validate it",
                                 description=RENDER_HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=EXAMPLES)
    render.add_argument("inventory", type=Path, help="the store's inventory (TOML)")
    render.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    render.add_argument("--secrets", type=Path, metavar="DIR",
                        help="secrets folder (default: secrets/ next to the inventory)")
    render.add_argument("--rotate", action="store_true",
                        help="renew every generated secret: MQTT passwords, store CA, hub certificate, keys")
    render.add_argument("--no-validate", action="store_true", help="do not validate the output")
    render.add_argument("--allow-missing-tools", action="store_true",
                        help="a check whose tool is not installed is skipped instead of failing")

    check_out = commands.add_parser("validate", help="prove a rendered folder on this machine",
                                    epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    check_out.add_argument("out", type=Path, metavar="DIR", help="a folder written by render")
    check_out.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS), metavar="CHECK",
                           help=f"run only these checks: {', '.join(SECTIONS)}")
    check_out.add_argument("--allow-missing-tools", action="store_true",
                           help="a check whose tool is not installed is skipped instead of failing")
    args = parser.parse_args(argv)

    if args.command == "check":
        inv = _load(args.inventory)
        print(f"{args.inventory}: store {inv.store.id} ({inv.store.name}), hub {inv.hub.id} at "
              f"{inv.store.hub_host} / {inv.store.hub_ip}, {len(inv.kiosks)} kiosks:")
        for kiosk in inv.kiosks:
            print(f"  {kiosk.id:<16} {kiosk.location} ({kiosk.camera} {kiosk.resolution}, {kiosk.decoder})")
        return
    if args.command == "render":
        sys.exit(_render(args))
    sys.exit(_validate(args.out, args.only, args.allow_missing_tools))


def _load(path: Path):
    try:
        return load_inventory(path)
    except InventoryError as exc:
        print(f"{path}: {len(exc.problems)} problem{'s' if len(exc.problems) != 1 else ''}:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        sys.exit(2)


def _render(args) -> int:
    inv = _load(args.inventory)
    secrets_dir = args.secrets or args.inventory.resolve().parent / "secrets"
    try:
        secrets = Secrets(secrets_dir, rotate=args.rotate)
        result = plan(inv, secrets)
        report = write(result, args.out)
    except (RenderError, SecretsError) as exc:
        print(f"render: {exc}", file=sys.stderr)
        return 2
    print(f"rendered store {inv.store.id}: hub {inv.hub.id} and {len(inv.kiosks)} kiosks into {args.out}/")
    print(f"  {len(report.written)} written, {len(report.unchanged)} unchanged, {len(report.removed)} removed"
          + (f" ({', '.join(report.removed[:5])})" if report.removed else ""))
    if secrets.made:
        print(f"  secrets made in {secrets_dir}/: {', '.join(sorted(set(secrets.made)))}")
    for note in result.notes:
        print(f"  to do: {note}")
    if args.no_validate:
        return 0
    print(f"validating {args.out}/ ...")
    return _validate(args.out, SECTIONS, args.allow_missing_tools)


def _validate(out: Path, only, allow_skipped: bool) -> int:
    started = time.monotonic()

    def show(check: Check) -> None:
        print(f"  {check.line()}", flush=True)

    checks = validate(out, only, progress=show)
    failed = [c for c in checks if not c.ok and not (allow_skipped and c.skipped)]
    print(f"{len(checks) - len(failed)}/{len(checks)} checks passed in {time.monotonic() - started:.1f} s"
          + (f"; {len(failed)} failed" if failed else ""))
    return 0 if passed(checks, allow_skipped) else 1


if __name__ == "__main__":
    main()
