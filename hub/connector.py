"""What the hub needs from the retailer's online store, whatever platform runs it: the connector interface.

`hub/online.py` implements it over the REST API of docs/online-api.md; a Shopify, WooCommerce,
Saleor or Medusa connector implements the same methods and raises the same errors, so
the rest of the hub never knows which platform it talks to.

Feeds are read with cursors. `cursor=None` starts from the beginning; `next_cursor` is always
a string to pass next time, also on the last page (`has_more` false), so a periodic
reconciliation keeps asking from where it stopped and receives only what changed since.
A connector raises `CursorRejected` when the platform no longer knows a cursor (it was
reset): the hub then starts again from None.

Two more feeds, for store analytics, follow the same cursor rules and are per store: the
online sessions and the orders of the members whose home store is `store` (the platform
decides a member's home store; members only, anonymous visitors have none).
"""

from __future__ import annotations

from typing import Any, Literal, Mapping, Protocol, TypedDict, runtime_checkable

from hub.webhooks import WebhookEvent, WebhookRejection

__all__ = [
    "ACTIVITY_TYPES", "ONLINE_CHANNELS", "ORDER_CHANNELS", "ActivityItem", "ActivityResult", "CatalogChange",
    "CatalogChangesPage", "CircuitOpen", "CursorRejected", "CustomerChangesPage", "CustomerNotFound", "Erasure",
    "OnlineOrder", "OnlineSession", "OnlineStore", "OnlineStoreError", "OnlineStoreRefused",
    "OnlineStoreUnauthorized", "OnlineStoreUnavailable", "OrderLine", "OrdersPage", "ProfileChange", "Rejected",
    "SessionsPage", "WebhookEvent", "WebhookRejection",
]

# In-store activity the online store can record against a member (or anonymously, customer_id null).
ACTIVITY_TYPES = ("visit", "scan.product", "assist.requested", "offer.shown", "cart.sent")

# Where an online session (or an order) came from.
ONLINE_CHANNELS = ("web", "app", "social", "email", "search", "marketplace")
# An order's channel: online, or "store" (bought at a till; the hub's POS import is the truth for those).
ORDER_CHANNELS = (*ONLINE_CHANNELS, "store")


# --- errors: `code` is a metric label -----------------------------------------------------

class OnlineStoreError(Exception):
    """The online store could not answer; `code` says why (a metric label)."""

    code = "error"


class OnlineStoreRefused(OnlineStoreError):
    """The online store understood the request and will never accept it (a 4xx that no retry fixes)."""

    code = "refused"


class CustomerNotFound(OnlineStoreRefused):
    """404: the customer (or, when adding to a cart, the product) is unknown to the online store."""

    code = "not_found"


class CursorRejected(OnlineStoreRefused):
    """A changes feed no longer knows this cursor (the store was reset): start again from None."""

    code = "cursor_rejected"


class OnlineStoreUnauthorized(OnlineStoreError):
    """401/403: the hub's API key is missing, wrong or lacks the right; fix `online.api_key_file`."""

    code = "unauthorized"


class OnlineStoreUnavailable(OnlineStoreError):
    """No usable answer within the time budget: network error, timeout, 5xx, or 429 past the budget."""

    code = "unavailable"


class CircuitOpen(OnlineStoreUnavailable):
    """The online store failed too often in a row; calls fail at once until its cooldown has passed."""

    code = "circuit_open"


# --- shapes -------------------------------------------------------------------------------

class ProfileChange(TypedDict):
    id: str
    updated_at: str
    profile: dict[str, Any]  # the full profile, as `customer()` returns it


class Erasure(TypedDict):
    id: str
    erased: Literal[True]  # the member asked the retailer to erase them: drop every copy
    erased_at: str


class CustomerChangesPage(TypedDict):
    items: list[ProfileChange | Erasure]
    next_cursor: str
    has_more: bool


class CatalogChange(TypedDict):
    kind: Literal["product", "stock", "store"]
    key: str  # product: gtin; stock: protocol.catalog.stock_key(gtin, store); store: id
    data: dict[str, Any] | None  # None: deleted


