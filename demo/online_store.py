"""The demo online store: the REST API of docs/online-api.md, served from seeded StoreData."""

from __future__ import annotations

import bisect
import copy
import hmac
import threading
from datetime import datetime, timezone
from typing import Any, Callable

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from demo.seed import StoreData, iso

API = "/api/v1"
PUBLIC_ENDPOINTS = frozenset({"healthz", "signing_keys"})
ERROR_CODES = {400: "bad_request", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed",
               409: "conflict"}
CUSTOMER_SUMMARY_FIELDS = ("id", "first_name", "last_name", "email", "phone", "tier", "points",
                           "consent", "updated_at")
CUSTOMER_LIMIT = (20, 100)  # (default, maximum)
PRODUCT_LIMIT = (100, 500)
GTIN_LENGTHS = (8, 12, 13, 14)  # EAN-8, UPC-A, EAN-13, GTIN-14
# Below this many significant digits a phone search would match almost every member.
MIN_PHONE_DIGITS = 6
CART_QUANTITY = (1, 99)
IDEMPOTENCY_KEY_LENGTH = (1, 100)


class ApiError(Exception):
    """An error the client can act on; rendered as {"error": {"code", "message"}}."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def create_app(data: StoreData, api_key: str, jwks: dict | None = None, *,
               clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> Flask:
    """Build the API over `data`; every route except /healthz and the JWKS needs `api_key`.

    `data` is never changed: carts changed through the API live in this app only (`clock`
    stamps them), so two apps over the same data do not see each other's carts."""
    if not api_key:
        raise ValueError("api_key must be a non-empty string: an empty key would let every request in")
    app = Flask(__name__)
    app.json.sort_keys = False  # keep fields in the documented order, so responses read like the docs
    app.json.ensure_ascii = False

    customers = {c["id"]: c for c in data.customers}
    search_index = [(c, _haystack(c), _digits(c["phone"])) for c in data.customers]
    products = {p["gtin"]: p for p in data.products}
    gtins = sorted(products)
    listings = [_listing(products[g]) for g in gtins]
    expected_key = api_key.encode()
    carts = LiveCarts(clock)

    @app.before_request
    def require_api_key() -> Response | None:
        if request.endpoint in PUBLIC_ENDPOINTS:
            return None
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        # compare_digest keeps the comparison time independent of how much of the key matched.
        if scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), expected_key):
            return None
        response = _error_response(401, "unauthorized",
                                   "Missing or wrong API key: send 'Authorization: Bearer <api key>'.")
        response.headers["WWW-Authenticate"] = 'Bearer realm="omnikiosk-online-store"'
        return response

    @app.get("/healthz")
    def healthz():
        return {"ok": True}

    @app.get("/.well-known/jwks.json")
    def signing_keys():
        if jwks is None:
            raise ApiError(404, "not_found", "This store was started without member-token signing keys.")
        response = jsonify(jwks)
        # Kiosks refetch keys now and then; a short cache lets a key rotation reach them quickly.
        response.headers["Cache-Control"] = "public, max-age=300"
        return response

    @app.get(f"{API}/customers/<customer_id>")
    def customer(customer_id: str):
        profile = customers.get(customer_id.upper())
        if profile is None:
            raise ApiError(404, "not_found", f"No customer with id {customer_id!r}.")
        return carts.overlay(profile)

    @app.post(f"{API}/customers/<customer_id>/cart/items")
    def add_cart_item(customer_id: str):
        gtin, quantity, key = _cart_item_request(request.get_json(silent=True))
        profile = customers.get(customer_id.upper())
        if profile is None:
            raise ApiError(404, "not_found", f"No customer with id {customer_id!r}.")
        found = products.get(gtin)
        if found is None:
            raise ApiError(404, "not_found", f"No product with GTIN {gtin}.")
        return {"cart": carts.add(profile, found, quantity, key)}

    @app.get(f"{API}/customers")
    def customer_search():
        limit = _limit(*CUSTOMER_LIMIT)
        query = request.args.get("q", "").strip()
        matches = (c for c, haystack, phone in search_index if _matches(query, haystack, phone))
        items = [{field: live[field] for field in CUSTOMER_SUMMARY_FIELDS} for live in map(carts.overlay, matches)]
        return {"items": items[:limit]}

    @app.get(f"{API}/products")
    def product_list():
        limit = _limit(*PRODUCT_LIMIT)
        cursor = request.args.get("cursor") or None
        if cursor is not None and not (cursor.isascii() and cursor.isdigit() and len(cursor) == 14):
            raise ApiError(400, "bad_request",
                           "cursor is not one this API issued; pass next_cursor from the previous page.")
        start = bisect.bisect_right(gtins, cursor) if cursor else 0
        page = listings[start:start + limit]
        more = start + limit < len(listings)
        return {"items": page, "next_cursor": page[-1]["gtin"] if more and page else None}

    @app.get(f"{API}/products/<code>")
    def product(code: str):
        gtin = _normalise_gtin(code)
        found = products.get(gtin)
        if found is None:
            raise ApiError(404, "not_found", f"No product with GTIN {gtin}.")
        return found

    @app.get(f"{API}/stores")
    def stores():
        return {"items": data.stores}

    _register_error_handlers(app)
    return app


