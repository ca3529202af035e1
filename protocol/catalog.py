"""The catalog a device caches, as it travels: the retained `catalog/version` and the pages of
`catalog.changes`. Pure.

The hub numbers every change of a product, a stock row or a store with the catalog
version that made it. A device that holds version L and sees a retained version V > L asks
`catalog.changes` with `since` = L and pages with `cursor` until `next_cursor` is null,
applying each page in one transaction; then it holds the page's `version`. A change with
`data` null is a deletion. Page:

    {"version": 12, "next_cursor": "…" | null,
     "changes": [{"kind": "product", "key": "04009114002005", "version": 7, "data": {…} | null},
                 {"kind": "stock", "key": "04009114002005/s001", "version": 7, "data": {…} | null},
                 {"kind": "store", "key": "s001", "version": 3, "data": {"id", "name"} | null}]}

Product data: gtin, name, brand, category, description, image_url, price, currency,
compare_at_price, promotion ({"label", "text"} or null), rating ({"average", "count"} or
null), reviews (at most 3, newest first), online_url, updated_at. Stock data: gtin, store,
quantity, location, updated_at. The store "online" in stock rows is the web shop.
"""

from __future__ import annotations

import json
from typing import Any

KINDS = ("product", "stock", "store")
ONLINE = "online"  # the stock row of the web shop's warehouse
TOP_REVIEWS = 3
NEARBY_LIMIT = 3
DEFAULT_PAGE_LIMIT = 200
MAX_PAGE_LIMIT = 1000


def version_payload(version: int) -> bytes:
    return json.dumps({"version": version}, separators=(",", ":")).encode()


def parse_version(payload: bytes) -> int | None:
    """The version announced on `catalog/version`, or None for anything else."""
    try:
        obj = json.loads(payload)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    version = obj.get("version") if isinstance(obj, dict) else None
    return version if isinstance(version, int) and not isinstance(version, bool) and version >= 0 else None


def check_page(page: Any) -> str | None:
    """What is wrong with a `catalog.changes` result, or None. The agent applies nothing it cannot trust."""
    if not isinstance(page, dict):
        return "page is not an object"
    version, cursor, changes = page.get("version"), page.get("next_cursor"), page.get("changes")
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        return "page has no version"
    if cursor is not None and not isinstance(cursor, str):
        return "next_cursor must be a string or null"
    if not isinstance(changes, list):
        return "changes must be a list"
    for index, change in enumerate(changes):
        if not isinstance(change, dict) or change.get("kind") not in KINDS or not isinstance(change.get("key"), str):
            return f"change #{index} has no kind and key"
        data = change.get("data")
        if data is not None and not isinstance(data, dict):
            return f"change #{index}: data must be an object or null"
        if data is not None and change["kind"] == "product" and not (
                isinstance(data.get("gtin"), str) and isinstance(data.get("name"), str)):
            return f"change #{index}: a product needs gtin and name"
        if data is not None and change["kind"] == "stock" and not (
                isinstance(data.get("gtin"), str) and isinstance(data.get("store"), str)
                and isinstance(data.get("quantity"), int)):
            return f"change #{index}: a stock row needs gtin, store and quantity"
        if data is not None and change["kind"] == "store" and not (
                isinstance(data.get("id"), str) and isinstance(data.get("name"), str)):
            return f"change #{index}: a store needs id and name"
    return None


def stock_key(gtin: str, store: str) -> str:
    return f"{gtin}/{store}"


def product_view(product: dict[str, Any], stock: list[dict[str, Any]], store: str) -> dict[str, Any]:
    """What the product screen shows for one product in `store`, from its product data and stock rows.

    `stock` rows are {gtin, store, quantity, location, store_name?}. The device cache and the
    hub both answer through this, so the screen looks the same whichever of them answered.
    """
    here = next(({"quantity": row["quantity"], "location": row.get("location")}
                 for row in stock if row["store"] == store), {"quantity": 0, "location": None})
    others = [row for row in stock if row["store"] not in (store, ONLINE) and row["quantity"] > 0]
    # Ties broken by store id so the device and the hub list the same stores.
    others.sort(key=lambda row: (-row["quantity"], row["store"]))
    nearby = [{"store": row["store"], "name": row.get("store_name") or row["store"], "quantity": row["quantity"]}
              for row in others[:NEARBY_LIMIT]]
    online = next((row["quantity"] for row in stock if row["store"] == ONLINE), 0)
    rating = product.get("rating")
    return {
        "gtin": product["gtin"], "name": product["name"], "brand": product.get("brand"),
        "category": product.get("category"), "description": product.get("description"),
        "image_url": product.get("image_url"), "price": product.get("price"), "currency": product.get("currency"),
        "compare_at_price": product.get("compare_at_price"),
        "promotion": product.get("promotion") or None,
        "rating": ({"average": rating.get("average"), "count": rating["count"]}
                   if isinstance(rating, dict) and rating.get("count") else None),
        "reviews": list(product.get("reviews") or [])[:TOP_REVIEWS],
        "stock": {"here": here, "nearby": nearby, "online": {"available": online > 0}},
        "online_url": product.get("online_url"), "updated_at": product.get("updated_at"),
    }
