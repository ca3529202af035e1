"""Personal offers for a checked-in member, and the welcome a kiosk shows them: an engine whose rules are data.

The rules come from a TOML file (`hub/offer_rules.toml` unless the hub setting
`offers.rules_file` names another; docs/offers.md describes every key). The file chooses
which rule kinds run, with what numbers and words; each kind is a small pure function here.
Evaluating is pure: the profile, the stock here, the catalog's products, the time and the
secret are passed in.

Values come from the catalog (`products`: GTIN → the product as `HubCatalog.product()`
returns it), so the store and the web shop agree on prices; without a catalog product the
price on the profile's line is used. A product already on promotion gets the better of the
promotion and the offer, never both, and the offer's text says which. Offers built from the
member's browsing need `consent.marketing`; tier and birthday perks do not. Clienteling
consent is about staff seeing the profile, not the member's own screen, so it does not limit
offers.

An offer is valid until the end of a day in UTC (the same on every kiosk). Its `code` is what
the till checks: `offer_code(secret, member, offer id, valid_until)`.
"""

from __future__ import annotations

import calendar
import hashlib
import hmac
import re
import string
import tomllib
from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol

from protocol.settings import ConfigError

MAX_WISHLIST_HERE = 4
BUNDLED_RULES = "offer_rules.toml"
NO_LOCATION = "ask staff"  # fills {location} when the catalog has no shelf for the product

CODE_PREFIX = "OK"
CODE_CHARS = 10
# Crockford base32: no I, L, O or U, so a code read aloud or typed at a till is hard to get wrong.
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_TYPO_FIXES = str.maketrans({"I": "1", "L": "1", "O": "0"})

WELCOME_KEYS = ("first_name", "tier", "points", "offers", "wishlist_here")
OFFER_KEYS = ("id", "title", "text", "reason", "code", "valid_until", "gtin", "percent", "rule")


# --- codes and validity ---------------------------------------------------------------------

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


def end_of_day(now: datetime, days_later: int = 0) -> str:
    """The last second of the day `days_later` days after `now`'s, in UTC, as ISO 8601 with a Z."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (UTC)")
    day = now.astimezone(timezone.utc).date() + timedelta(days=days_later)
    return datetime.combine(day, time(23, 59, 59), tzinfo=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- what the engine reads ------------------------------------------------------------------

def profile_gtins(profile: Mapping[str, Any]) -> list[str]:
    """The wishlist and cart products, once each: ask the catalog for their stock here and their product."""
    return list(dict.fromkeys(line["gtin"] for line in _wanted(profile) if line.get("gtin")))


def wishlist_here(profile: Mapping[str, Any], stock_here: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Wishlist items in stock in this store, newest wish first, at most four."""
    found = []
    for item in profile.get("wishlist") or []:
        stock = _in_stock(stock_here, item.get("gtin"))
        if stock is not None:
            found.append({"gtin": item["gtin"], "name": stock.get("name") or item.get("name"),
                          "location": stock.get("location")})
    return found[:MAX_WISHLIST_HERE]


class CatalogReader(Protocol):
    """What `offer_products` asks of the catalog (HubCatalog answers it)."""

    def products(self, gtins: list[str], store: str) -> dict[str, dict[str, Any]]: ...

    def new_products(self, categories: list[str], *, since: str, store: str,
                     limit: int) -> dict[str, dict[str, Any]]: ...


# --- the rules file -------------------------------------------------------------------------

@dataclass(frozen=True)
class Rule:
    """One `[[rule]]` of the rules file, checked."""
    id: str
    kind: str
    title: str
    text: str
    reason: str
    percent: int = 0
    min_age_hours: float = 24.0
    tiers: tuple[tuple[str, int], ...] = ()
    days: int = 30


@dataclass(frozen=True)
class Wording:
    """The sentences added to an offer's text when its product is already on promotion."""
    offer_wins: str = "Better than its {promotion} promotion, which it replaces."
    promotion_wins: str = "Already {promotion} on promotion, which beats {percent}% off: the promotion applies."
    some_on_promotion: str = "Items already on promotion get the better of the two."


