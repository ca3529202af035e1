"""`python -m demo`: run a whole store on this machine, and play the shopper."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from protocol.cli import interrupt_on_sigterm

DEFAULT_STATE = Path(os.environ.get("OMNIKIOSK_DEMO_STATE", "var/demo"))

EXAMPLES = """examples:
  python -m demo run                                  # the whole store; Ctrl-C stops it
  python -m demo checkin M0001 --kiosk s001-k01       # Jane Cooper shows her app QR at kiosk 1
  python -m demo member-qr M0001 --out jane.png       # her rotating app QR (valid 120 s)
  python -m demo member-qr M0001 --card --out card.png  # a printed member card (long-lived)
  python -m demo show --kiosk s001-k02 jane.png       # hold any image in front of kiosk 2's camera
  python -m demo scan-product --kiosk s001-k01        # a product's GS1 Digital Link QR (one on sale)
  python -m demo scan-product 04009114002128          # a given product (GTIN-14)
"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m demo", description="The Omnikiosk demo store.",
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES)
    parser.add_argument("--state", type=Path, default=DEFAULT_STATE,
                        help=f"folder holding the demo's files (default {DEFAULT_STATE}, or $OMNIKIOSK_DEMO_STATE)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="start broker, online store, hub and two kiosks with their agents")
    online = sub.add_parser(
        "online-store", help="serve only the demo online store API",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  python -m demo online-store --port 8010 \\\n"
               "    --webhook-url http://127.0.0.1:8000/webhooks/online-store \\\n"
               "    --webhook-secret-file var/demo/online/webhook_secret")
    online.add_argument("--port", type=int, default=8010)
    online.add_argument("--webhook-url", help="POST every change (customer, order, catalog) here, signed")
    online.add_argument("--webhook-secret-file", type=Path,
                        help="file holding the secret that signs webhooks (required with --webhook-url)")
    qr = sub.add_parser("member-qr", help="write a member's QR code as PNG")
    qr.add_argument("member", help="member id, e.g. M0001")
    qr.add_argument("--out", type=Path, required=True)
    qr.add_argument("--card", action="store_true", help="a printed card token instead of a rotating app token")
    show = sub.add_parser("show", help="hold an image in front of a kiosk's simulated camera")
    show.add_argument("image", type=Path)
    show.add_argument("--kiosk", default="s001-k01")
    show.add_argument("--seconds", type=float, default=3.0)
    checkin = sub.add_parser("checkin", help="a member shows their app QR at a kiosk (member-qr + show)")
    checkin.add_argument("member")
    checkin.add_argument("--kiosk", default="s001-k01")
    product = sub.add_parser("scan-product", help="show a product's GS1 Digital Link QR to a kiosk")
    product.add_argument("gtin", nargs="?", help="GTIN-14 from the demo catalog (default: the first one on sale)")
    product.add_argument("--kiosk", default="s001-k01")
    args = parser.parse_args(argv)
    state = args.state.resolve()
    if args.command == "run":
        run(state)
    elif args.command == "online-store":
        if args.webhook_url and not args.webhook_secret_file:
            parser.error("--webhook-url needs --webhook-secret-file: the hub refuses unsigned webhooks")
        serve_online_store(state, args.port, webhook_url=args.webhook_url, webhook_secret_file=args.webhook_secret_file)
    elif args.command == "member-qr":
        path = member_qr(state, args.member, args.out, card=args.card)
        print(f"wrote {path} ({'card' if args.card else 'app token, valid 120 s'}) for {args.member}")
    elif args.command == "show":
        show_image(state, args.kiosk, args.image, args.seconds)
    elif args.command == "scan-product":
        with tempfile.TemporaryDirectory() as tmp:
            path = product_qr(args.gtin, Path(tmp) / "product.png")
            show_image(state, args.kiosk, path, 3.0)
    elif args.command == "checkin":
        with tempfile.TemporaryDirectory() as tmp:
            path = member_qr(state, args.member, Path(tmp) / f"{args.member}.png")
            show_image(state, args.kiosk, path, 3.0)


def run(state: Path) -> None:
    from demo.store import DemoStore
    store = DemoStore(state, history_days=90)
    print(f"starting the demo store in {state} (the first start writes 90 days of the store's past) …", flush=True)
    interrupt_on_sigterm()
    try:
        store.start()
        print(store.banner(), flush=True)
        while True:
            for name in store.supervise():
                print(f"{name} exited; started it again (as systemd would on a device)", flush=True)
            time.sleep(1)
    except KeyboardInterrupt:
        print("\nstopping …", flush=True)
    except (RuntimeError, TimeoutError) as exc:
        print(f"the demo could not start: {exc}", file=sys.stderr)
        store.stop()
        sys.exit(1)
    store.stop()
    print("stopped.")


def serve_online_store(state: Path, port: int, *, webhook_url: str | None = None,
                       webhook_secret_file: Path | None = None) -> None:
    from werkzeug.serving import make_server

    from demo import seed
    from demo.issuer import Issuer
    from demo.online_store import create_app
    from protocol import jsonlog
    jsonlog.setup("online-store")
    api_key = (state / "online" / "api_key").read_text().strip()
    issuer = Issuer.load_or_create(state / "online" / "issuer.pem")
    webhook_secret = webhook_secret_file.read_text().strip() if webhook_secret_file else None
    app = create_app(seed.build(), api_key, jwks=issuer.jwks(), webhook_url=webhook_url, webhook_secret=webhook_secret)
    server = make_server("127.0.0.1", port, app, threaded=True)
    interrupt_on_sigterm()
    print(json.dumps({"msg": "online store listening", "url": f"http://127.0.0.1:{port}/",
                      "webhook_url": webhook_url}), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        app.extensions["omnikiosk_online_store"].webhooks.stop()
        server.server_close()


def member_qr(state: Path, member_id: str, out: Path, *, card: bool = False) -> Path:
    from demo import seed
    from demo.issuer import Issuer, qr_png
    members = {c["id"]: c for c in seed.build().customers}
    if member_id not in members:
        sys.exit(f"no member {member_id!r} in the demo data (try M0001 … M{len(members):04d})")
    issuer = Issuer.load_or_create(state / "online" / "issuer.pem")
    token = issuer.mint(members[member_id], now=datetime.now(timezone.utc), typ="card" if card else "app")
    return qr_png(token, out)


def product_qr(gtin: str | None, out: Path) -> Path:
    """The GS1 Digital Link QR printed on a shelf label or tag: https://shop…/01/{gtin}."""
    from demo import seed
    from demo.catalog_feed import ONLINE_SHOP
    from demo.issuer import qr_png
    products = seed.build().products
    if gtin is None:
        gtin = next(p["gtin"] for p in products if p.get("compare_at_price"))
    elif gtin not in {p["gtin"] for p in products}:
        sys.exit(f"no product {gtin!r} in the demo catalog (GTIN-14, e.g. {products[0]['gtin']})")
    print(f"product {gtin}")
    return qr_png(f"{ONLINE_SHOP}/01/{gtin}", out)


def show_image(state: Path, kiosk: str, image: Path, seconds: float) -> None:
    camera = state / "kiosks" / kiosk / "camera"
    if not camera.is_dir():
        sys.exit(f"no kiosk {kiosk!r} under {state}: is `make demo` running (with the same --state)?")
    if not image.is_file():
        sys.exit(f"no image {image}")
    target = camera / f"shown{image.suffix.lower() or '.png'}"
    partial = camera / ".incoming"
    shutil.copyfile(image, partial)
    os.replace(partial, target)  # the kiosk never sees half an image
    print(f"showing {image.name} to {kiosk} for {seconds:g} s …", flush=True)
    try:
        time.sleep(seconds)
    finally:
        target.unlink(missing_ok=True)
    print("done.")


if __name__ == "__main__":
    main()
