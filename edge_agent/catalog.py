"""The device catalog cache (`catalog.db`): products, prices, promotions, reviews and stock, so a
product scan answers even with the hub down. The edge agent writes it; the kiosk only reads.
"""

from __future__ import annotations

import json
import threading
from typing import Any, Iterable

import sqlite_utils

SCHEMA = [
    "CREATE TABLE IF NOT EXISTS products (gtin TEXT PRIMARY KEY, name TEXT NOT NULL, brand TEXT, category TEXT,"
    " description TEXT, image_url TEXT, price REAL, currency TEXT, compare_at_price REAL, promotion TEXT,"
    " rating_average REAL, rating_count INTEGER, reviews TEXT, online_url TEXT, updated_at TEXT)",
    "CREATE TABLE IF NOT EXISTS stock (gtin TEXT NOT NULL, store TEXT NOT NULL, quantity INTEGER NOT NULL,"
    " location TEXT, updated_at TEXT, PRIMARY KEY (gtin, store))",
    "CREATE TABLE IF NOT EXISTS stores (id TEXT PRIMARY KEY, name TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS catalog_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
]
ONLINE = "online"  # the stock row of the web shop's warehouse
TOP_REVIEWS = 3
NEARBY_LIMIT = 3


class CatalogCache:
    def __init__(self, db: sqlite_utils.Database):
        self.db = db
        self._lock = threading.Lock()
        with self._lock:
            for statement in SCHEMA:
                self.db.execute(statement)

    # --- writing (the agent; the demo seeds it the same way)
    def replace_all(self, *, version: int, stores: Iterable[dict[str, Any]], products: Iterable[dict[str, Any]],
                    stock: Iterable[dict[str, Any]]) -> None:
        """Swap the whole catalog in one transaction, so the kiosk never reads half of one."""
        with self._lock:
            conn = self.db.conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                for table in ("products", "stock", "stores"):
                    conn.execute(f"DELETE FROM {table}")
                conn.executemany("INSERT INTO stores (id, name) VALUES (?, ?)", [(s["id"], s["name"]) for s in stores])
                conn.executemany(
                    "INSERT INTO products VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [_product_row(p) for p in products])
                conn.executemany(
                    "INSERT INTO stock (gtin, store, quantity, location, updated_at) VALUES (?, ?, ?, ?, ?)",
                    [(s["gtin"], s["store"], int(s["quantity"]), s.get("location"), s.get("updated_at"))
                     for s in stock])
                conn.execute("INSERT OR REPLACE INTO catalog_meta VALUES ('version', ?)", [str(version)])
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    # --- reading (the kiosk)
    @property
    def version(self) -> int:
        with self._lock:
            row = self.db.execute("SELECT value FROM catalog_meta WHERE key = 'version'").fetchone()
        return int(row[0]) if row else 0

    def product(self, gtin: str, store: str) -> dict[str, Any] | None:
        """Everything the product screen needs, or None when the catalog does not know the GTIN."""
        with self._lock:
            row = self.db.execute("SELECT * FROM products WHERE gtin = ?", [gtin]).fetchone()
            if row is None:
                return None
            columns = [d[0] for d in self.db.execute("SELECT * FROM products LIMIT 0").description]
            stock = self.db.execute(
                "SELECT s.store, s.quantity, s.location, coalesce(st.name, s.store) FROM stock s "
                "LEFT JOIN stores st ON st.id = s.store WHERE s.gtin = ?", [gtin]).fetchall()
        product = dict(zip(columns, row))
        here = next(({"quantity": q, "location": loc} for st, q, loc, _ in stock if st == store),
                    {"quantity": 0, "location": None})
        nearby = sorted(({"store": st, "name": name, "quantity": q} for st, q, _, name in stock
                         if st not in (store, ONLINE) and q > 0), key=lambda s: -s["quantity"])[:NEARBY_LIMIT]
        online = next((q for st, q, _, _ in stock if st == ONLINE), 0)
        return {
            "gtin": gtin, "name": product["name"], "brand": product["brand"], "category": product["category"],
            "description": product["description"], "image_url": product["image_url"], "price": product["price"],
            "currency": product["currency"], "compare_at_price": product["compare_at_price"],
            "promotion": json.loads(product["promotion"]) if product["promotion"] else None,
            "rating": ({"average": product["rating_average"], "count": product["rating_count"]}
                       if product["rating_count"] else None),
            "reviews": json.loads(product["reviews"] or "[]")[:TOP_REVIEWS],
            "stock": {"here": here, "nearby": nearby, "online": {"available": online > 0}},
            "online_url": product["online_url"], "updated_at": product["updated_at"],
        }


def _product_row(p: dict[str, Any]) -> tuple:
    rating = p.get("rating") or {}
    return (p["gtin"], p["name"], p.get("brand"), p.get("category"), p.get("description"), p.get("image_url"),
            p.get("price"), p.get("currency"), p.get("compare_at_price"),
            json.dumps(p["promotion"]) if p.get("promotion") else None,
            rating.get("average"), rating.get("count") or 0,
            json.dumps(p.get("reviews", [])[:TOP_REVIEWS], ensure_ascii=False), p.get("online_url"),
            p.get("updated_at"))