@dataclass(frozen=True)
class Visit:
    """Everything one evaluation reads: who, what is on the shelves here, at what price, when."""
    profile: Mapping[str, Any]
    stock_here: Mapping[str, Mapping[str, Any]]
    products: Mapping[str, Mapping[str, Any]]
    now: datetime


@dataclass(frozen=True)
class Draft:
    """An offer before it gets its code: what it covers, what it saves and the words to fill in."""
    rule: Rule
    offer_id: str
    gtins: tuple[str, ...]
    percent: int
    saving: float
    values: Mapping[str, Any]
    promotion_note: str = ""


@dataclass(frozen=True)
class Kind:
    """A rule kind: the function that makes its offers, its own keys and the placeholders it fills."""
    offers: Callable[[Rule, Visit, Wording], list[Draft]]
    keys: tuple[str, ...]
    placeholders: frozenset[str]
    from_browsing: bool  # built from what the member did online: needs consent.marketing
    claims_first: int    # when two offers cover the same product, the lower keeps it


COMMON_KEYS = ("id", "kind", "enabled", "title", "text", "reason")
REQUIRED_KEYS = ("id", "kind", "title", "text", "reason")
COMMON_PLACEHOLDERS = frozenset({"first_name", "percent"})
PROMOTION_PLACEHOLDERS = frozenset({"promotion", "percent", "product"})
TOP_KEYS = ("max_offers", "valid_days", "promotion", "rule")
RULE_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
MAX_OFFERS_RANGE = (1, 10)
VALID_DAYS_RANGE = (1, 31)
PERCENT_RANGE = (1, 90)


class OfferEngine:
    """The store's offer rules, loaded once; `offers()` and `welcome()` are pure."""

    def __init__(self, rules: tuple[Rule, ...], *, max_offers: int = 4, valid_days: int = 1,
                 wording: Wording = Wording(), source: str = "<rules>"):
        self.rules, self.max_offers, self.valid_days = rules, max_offers, valid_days
        self.wording, self.source = wording, source

    @classmethod
    def from_file(cls, path: str | Path | None) -> "OfferEngine":
        """The rules in `path`; None or "" → the bundled hub/offer_rules.toml. ConfigError naming the file
        when it cannot be read or has a mistake."""
        if not path:
            return _bundled()
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the offer rules file ({exc.strerror}); set offers.rules_file "
                              "to an existing file, or leave it empty for the bundled rules") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{path}: the offer rules file is not UTF-8 text") from None
        return cls.from_toml(text, str(path))

    @classmethod
    def from_toml(cls, text: str, source: str = "<rules>") -> "OfferEngine":
        """Parse and check a rules file; every problem found is in the one ConfigError raised."""
        try:
            document = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{source}: not valid TOML: {exc}") from None
        problems: list[str] = []
        engine = _engine_from(document, source, problems)
        if problems:
            raise ConfigError("\n".join(problems))
        return engine

    def offers(self, profile: Mapping[str, Any], *, stock_here: Mapping[str, Mapping[str, Any]],
               products: Mapping[str, Mapping[str, Any]], now: datetime, secret: bytes,
               gtin: str | None = None) -> list[dict[str, Any]]:
        """The member's offers, most valuable to them first, at most `max_offers`; with `gtin`,
        only those that apply to that product (its own offers and the perks for any item)."""
        valid_until = end_of_day(now, self.valid_days - 1)
        visit = Visit(profile, stock_here, products, now.astimezone(timezone.utc))
        browsing_allowed = bool((profile.get("consent") or {}).get("marketing", False))
        drafts: list[Draft] = []
        for rule in self.rules:
            kind = KINDS[rule.kind]
            if kind.from_browsing and not browsing_allowed:
                continue
            drafts += kind.offers(rule, visit, self.wording)
        drafts = _one_offer_per_product(drafts)
        if gtin is not None:
            drafts = [d for d in drafts if not d.gtins or gtin in d.gtins]
        drafts.sort(key=lambda d: (-d.saving, -d.percent, d.offer_id))
        return [_finish(d, profile, valid_until, secret) for d in drafts[:self.max_offers]]

    def welcome(self, profile: Mapping[str, Any], *, stock_here: Mapping[str, Mapping[str, Any]],
                products: Mapping[str, Mapping[str, Any]], now: datetime, secret: bytes) -> dict[str, Any]:
        """What a public kiosk screen may show a member who checked in: nothing else about them
        (no last name, contact details or orders), since anyone passing by can read it."""
        return {
            "first_name": profile.get("first_name"),
            "tier": profile.get("tier"),
            "points": profile.get("points"),
            "offers": self.offers(profile, stock_here=stock_here, products=products, now=now, secret=secret),
            "wishlist_here": wishlist_here(profile, stock_here),
        }

    def new_since(self, now: datetime) -> str | None:
        """The oldest `updated_at` a new_in_category rule looks at (ISO, Z), or None without such a rule."""
        days = [rule.days for rule in self.rules if rule.kind == "new_in_category"]
        if not days:
            return None
        return (now.astimezone(timezone.utc) - timedelta(days=max(days))).strftime("%Y-%m-%dT%H:%M:%SZ")