class LiveCarts:
    """Carts changed through the API, laid over the seeded ones. The seeded StoreData is shared
    and immutable by convention, so a customer's cart is copied on its first change."""

    def __init__(self, clock: Callable[[], datetime]):
        self._clock = clock
        self._lock = threading.Lock()
        self._carts: dict[str, dict] = {}
        # idempotency key → (what was asked, the cart answered): a retry gets the first answer.
        self._answers: dict[str, tuple[tuple[str, str, int], dict]] = {}

    def overlay(self, profile: dict) -> dict:
        """The profile with its live cart; `updated_at` moves with it (the latest change anywhere)."""
        with self._lock:
            cart = self._carts.get(profile["id"])
        if cart is None:
            return profile
        return {**profile, "cart": cart, "updated_at": max(profile["updated_at"], cart["updated_at"])}

    def add(self, profile: dict, product: dict, quantity: int, key: str) -> dict:
        asked = (profile["id"], product["gtin"], quantity)
        with self._lock:
            if key in self._answers:
                first_asked, answer = self._answers[key]
                if first_asked != asked:
                    raise ApiError(409, "conflict", "This idempotency_key was already used for another cart line; "
                                                    "send a new key for a new line.")
                return answer
            current = self._carts.get(profile["id"]) or profile["cart"]
            cart = {"updated_at": iso(self._clock()), "items": _with_line(current["items"], product, quantity)}
            self._carts[profile["id"]] = cart
            self._answers[key] = (asked, cart)
            return cart


def _with_line(items: list[dict], product: dict, quantity: int) -> list[dict]:
    """A new list (earlier answers stay as they were): the product's line grows, or is appended."""
    lines = copy.deepcopy(items)
    for line in lines:
        if line["gtin"] == product["gtin"]:
            line["quantity"] += quantity
            return lines
    return lines + [{"gtin": product["gtin"], "name": product["name"], "quantity": quantity,
                     "price": product["price"]}]


def _cart_item_request(body: Any) -> tuple[str, int, str]:
    """(GTIN-14, quantity, idempotency key) from a POST body, or a 400 saying what to send."""
    if not isinstance(body, dict):
        raise ApiError(400, "bad_request", 'Send a JSON object: {"gtin": "...", "quantity": 1, '
                                           '"idempotency_key": "..."} with Content-Type: application/json.')
    gtin = body.get("gtin")
    if not isinstance(gtin, str):
        raise ApiError(400, "bad_request", "gtin is required: a string of 8, 12, 13 or 14 digits.")
    quantity = body.get("quantity", 1)
    low, high = CART_QUANTITY
    if not isinstance(quantity, int) or isinstance(quantity, bool) or not low <= quantity <= high:
        raise ApiError(400, "bad_request", f"quantity must be a whole number from {low} to {high}.")
    key = body.get("idempotency_key")
    shortest, longest = IDEMPOTENCY_KEY_LENGTH
    if not isinstance(key, str) or not shortest <= len(key) <= longest:
        raise ApiError(400, "bad_request", f"idempotency_key is required: a string of {shortest} to {longest} "
                                           "characters, the same on every retry of this line.")
    return _normalise_gtin(gtin), quantity, key


def _haystack(customer: dict) -> str:
    """The text a search looks through; fields are separated so a match cannot span two."""
    name = f"{customer['first_name']} {customer['last_name']}"
    return "\n".join((customer["id"], name, customer["email"], customer["phone"])).lower()


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isascii() and ch.isdigit())


def _matches(query: str, haystack: str, phone_digits: str) -> bool:
    """Case-insensitive substring on id, name, email and phone; digits also match a phone
    written another way ("06 1234 5678" finds "+31 612 345 678")."""
    if not query:
        return True
    if query.lower() in haystack:
        return True
    digits = _digits(query).lstrip("0")  # a national trunk 0 is absent from the +31 form
    return len(digits) >= MIN_PHONE_DIGITS and digits in phone_digits


def _listing(product: dict) -> dict:
    """A product as the catalog list shows it: everything but the reviews."""
    return {key: value for key, value in product.items() if key != "reviews"}


def _normalise_gtin(code: str) -> str:
    """EAN-8, UPC-A, EAN-13 and GTIN-14 all name the same product once left-padded to 14."""
    code = code.strip()
    if not (code.isascii() and code.isdigit() and len(code) in GTIN_LENGTHS):
        raise ApiError(400, "bad_request", f"GTIN must be 8, 12, 13 or 14 digits, got {code!r}.")
    return code.zfill(14)


def _limit(default: int, maximum: int) -> int:
    raw = request.args.get("limit")
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit() and 1 <= int(raw) <= maximum):
        raise ApiError(400, "bad_request", f"limit must be a whole number from 1 to {maximum}, got {raw!r}.")
    return int(raw)


def _error_response(status: int, code: str, message: str) -> Response:
    response = jsonify({"error": {"code": code, "message": message}})
    response.status_code = status
    return response


def _register_error_handlers(app: Flask) -> None:
    """Every failure is JSON in one shape, so clients never have to parse an HTML page."""

    @app.errorhandler(ApiError)
    def api_error(error: ApiError):
        return _error_response(error.status, error.code, error.message)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        status = error.code or 500
        if status == 404:
            message = f"No such endpoint: {request.method} {request.path}. See docs/online-api.md."
        elif isinstance(error, MethodNotAllowed):
            message = f"{request.method} is not allowed on {request.path}; use {', '.join(error.valid_methods or [])}."
        else:
            message = error.description or error.name
        response = _error_response(status, ERROR_CODES.get(status, "http_error"), message)
        if isinstance(error, MethodNotAllowed):
            response.headers["Allow"] = ", ".join(error.valid_methods or [])
        return response

    @app.errorhandler(Exception)
    def unexpected_error(error: Exception):
        app.logger.exception("unhandled error on %s %s", request.method, request.path)
        return _error_response(500, "internal_error", "The demo online store failed; see its log.")
