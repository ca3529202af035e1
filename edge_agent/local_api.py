"""The agent's local HTTP API on 127.0.0.1, for the kiosk on the same device.

    POST /v1/requests   {"method": "member.welcome", "params": {…}, "timeout_s": 0.3}
                        → {"ok": true, "result": …} | {"ok": false, "error": {"code", "message"}}
    GET  /healthz       connection, hub and outbox state (no personal data; no token needed)
    GET  /metrics       Prometheus text

POST needs `Authorization: Bearer <token>` (the file both processes share,
`local_api.token_file`) and `Content-Type: application/json`, so neither another local user
without the file nor a web page in the kiosk's browser can ask the hub about members.
A small standard-library server: it answers a handful of local calls and keeps the agent lean.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from protocol import requests as wire

log = logging.getLogger("edge_agent.api")

MAX_BODY = wire.MAX_REQUEST_BYTES
STATUS_OF = {"bad_request": 400, "unknown_method": 400, "not_found": 404, "rate_limited": 429,
             "unavailable": 503, "not_connected": 503, "timeout": 504, "internal": 502}


class LocalApi:
    def __init__(self, *, port: int, token: str, ask: Callable[[str, dict, float], dict],
                 health: Callable[[], dict[str, Any]], metrics: Callable[[], str], host: str = "127.0.0.1"):
        self.token = token
        self.ask = ask
        self.health = health
        self.metrics = metrics
        self.server = ThreadingHTTPServer((host, port), self._handler_class())
        self.server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def start(self) -> "LocalApi":
        self._thread = threading.Thread(target=self.server.serve_forever, name="local-api", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler_class(self):
        api = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "omnikiosk-agent"
            sys_version = ""

            def log_message(self, *args):  # the JSON log says what matters; no per-request noise
                return

            def do_GET(self):
                if self.path == "/healthz":
                    state = api.health()
                    self._send(200 if state.get("ok") else 503, state)
                elif self.path == "/metrics":
                    body = api.metrics().encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "text/plain; version=0.0.4")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                else:
                    self._send(404, wire.error("bad_request", f"no such endpoint: GET {self.path[:80]}"))

            def do_POST(self):
                if self.path != "/v1/requests":
                    self._send(404, wire.error("bad_request", f"no such endpoint: POST {self.path[:80]}"))
                    return
                sent = self.headers.get("Authorization", "")
                if not hmac.compare_digest(sent.encode(), f"Bearer {api.token}".encode()):
                    log.warning("local API call without the right token", extra={"path": self.path})
                    self._send(401, {"ok": False, "error": {"code": "unauthorized",
                                                            "message": "send the token of local_api.token_file"}})
                    return
                if self.headers.get_content_type() != "application/json":
                    self._send(415, wire.error("bad_request", "send Content-Type: application/json"))
                    return
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY:
                    self._send(413, wire.error("bad_request", f"body over {MAX_BODY} bytes"))
                    return
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                except (ValueError, UnicodeDecodeError):
                    self._send(400, wire.error("bad_request", "body is not JSON"))
                    return
                if not isinstance(body, dict):
                    self._send(400, wire.error("bad_request", "body must be a JSON object"))
                    return
                answer = api.ask(body.get("method"), body.get("params", {}), wire.clamp_timeout(body.get("timeout_s")))
                code = 200 if answer.get("ok") else STATUS_OF.get(answer["error"]["code"], 502)
                self._send(code, answer)

            def _send(self, status: int, obj: dict[str, Any]) -> None:
                body = json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
                self.send_response(status, HTTPStatus(status).phrase)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

        return Handler
