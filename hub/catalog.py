"""The hub's versioned catalog: products, stock and stores, each row numbered with the catalog
version that last changed it, served to devices as pages of `catalog.changes` (protocol.catalog).

One table holds every row as the device receives it (`data`, canonical JSON, NULL once
deleted) with the version that wrote it. A feed bumps the version once and stamps only the
rows it changed, so a device that holds version L needs only the rows with version > L.
Pages run in (version, kind, key) order: a row changed again while a device is paging gets
a version above the device's cursor, so the device still receives it.

Three ways in, each one transaction and at most one new version: a whole feed (`apply_feed`),
the online store's changes feed (`apply_changes`) and the till's stock counts (`update_stock`).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
import threading
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Iterator, Mapping

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
            _write(conn, version, changed, gone)
            return version

    def apply_changes(self, changes: Iterable[Mapping[str, Any]]) -> int:
        """Take the online store's catalog changes feed: items {"kind", "key", "data": {…} | null},
        null deleting the row. Returns the catalog version afterwards.

        One transaction, one new version for the rows that actually change (a change equal to
        the row held, or deleting a row never held, moves nothing). Of several changes to one
        row the last counts. Deleting a product deletes its stock rows too, unless the same
        batch writes them. Raises ValueError, writing nothing, when a change is malformed.
        """
        wanted: dict[tuple[str, str], tuple[str, str] | None] = {}
        for index, change in enumerate(changes):
            kind, key, row = _change_row(index, change)
            wanted[(kind, key)] = row
        with self._writing() as conn:
            gone_products = [key for (kind, key), row in wanted.items() if kind == "product" and row is None]
            for gtin in gone_products:
                for (key,) in conn.execute("SELECT key FROM catalog_rows WHERE kind = 'stock' AND key > ? AND key < ? "
                                           "AND data IS NOT NULL", [f"{gtin}/", f"{gtin}0"]).fetchall():
                    wanted.setdefault(("stock", key), None)
            held = self._hashes(conn, list(wanted))
            changed = [(kind, key, *row) for (kind, key), row in wanted.items()
                       if row is not None and held.get((kind, key)) != row[0]]
            gone = [(kind, key) for (kind, key), row in wanted.items()
                    if row is None and held.get((kind, key)) is not None]
            version = _current_version(conn)
            if not changed and not gone:
                return version
            version += 1
            _write(conn, version, changed, gone)
            return version

    def update_stock(self, rows: Iterable[Mapping[str, Any]], *, now: datetime | None = None, dry_run: bool = False,
                     on_unknown: Callable[[Mapping[str, Any]], None] | None = None) -> tuple[int, int]:
        """Set stock counts, e.g. from the till: rows {"gtin", "store", "quantity", "location"};
        location None keeps the row's location. Returns (catalog version, rows changed).

        Only rows whose quantity or location differ get the new version (stamped `updated_at`
        = now); all in one transaction. A row whose product the catalog does not have goes to
        `on_unknown` and is skipped. `dry_run` counts what would change and writes nothing.
        Raises ValueError, writing nothing, for a row that is not a GTIN-14 and store id.
        """
        stamp = (now or datetime.now(timezone.utc)).astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        with (self._lock if dry_run else self._writing()):
            conn = self.db.conn
            version, changed = _current_version(conn), 0
            for chunk in _chunks(rows, _IN_CHUNK):
                gtins = list(dict.fromkeys(row["gtin"] for row in chunk))
                known = {p["gtin"] for p in self._datas(conn, "product", gtins)}
                held = {stock_key(s["gtin"], s["store"]): s
                        for s in self._datas(conn, "stock", [stock_key(r["gtin"], r["store"]) for r in chunk])}
                writes = []
                for row in chunk:
                    if row["gtin"] not in known:
                        if on_unknown is not None:
                            on_unknown(row)
                        continue
                    data = _counted_stock(row, held.get(stock_key(row["gtin"], row["store"])), stamp)
                    if data is not None:
                        key = _key("stock", data)
                        held[key] = data  # a second count of the same row in this chunk compares with this one
                        writes.append(("stock", key, *_hashed("stock", key, data, "stock count")))
                changed += len(writes)
                if writes and not dry_run:
                    _write(conn, version + 1, writes, [])
            return (version + 1 if changed and not dry_run else version), changed

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

    def products(self, gtins: list[str], store: str) -> dict[str, dict[str, Any]]:
        """{gtin: product screen in `store`} for the products the catalog has (e.g. to value offers)."""
        return {gtin: view for gtin in dict.fromkeys(gtins) if (view := self.product(gtin, store)) is not None}

    def new_products(self, categories: list[str], *, since: str, store: str,
                     limit: int = 20) -> dict[str, dict[str, Any]]:
        """The products in `categories` changed at or after `since` (ISO 8601, Z) and in stock in
        `store`, newest first, at most `limit`, as {gtin: product screen}."""
        if not categories:
            return {}
        with self._lock:
            # Reads every product's JSON: fine for a store's catalog of tens of thousands.
            gtins = [gtin for (gtin,) in self.db.conn.execute(
                "SELECT p.key FROM catalog_rows p "
                "JOIN catalog_rows s ON s.kind = 'stock' AND s.key = p.key || '/' || ? "
                "WHERE p.kind = 'product' "
                f"AND json_extract(p.data, '$.category') IN ({', '.join('?' * len(categories))}) "
                "AND json_extract(p.data, '$.updated_at') >= ? AND json_extract(s.data, '$.quantity') > 0 "
                "ORDER BY json_extract(p.data, '$.updated_at') DESC, p.key LIMIT ?",
                [store, *categories, since, limit]).fetchall()]
        return self.products(gtins, store)

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

    def _hashes(self, conn: sqlite3.Connection, keys: list[tuple[str, str]]) -> dict[tuple[str, str], str | None]:
        """(kind, key) → hash (None once deleted) of the rows held among `keys`."""
        held: dict[tuple[str, str], str | None] = {}
        for kind in KINDS:
            names = [key for k, key in keys if k == kind]
            for start in range(0, len(names), _IN_CHUNK):
                chunk = names[start:start + _IN_CHUNK]
                held.update(((kind, key), digest) for key, digest in conn.execute(
                    f"SELECT key, hash FROM catalog_rows WHERE kind = ? AND key IN ({', '.join('?' * len(chunk))})",
                    [kind, *chunk]).fetchall())
        return held

    def _store_names(self, conn: sqlite3.Connection, stores: list[str]) -> dict[str, str]:
        return {s["id"]: s["name"] for s in self._datas(conn, "store", list(dict.fromkeys(stores)))}


def _current_version(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT coalesce(max(version), 0) FROM catalog_rows").fetchone()[0]


def _write(conn: sqlite3.Connection, version: int, changed: list[tuple[str, str, str, str]],
           gone: list[tuple[str, str]]) -> None:
    """Stamp rows with `version`: `changed` (kind, key, hash, JSON) written, `gone` (kind, key) left as tombstones."""
    conn.executemany(
        "INSERT INTO catalog_rows (kind, key, version, hash, data) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (kind, key) DO UPDATE SET version = excluded.version, hash = excluded.hash, "
        "data = excluded.data",
        [(kind, key, version, digest, text) for kind, key, digest, text in changed])
    conn.executemany("UPDATE catalog_rows SET version = ?, hash = NULL, data = NULL WHERE kind = ? AND key = ?",
                     [(version, kind, key) for kind, key in gone])


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
        rows[(kind, key)] = _hashed(kind, key, data, "catalog feed")
    return rows


def _hashed(kind: str, key: str, data: dict[str, Any], where: str) -> tuple[str, str]:
    """(hash, canonical JSON) of a row in the device's shape, checked as a device checks a page."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    change = {"kind": kind, "key": key, "version": 1, "data": data}
    problem = check_page({"version": 0, "next_cursor": None, "changes": [change]})
    if problem:
        raise ValueError(f"{where}, {kind} {key!r}: {problem.removeprefix('change #0: ')}")
    if len(text.encode()) + _CHANGE_OVERHEAD > PAGE_BYTES:
        raise ValueError(f"{where}, {kind} {key!r}: too large for one catalog page "
                         f"(at most {PAGE_BYTES} bytes); shorten its description or reviews")
    return hashlib.sha256(text.encode()).hexdigest(), text