class CatalogChangesPage(TypedDict):
    items: list[CatalogChange]
    next_cursor: str
    has_more: bool


class ActivityItem(TypedDict):
    id: str  # the event id: the idempotency key
    type: str  # one of ACTIVITY_TYPES
    customer_id: str | None
    store: str
    ts: str  # ISO 8601 UTC with Z
    data: dict[str, Any]


class Rejected(TypedDict):
    id: str | None
    code: str
    message: str


class ActivityResult(TypedDict):
    accepted: list[str]
    rejected: list[Rejected]


class OnlineSession(TypedDict):
    id: str
    customer_id: str | None  # None: an anonymous visitor (the demo serves members only)
    channel: str  # one of ONLINE_CHANNELS
    source: str | None  # the UTM source when known ("google", "instagram", "newsletter-2026-11")
    started_at: str  # ISO 8601 UTC with Z
    added_to_cart: bool
    asked_for_help: bool


class SessionsPage(TypedDict):
    items: list[OnlineSession]
    next_cursor: str
    has_more: bool


class OrderLine(TypedDict):
    gtin: str  # GTIN-14
    quantity: int
    amount: float  # price × quantity, 2 decimals, in the order's currency


class OnlineOrder(TypedDict):
    id: str
    customer_id: str | None
    channel: str  # one of ORDER_CHANNELS; "store" orders are the POS import's to count
    status: str  # placed, shipped, delivered, ready_for_pickup, picked_up, cancelled, returned
    placed_at: str  # ISO 8601 UTC with Z
    total: float
    currency: str
    lines: list[OrderLine]


class OrdersPage(TypedDict):
    items: list[OnlineOrder]
    next_cursor: str
    has_more: bool



@runtime_checkable
class OnlineStore(Protocol):
    """A connector to one online store; every method may raise an OnlineStoreError."""

    def customer(self, customer_id: str, *, timeout_s: float | None = None) -> dict[str, Any]:
        """The member's full profile (orders, wishlist, cart, recently viewed, loyalty); CustomerNotFound if unknown."""

    def customer_changes(self, cursor: str | None, *, limit: int = 100) -> CustomerChangesPage:
        """Profiles changed or erased after `cursor`; from None, every customer once."""

    def catalog_changes(self, cursor: str | None, *, limit: int = 500) -> CatalogChangesPage:
        """Products, stock rows and stores changed after `cursor`, as hub.catalog accepts them."""

    def online_sessions(self, cursor: str | None, *, store: str, limit: int = 500) -> SessionsPage:
        """Online sessions of the members whose home store is `store`, started or changed after `cursor`
        (None: all of them once); a cursor is valid for the feed and store it was issued for."""

    def orders(self, cursor: str | None, *, store: str, limit: int = 500) -> OrdersPage:
        """Orders of the members whose home store is `store`, placed or changed after `cursor`; a changed
        order (cancelled, say) comes again, as it is now."""

    def push_activity(self, items: list[ActivityItem]) -> ActivityResult:
        """Record in-store activity; an id sent before is accepted again and stored once."""

    def add_to_cart(self, customer_id: str, gtin: str, quantity: int, idempotency_key: str, *,
                    timeout_s: float | None = None) -> dict[str, Any]:
        """Add `quantity` of `gtin` to the member's online cart, once per key; returns the cart."""

    def add_to_wishlist(self, customer_id: str, gtin: str, idempotency_key: str, *,
                        timeout_s: float | None = None) -> list[dict[str, Any]]:
        """Put `gtin` on the member's online wishlist, once per key; returns the wishlist."""

    def search_customers(self, query: str, *, limit: int = 20,
                         timeout_s: float | None = None) -> list[dict[str, Any]]:
        """Members whose id, name, email or phone contains `query` (summaries, for staff finding a walk-in)."""

    def verify_webhook(self, raw_body: bytes, headers: Mapping[str, str], *,
                       now: float) -> WebhookEvent | WebhookRejection:
        """Check a webhook delivery's signature, age and shape from its raw body."""