def offer_products(engine: OfferEngine, profile: Mapping[str, Any], catalog: CatalogReader, *, store: str,
                   now: datetime, new_limit: int = 20) -> dict[str, dict[str, Any]]:
    """The catalog products the engine values this member's offers with: their wishlist and cart,
    and (when a new_in_category rule runs and marketing consent allows it) the newest products in
    stock here in their favourite categories."""
    products = catalog.products(profile_gtins(profile), store)
    since = engine.new_since(now)
    categories = _favourite_categories(profile)
    if since and categories and (profile.get("consent") or {}).get("marketing"):
        products.update(catalog.new_products(categories, since=since, store=store, limit=new_limit))
    return products


# --- the module-level API of before the engine, on the bundled rules ---------------------------

def member_offers(profile: Mapping[str, Any], *, stock_here: Mapping[str, Mapping[str, Any]], now: datetime,
                  secret: bytes, gtin: str | None = None) -> list[dict[str, Any]]:
    """The bundled rules' offers, valued at the prices on the profile's lines (no catalog products)."""
    return _bundled().offers(profile, stock_here=stock_here, products={}, now=now, secret=secret, gtin=gtin)


def welcome(profile: Mapping[str, Any], *, stock_here: Mapping[str, Mapping[str, Any]], now: datetime,
            secret: bytes) -> dict[str, Any]:
    """The bundled rules' welcome, valued at the prices on the profile's lines (no catalog products)."""
    return _bundled().welcome(profile, stock_here=stock_here, products={}, now=now, secret=secret)


@lru_cache(maxsize=1)
def _bundled() -> OfferEngine:
    text = resources.files("hub").joinpath(BUNDLED_RULES).read_text(encoding="utf-8")
    return OfferEngine.from_toml(text, f"hub/{BUNDLED_RULES} (bundled)")


# --- the rule kinds: each returns drafts ----------------------------------------------------------

def _wishlist_in_stock(rule: Rule, visit: Visit, wording: Wording) -> list[Draft]:
    drafts = []
    for item in visit.profile.get("wishlist") or []:
        gtin = item.get("gtin")
        here = _here(visit, gtin)
        if here is None:
            continue
        price, name = _price(visit, gtin, item), _name(visit, gtin, item, here)
        drafts.append(Draft(rule, f"{rule.id}-{gtin}", (gtin,), rule.percent, _saving(price, rule.percent),
                            {"product": name, "location": here.get("location") or NO_LOCATION},
                            _promotion_note(price, rule.percent, name, wording)))
    return drafts


