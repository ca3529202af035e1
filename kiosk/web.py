"""The shopper's screen: a local page (127.0.0.1 only) fed over Socket.IO, plus health, metrics and the
local control API the edge agent calls for IT (config.update, screen.message, restart)."""

from __future__ import annotations

import hmac
import logging
import threading
import time
from collections import Counter
from datetime import datetime, timezone
from typing import Any, Callable

from flask import Flask, Response, g, jsonify, render_template, request
from flask_socketio import SocketIO, emit

from kiosk.control import ControlError, KioskControl
from protocol.commands import check_args
from protocol.envelope import format_ts
from protocol.settings import Config

log = logging.getLogger("kiosk.web")

API_MAX_BYTES = 16 * 1024
API_ENDPOINTS = ("/v1/config", "/v1/screen-message", "/v1/restart")


class Screen:
    """Holds the view on show and IT's banner, so a reloaded page (or a restarted browser) shows them again;
    and when the page last said it is alive (its heartbeat), for the browser's watchdog."""

    def __init__(self, wall_clock: Callable[[], float] = time.time, clock: Callable[[], float] = time.monotonic):
        self.socketio: SocketIO | None = None
        self.current: dict[str, Any] = {"view": "idle"}
        self.banner: dict[str, Any] | None = None  # {"text", "until_ms"}: epoch milliseconds
        self._wall_clock = wall_clock
        self._clock = clock
        self._page_seen_at: float | None = None
        self._lock = threading.Lock()

    def page_alive(self) -> None:
        """The page's script ran and reached this server (its heartbeat or a new connection)."""
        self._page_seen_at = self._clock()

    def page_seen_s_ago(self) -> float | None:
        """Seconds since the page was last heard from; None when not since this kiosk started."""
        seen = self._page_seen_at
        return None if seen is None else round(max(0.0, self._clock() - seen), 1)

    def show(self, view: dict[str, Any]) -> None:
        with self._lock:
            self.current = view
        if self.socketio is not None:
            self.socketio.emit("screen", view)

    def notice(self, kind: str, text: str) -> None:
        """A short message over the current view ("A colleague is on the way")."""
        if self.socketio is not None:
            self.socketio.emit("notice", {"kind": kind, "text": text})

    def show_banner(self, text: str, seconds: int) -> int:
        """IT's message over whatever is on screen, until a moment (epoch ms) it returns; the view stays."""
        until_ms = int((self._wall_clock() + seconds) * 1000)
        with self._lock:
            self.banner = {"text": text, "until_ms": until_ms}
        if self.socketio is not None:
            self.socketio.emit("banner", self.banner)
        return until_ms

    def active_banner(self) -> dict[str, Any] | None:
        with self._lock:
            banner = self.banner
        return banner if banner and banner["until_ms"] > self._wall_clock() * 1000 else None

    def reload(self) -> None:
        """The page loads again (new brand settings); on connecting it gets the view and banner back."""
        if self.socketio is not None:
            self.socketio.emit("reload", {})


def create_app(config: Config, *, screen: Screen, on_done: Callable[[], None],
               on_assist: Callable[[str | None], None] = lambda gtin: None,
               on_send_to_cart: Callable[[str], None] = lambda gtin: None,
               health: Callable[[], dict[str, Any]] = lambda: {},
               metrics: Callable[[], str] = lambda: "",
               api_token: str | None = None, control: KioskControl | None = None,
               on_restart: Callable[[], None] = lambda: None, restart_delay_s: float = 0.3) -> tuple[Flask, SocketIO]:
    """`api_token` switches the /v1 control API on; `control` applies config.update (without it: 409);
    `on_restart` runs `restart_delay_s` after the answer to /v1/restart has gone out."""
    app = Flask(__name__)
    socketio = SocketIO(app, async_mode="threading", logger=False, engineio_logger=False)
    screen.socketio = socketio
    api_counts: Counter[tuple[str, str]] = Counter()

    def settings() -> Config:
        return control.config if control is not None else config

    @app.after_request
    def headers(response: Response) -> Response:
        response.headers.setdefault("Content-Security-Policy",
                                    "default-src 'self'; img-src 'self' data:; connect-src 'self' ws: wss:; "
                                    "frame-ancestors 'none'; base-uri 'none'")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response

    @app.get("/")
    def page():
        current = settings()
        brand = {"name": current["brand.name"], "primary": current["brand.primary"],
                 "accent": current["brand.accent"], "logo_url": current["brand.logo_url"] or None}
        return render_template("kiosk.html", brand=brand, idle_timeout_s=int(current["session.idle_timeout_s"]))

    @app.get("/healthz")
    def healthz():
        # page_seen_s_ago: kiosk/browser.py restarts a browser whose page stopped answering.
        state = {"ok": True, **health(), "page_seen_s_ago": screen.page_seen_s_ago()}
        return jsonify(state)

    @app.get("/metrics")
    def metrics_page():
        rows = [f'omnikiosk_kiosk_local_api_total{{endpoint="{endpoint}",outcome="{outcome}"}} {count}'
                for (endpoint, outcome), count in sorted(api_counts.items())]
        return Response(metrics() + "".join(row + "\n" for row in rows), mimetype="text/plain; version=0.0.4")

    @socketio.on("connect")
    def connected(auth=None):
        screen.page_alive()
        socketio.emit("screen", screen.current, to=None)
        banner = screen.active_banner()
        if banner:
            emit("banner", banner)  # to this page only

    @socketio.on("alive")
    def alive(*_):
        screen.page_alive()

    @socketio.on("done")
    def done(*_):
        on_done()

    @socketio.on("assist")
    def assist(data=None):
        gtin = data.get("gtin") if isinstance(data, dict) else None
        on_assist(gtin if isinstance(gtin, str) and gtin.isdigit() and len(gtin) == 14 else None)

    @socketio.on("send_to_cart")
    def send_to_cart(data=None):
        gtin = data.get("gtin") if isinstance(data, dict) else None
        if isinstance(gtin, str):
            on_send_to_cart(gtin)

    _local_api(app, api_token=api_token, control=control, screen=screen, on_restart=on_restart,
               restart_delay_s=restart_delay_s, counts=api_counts)
    return app, socketio


