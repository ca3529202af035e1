"""The shopper's screen: a local page (127.0.0.1 only) fed over Socket.IO, plus health and metrics."""

from __future__ import annotations

import threading
from typing import Any, Callable

from flask import Flask, Response, jsonify, render_template
from flask_socketio import SocketIO

from protocol.settings import Config


class Screen:
    """Holds the view on show, so a reloaded page (or a restarted browser) shows it again."""

    def __init__(self):
        self.socketio: SocketIO | None = None
        self.current: dict[str, Any] = {"view": "idle"}
        self._lock = threading.Lock()

    def show(self, view: dict[str, Any]) -> None:
        with self._lock:
            self.current = view
        if self.socketio is not None:
            self.socketio.emit("screen", view)

    def notice(self, kind: str, text: str) -> None:
        """A short message over the current view ("A colleague is on the way")."""
        if self.socketio is not None:
            self.socketio.emit("notice", {"kind": kind, "text": text})


def create_app(config: Config, *, screen: Screen, on_done: Callable[[], None],
               on_assist: Callable[[str | None], None] = lambda gtin: None,
               on_send_to_cart: Callable[[str], None] = lambda gtin: None,
               health: Callable[[], dict[str, Any]] = lambda: {},
               metrics: Callable[[], str] = lambda: "") -> tuple[Flask, SocketIO]:
    app = Flask(__name__)
    socketio = SocketIO(app, async_mode="threading", logger=False, engineio_logger=False)
    screen.socketio = socketio
    brand = {"name": config["brand.name"], "primary": config["brand.primary"], "accent": config["brand.accent"],
             "logo_url": config["brand.logo_url"] or None}

    @app.after_request
    def headers(response: Response) -> Response:
        response.headers.setdefault("Content-Security-Policy",
                                    "default-src 'self'; img-src 'self' data:; connect-src 'self' ws: wss:; "
                                    "frame-ancestors 'none'; base-uri 'none'")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response

    @app.get("/")
    def page():
        return render_template("kiosk.html", brand=brand, idle_timeout_s=int(config["session.idle_timeout_s"]))

    @app.get("/healthz")
    def healthz():
        state = {"ok": True, **health()}
        return jsonify(state)

    @app.get("/metrics")
    def metrics_page():
        return Response(metrics(), mimetype="text/plain; version=0.0.4")

    @socketio.on("connect")
    def connected(auth=None):
        socketio.emit("screen", screen.current, to=None)

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

    return app, socketio