def _cart_left(rule: Rule, visit: Visit, wording: Wording) -> list[Draft]:
    cart = visit.profile.get("cart") or {}
    updated_at = _parse_ts(cart.get("updated_at"))
    if updated_at is None or visit.now - updated_at < timedelta(hours=rule.min_age_hours):
        return []
    lines = [line for line in cart.get("items") or [] if _here(visit, line.get("gtin")) is not None]
    if not lines:
        return []
    priced = [(line, _price(visit, line["gtin"], line)) for line in lines]
    names = [_name(visit, line["gtin"], line, _here(visit, line["gtin"])) for line in lines]
    saving = sum(_saving(price, rule.percent) * _quantity(line) for line, price in priced)
    if len(priced) == 1:
        note = _promotion_note(priced[0][1], rule.percent, names[0], wording)
    else:
        note = wording.some_on_promotion if any(price.promotion for _, price in priced) else ""
    return [Draft(rule, rule.id, tuple(line["gtin"] for line in lines), rule.percent, round(saving, 2),
                  {"products": _list_names(names), "count": len(lines), "items": _count(len(lines), "item"),
                   "age": _age(visit.now - updated_at)}, note)]


def _tier_perk(rule: Rule, visit: Visit, wording: Wording) -> list[Draft]:
    tier = visit.profile.get("tier")
    percent = dict(rule.tiers).get(tier) if isinstance(tier, str) else None
    if percent is None:
        return []
    return [Draft(rule, f"{rule.id}-{_slug(tier)}", (), percent, _best_single_saving(visit, percent), {"tier": tier})]


def _birthday_month(rule: Rule, visit: Visit, wording: Wording) -> list[Draft]:
    month = birthday_month(visit.profile.get("birthday"))
    if month is None or month != visit.now.month:
        return []
    return [Draft(rule, rule.id, (), rule.percent, _best_single_saving(visit, rule.percent),
                  {"month": calendar.month_name[month]})]


def _new_in_category(rule: Rule, visit: Visit, wording: Wording) -> list[Draft]:
    favourites = {c.lower() for c in _favourite_categories(visit.profile)}
    known = set(profile_gtins(visit.profile)) | _bought(visit.profile)
    candidates = []
    for gtin, product in visit.products.items():
        updated_at = _parse_ts(product.get("updated_at"))
        if (gtin in known or updated_at is None or str(product.get("category") or "").lower() not in favourites
                or visit.now - updated_at > timedelta(days=rule.days) or _here(visit, gtin) is None):
            continue
        candidates.append((updated_at, gtin))
    if not candidates:
        return []
    # The newest; of two equally new, the lower GTIN, so every kiosk offers the same one.
    _, gtin = min(candidates, key=lambda c: (-c[0].timestamp(), c[1]))
    here, product = _here(visit, gtin), visit.products[gtin]
    price, name = _price(visit, gtin, {}), _name(visit, gtin, {}, here)
    return [Draft(rule, f"{rule.id}-{gtin}", (gtin,), rule.percent, _saving(price, rule.percent),
                  {"product": name, "category": product.get("category"), "days": rule.days,
                   "location": here.get("location") or NO_LOCATION},
                  _promotion_note(price, rule.percent, name, wording))]


KINDS: dict[str, Kind] = {
    "wishlist_in_stock": Kind(_wishlist_in_stock, ("percent",), frozenset({"product", "location"}),
                              from_browsing=True, claims_first=1),
    "cart_left": Kind(_cart_left, ("percent", "min_age_hours"), frozenset({"products", "count", "items", "age"}),
                      from_browsing=True, claims_first=0),
    "tier_perk": Kind(_tier_perk, ("tiers",), frozenset({"tier"}), from_browsing=False, claims_first=3),
    "birthday_month": Kind(_birthday_month, ("percent",), frozenset({"month"}), from_browsing=False,
                           claims_first=3),
    "new_in_category": Kind(_new_in_category, ("percent", "days"),
                            frozenset({"product", "category", "location", "days"}), from_browsing=True,
                            claims_first=2),
}
KEY_DEFAULTS = {"min_age_hours": 24.0, "days": 30}


# --- valuing: catalog prices, promotions --------------------------------------------------------

@dataclass(frozen=True)
class Price:
    """A product's price today, before any promotion, and the promotion's label if it has one."""
    today: float
    regular: float
    promotion: str | None = None


