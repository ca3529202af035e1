"""The device catalog cache (`catalog.db`): products, prices, promotions, reviews and stock, so a
product scan answers even with the hub down. The edge agent writes it; the kiosk only reads.

The agent keeps it in step with the hub page by page (`apply_page`, see protocol.catalog).
Every row carries the `generation` it was written in: a resync (`start_resync`) starts a new
generation and the last page of the full fetch sweeps the rows of older ones, so the kiosk
reads the old catalog until the new one is complete.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from typing import Any, Iterable

import sqlite_utils

from protocol.catalog import NEARBY_LIMIT, ONLINE, TOP_REVIEWS, check_page, product_view, stock_key
from protocol.sqlite import immediate

__all__ = ["CatalogCache", "NEARBY_LIMIT", "ONLINE", "SCHEMA", "SCHEMA_VERSION", "TOP_REVIEWS"]

# Bump when the tables change: an older file is dropped and fetched again (it is only a cache).
SCHEMA_VERSION = 2
SCHEMA = [
    "CREATE TABLE IF NOT EXISTS products (gtin TEXT PRIMARY KEY, name TEXT NOT NULL, brand TEXT, category TEXT,"
    " description TEXT, image_url TEXT, price REAL, currency TEXT, compare_at_price REAL, promotion TEXT,"
    " rating_average REAL, rating_count INTEGER, reviews TEXT, online_url TEXT, updated_at TEXT,"
    " generation INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS stock (gtin TEXT NOT NULL, store TEXT NOT NULL, quantity INTEGER NOT NULL,"
    " location TEXT, updated_at TEXT, generation INTEGER NOT NULL, PRIMARY KEY (gtin, store))",
    "CREATE TABLE IF NOT EXISTS stores (id TEXT PRIMARY KEY, name TEXT NOT NULL, generation INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS catalog_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
]
TABLES = ("products", "stock", "stores", "catalog_meta")
PRODUCT_COLUMNS = ("gtin", "name", "brand", "category", "description", "image_url", "price", "currency",
                   "compare_at_price", "promotion", "rating_average", "rating_count", "reviews", "online_url",
                   "updated_at")
FRESH_META = {"schema": str(SCHEMA_VERSION), "version": "0", "generation": "1", "resync_pending": "0",
              "sync_since": "0"}


class CatalogCache:
    """catalog.db for one device: the agent writes pages into it, the kiosk reads products. Thread-safe."""

    def __init__(self, db: sqlite_utils.Database):
        self.db = db
        self._lock = threading.Lock()
        with self._lock:
            if _is_current(db.conn):  # the usual case: no write lock taken at start
                return
            with self._writing() as conn:
                if not _is_current(conn):  # the other process may have just done it
                    _recreate(conn)

    # --- writing (the agent; the demo seeds it the same way)
    def replace_all(self, *, version: int, stores: Iterable[dict[str, Any]], products: Iterable[dict[str, Any]],
                    stock: Iterable[dict[str, Any]]) -> None:
        """Swap the whole catalog in one transaction, so the kiosk never reads half of one."""
        with self._lock, self._writing() as conn:
            for table in ("products", "stock", "stores"):
                conn.execute(f"DELETE FROM {table}")
            generation = int(_meta(conn, "generation"))
            for store in stores:
                _upsert_store(conn, store, generation)
            for product in products:
                _upsert_product(conn, product, generation)
            for row in stock:
                _upsert_stock(conn, row, generation)
            # A whole catalog in hand ends any sync or resync that was under way.
            _set_meta(conn, version=str(version), resync_pending="0", sync_since=str(version), sync_cursor=None)

    def apply_page(self, page: dict[str, Any], *, since: int) -> dict[str, int]:
        """Apply one `catalog.changes` page, asked with `since`, in one transaction.

        Raises ValueError, and applies nothing, when the page is malformed or `since` does not
        fit the sync under way. Returns {"upserted", "deleted", "swept"}.
        """
        problem = check_page(page) or _check_keys(page["changes"])
        if problem:
            raise ValueError(f"catalog page rejected: {problem}")
        with self._lock, self._writing() as conn:
            if since != 0 and _meta(conn, "resync_pending") == "1":
                raise ValueError(f"a catalog resync is under way: ask catalog.changes from since=0, not {since}")
            generation = int(_meta(conn, "generation"))
            counts = {"upserted": 0, "deleted": 0, "swept": 0}
            for change in page["changes"]:
                if change["data"] is None:
                    counts["deleted"] += _delete(conn, change["kind"], change["key"])
                else:
                    _UPSERT[change["kind"]](conn, change["data"], generation)
                    counts["upserted"] += 1
            cursor = page["next_cursor"]
            _set_meta(conn, sync_since=str(since), sync_cursor=cursor)
            if cursor is None:
                _set_meta(conn, version=str(page["version"]))
                if _meta(conn, "resync_pending") == "1":
                    counts["swept"] = _sweep(conn, generation)
                    _set_meta(conn, resync_pending="0")
            return counts

    def start_resync(self) -> None:
        """Fetch the whole catalog again (`catalog.resync`); the kiosk keeps the old rows until it is in."""
        with self._lock, self._writing() as conn:
            generation = int(_meta(conn, "generation")) + 1
            _set_meta(conn, generation=str(generation), resync_pending="1", version="0", sync_since="0",
                      sync_cursor=None)

    # --- reading (the kiosk; the agent for its sync)
    @property
    def version(self) -> int:
        with self._lock:
            return int(_meta(self.db.conn, "version") or 0)

    def resume_point(self) -> tuple[int, str | None]:
        """(since, cursor) to ask next: mid-way through a sync that a restart interrupted, or from `version`."""
        with self._lock:
            rows = dict(self.db.execute(
                "SELECT key, value FROM catalog_meta WHERE key IN ('version', 'sync_since', 'sync_cursor')").fetchall())
        if rows.get("sync_cursor"):
            return int(rows["sync_since"]), rows["sync_cursor"]
        return int(rows.get("version", 0)), None

    def product(self, gtin: str, store: str) -> dict[str, Any] | None:
        """Everything the product screen needs, or None when the catalog does not know the GTIN."""
        columns = ", ".join(f"p.{c}" for c in PRODUCT_COLUMNS)
        with self._lock:
            # One statement, so the product and its stock come from the same committed catalog.
            rows = self.db.execute(
                f"SELECT {columns}, s.store, s.quantity, s.location, st.name FROM products p "
                "LEFT JOIN stock s ON s.gtin = p.gtin LEFT JOIN stores st ON st.id = s.store "
                "WHERE p.gtin = ?", [gtin]).fetchall()
        if not rows:
            return None
        product = _product_data(dict(zip(PRODUCT_COLUMNS, rows[0])))
        stock = [{"gtin": gtin, "store": row[-4], "quantity": row[-3], "location": row[-2], "store_name": row[-1]}
                 for row in rows if row[-4] is not None]
        return product_view(product, stock, store)

    def _writing(self):
        """The kiosk reads all of a write or none of it."""
        return immediate(self.db.conn)


def _is_current(conn: sqlite3.Connection) -> bool:
    columns = {row[1] for row in conn.execute("PRAGMA table_info(products)").fetchall()}
    if "generation" not in columns:
        return False
    meta = conn.execute("SELECT value FROM catalog_meta WHERE key = 'schema'").fetchone()
    return meta is not None and meta[0] == str(SCHEMA_VERSION)


def _recreate(conn) -> None:
    for table in TABLES:
        conn.execute(f"DROP TABLE IF EXISTS {table}")
    for statement in SCHEMA:
        conn.execute(statement)
    conn.executemany("INSERT INTO catalog_meta VALUES (?, ?)", FRESH_META.items())


def _meta(conn, key: str) -> str | None:
    row = conn.execute("SELECT value FROM catalog_meta WHERE key = ?", [key]).fetchone()
    return row[0] if row else None


def _set_meta(conn, **values: str | None) -> None:
    for key, value in values.items():
        if value is None:
            conn.execute("DELETE FROM catalog_meta WHERE key = ?", [key])
        else:
            conn.execute("INSERT OR REPLACE INTO catalog_meta VALUES (?, ?)", [key, value])


def _check_keys(changes: list[dict[str, Any]]) -> str | None:
    """A change's key must name the row its data describes; check_page does not look at that."""
    for index, change in enumerate(changes):
        kind, key, data = change["kind"], change["key"], change.get("data")
        if data is None:
            if kind == "stock" and "/" not in key:
                return f"change #{index}: stock key {key[:40]!r} is not gtin/store"
            continue
        if kind == "product":
            expected = data["gtin"]
        elif kind == "stock":
            expected = stock_key(data["gtin"], data["store"])
        else:
            expected = data["id"]
        if key != expected:
            return f"change #{index}: key {key[:40]!r} does not match its data ({expected[:40]!r})"
    return None


