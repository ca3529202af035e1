"""The staff web app: sign-in, the live arrivals page, its Socket.IO feed, health and metrics."""

from __future__ import annotations

import hmac
import logging
import secrets
import time
from functools import wraps
from typing import Any, Callable

from flask import Flask, Response, abort, jsonify, redirect, render_template, request, session, url_for
from flask_socketio import SocketIO, join_room

from hub import staff as staff_rules
from hub.store import HubStore
from protocol.settings import Config

log = logging.getLogger("hub.web")

STAFF_NAMESPACE = "/staff"
Metric = tuple[str, str, dict[str, str], float]  # name, help, labels, value


def store_room(store: str) -> str:
    return f"store:{store}"


WEBHOOK_MAX_BYTES = 64 * 1024
# A webhook delivery → (HTTP status, JSON answer); the hub service verifies, deduplicates and dispatches.
WebhookHandler = Callable[[bytes, dict[str, str]], tuple[int, dict[str, Any]]]


def create_app(config: Config, *, hub_store: HubStore, secret_key: str,
               metrics: Callable[[], list[Metric]] = lambda: [],
               health: Callable[[], dict[str, Any]] = lambda: {},
               on_webhook: WebhookHandler | None = None) -> tuple[Flask, SocketIO]:
    app = Flask(__name__)
    demo = config["demo"]
    app.config.update(
        SECRET_KEY=secret_key,
        SESSION_COOKIE_NAME="omnikiosk_staff",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        # Browsers send Secure cookies only over HTTPS; plain HTTP exists only in demo mode on loopback.
        SESSION_COOKIE_SECURE=not demo,
        PERMANENT_SESSION_LIFETIME=config["web.idle_timeout_min"] * 60,
    )
    socketio = SocketIO(app, async_mode="threading", logger=False, engineio_logger=False)
    # Per account: 5 failures lock it for 5 min. Per address, more room: a shared tablet
    # signs in many people, but a guessing script is still stopped.
    user_throttle = staff_rules.LoginThrottle(max_failures=5)
    addr_throttle = staff_rules.LoginThrottle(max_failures=20)
    idle_s = config["web.idle_timeout_min"] * 60
    store_id = config["store"]

    def current_staff() -> dict[str, Any] | None:
        user = session.get("user")
        if not user:
            return None
        if time.time() - session.get("seen", 0) > idle_s:
            session.clear()
            return None
        return user

    def login_required(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            if current_staff() is None:
                if request.path.startswith("/api/"):
                    return jsonify(error={"code": "unauthorized", "message": "sign in first"}), 401
                return redirect(url_for("login", next=request.path))
            session["seen"] = time.time()
            return view(*args, **kwargs)
        return wrapper

    def csrf_token() -> str:
        if "csrf" not in session:
            session["csrf"] = secrets.token_urlsafe(32)
        return session["csrf"]

    @app.before_request
    def check_csrf():
        if request.path.startswith("/webhooks/"):
            return None  # no browser session here: each delivery is signed (HMAC), checked by the handler
        if request.method in ("POST", "PUT", "PATCH", "DELETE"):
            sent = request.form.get("csrf_token") or request.headers.get("X-CSRF-Token", "")
            if not hmac.compare_digest(sent, session.get("csrf", "\0")):
                log.warning("csrf check failed", extra={"path": request.path, "remote": request.remote_addr})
                abort(400, description="The form expired. Reload the page and try again.")

    @app.after_request
    def security_headers(response: Response) -> Response:
        response.headers.setdefault("Content-Security-Policy",
                                    "default-src 'self'; img-src 'self' data:; connect-src 'self' ws: wss:; "
                                    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        if request.path != "/healthz":
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    app.jinja_env.globals.update(csrf_token=csrf_token, store_name=config["store_name"], demo=demo)

    @app.get("/login")
    def login():
        return render_template("login.html", error=None, username="")

    @app.post("/login")
    def login_post():
        username = request.form.get("username", "").strip()[:64]
        password = request.form.get("password", "")[:256]
        user_key, addr_key = username.lower(), request.remote_addr or "-"
        wait = max(user_throttle.locked(user_key), addr_throttle.locked(addr_key))
        if wait > 0:
            log.warning("login locked out", extra={"username": username, "remote": request.remote_addr})
            return render_template("login.html", username=username,
                                   error=f"Too many attempts. Try again in {int(wait // 60) + 1} min."), 429
        account = hub_store.staff(username)
        if not staff_rules.verify_login(account, password) or account["store"] not in (store_id, "*"):
            user_throttle.failed(user_key)
            addr_throttle.failed(addr_key)
            log.warning("login failed", extra={"username": username, "remote": request.remote_addr})
            return render_template("login.html", username=username, error="Wrong username or password."), 401
        user_throttle.succeeded(user_key)
        session.clear()  # a fresh session at sign-in: nothing from before survives (no fixation)
        session.permanent = True
        session.update(user={"username": account["username"], "role": account["role"], "store": store_id},
                       seen=time.time(), sid=secrets.token_urlsafe(16), csrf=secrets.token_urlsafe(32))
        hub_store.audit(account["username"], "login", account["username"], request.remote_addr or "")
        log.info("staff signed in", extra={"username": account["username"], "role": account["role"]})
        target = request.args.get("next", "/")
        return redirect(target if target.startswith("/") and not target.startswith("//") else "/")

    @app.post("/logout")
    def logout():
        session.clear()
        return redirect(url_for("login"))

    @app.get("/")
    @login_required
    def arrivals_page():
        return render_template("staff.html", user=session["user"])

    @app.get("/api/arrivals")
    @login_required
    def arrivals_api():
        after = request.args.get("after", "0")
        if not after.isdigit():
            return jsonify(error={"code": "bad_request", "message": "after must be an arrival id"}), 400
        return jsonify(items=hub_store.recent_arrivals(store_id, after_id=int(after)))

    @app.post("/webhooks/online")
    def online_webhook():
        if on_webhook is None:
            return jsonify(ok=False, error={"code": "not_configured", "message": "webhooks are off"}), 404
        if (request.content_length or 0) > WEBHOOK_MAX_BYTES:
            return jsonify(ok=False, error={"code": "too_large", "message": "body over 64 KiB"}), 413
        status, answer = on_webhook(request.get_data(cache=False), dict(request.headers))
        return jsonify(answer), status

    @app.get("/healthz")
    def healthz():
        state = {"ok": True, **health()}
        state["ok"] = all(v for k, v in state.items() if k.endswith("_ok") or k == "ok")
        return jsonify(state), 200 if state["ok"] else 503

    @app.get("/metrics")
    def metrics_page():
        return Response(render_metrics(metrics()), mimetype="text/plain; version=0.0.4")

    @app.errorhandler(400)
    def bad_request(error):
        return render_template("error.html", message=error.description), 400

    @socketio.on("connect", namespace=STAFF_NAMESPACE)
    def staff_connect(auth=None):
        user = current_staff()
        if user is None:
            log.warning("socket.io connection refused: not signed in", extra={"remote": request.remote_addr})
            return False
        join_room(store_room(user["store"]))
        return True

    return app, socketio


def render_metrics(metrics: list[Metric]) -> str:
    """Prometheus text exposition format."""
    lines: list[str] = []
    described: set[str] = set()
    for name, help_text, labels, value in metrics:
        if name not in described:
            kind = "counter" if name.endswith("_total") else "gauge"
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
            described.add(name)
        label_text = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        lines.append(f"{name}{{{label_text}}} {value}" if label_text else f"{name} {value}")
    return "\n".join(lines) + "\n"