def _price(visit: Visit, gtin: str, line: Mapping[str, Any]) -> Price:
    """From the catalog when it has the product (the store and the web shop agree), else from the profile's line."""
    product = visit.products.get(gtin)
    if product is None:
        today = _number(line.get("price"))
        return Price(today, today)
    today, earlier = _number(product.get("price")), _number(product.get("compare_at_price"))
    regular = earlier if earlier > today else today
    promotion = product.get("promotion")
    label = promotion.get("label") if isinstance(promotion, Mapping) else None
    if not label and regular > today:
        label = f"-{round(100 * (1 - today / regular))}%"
    return Price(today, regular, str(label) if label else None)


def _saving(price: Price, percent: int) -> float:
    """What the offer saves on top of today's price. It replaces a promotion rather than adding to it,
    so on a promoted product it saves only what it beats the promotion by (often nothing)."""
    return round(max(0.0, price.today - price.regular * (100 - percent) / 100), 2)


def _promotion_note(price: Price, percent: int, product: str, wording: Wording) -> str:
    if not price.promotion:
        return ""
    template = wording.offer_wins if _saving(price, percent) > 0 else wording.promotion_wins
    return template.format_map({"promotion": price.promotion, "percent": percent, "product": product})


def _best_single_saving(visit: Visit, percent: int) -> float:
    """A perk's worth to the shopper: they would spend it on the item they want most that is here."""
    return max((_saving(_price(visit, line["gtin"], line), percent) for line in _wanted(visit.profile)
                if line.get("gtin") and _here(visit, line["gtin"]) is not None), default=0.0)


# --- finishing ------------------------------------------------------------------------------------

def _one_offer_per_product(drafts: list[Draft]) -> list[Draft]:
    """A product covered by the cart offer is not offered again from the wishlist, and so on down
    `claims_first`; perks cover no product in particular and always stay."""
    kept, taken, ids = [], set(), set()
    for draft in sorted(drafts, key=lambda d: (KINDS[d.rule.kind].claims_first, -d.saving, d.offer_id)):
        if draft.offer_id in ids or (draft.gtins and set(draft.gtins) <= taken):
            continue
        kept.append(draft)
        taken.update(draft.gtins)
        ids.add(draft.offer_id)
    return kept


def _finish(draft: Draft, profile: Mapping[str, Any], valid_until: str, secret: bytes) -> dict[str, Any]:
    """The offer as it goes on the wire; it names one product only when it covers exactly one."""
    values = {"first_name": profile.get("first_name") or "", "percent": draft.percent, **draft.values}
    text = draft.rule.text.format_map(values)
    return {"id": draft.offer_id, "title": draft.rule.title.format_map(values),
            "text": f"{text} {draft.promotion_note}" if draft.promotion_note else text,
            "reason": draft.rule.reason.format_map(values),
            "code": offer_code(secret, str(profile["id"]), draft.offer_id, valid_until), "valid_until": valid_until,
            "gtin": draft.gtins[0] if len(draft.gtins) == 1 else None, "percent": draft.percent,
            "rule": draft.rule.id}


# --- checking a rules file --------------------------------------------------------------------------

def _engine_from(document: Mapping[str, Any], source: str, problems: list[str]) -> OfferEngine:
    for key in document:
        if key not in TOP_KEYS:
            problems.append(f"{source}: unknown key {key!r}; allowed at the top: {', '.join(TOP_KEYS)}")
    max_offers = _whole(document.get("max_offers", 4), MAX_OFFERS_RANGE, f"{source}: max_offers", problems)
    valid_days = _whole(document.get("valid_days", 1), VALID_DAYS_RANGE, f"{source}: valid_days", problems)
    wording = _wording_from(document.get("promotion", {}), source, problems)
    tables = document.get("rule", [])
    if not isinstance(tables, list):
        problems.append(f"{source}: rule must be an array of tables, written [[rule]]")
        tables = []
    rules, seen = [], set()
    for index, table in enumerate(tables, 1):
        where = f"{source}: rule #{index}" + (f" ({table.get('id')!r})" if isinstance(table, dict) else "")
        if not isinstance(table, dict):
            problems.append(f"{where}: must be a table, written [[rule]]")
            continue
        rule = _rule_from(table, where, problems)
        if rule is not None and rule.id in seen:
            problems.append(f"{where}: id {rule.id!r} is used by an earlier rule; each rule needs its own id "
                            "(offer ids and their till codes are made from it)")
        elif rule is not None and table.get("enabled", True) is True:
            rules.append(rule)
        if rule is not None:
            seen.add(rule.id)
    return OfferEngine(tuple(rules), max_offers=max_offers or 4, valid_days=valid_days or 1, wording=wording,
                       source=source)


