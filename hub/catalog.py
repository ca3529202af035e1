"""The hub's versioned catalog: products, stock and stores, each row numbered with the catalog
version that last changed it, served to devices as pages of `catalog.changes` (protocol.catalog).

One table holds every row as the device receives it (`data`, canonical JSON, NULL once
deleted) with the version that wrote it. A feed bumps the version once and stamps only the
rows it changed, so a device that holds version L needs only the rows with version > L.
Pages run in (version, kind, key) order: a row changed again while a device is paging gets
a version above the device's cursor, so the device still receives it.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
import threading
from typing import Any, Iterable

import sqlite_utils

from protocol.catalog import (
    DEFAULT_PAGE_LIMIT,
    KINDS,
    MAX_PAGE_LIMIT,
    ONLINE,
    TOP_REVIEWS,
    check_page,
    product_view,
    stock_key,
)
from protocol.envelope import ID_PATTERN
from protocol.requests import CURSOR, GTIN14, MAX_RESPONSE_BYTES, encode, ok
from protocol.sqlite import immediate

PRODUCT_FIELDS = ("gtin", "name", "brand", "category", "description", "image_url", "price", "currency",
                  "compare_at_price", "promotion", "rating", "reviews", "online_url", "updated_at")
STOCK_FIELDS = ("gtin", "store", "quantity", "location", "updated_at")
# The answer travels as {"ok": true, "result": page}; keep it this far under the packet limit
# so MQTT properties and any later envelope field still fit.
PAGE_BYTES = MAX_RESPONSE_BYTES - 1024
# The longest cursor, used to size a page before knowing whether it gets one.
_LONGEST_CURSOR = "x" * 120
# Bytes a page and one change add around the change's data: the page's version and longest
# cursor, the change's kind, key and version, the JSON punctuation, the answer's envelope.
_CHANGE_OVERHEAD = 400
_IN_CHUNK = 500  # keys per IN (...) query, well under SQLite's variable limit


def create_catalog_tables(db: sqlite_utils.Database) -> None:
    db.execute("CREATE TABLE catalog_rows (kind TEXT NOT NULL, key TEXT NOT NULL, version INTEGER NOT NULL,"
               " hash TEXT, data TEXT, PRIMARY KEY (kind, key))")
    # Pages walk this index from a cursor; it also answers max(version) without a scan.
    db.execute("CREATE INDEX catalog_rows_by_version ON catalog_rows (version, kind, key)")
    db.execute("CREATE TABLE catalog_info (key TEXT PRIMARY KEY, value TEXT NOT NULL)")


class HubCatalog:
    """The store's catalog as devices sync it. Give it its own connection; safe to share between threads."""

    def __init__(self, db: sqlite_utils.Database):
        self.db = db
        self._lock = threading.RLock()
        with self._writing() as conn:
            # Cursors carry this id, so a cursor from before the catalog was recreated is refused.
            conn.execute("INSERT OR IGNORE INTO catalog_info VALUES ('id', ?)", [secrets.token_hex(4)])
            self._id = conn.execute("SELECT value FROM catalog_info WHERE key = 'id'").fetchone()[0]

    # --- writing
    def apply_feed(self, feed: dict[str, Any], *, full: bool = True) -> int:
        """Take a catalog feed from the online store; returns the catalog version afterwards.

        Only new or changed rows get the next version; with `full`, rows the feed no longer
        has are deleted at that version. A feed that changes nothing writes nothing.
        Raises ValueError, writing nothing, when a row of the feed is malformed.
        """
        wanted = _feed_rows(feed)
        with self._writing() as conn:
            held = {(kind, key): digest for kind, key, digest in
                    conn.execute("SELECT kind, key, hash FROM catalog_rows").fetchall()}
            changed = [(kind, key, digest, text) for (kind, key), (digest, text) in wanted.items()
                       if held.get((kind, key)) != digest]
            gone = [(kind, key) for (kind, key), digest in held.items()
                    if full and digest is not None and (kind, key) not in wanted]
            version = _current_version(conn)
            if not changed and not gone:
                return version
            version += 1
            conn.executemany(
                "INSERT INTO catalog_rows (kind, key, version, hash, data) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (kind, key) DO UPDATE SET version = excluded.version, hash = excluded.hash, "
                "data = excluded.data",
                [(kind, key, version, digest, text) for kind, key, digest, text in changed])
            conn.executemany("UPDATE catalog_rows SET version = ?, hash = NULL, data = NULL WHERE kind = ? AND key = ?",
                             [(version, kind, key) for kind, key in gone])
            return version

    # --- reading
    @property
    def version(self) -> int:
        with self._lock:
            return _current_version(self.db.conn)

    def changes(self, since: int, cursor: str | None = None, limit: int | None = DEFAULT_PAGE_LIMIT) -> dict[str, Any]:
        """One page of `catalog.changes`: rows changed after version `since`, from `cursor` on.

        Raises ValueError for a cursor this catalog did not issue (answer it as bad_request).
        """
        if not isinstance(since, int) or isinstance(since, bool) or since < 0:
            raise ValueError(f"since must be a whole number >= 0, not {since!r}")
        limit = max(1, min(DEFAULT_PAGE_LIMIT if limit is None else int(limit), MAX_PAGE_LIMIT))
        with self._lock:
            conn = self.db.conn
            # Read the version before the rows: a row written in between then only makes
            # the page carry more than its version says, never less.
            version = _current_version(conn)
            position = self._position(cursor, since, version)
            if position is None:
                rows = conn.execute("SELECT kind, key, version, data FROM catalog_rows WHERE version > ? "
                                    "ORDER BY version, kind, key LIMIT ?", [since, limit + 1])
            else:
                # The row value seeks straight to the cursor in the index, even when most of
                # the catalog shares one version (the first feed).
                rows = conn.execute("SELECT kind, key, version, data FROM catalog_rows "
                                    "WHERE (version, kind, key) > (?, ?, ?) ORDER BY version, kind, key LIMIT ?",
                                    [*position, limit + 1])
            try:
                return self._page(version, rows, limit)
            finally:
                rows.close()

    def product(self, gtin: str, store: str) -> dict[str, Any] | None:
        """The product screen for `gtin` in `store` (the `product.detail` answer); None if unknown or deleted."""
        with self._lock:
            conn = self.db.conn
            row = conn.execute("SELECT data FROM catalog_rows WHERE kind = 'product' AND key = ?", [gtin]).fetchone()
            if row is None or row[0] is None:
                return None
            # Keys are "gtin/store" and "0" sorts right after "/": this range is the GTIN's stock.
            stock = [json.loads(data) for (data,) in conn.execute(
                "SELECT data FROM catalog_rows WHERE kind = 'stock' AND key > ? AND key < ? AND data IS NOT NULL",
                [f"{gtin}/", f"{gtin}0"]).fetchall()]
            names = self._store_names(conn, [s["store"] for s in stock if s["store"] != ONLINE])
        for s in stock:
            s["store_name"] = names.get(s["store"])
        return product_view(json.loads(row[0]), stock, store)

    def stock_here(self, gtins: list[str], store: str) -> dict[str, dict[str, Any]]:
        """{gtin: {"quantity", "location", "name"}} for the given products in stock in `store`."""
        wanted = list(dict.fromkeys(gtins))
        found: dict[str, dict[str, Any]] = {}
        with self._lock:
            conn = self.db.conn
            stock = {s["gtin"]: s for s in self._datas(conn, "stock", [stock_key(g, store) for g in wanted])
                     if s["quantity"] > 0}
            products = {p["gtin"]: p for p in self._datas(conn, "product", list(stock))}
        for gtin in wanted:
            if gtin in stock and gtin in products:
                found[gtin] = {"quantity": stock[gtin]["quantity"], "location": stock[gtin].get("location"),
                               "name": products[gtin]["name"]}
        return found

    # --- inside
    def _writing(self):
        return immediate(self.db.conn, self._lock)

    def _position(self, cursor: str | None, since: int, version: int) -> tuple[int, str, str] | None:
        """The (version, kind, key) a cursor points after; ValueError unless this catalog issued it."""
        if cursor is None:
            return None
        refused = ValueError("cursor was not issued by this hub's catalog (it may have been rebuilt): "
                             "start again without a cursor")
        if not isinstance(cursor, str) or not CURSOR.match(cursor):
            raise refused
        parts = cursor.split(":", 3)
        if len(parts) != 4 or parts[0] != self._id or not parts[1].isdigit() or parts[2] not in KINDS:
            raise refused
        at = int(parts[1])
        if not since < at <= version:
            raise refused
        return at, parts[2], parts[3]

    def _cursor(self, change: dict[str, Any]) -> str:
        return f"{self._id}:{change['version']}:{change['kind']}:{change['key']}"

    def _page(self, version: int, rows: Iterable[tuple], limit: int) -> dict[str, Any]:
        """Changes from `rows` until `limit` or the byte budget; read lazily, so rows past the cut stay unread."""
        changes: list[dict[str, Any]] = []
        size = len(encode(ok({"version": version, "next_cursor": _LONGEST_CURSOR, "changes": []})))
        more = False
        for kind, key, row_version, data in rows:
            if len(changes) == limit:
                more = True
                break
            change = {"kind": kind, "key": key, "version": row_version,
                      "data": json.loads(data) if data is not None else None}
            size += len(encode(change)) + 1  # and the comma before it
            if size > PAGE_BYTES and changes:
                more = True
                break
            changes.append(change)
        return {"version": version, "next_cursor": self._cursor(changes[-1]) if more else None, "changes": changes}

    def _datas(self, conn: sqlite3.Connection, kind: str, keys: list[str]) -> list[dict[str, Any]]:
        found = []
        for start in range(0, len(keys), _IN_CHUNK):
            chunk = keys[start:start + _IN_CHUNK]
            found += [json.loads(data) for (data,) in conn.execute(
                f"SELECT data FROM catalog_rows WHERE kind = ? AND key IN ({', '.join('?' * len(chunk))}) "
                "AND data IS NOT NULL", [kind, *chunk]).fetchall()]
        return found

    def _store_names(self, conn: sqlite3.Connection, stores: list[str]) -> dict[str, str]:
        return {s["id"]: s["name"] for s in self._datas(conn, "store", list(dict.fromkeys(stores)))}


