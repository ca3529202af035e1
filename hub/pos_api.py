"""`POST /api/v1/pos/sales`: the till sends its sales (JSON, or the CSV of `python -m hub import-sales`).

A machine API with a bearer key (`pos.api_key_file`), not a staff page: no session, no CSRF token.
Answers (docs/pos.md):
  200 {"imported", "duplicates", "bad", "matched": {...}, "rejected": [...]}  something was good or a duplicate
  422 the same shape                                                         every sale was bad
  400 the body is not JSON / CSV we can read;  413 over MAX_BODY_BYTES or MAX_SALES_PER_REQUEST sales
  401 no or a wrong key (WWW-Authenticate: Bearer);  503 no key configured, or the database is busy
A resend of the same sales is safe: each id is stored once, the resend answers with duplicates.
"""

from __future__ import annotations

import hmac
import io
import logging
import sqlite3
import threading
from collections import Counter
from datetime import datetime, timezone
from typing import Any, Callable
from zoneinfo import ZoneInfo

import sqlite_utils
from flask import Flask, Response, jsonify, request

from hub.pos_sales import (
    MAX_SALES_PER_REQUEST,
    BadRow,
    Sale,
    TooManySales,
    UnreadableBody,
    UnusableFile,
    read_sales_csv,
    sales_from_json,
    store_sales,
)
from hub.store import HubStore
from protocol.settings import ConfigError

log = logging.getLogger("hub.pos")

PATH = "/api/v1/pos/sales"
MAX_BODY_BYTES = 2 * 1024 * 1024
MAX_REJECTED_SHOWN = 1000  # a CSV body can have more bad rows than an answer should list
REALM = "omnikiosk-pos"
NOT_CONFIGURED = "POS import is not configured (pos.api_key_file)"
MIN_KEY_CHARS = 16

Metric = tuple[str, str, dict[str, str], float]  # as hub.web.Metric


class PosApi:
    """What register_pos_api added: its `counters` (imported, duplicates, bad, unauthorized, unreadable:
    sales or rows, not requests, except the last two) and those as `metrics()` for /metrics."""

    def __init__(self):
        self.counters: Counter = Counter()
        self._lock = threading.Lock()

    def count(self, **amounts: int) -> None:
        with self._lock:
            self.counters.update({k: v for k, v in amounts.items() if v})

    def metrics(self) -> list[Metric]:
        with self._lock:
            counts = dict(self.counters)
        return [("omnikiosk_hub_pos_sales_total", "POS sales received over HTTP by outcome (bad: sales or CSV rows)",
                 {"outcome": k}, counts.get(k, 0)) for k in ("imported", "duplicates", "bad")] + [
                ("omnikiosk_hub_pos_requests_refused_total", "POS import requests refused by reason",
                 {"reason": k}, counts.get(k, 0)) for k in ("unauthorized", "unreadable")]


def pos_api_key(config) -> bytes | None:
    """The key of `pos.api_key_file`, or None when the setting is empty (POS import over HTTP is off).
    ConfigError when the file is set but unreadable or empty."""
    from protocol.cli import read_secret
    path = config["pos.api_key_file"]
    if not path:
        return None
    key = read_secret(path, "POS API key")
    if len(key) < MIN_KEY_CHARS:
        raise ConfigError(f"{path}: the POS API key has {len(key)} characters; use at least {MIN_KEY_CHARS} "
                          "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')")
    return key.encode()


