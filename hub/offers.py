"""Personal offers for a checked-in member, and the welcome a kiosk shows them. Pure: time and secret passed in.

Three rules, each with a `reason` for staff and a `title`/`text` for the shopper:

- wishlist: a wishlist item in stock in this store → 10% off that item;
- cart: an online cart left for at least 24 h whose items are in stock here → 10% off those
  items when bought here (one offer; items not stocked here cannot be completed in store);
- tier: Gold and Platinum members → 15% / 20% off one full-price item.

Offers built from the member's browsing (wishlist, cart) need `consent.marketing`; the tier
perk does not. Clienteling consent is about staff seeing the profile, not about the
member's own screen, so it does not limit offers.

Every offer is valid until the end of the current day in UTC (simple, and the same on every
kiosk; a store near midnight UTC loses a little evening, which is acceptable for now). Its
`code` is what the till checks: `offer_code(secret, member, offer id, valid_until)`.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime, time, timedelta, timezone
from typing import Any

WISHLIST_PERCENT = 10
CART_PERCENT = 10
TIER_PERCENT = {"Gold": 15, "Platinum": 20}
CART_LEFT_AFTER = timedelta(hours=24)
MAX_OFFERS = 4
MAX_WISHLIST_HERE = 4

CODE_PREFIX = "OK"
CODE_CHARS = 10
# Crockford base32: no I, L, O or U, so a code read aloud or typed at a till is hard to get wrong.
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_TYPO_FIXES = str.maketrans({"I": "1", "L": "1", "O": "0"})

WELCOME_KEYS = ("first_name", "tier", "points", "offers", "wishlist_here")


def offer_code(secret: bytes, member_id: str, offer_id: str, valid_until: str) -> str:
    """A redemption code for the till, e.g. `OK-7F3KQ-9M2AX`: HMAC-SHA256 of member, offer and
    expiry under the hub's secret, so it is deterministic (asking again gives the same code)
    and cannot be guessed or moved to another member, offer or day without the secret."""
    if not secret:
        raise ValueError("the offer secret must not be empty: anyone could compute the codes")
    message = "\n".join((member_id, offer_id, valid_until)).encode()
    digest = hmac.new(secret, message, hashlib.sha256).digest()
    bits = int.from_bytes(digest[:8], "big") >> (64 - 5 * CODE_CHARS)
    chars = "".join(CROCKFORD[(bits >> (5 * i)) & 31] for i in reversed(range(CODE_CHARS)))
    half = CODE_CHARS // 2
    return f"{CODE_PREFIX}-{chars[:half]}-{chars[half:]}"


def code_matches(code: str, secret: bytes, member_id: str, offer_id: str, valid_until: str) -> bool:
    """Whether a code typed at the till is this offer's: case, dashes, spaces and the
    look-alikes I/L → 1 and O → 0 are forgiven; the comparison takes constant time."""
    expected = offer_code(secret, member_id, offer_id, valid_until)
    return hmac.compare_digest(_normalise_code(code).encode(), _normalise_code(expected).encode())


def _normalise_code(code: str) -> str:
    compact = "".join(code.split()).replace("-", "").upper()
    if compact.startswith(CODE_PREFIX):
        compact = compact[len(CODE_PREFIX):]
    return compact.translate(_TYPO_FIXES)


def end_of_day(now: datetime) -> str:
    """The last second of `now`'s day in UTC, as ISO 8601 with a Z."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (UTC)")
    day = now.astimezone(timezone.utc).date()
    return datetime.combine(day, time(23, 59, 59), tzinfo=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def profile_gtins(profile: dict[str, Any]) -> list[str]:
    """The products whose stock here the offers depend on: ask the catalog for these."""
    lines = list(profile.get("wishlist") or []) + list((profile.get("cart") or {}).get("items") or [])
    return list(dict.fromkeys(line["gtin"] for line in lines if line.get("gtin")))


def member_offers(profile: dict[str, Any], *, stock_here: dict[str, dict[str, Any]], now: datetime,
                  secret: bytes, gtin: str | None = None) -> list[dict[str, Any]]:
    """The member's offers, most valuable to them first, at most four; with `gtin`, only those
    that apply to that product."""
    valid_until = end_of_day(now)
    drafts = _tier_perk(profile, stock_here)
    if _marketing_allowed(profile):
        cart = _cart_offer(profile, stock_here, now)
        in_cart = set(cart["gtins"]) if cart else set()
        drafts += [cart] if cart else []
        # An item already covered by the cart offer would otherwise be offered twice.
        drafts += [d for d in _wishlist_offers(profile, stock_here) if d["gtins"][0] not in in_cart]
    if gtin is not None:
        drafts = [d for d in drafts if d["rule"] == "tier" or gtin in d["gtins"]]
    drafts.sort(key=lambda d: (-d["saving"], -d["percent"], d["id"]))
    return [_finish(d, profile["id"], valid_until, secret) for d in drafts[:MAX_OFFERS]]


def wishlist_here(profile: dict[str, Any], stock_here: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Wishlist items in stock in this store, newest wish first, at most four."""
    found = []
    for item in profile.get("wishlist") or []:
        stock = _in_stock(stock_here, item.get("gtin"))
        if stock is not None:
            found.append({"gtin": item["gtin"], "name": stock.get("name") or item.get("name"),
                          "location": stock.get("location")})
    return found[:MAX_WISHLIST_HERE]


def welcome(profile: dict[str, Any], *, stock_here: dict[str, dict[str, Any]], now: datetime,
            secret: bytes) -> dict[str, Any]:
    """What a public kiosk screen may show a member who checked in: nothing else about them
    (no last name, contact details or orders), since anyone passing by can read it."""
    return {
        "first_name": profile.get("first_name"),
        "tier": profile.get("tier"),
        "points": profile.get("points"),
        "offers": member_offers(profile, stock_here=stock_here, now=now, secret=secret),
        "wishlist_here": wishlist_here(profile, stock_here),
    }


# --- the rules: each returns drafts {"id", "rule", "gtins", "saving", ...offer fields} ------

def _wishlist_offers(profile: dict[str, Any], stock_here: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    drafts = []
    for item in profile.get("wishlist") or []:
        stock = _in_stock(stock_here, item.get("gtin"))
        if stock is None:
            continue
        name = stock.get("name") or item.get("name") or "A wishlist item"
        drafts.append(_draft(
            rule="wishlist", offer_id=f"wishlist-{item['gtin']}", gtins=[item["gtin"]], percent=WISHLIST_PERCENT,
            price=_price(item),
            title=f"{WISHLIST_PERCENT}% off a wishlist item",
            text=f"{name} from your wishlist is here{_where(stock)}: {WISHLIST_PERCENT}% off today.",
            reason="In their wishlist and in stock here"))
    return drafts


def _cart_offer(profile: dict[str, Any], stock_here: dict[str, dict[str, Any]], now: datetime
                ) -> dict[str, Any] | None:
    cart = profile.get("cart") or {}
    updated_at = _parse_ts(cart.get("updated_at"))
    if updated_at is None or now - updated_at < CART_LEFT_AFTER:
        return None
    lines = [line for line in cart.get("items") or [] if _in_stock(stock_here, line.get("gtin")) is not None]
    if not lines:
        return None
    names = [stock_here[line["gtin"]].get("name") or line.get("name") or "an item" for line in lines]
    days = int((now - updated_at) / timedelta(days=1))
    return _draft(
        rule="cart", offer_id="cart", gtins=[line["gtin"] for line in lines], percent=CART_PERCENT,
        price=sum(_price(line) * int(line.get("quantity", 1)) for line in lines),
        title=f"{CART_PERCENT}% off your cart, here",
        text=f"Complete your online cart in store: {CART_PERCENT}% off {_list_names(names)} today.",
        reason=f"Left in their online cart {days} day{'s' if days != 1 else ''} ago; "
               f"{len(lines)} item{'s' if len(lines) != 1 else ''} in stock here")


def _tier_perk(profile: dict[str, Any], stock_here: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    tier = profile.get("tier")
    percent = TIER_PERCENT.get(tier)
    if percent is None:
        return []
    # Its worth to the shopper: they would spend it on the dearest thing they want that is here.
    wanted = list(profile.get("wishlist") or []) + list((profile.get("cart") or {}).get("items") or [])
    dearest = max((_price(line) for line in wanted if _in_stock(stock_here, line.get("gtin")) is not None),
                  default=0.0)
    return [_draft(rule="tier", offer_id=f"tier-{tier.lower()}", gtins=[], percent=percent, price=dearest,
                   title=f"{tier} member perk",
                   text=f"{percent}% off one full-price item of your choice today.",
                   reason=f"{tier} tier perk")]


def _draft(*, rule: str, offer_id: str, gtins: list[str], percent: int, price: float, title: str, text: str,
           reason: str) -> dict[str, Any]:
    return {"id": offer_id, "rule": rule, "gtins": gtins, "percent": percent,
            "saving": round(price * percent / 100, 2), "title": title, "text": text, "reason": reason}


def _finish(draft: dict[str, Any], member_id: str, valid_until: str, secret: bytes) -> dict[str, Any]:
    """The offer as it goes on the wire; it names one product only when it covers exactly one."""
    return {"id": draft["id"], "title": draft["title"], "text": draft["text"], "reason": draft["reason"],
            "code": offer_code(secret, member_id, draft["id"], valid_until), "valid_until": valid_until,
            "gtin": draft["gtins"][0] if len(draft["gtins"]) == 1 else None, "percent": draft["percent"]}


# --- small readers of the profile ----------------------------------------------------------

def _marketing_allowed(profile: dict[str, Any]) -> bool:
    return bool((profile.get("consent") or {}).get("marketing", False))


def _in_stock(stock_here: dict[str, dict[str, Any]], gtin: str | None) -> dict[str, Any] | None:
    stock = stock_here.get(gtin) if gtin else None
    if stock is None or int(stock.get("quantity") or 0) <= 0:
        return None
    return stock


def _price(line: dict[str, Any]) -> float:
    try:
        return float(line.get("price") or 0.0)
    except (TypeError, ValueError):
        return 0.0


def _where(stock: dict[str, Any]) -> str:
    return f" ({stock['location']})" if stock.get("location") else ""


def _list_names(names: list[str]) -> str:
    if len(names) == 1:
        return names[0]
    if len(names) == 2:
        return f"{names[0]} and {names[1]}"
    return f"{names[0]}, {names[1]} and {len(names) - 2} more"


def _parse_ts(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