def _current_version(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT coalesce(max(version), 0) FROM catalog_rows").fetchone()[0]


def _feed_rows(feed: dict[str, Any]) -> dict[tuple[str, str], tuple[str, str]]:
    """(kind, key) → (hash, canonical JSON) of every row the feed describes, in the device's shape."""
    rows: dict[tuple[str, str], tuple[str, str]] = {}
    changes = []
    for store in feed.get("stores") or []:
        changes.append(("store", _store_data(store)))
    for product in feed.get("products") or []:
        changes.append(("product", _product_data(product)))
    for row in feed.get("stock") or []:
        changes.append(("stock", _stock_data(row)))
    for kind, data in changes:
        key = _key(kind, data)
        text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        change = {"kind": kind, "key": key, "version": 1, "data": data}
        problem = check_page({"version": 0, "next_cursor": None, "changes": [change]})
        if problem:
            raise ValueError(f"catalog feed, {kind} {key!r}: {problem.removeprefix('change #0: ')}")
        if len(text.encode()) + _CHANGE_OVERHEAD > PAGE_BYTES:
            raise ValueError(f"catalog feed, {kind} {key!r}: too large for one catalog page "
                             f"(at most {PAGE_BYTES} bytes); shorten its description or reviews")
        rows[(kind, key)] = (hashlib.sha256(text.encode()).hexdigest(), text)
    return rows


def _key(kind: str, data: dict[str, Any]) -> str:
    """The row's key, checked so that every cursor naming it matches protocol.requests.CURSOR."""
    if kind == "store":
        if not isinstance(data.get("id"), str) or not ID_PATTERN.match(data["id"]):
            raise ValueError(f"catalog feed: store id {str(data.get('id'))[:70]!r} must be a store id "
                             "(lower-case letters, digits and hyphens)")
        return data["id"]
    if not isinstance(data.get("gtin"), str) or not GTIN14.match(data["gtin"]):
        raise ValueError(f"catalog feed: {kind} gtin {str(data.get('gtin'))[:40]!r} must be a GTIN-14 (14 digits)")
    if kind == "product":
        return data["gtin"]
    store = data.get("store")
    if not isinstance(store, str) or not (store == ONLINE or ID_PATTERN.match(store)):
        raise ValueError(f"catalog feed: stock of {data['gtin']} names store {str(store)[:70]!r}, "
                         f"which is neither a store id nor {ONLINE!r}")
    return stock_key(data["gtin"], store)


def _product_data(product: dict[str, Any]) -> dict[str, Any]:
    data = {field: product.get(field) for field in PRODUCT_FIELDS}
    data["promotion"] = product.get("promotion") or None
    data["reviews"] = _newest_reviews(product.get("reviews") or [])
    return data


def _newest_reviews(reviews: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # sorted() is stable, so reviews of one day keep the online store's order.
    return sorted(reviews, key=lambda r: str(r.get("date") or ""), reverse=True)[:TOP_REVIEWS]


def _stock_data(row: dict[str, Any]) -> dict[str, Any]:
    return {field: row.get(field) for field in STOCK_FIELDS}


def _store_data(store: dict[str, Any]) -> dict[str, Any]:
    return {"id": store.get("id"), "name": store.get("name")}