def _change_row(index: int, change: Any) -> tuple[str, str, tuple[str, str] | None]:
    """(kind, key, (hash, JSON) or None to delete) of one item of a changes feed; ValueError if malformed.
    A key of None takes the key the data implies."""
    where = f"catalog change #{index}"
    if not isinstance(change, Mapping) or change.get("kind") not in KINDS:
        raise ValueError(f"{where}: needs a kind ({', '.join(KINDS)}), a key and data (an object, or null to delete)")
    kind, key, data = change["kind"], change.get("key"), change.get("data")
    if data is not None and not isinstance(data, Mapping):
        raise ValueError(f"{where}: data must be an object, or null to delete")
    if data is None and not isinstance(key, str):
        raise ValueError(f"{where}: a deletion needs the key of the {kind} to delete")
    shaped = _SHAPES[kind](data) if data is not None else None
    try:
        implied = _key(kind, shaped if shaped is not None else _key_data(kind, key))
    except ValueError as exc:
        raise ValueError(f"{where}: {str(exc).removeprefix('catalog feed: ')}") from None
    if data is None:
        return kind, implied, None
    if key is not None and key != implied:
        raise ValueError(f"{where}: key {str(key)[:70]!r} does not match its data ({implied!r})")
    return kind, implied, _hashed(kind, implied, shaped, where)


def _key_data(kind: str, key: str) -> dict[str, Any]:
    """The fields a key stands for, so a deletion's key is checked like a row's."""
    if kind == "store":
        return {"id": key}
    if kind == "product":
        return {"gtin": key}
    gtin, _, store = key.partition("/")
    return {"gtin": gtin, "store": store or None}


def _counted_stock(row: Mapping[str, Any], held: dict[str, Any] | None, stamp: str) -> dict[str, Any] | None:
    """The stock row after a count, or None when quantity and location are as held."""
    location = row.get("location") if row.get("location") is not None else (held or {}).get("location")
    if held is not None and held["quantity"] == row["quantity"] and held.get("location") == location:
        return None
    return {"gtin": row["gtin"], "store": row["store"], "quantity": row["quantity"], "location": location,
            "updated_at": stamp}


def _chunks(rows: Iterable[Mapping[str, Any]], size: int) -> Iterator[list[Mapping[str, Any]]]:
    chunk: list[Mapping[str, Any]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


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


_SHAPES = {"product": _product_data, "stock": _stock_data, "store": _store_data}
