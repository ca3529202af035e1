"""The demo online store's catalog as a device catalog feed: products, promotions, per-store stock. Pure.

In production the edge agent fetches this from the hub; the demo seeds each kiosk's
`catalog.db` from the same data the demo online store serves, and the demo online store
serves it again, row by row, as `GET /api/v1/catalog/changes`.
"""

from __future__ import annotations

import hashlib
from typing import Any

from demo.issuer import ISSUER
from demo.seed import StoreData

ONLINE_SHOP = ISSUER  # the web shop's address, as printed on member tokens
AISLES = {"shoes": "Shoes · aisle 4", "jackets": "Outerwear · aisle 2", "knitwear": "Knitwear · aisle 3",
          "jeans": "Denim · aisle 5", "t-shirts": "Basics · aisle 6", "bags": "Bags · front tables",
          "accessories": "Accessories · by the tills", "sportswear": "Sport · aisle 7",
          "dresses": "Womenswear · aisle 8", "shirts": "Shirts · aisle 6", "outdoor": "Outdoor · aisle 2"}
SALE_TEXT = "Winter sale, in store and online"
# What a product row of the catalog changes feed carries (docs/online-api.md); reviews are the newest few.
PRODUCT_ROW_FIELDS = ("gtin", "name", "brand", "category", "description", "image_url", "price", "currency",
                      "compare_at_price", "promotion", "rating", "reviews", "online_url", "updated_at")
ROW_REVIEWS = 3


def _quantity(store: str, gtin: str) -> int:
    """Deterministic stock: about one product in five is sold out in a given store."""
    value = int.from_bytes(hashlib.sha256(f"{store}:{gtin}".encode()).digest()[:4], "big")
    return 0 if value % 5 == 0 else value % 13


def promotion_for(price: float, compare_at_price: float | None) -> dict[str, Any] | None:
    """The sale a lower price makes: the same label and text on the kiosk, the staff tablet and the web."""
    if not compare_at_price or compare_at_price <= price:
        return None
    percent = round(100 * (1 - price / compare_at_price))
    return {"label": f"-{percent}%", "text": SALE_TEXT, "percent": percent}


def product_row(product: dict[str, Any]) -> dict[str, Any]:
    """A catalog product as the changes feed sends it: the fields hub.catalog keeps, newest reviews only."""
    row = {field: product.get(field) for field in PRODUCT_ROW_FIELDS}
    row["reviews"] = list(product.get("reviews") or [])[:ROW_REVIEWS]  # the seed keeps them newest first
    return row


def catalog_feed(data: StoreData) -> dict[str, Any]:
    products, stock = [], []
    now = data.now.strftime("%Y-%m-%dT%H:%M:%SZ")
    for p in data.products:
        products.append({**p, "promotion": promotion_for(p["price"], p.get("compare_at_price")), "image_url": None,
                         "online_url": f"{ONLINE_SHOP}/p/{p['gtin']}"})
        for store in data.stores:
            location = AISLES.get(p["category"]) if store["id"] == "s001" else None
            stock.append({"gtin": p["gtin"], "store": store["id"], "quantity": _quantity(store["id"], p["gtin"]),
                          "location": location, "updated_at": now})
        stock.append({"gtin": p["gtin"], "store": "online", "quantity": _quantity("online", p["gtin"]) * 10,
                      "location": None, "updated_at": now})
    stores = [{"id": s["id"], "name": s["name"].split("—")[-1].strip()} for s in data.stores]
    return {"version": 1, "stores": stores, "products": products, "stock": stock}