def _local_api(app: Flask, *, api_token: str | None, control: KioskControl | None, screen: Screen,
               on_restart: Callable[[], None], restart_delay_s: float, counts: Counter) -> None:
    """POST /v1/config, /v1/screen-message, /v1/restart for the edge agent: bearer token, JSON only."""

    def answer(result: dict[str, Any]) -> Response:
        return jsonify({"ok": True, "result": result})

    def refuse(status: int, code: str, message: str) -> tuple[Response, int]:
        g.api_error = code
        return jsonify({"ok": False, "error": {"code": code, "message": message}}), status

    @app.before_request
    def guard():
        if not request.path.startswith("/v1/"):
            return None
        if api_token is None:
            return refuse(404, "not_found", "the local control API is off on this kiosk")
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), api_token.encode()):
            return refuse(401, "unauthorized", "send Authorization: Bearer <the token in local_api.token_file>")
        if request.routing_exception is not None:
            return None  # no such endpoint or method: answered by not_here below
        # A web page cannot send this content type without a CORS preflight, which nothing here answers.
        if request.mimetype != "application/json":
            return refuse(415, "bad_request", "send Content-Type: application/json")
        if (request.content_length or 0) > API_MAX_BYTES:
            return refuse(413, "bad_request", f"the body is larger than {API_MAX_BYTES} bytes")
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            return refuse(400, "bad_request", "the body must be a JSON object")
        g.body = body
        return None

    @app.after_request
    def record(response: Response) -> Response:
        if request.path.startswith("/v1/"):
            endpoint = request.path if request.path in API_ENDPOINTS else "other"
            outcome = g.get("api_error", "ok" if response.status_code < 400 else "failed")
            counts[(endpoint, outcome)] += 1
            # what was asked and how it ended; never the token or the body
            log.info("local API call", extra={"endpoint": endpoint, "status": response.status_code,
                                              "outcome": outcome, "keys": g.get("api_keys")})
        return response

    @app.errorhandler(404)
    @app.errorhandler(405)
    def not_here(error):
        if request.path.startswith("/v1/"):
            return refuse(error.code, "not_found" if error.code == 404 else "bad_request",
                          f"no {request.method} {request.path}; the kiosk answers POST {', '.join(API_ENDPOINTS)}")
        return error

    @app.post("/v1/config")
    def update_config():
        problem = check_args("config.update", g.body) or _for_the_kiosk(g.body)
        if problem:
            return refuse(400, "bad_args", problem)
        g.api_keys = sorted(g.body["settings"])
        if control is None:
            return refuse(409, "failed", "this kiosk cannot change its config while it runs")
        try:
            return answer(control.update(g.body["settings"]))
        except ControlError as exc:
            return refuse(exc.status, exc.code, exc.message)

    @app.post("/v1/screen-message")
    def screen_message():
        problem = check_args("screen.message", g.body)
        if problem:
            return refuse(400, "bad_args", problem)
        until_ms = screen.show_banner(g.body["text"].strip(), g.body.get("seconds", 30))
        return answer({"shown_until": format_ts(datetime.fromtimestamp(until_ms / 1000, timezone.utc))})

    @app.post("/v1/restart")
    def restart():
        problem = check_args("restart", g.body) or _for_the_kiosk(g.body)
        if problem:
            return refuse(400, "bad_args", problem)
        log.warning("restarting: asked over the local API")
        response = answer({"restarting": True})

        def later() -> None:
            # A moment after the answer has left, so the agent reads it before the port closes.
            timer = threading.Timer(restart_delay_s, on_restart)
            timer.daemon = True
            timer.start()
        response.call_on_close(later)
        return response


def _for_the_kiosk(args: dict[str, Any]) -> str | None:
    if args.get("target", "kiosk") != "kiosk":
        return f"target {args['target']!r} is not this kiosk; the edge agent handles its own"
    return None