def _upsert_product(conn, product: dict[str, Any], generation: int) -> None:
    conn.execute(f"INSERT OR REPLACE INTO products ({', '.join(PRODUCT_COLUMNS)}, generation) "
                 f"VALUES ({', '.join('?' * (len(PRODUCT_COLUMNS) + 1))})", [*_product_row(product), generation])


def _upsert_stock(conn, row: dict[str, Any], generation: int) -> None:
    conn.execute("INSERT OR REPLACE INTO stock (gtin, store, quantity, location, updated_at, generation) "
                 "VALUES (?, ?, ?, ?, ?, ?)",
                 [row["gtin"], row["store"], int(row["quantity"]), row.get("location"), row.get("updated_at"),
                  generation])


def _upsert_store(conn, store: dict[str, Any], generation: int) -> None:
    conn.execute("INSERT OR REPLACE INTO stores (id, name, generation) VALUES (?, ?, ?)",
                 [store["id"], store["name"], generation])


_UPSERT = {"product": _upsert_product, "stock": _upsert_stock, "store": _upsert_store}


def _delete(conn, kind: str, key: str) -> int:
    if kind == "product":
        return conn.execute("DELETE FROM products WHERE gtin = ?", [key]).rowcount
    if kind == "stock":
        gtin, store = key.split("/", 1)
        return conn.execute("DELETE FROM stock WHERE gtin = ? AND store = ?", [gtin, store]).rowcount
    return conn.execute("DELETE FROM stores WHERE id = ?", [key]).rowcount