def _rule_from(table: Mapping[str, Any], where: str, problems: list[str]) -> Rule | None:
    before = len(problems)
    kind_name = table.get("kind")
    kind = KINDS.get(kind_name) if isinstance(kind_name, str) else None
    if kind is None:
        problems.append(f"{where}: kind {kind_name!r} is not a rule kind; choose one of: {', '.join(KINDS)}")
        return None
    allowed = COMMON_KEYS + kind.keys
    for key in table:
        if key not in allowed:
            problems.append(f"{where}: unknown key {key!r}; allowed for kind {kind_name}: {', '.join(allowed)}")
    required = REQUIRED_KEYS + tuple(k for k in kind.keys if k not in KEY_DEFAULTS)
    for key in required:
        if key not in table:
            problems.append(f"{where}: {key} is required for kind {kind_name} (see docs/offers.md)")
    rule_id = table.get("id")
    if "id" in table and not (isinstance(rule_id, str) and RULE_ID.match(rule_id)):
        problems.append(f"{where}: id {rule_id!r} must be 1 to 40 lower-case letters, digits and hyphens")
    if not isinstance(table.get("enabled", True), bool):
        problems.append(f"{where}: enabled must be true or false")
    placeholders = COMMON_PLACEHOLDERS | kind.placeholders
    for key in ("title", "text", "reason"):
        if key in table:
            _check_template(table[key], placeholders, f"{where}: {key}", f"kind {kind_name}", problems)
    values: dict[str, Any] = {}
    if "percent" in kind.keys and "percent" in table:
        values["percent"] = _whole(table["percent"], PERCENT_RANGE, f"{where}: percent", problems)
    if "days" in kind.keys and "days" in table:
        values["days"] = _whole(table["days"], (1, 365), f"{where}: days", problems)
    if "min_age_hours" in kind.keys and "min_age_hours" in table:
        hours = table["min_age_hours"]
        if isinstance(hours, bool) or not isinstance(hours, (int, float)) or not 0 <= hours <= 24 * 365:
            problems.append(f"{where}: min_age_hours = {hours!r}; give a number of hours from 0 to {24 * 365}")
        else:
            values["min_age_hours"] = float(hours)
    if "tiers" in kind.keys and "tiers" in table:
        values["tiers"] = _tiers_from(table["tiers"], where, problems)
    if len(problems) > before:
        return None
    return Rule(id=rule_id, kind=kind_name, title=table["title"], text=table["text"], reason=table["reason"],
                **values)


def _tiers_from(tiers: Any, where: str, problems: list[str]) -> tuple[tuple[str, int], ...]:
    if not isinstance(tiers, dict) or not tiers:
        problems.append(f"{where}: tiers must be a table of tier → percent, "
                        "e.g. tiers = { Gold = 15, Platinum = 20 }")
        return ()
    return tuple((str(name), _whole(percent, PERCENT_RANGE, f"{where}: tiers.{name}", problems) or 0)
                 for name, percent in tiers.items())


def _wording_from(table: Any, source: str, problems: list[str]) -> Wording:
    if not isinstance(table, dict):
        problems.append(f"{source}: promotion must be a table, written [promotion]")
        return Wording()
    allowed = tuple(Wording.__dataclass_fields__)
    for key, template in table.items():
        if key not in allowed:
            problems.append(f"{source}: promotion: unknown key {key!r}; allowed: {', '.join(allowed)}")
        else:
            _check_template(template, PROMOTION_PLACEHOLDERS, f"{source}: promotion.{key}", "promotion sentences",
                            problems)
    return Wording(**{k: v for k, v in table.items() if k in allowed and isinstance(v, str)})