def register_pos_api(app: Flask, *, open_db: HubStore | Callable[[], sqlite_utils.Database], api_key: bytes | None,
                     tz: ZoneInfo, currency: str, store: str,
                     clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> PosApi:
    """Add POST /api/v1/pos/sales to `app`. `open_db` is the HubStore to write with (its lock keeps writes
    apart), or a function opening a database (closed after each request). The staff app must leave this
    path out of its CSRF check (hub.web.check_csrf): the caller has a key, not a session."""
    api = PosApi()

    def error(status: int, code: str, message: str, **headers: str) -> Response:
        response = jsonify(error={"code": code, "message": message})
        response.status_code = status
        response.headers.update(headers)
        return response

    def authorised() -> Response | None:
        if not api_key:
            return error(503, "not_configured", NOT_CONFIGURED)
        scheme, _, sent = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and sent.strip() and hmac.compare_digest(sent.strip().encode(), api_key):
            return None
        api.count(unauthorized=1)
        given = bool(sent.strip())
        log.warning("pos import refused: %s key", "wrong" if given else "no",
                    extra={"remote": request.remote_addr, "store": store})
        challenge = f'Bearer realm="{REALM}"' + (', error="invalid_token"' if given else "")
        return error(401, "unauthorized", "a wrong key" if given else "send Authorization: Bearer <key>",
                     **{"WWW-Authenticate": challenge})

    def read_body() -> bytes | Response:
        if (request.content_length or 0) > MAX_BODY_BYTES:
            return error(413, "too_large", f"body over {MAX_BODY_BYTES // (1024 * 1024)} MiB; send fewer sales")
        data = request.stream.read(MAX_BODY_BYTES + 1)
        if len(data) > MAX_BODY_BYTES:
            return error(413, "too_large", f"body over {MAX_BODY_BYTES // (1024 * 1024)} MiB; send fewer sales")
        return data

    def parse(data: bytes) -> list[Sale | BadRow]:
        kind = request.mimetype
        if kind in ("text/csv", "application/csv"):
            parsed = list(read_sales_csv(io.BytesIO(data), tz=tz, currency=currency))
            sales = len({item.id for item in parsed if isinstance(item, Sale)})
            if sales > MAX_SALES_PER_REQUEST:  # the same bound as JSON: one request, one short transaction
                raise TooManySales(f"{sales} sales in one request; send at most {MAX_SALES_PER_REQUEST} at a time")
            return parsed
        if kind == "application/json":
            return sales_from_json(data, tz=tz, currency=currency)
        raise UnreadableBody(f"Content-Type {kind or 'missing'}: send application/json or text/csv")

    @app.post(PATH)
    def pos_sales():
        refusal = authorised()
        if refusal is not None:
            return refusal
        data = read_body()
        if isinstance(data, Response):
            api.count(unreadable=1)
            return data
        try:
            parsed = parse(data)
        except TooManySales as exc:
            api.count(unreadable=1)
            return error(413, "too_many_sales", str(exc))
        except (UnreadableBody, UnusableFile) as exc:
            api.count(unreadable=1)
            return error(400, "unreadable", str(exc))
        sales = [item for item in parsed if isinstance(item, Sale)]
        bad = [item for item in parsed if isinstance(item, BadRow)]
        try:
            result = _store(open_db, sales, now=clock())
        except sqlite3.Error as exc:
            log.error("pos import not stored: %s", exc, extra={"store": store})
            return error(503, "busy", "the sales could not be stored now; send them again later", **{"Retry-After": "30"})
        api.count(imported=result.imported, duplicates=result.duplicates, bad=len(bad))
        # Counts only: who bought is never logged.
        log.info("pos sales imported", extra={"store": store, "format": request.mimetype, "imported": result.imported,
                                              "duplicates": result.duplicates, "bad": len(bad), **{
                                                  f"matched_{k}": v for k, v in result.matched.items()}})
        answer: dict[str, Any] = {
            "imported": result.imported, "duplicates": result.duplicates, "bad": len(bad), "matched": result.matched,
            "rejected": [row.rejection() for row in bad[:MAX_REJECTED_SHOWN]]}
        if len(bad) > MAX_REJECTED_SHOWN:
            answer["rejected_not_shown"] = len(bad) - MAX_REJECTED_SHOWN
        status = 422 if bad and not (result.imported or result.duplicates) else 200
        return jsonify(answer), status

    return api


def _store(open_db, sales: list[Sale], *, now: datetime):
    if isinstance(open_db, HubStore):
        return store_sales(open_db, sales, now=now)
    db = open_db()
    try:
        return store_sales(db, sales, now=now)
    finally:
        db.conn.close()