def _sweep(conn, generation: int) -> int:
    """Rows the full fetch of this generation did not bring: the hub no longer has them."""
    return sum(conn.execute(f"DELETE FROM {table} WHERE generation < ?", [generation]).rowcount
               for table in ("products", "stock", "stores"))


def _product_row(p: dict[str, Any]) -> tuple:
    rating = p.get("rating") or {}
    return (p["gtin"], p["name"], p.get("brand"), p.get("category"), p.get("description"), p.get("image_url"),
            p.get("price"), p.get("currency"), p.get("compare_at_price"),
            json.dumps(p["promotion"]) if p.get("promotion") else None,
            rating.get("average"), rating.get("count") or 0,
            json.dumps((p.get("reviews") or [])[:TOP_REVIEWS], ensure_ascii=False), p.get("online_url"),
            p.get("updated_at"))


def _product_data(row: dict[str, Any]) -> dict[str, Any]:
    """A products row back in the wire shape product_view reads."""
    return {**{k: row[k] for k in PRODUCT_COLUMNS if k not in ("promotion", "rating_average", "rating_count",
                                                                 "reviews")},
            "promotion": json.loads(row["promotion"]) if row["promotion"] else None,
            "rating": {"average": row["rating_average"], "count": row["rating_count"]},
            "reviews": json.loads(row["reviews"] or "[]")}