def _check_template(template: Any, allowed: frozenset[str], where: str, whose: str, problems: list[str]) -> None:
    """Only the kind's own placeholders, bare: `{product.__class__}` or `{0}` could read more than the words."""
    if not isinstance(template, str) or not template.strip():
        problems.append(f"{where} must be a non-empty string")
        return
    names = ", ".join(f"{{{p}}}" for p in sorted(allowed))
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError:
        problems.append(f"{where} has an unmatched {{ or }}; write {{{{ or }}}} for a literal brace")
        return
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if name not in allowed:
            problems.append(f"{where} uses {{{name}}}, which is not a placeholder of {whose}; use {names}")
        elif spec or conversion:
            problems.append(f"{where}: write {{{name}}} without a format or conversion")


def _whole(value: Any, bounds: tuple[int, int], where: str, problems: list[str]) -> int | None:
    low, high = bounds
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        problems.append(f"{where} = {value!r}; give a whole number from {low} to {high}")
        return None
    return value


# --- small readers of the profile ----------------------------------------------------------------

def birthday_month(birthday: Any) -> int | None:
    """The month of a "MM-DD" birthday, or None. "02-29" is a February birthday every year: in a
    year without a 29th it counts as 02-28, so the birthday offer still runs all February."""
    if not isinstance(birthday, str) or not re.fullmatch(r"[0-9]{2}-[0-9]{2}", birthday):
        return None
    month, day = int(birthday[:2]), int(birthday[3:])
    if not 1 <= month <= 12 or not 1 <= day <= calendar.monthrange(2000, month)[1]:  # 2000: a leap year
        return None
    return month


def _wanted(profile: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return list(profile.get("wishlist") or []) + list((profile.get("cart") or {}).get("items") or [])


def _favourite_categories(profile: Mapping[str, Any]) -> list[str]:
    categories = (profile.get("preferences") or {}).get("favourite_categories") or []
    return [c for c in categories if isinstance(c, str) and c]


def _bought(profile: Mapping[str, Any]) -> set[str]:
    return {item.get("gtin") for order in profile.get("orders") or [] for item in order.get("items") or []}


def _in_stock(stock_here: Mapping[str, Mapping[str, Any]], gtin: str | None) -> Mapping[str, Any] | None:
    stock = stock_here.get(gtin) if gtin else None
    if stock is None or _number(stock.get("quantity")) <= 0:
        return None
    return stock


def _here(visit: Visit, gtin: str | None) -> Mapping[str, Any] | None:
    """{"quantity", "location", "name"} when in stock in this store: from `stock_here`, else from
    the catalog product's own stock (the new products the engine was given)."""
    if not gtin:
        return None
    if gtin in visit.stock_here:
        return _in_stock(visit.stock_here, gtin)
    product = visit.products.get(gtin)
    here = ((product or {}).get("stock") or {}).get("here") or {}
    if _number(here.get("quantity")) <= 0:
        return None
    return {"quantity": here["quantity"], "location": here.get("location"), "name": product.get("name")}


def _name(visit: Visit, gtin: str, line: Mapping[str, Any], here: Mapping[str, Any] | None) -> str:
    product = visit.products.get(gtin) or {}
    return (here or {}).get("name") or product.get("name") or line.get("name") or "an item"


def _number(value: Any) -> float:
    try:
        return float(value or 0.0)
    except (TypeError, ValueError):
        return 0.0


def _quantity(line: Mapping[str, Any]) -> int:
    try:
        return max(1, int(line.get("quantity", 1)))
    except (TypeError, ValueError):
        return 1


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "tier"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' if n != 1 else ''}"


def _age(age: timedelta) -> str:
    days = int(age / timedelta(days=1))
    return _count(days, "day") if days >= 1 else _count(int(age / timedelta(hours=1)), "hour")


def _list_names(names: list[str]) -> str:
    if len(names) == 1:
        return names[0]
    if len(names) == 2:
        return f"{names[0]} and {names[1]}"
    return f"{names[0]}, {names[1]} and {len(names) - 2} more"


def _parse_ts(text: Any) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
