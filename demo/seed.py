"""Deterministic demo data for the online store: customers, orders, catalog, reviews, stores.

`build(seed, now)` is pure: the same arguments always give an equal `StoreData`, with every
timestamp placed relative to `now`, so tests, screenshots and the README walk-through agree.
Records are plain dicts already in the shape `docs/online-api.md` documents, so the demo API
serves them without translation and a reader can compare seed and wire side by side.
"""

from __future__ import annotations

import random
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

REFERENCE_NOW = datetime(2026, 11, 22, 9, 0, 0, tzinfo=timezone.utc)
CUSTOMER_COUNT = 240
PRODUCT_COUNT = 640
CURRENCY = "EUR"

HERO_ID = "M0001"
HERO_ORDER_ID = "1043"
# The hero's birthday is on this day of the month of `now`, so a birthday-month offer is hers in the demo.
HERO_BIRTHDAY_DAY = 28
NO_CONSENT_ID = "M0002"

TIERS = ("Bronze", "Silver", "Gold", "Platinum")
TIER_WEIGHTS = (62, 24, 10, 4)
# Lifetime spend (EUR) that places a member in each tier; order counts grow with it so the
# seeded history looks like the spend that earned the tier.
TIER_SPEND = {"Bronze": (15, 750), "Silver": (750, 2000), "Gold": (2000, 5000), "Platinum": (5000, 14000)}
# History holds at most 6 so that, with up to 2 orders in flight, nobody has more than 8.
TIER_ORDER_COUNTS = {"Bronze": (0, 2), "Silver": (1, 5), "Gold": (2, 6), "Platinum": (4, 6)}

CHANNELS = ("web", "app", "marketplace", "store")
STATUSES = ("placed", "shipped", "delivered", "ready_for_pickup", "picked_up", "cancelled", "returned")
SHELVES = "ABCDEF"


@dataclass(frozen=True)
class StoreData:
    """Everything the demo online store serves.

    now:       the reference time every timestamp is relative to (UTC).
    stores:    [{"id", "name", "address", "geo", "timezone", "phone", "opening_hours",
                 "click_and_collect"}], "s001" first.
    products:  [{"gtin", "name", "brand", "category", "colour", "sizes", "price",
                 "compare_at_price", "currency", "description", "rating": {"average", "count"},
                 "reviews": [{"id", "rating", "title", "text", "author", "date",
                 "verified_purchase"}], "updated_at"}], sorted by gtin.
    customers: customer profiles exactly as GET /api/v1/customers/<id> returns them,
               sorted by id ("M0001" first); `birthday` is "MM-DD" (see `_birthdays`).
    home_stores: customer id → the store id whose analytics feeds carry that member
               (see `_home_stores`); kept beside the profiles, whose shape is the API's.
    sessions:  online sessions of the last 365 days, shaped as in GET /api/v1/sessions/changes
               ({"id", "customer_id", "channel", "source", "started_at", "added_to_cart",
               "asked_for_help"}), oldest first; see `_sessions`.
    """

    now: datetime
    stores: list[dict]
    products: list[dict]
    customers: list[dict]
    home_stores: dict[str, str] = field(default_factory=dict)
    sessions: list[dict] = field(default_factory=list)


def gtin_check_digit(body: str) -> int:
    """GS1 check digit for the digits of a GTIN without its last digit (any GTIN length)."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return (10 - total % 10) % 10


def iso(moment: datetime) -> str:
    """UTC timestamp as ISO 8601 with a "Z" suffix, second precision."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def build(seed: int = 2026, now: datetime = REFERENCE_NOW) -> StoreData:
    """Generate the whole demo store from one seed; `now` must be timezone-aware."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (UTC), e.g. datetime(..., tzinfo=timezone.utc)")
    now = now.astimezone(timezone.utc).replace(microsecond=0)
    rng = random.Random(seed)
    stores = _stores()
    products = _products(rng, now)
    customers = _birthdays(_customers(rng, now, products), seed, now)
    # Everything below draws from generators of its own: the values above stay as they were.
    home_stores = _home_stores(customers, seed)
    sessions = _sessions(customers, seed, now)
    return StoreData(now=now, stores=stores, products=products, customers=customers,
                     home_stores=home_stores, sessions=sessions)


# --- stores -----------------------------------------------------------------------------

def _stores() -> list[dict]:
    hours = {"mon-fri": "09:00-20:00", "sat": "10:00-18:00", "sun": "12:00-17:00"}

    def store(sid, name, street, postcode, city, lat, lon, phone):
        return {"id": sid, "name": name,
                "address": {"street": street, "postcode": postcode, "city": city, "country": "NL"},
                "geo": {"lat": lat, "lon": lon}, "timezone": "Europe/Amsterdam", "phone": phone,
                "opening_hours": dict(hours), "click_and_collect": True}

    return [
        store("s001", "Omnikiosk Demo Store — Amsterdam Centraal", "Stationsplein 21", "1012 AB",
              "Amsterdam", 52.3786, 4.9002, "+31 20 555 0101"),
        store("s002", "Omnikiosk Demo Store — Kalverstraat", "Kalverstraat 118", "1012 PK",
              "Amsterdam", 52.3699, 4.8912, "+31 20 555 0102"),
        store("s003", "Omnikiosk Demo Store — Utrecht Hoog Catharijne", "Godebaldkwartier 40",
              "3511 DZ", "Utrecht", 52.0894, 5.1120, "+31 30 555 0103"),
    ]


# --- catalog ----------------------------------------------------------------------------

TOP_SIZES = ["XS", "S", "M", "L", "XL", "XXL"]
SHOE_SIZES = [str(n) for n in range(36, 47)]
WAIST_SIZES = [f"W{n}" for n in range(28, 39, 2)]
ONE_SIZE = ["One Size"]

# category: (item types, materials, price range EUR, sizes, features)
CATEGORIES = {
    "shoes": (["Sneaker", "Runner", "Chelsea Boot", "Loafer", "Derby", "Trail Shoe", "Court Sneaker", "Ankle Boot"],
              ["Leather", "Suede", "Canvas", "Knit", "Nubuck"], (59, 229), SHOE_SIZES,
              ["Cushioned footbed for all-day wear", "Grippy rubber outsole", "Padded collar and tongue",
               "Removable insole that takes orthotics", "Stitched, resoleable construction"]),
    "jackets": (["Parka", "Puffer Jacket", "Rain Jacket", "Bomber", "Trench Coat", "Wool Coat", "Field Jacket"],
                ["Recycled Nylon", "Wool Blend", "Cotton Twill", "Waxed Cotton", "Ripstop"], (79, 399), TOP_SIZES,
                ["Fully taped seams keep the rain out", "Two-way zip and storm flap", "Insulated with recycled fill",
                 "Adjustable hood that stows in the collar", "Inside pocket sized for a phone"]),
    "knitwear": (["Crew-Neck Jumper", "Cardigan", "Roll-Neck", "V-Neck Jumper", "Quarter-Zip", "Cable Knit Sweater"],
                 ["Merino", "Cashmere Blend", "Lambswool", "Organic Cotton", "Alpaca Blend"], (49, 249), TOP_SIZES,
                 ["Ribbed cuffs and hem hold their shape", "Fine gauge that layers under a coat",
                  "Mulesing-free wool", "Soft brushed finish", "Fully fashioned shoulders"]),
    "jeans": (["Slim Jeans", "Straight Jeans", "Relaxed Jeans", "Tapered Jeans", "Wide-Leg Jeans"],
              ["Rinse", "Stone Wash", "Black", "Light Indigo", "Vintage Blue"], (59, 159), WAIST_SIZES,
              ["Comfort stretch denim", "Rigid selvedge denim that breaks in", "Button fly and copper rivets",
               "Mid rise with a roomy thigh", "Made with less water than standard washes"]),
    "t-shirts": (["Crew Tee", "V-Neck Tee", "Pocket Tee", "Long-Sleeve Tee", "Oversized Tee", "Henley"],
                 ["Organic Cotton", "Supima Cotton", "Linen Blend", "Slub Jersey"], (15, 49), TOP_SIZES,
                 ["Pre-shrunk so the fit stays", "Heavyweight jersey that does not go see-through",
                  "Taped neck seam", "Garment dyed for a lived-in colour"]),
    "bags": (["Tote", "Backpack", "Crossbody Bag", "Weekender", "Belt Bag", "Laptop Sleeve", "Shopper"],
             ["Leather", "Recycled Canvas", "Nylon", "Vegan Leather"], (29, 299), ONE_SIZE,
             ["Padded sleeve fits a 15-inch laptop", "Water-repellent finish", "Zipped inner pocket",
              "Adjustable, detachable strap", "Magnetic closure"]),
    "accessories": (["Wool Beanie", "Cashmere Scarf", "Leather Gloves", "Leather Belt", "Cotton Cap",
                     "Leather Wallet", "Acetate Sunglasses"],
                    ["Classic", "Essential", "Heritage", "Everyday", "Studio"], (9, 129), ONE_SIZE,
                    ["Gift boxed", "Touchscreen-friendly fingertips", "RFID-blocking lining",
                     "UV400 protection", "Solid brass hardware"]),
    "sportswear": (["Running Tights", "Training Tee", "Track Jacket", "Sports Bra", "Running Shorts", "Hoodie"],
                   ["Recycled Polyester", "Dry-Knit", "Seamless Knit", "Brushed Fleece"], (25, 129), TOP_SIZES,
                   ["Sweat-wicking fabric", "Reflective details for dark runs", "Four-way stretch",
                    "Zipped key pocket", "Flatlock seams against chafing"]),
    "dresses": (["Wrap Dress", "Shirt Dress", "Midi Dress", "Knit Dress", "Slip Dress"],
                ["Viscose", "Linen", "Organic Cotton", "Satin", "Jersey"], (49, 199), TOP_SIZES,
                ["Fully lined", "Side pockets", "Adjustable waist tie", "Crease-resistant fabric"]),
    "shirts": (["Oxford Shirt", "Flannel Shirt", "Linen Shirt", "Overshirt", "Poplin Shirt"],
               ["Cotton", "Linen", "Brushed Cotton", "Chambray"], (39, 129), TOP_SIZES,
               ["Button-down collar", "Mother-of-pearl buttons", "Regular fit with a curved hem",
                "Non-iron finish"]),
}
CATEGORY_WEIGHTS = {"shoes": 14, "jackets": 10, "knitwear": 10, "jeans": 9, "t-shirts": 12, "bags": 8,
                    "accessories": 12, "sportswear": 11, "dresses": 7, "shirts": 7}
COLOURS = ["Black", "Navy", "Off-White", "Olive", "Camel", "Grey Melange", "Burgundy", "Sand", "Forest Green",
           "Rust", "Sky Blue", "Charcoal", "Ecru", "Cobalt", "Chocolate"]

# Fictional brands, each with its own GS1 company prefix so a brand's GTINs cluster the way
# real ones do (country prefix 400-440 is Germany, 50 is the UK).
BRANDS = ["Nordvik", "Maison Lumen", "Kestrel Outdoor", "Atelier Brun", "Urban Fjord", "Soleil & Co",
          "Tanaka Works", "Verde Athletics", "Lindqvist", "Calder Denim", "Halden", "Marlowe & Finch",
          "Oosterpark", "Rivière", "Kaito", "Brightwater", "Vale Studio", "Ardent Run"]
CARE = ["Machine wash at 30°C.", "Hand wash cold, dry flat.", "Dry clean only.", "Wipe clean with a damp cloth.",
        "Wash inside out at 30°C.", "Air out between wears; spot clean."]


def _brand_prefixes(rng: random.Random) -> dict[str, str]:
    """A distinct 7-digit GS1 company prefix per brand."""
    prefixes: dict[str, str] = {}
    for brand in BRANDS:
        while True:
            country = "50" if rng.random() < 0.25 else str(rng.randint(400, 440))
            prefix = country + "".join(str(rng.randint(0, 9)) for _ in range(7 - len(country)))
            if prefix not in prefixes.values():
                prefixes[brand] = prefix
                break
    return prefixes


def _price(rng: random.Random, low: int, high: int) -> float:
    """A shelf price with the endings shops actually use (.95, .99, .00)."""
    return int(rng.uniform(low, high)) + rng.choice([0.95, 0.99, 0.95, 0.0])


def _products(rng: random.Random, now: datetime) -> list[dict]:
    prefixes = _brand_prefixes(rng)
    next_item = {brand: rng.randint(100, 900) for brand in BRANDS}
    categories = list(CATEGORY_WEIGHTS)
    products = []
    for _ in range(PRODUCT_COUNT):
        brand = rng.choice(BRANDS)
        category = rng.choices(categories, weights=[CATEGORY_WEIGHTS[c] for c in categories])[0]
        item_ref = next_item[brand]
        next_item[brand] += rng.randint(1, 7)  # item references are allocated with gaps, not 1..n
        body = (prefixes[brand] + str(item_ref).zfill(5))[:12]
        ean13 = body + str(gtin_check_digit(body))
        products.append(_product(rng, now, ean13.zfill(14), brand, category))
    return sorted(products, key=lambda p: p["gtin"])


def _product(rng: random.Random, now: datetime, gtin: str, brand: str, category: str) -> dict:
    items, materials, (low, high), sizes, features = CATEGORIES[category]
    item, material, colour = rng.choice(items), rng.choice(materials), rng.choice(COLOURS)
    price, compare_at = _price(rng, low, high), None
    if rng.random() < 0.2:  # about one in five is on sale
        compare_at = price
        price = max(int(compare_at * (1 - rng.choice([0.2, 0.25, 0.3, 0.4, 0.5]))) - 0.05, 4.95)
    description = (f"The {material} {item} from {brand}, in {colour.lower()}. "
                   + ". ".join(rng.sample(features, 2)) + ". " + rng.choice(CARE))
    reviews = _reviews(rng, now, brand, sizes)
    average = round(sum(r["rating"] for r in reviews) / len(reviews), 1) if reviews else None
    return {
        "gtin": gtin, "name": f"{material} {item}, {colour}", "brand": brand, "category": category,
        "colour": colour, "sizes": list(sizes), "price": round(price, 2),
        "compare_at_price": round(compare_at, 2) if compare_at is not None else None, "currency": CURRENCY,
        "description": description, "rating": {"average": average, "count": len(reviews)},
        "reviews": reviews, "updated_at": iso(now - timedelta(days=rng.randint(1, 120), minutes=rng.randint(0, 1439))),
    }


# --- reviews ----------------------------------------------------------------------------

REVIEW_TITLES = {
    5: ["Love it", "Perfect fit", "Best purchase this year", "Exactly as pictured", "Great quality",
        "Would buy again in every colour"],
    4: ["Really nice", "Very good, one small niggle", "Comfortable", "Good value", "Happy with it"],
    3: ["Okay", "Mixed feelings", "Decent but not great", "Fine for the price", "Does the job"],
    2: ["Disappointed", "Not as expected", "Sizing is off", "Colour differs from photos"],
    1: ["Fell apart", "Would not buy again", "Poor quality", "Sent it back"],
}
REVIEW_OPENINGS = {
    5: ["Absolutely love this.", "Couldn't be happier with it.", "This is my third one from {brand}.",
        "Bought it for a trip and wore it every day."],
    4: ["Really pleased overall.", "Nice piece, with one caveat.", "Good buy, especially on sale.",
        "Solid quality from {brand}."],
    3: ["It's fine.", "Not bad, not amazing.", "Expected a bit more for the money.", "Does what it says."],
    2: ["Had high hopes for this.", "Not what I expected from {brand}.", "Returned after a week."],
    1: ["Really poor.", "Very disappointed.", "Would give zero stars if I could."],
}
REVIEW_ASPECTS_GOOD = [
    "True to size — I took my usual {size}.", "The colour is exactly as in the photos.",
    "Well finished, no loose threads anywhere.", "Still looks new after several washes.",
    "Comfortable from the first wear.", "The material feels more expensive than it is.",
    "Staff in store helped me pick the right size.", "Picked it up in store the next day, easy.",
]
REVIEW_ASPECTS_BAD = [
    "Runs small; I had to size up from {size}.", "Runs large, so I exchanged it for a smaller size.",
    "The colour is duller than online.", "Started pilling after two washes.",
    "A seam came loose within a month.", "Stiff and uncomfortable, even after breaking in.",
]
REVIEW_CLOSINGS = {
    "happy": ["Recommended.", "Would buy again.", "Good for everyday wear.", "Great for the price.",
              "Wish it came in more colours.", ""],
    "neutral": ["Okay for everyday wear.", "Might buy again on sale.", "", ""],
}


def _reviews(rng: random.Random, now: datetime, brand: str, sizes: list[str]) -> list[dict]:
    """0-12 reviews whose ratings cluster around a per-product quality, newest first."""
    count = rng.choices(range(13), weights=[14, 8, 9, 9, 8, 8, 7, 6, 6, 5, 5, 5, 5])[0]
    quality = rng.uniform(2.6, 4.9)
    reviews = []
    for n in range(count):
        rating = min(5, max(1, round(rng.gauss(quality, 0.9))))
        size = rng.choice(sizes)
        aspects = REVIEW_ASPECTS_GOOD if rating >= 4 else REVIEW_ASPECTS_BAD if rating <= 2 else \
            REVIEW_ASPECTS_GOOD + REVIEW_ASPECTS_BAD
        text = " ".join(part for part in (
            rng.choice(REVIEW_OPENINGS[rating]).format(brand=brand),
            rng.choice(aspects).format(size=size),
            rng.choice(REVIEW_CLOSINGS["happy" if rating >= 4 else "neutral"]) if rating >= 3 else "",
        ) if part)
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        reviews.append({
            "id": f"r{rng.randint(0, 16**8 - 1):08x}", "rating": rating,
            "title": rng.choice(REVIEW_TITLES[rating]), "text": text,
            "author": f"{first} {_initial(last)}.",
            "date": (now - timedelta(days=rng.randint(2, 720))).date().isoformat(),
            "verified_purchase": rng.random() < 0.8,
        })
    return sorted(reviews, key=lambda r: (r["date"], r["id"]), reverse=True)


def _initial(last_name: str) -> str:
    """Initial of the family name proper ("van den Berg" → "B"), as shops print it."""
    return last_name.split()[-1][0].upper()


# --- customers --------------------------------------------------------------------------

FIRST_NAMES = [
    "Sofia", "Lucas", "Emma", "Noah", "Daan", "Sanne", "Fleur", "Mohammed", "Aisha", "Yusuf", "Fatima", "Mei",
    "Hiroshi", "Yuki", "Priya", "Arjun", "Ananya", "Olga", "Dmitri", "Katarzyna", "Piotr", "Giulia", "Matteo",
    "Lucía", "Mateo", "Camille", "Louis", "Ingrid", "Lars", "Freya", "Aoife", "Seán", "Chiara", "Kwame",
    "Amara", "Chidi", "Zanele", "Thabo", "Leila", "Omar", "Elif", "Emre", "Ana", "João", "Bram", "Lotte",
    "Jesse", "Tess", "Ravi", "Nadia", "Inès", "Hugo", "Julia", "Finn", "Mila", "Sem", "Zoë", "Min-jun",
    "Ji-woo", "Minh", "Linh", "Carlos", "Valentina", "Björn", "Astrid", "Anouk", "Ruben", "Maarten",
    "Esther", "Marta", "Tomasz", "Hana", "Kenji", "Sara", "David", "Rosa", "Liam", "Olivia", "Ahmed",
    "Samira", "Nikos", "Eleni", "Wei", "Xin", "Tariq", "Noor", "Mariam", "Jonas", "Elena", "Pablo",
]
# "Cooper" is kept for the hero alone, so a search for her name finds exactly one member.
LAST_NAMES = [
    "de Vries", "Jansen", "van den Berg", "Bakker", "Visser", "Smit", "Meijer", "de Boer", "Mulder", "Bos",
    "Vos", "Peters", "Hendriks", "van Dijk", "El Amrani", "Yılmaz", "Kaya", "Demir", "Nowak", "Kowalczyk",
    "Rossi", "Bianchi", "Esposito", "García", "Fernández", "Martínez", "Dubois", "Lefèvre", "Moreau",
    "Müller", "Schmidt", "Schneider", "Fischer", "Andersson", "Johansson", "Nielsen", "Hansen", "O'Brien",
    "Murphy", "Kelly", "Tanaka", "Sato", "Suzuki", "Kim", "Park", "Nguyen", "Tran", "Chen", "Wang", "Li",
    "Patel", "Sharma", "Singh", "Okafor", "Mensah", "Adeyemi", "Dlamini", "Haddad", "Khalil", "Silva",
    "Santos", "Costa", "Papadopoulos", "Novak", "Horvat", "Lindberg", "Kowalski", "Ahmadi", "Bouzid",
    "Hoang", "Ferreira", "Brouwer", "van Leeuwen", "Dekker", "Koster", "Wójcik",
]
EMAIL_DOMAINS = ["example.com", "example.net", "example.org", "mail.example.com"]
# (country calling code, mobile prefix, weight): most members live near the Dutch stores.
PHONE_PLANS = [("+31", "6", 78), ("+32", "47", 8), ("+49", "15", 8), ("+44", "7", 6)]
ASCII_FOLD = str.maketrans({"ı": "i", "ł": "l", "ø": "o", "ß": "ss", "'": "", " ": "", "-": ""})


def _email_local(first: str, last: str) -> str:
    text = f"{first}.{last}".lower().translate(ASCII_FOLD)
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()


def _phone(rng: random.Random) -> str:
    code, mobile, _ = rng.choices(PHONE_PLANS, weights=[p[2] for p in PHONE_PLANS])[0]
    digits = "".join(str(rng.randint(0, 9)) for _ in range(9 - len(mobile)))
    national = mobile + digits
    return f"{code} {national[:3]} {national[3:6]} {national[6:]}"


def _preferences(rng: random.Random) -> dict:
    return {
        "sizes": {"tops": rng.choice(TOP_SIZES[:5]), "bottoms": rng.choice(WAIST_SIZES),
                  "shoes": rng.choice(SHOE_SIZES)},
        "favourite_categories": rng.sample(list(CATEGORIES), rng.randint(1, 3)),
    }


def _customers(rng: random.Random, now: datetime, products: list[dict]) -> list[dict]:
    """Profiles, built in two passes: orders need globally increasing numbers before loyalty
    history can cite them."""
    by_category: dict[str, list[dict]] = {}
    for product in products:
        by_category.setdefault(product["category"], []).append(product)
    picker = _ProductPicker(rng, products, by_category)

    traits = _traits(rng)
    emails: set[str] = set()
    drafts = []
    for n in range(1, CUSTOMER_COUNT + 1):
        cid = f"M{n:04d}"
        draft = _hero_draft(rng, now, picker) if cid == HERO_ID else _draft(rng, now, cid, picker, traits[cid])
        if "email" not in draft:
            draft["email"] = _unique_email(rng, draft, emails)
        emails.add(draft["email"])
        drafts.append(draft)
    _number_orders(rng, drafts)
    return [_finish(rng, now, draft) for draft in drafts]


class _ProductPicker:
    """Chooses products, favouring a member's favourite categories like real baskets do."""

    def __init__(self, rng: random.Random, products: list[dict], by_category: dict[str, list[dict]]):
        self.rng, self.products, self.by_category = rng, products, by_category

    def pick(self, favourites: list[str]) -> dict:
        if favourites and self.rng.random() < 0.7:
            return self.rng.choice(self.by_category[self.rng.choice(favourites)])
        return self.rng.choice(self.products)

    def distinct(self, favourites: list[str], count: int) -> list[dict]:
        chosen: dict[str, dict] = {}
        while len(chosen) < count:
            product = self.pick(favourites)
            chosen[product["gtin"]] = product
        return list(chosen.values())


def _unique_email(rng: random.Random, draft: dict, taken: set[str]) -> str:
    local = _email_local(draft["first_name"], draft["last_name"])
    email = f"{local}@{rng.choice(EMAIL_DOMAINS)}"
    while email in taken:
        email = f"{local}{rng.randint(1, 99)}@{rng.choice(EMAIL_DOMAINS)}"
    return email


def _traits(rng: random.Random) -> dict[str, dict[str, bool]]:
    """Which members lack consent, have a pickup waiting at s001, or have a cart.

    Drawn as exact quotas rather than per-member coin flips, so the shares the demo promises
    (15% no clienteling consent, 8% pickups at s001, 30% carts) hold for every seed. The hero
    is left out: her profile is fixed by hand.
    """
    others = [f"M{n:04d}" for n in range(2, CUSTOMER_COUNT + 1)]
    rest = [cid for cid in others if cid != NO_CONSENT_ID]
    no_consent = {NO_CONSENT_ID, *rng.sample(rest, round(0.15 * CUSTOMER_COUNT) - 1)}
    pickup_s001 = set(rng.sample(others, round(0.08 * CUSTOMER_COUNT) - 1))
    with_cart = set(rng.sample(others, round(0.30 * CUSTOMER_COUNT) - 1))
    return {cid: {"clienteling": cid not in no_consent, "pickup_s001": cid in pickup_s001,
                  "cart": cid in with_cart} for cid in others}


def _draft(rng: random.Random, now: datetime, cid: str, picker: _ProductPicker, traits: dict[str, bool]) -> dict:
    """A member with everything except order numbers, points and lifetime value."""
    tier = rng.choices(TIERS, weights=TIER_WEIGHTS)[0]
    member_since = now - timedelta(days=rng.randint(20, 9 * 365))
    preferences = _preferences(rng)
    favourites = preferences["favourite_categories"]
    orders = _history_orders(rng, now, member_since, tier, favourites, picker)
    orders += _current_orders(rng, now, favourites, picker, traits["pickup_s001"])
    return {
        "id": cid, "first_name": rng.choice(FIRST_NAMES), "last_name": rng.choice(LAST_NAMES),
        "phone": _phone(rng), "tier": tier, "member_since": member_since,
        "consent": {"clienteling": traits["clienteling"], "marketing": rng.random() < 0.6},
        "preferences": preferences, "orders": orders,
        "wishlist": _wishlist(rng, now, member_since, favourites, picker,
                              rng.choices(range(7), weights=[30, 18, 16, 12, 10, 8, 6])[0]),
        "cart": _cart(rng, now, favourites, picker) if traits["cart"] else {"updated_at": None, "items": []},
        "recently_viewed": _recently_viewed(rng, now, member_since, favourites, picker, rng.randint(0, 10)),
    }


def _hero_draft(rng: random.Random, now: datetime, picker: _ProductPicker) -> dict:
    """Jane Cooper, the README walk-through: Gold, consenting, order #1043 waiting on shelf B."""
    member_since = now - timedelta(days=4 * 365 + 37)
    preferences = {"sizes": {"tops": "S", "bottoms": "W28", "shoes": "38"},
                   "favourite_categories": ["shoes", "knitwear", "bags"]}
    favourites = preferences["favourite_categories"]
    orders = _history_orders(rng, now, member_since, "Gold", favourites, picker)
    placed = now - timedelta(days=1, hours=22, minutes=14)
    pickup_items = [picker.rng.choice(picker.by_category["shoes"]), picker.rng.choice(picker.by_category["knitwear"])]
    orders.append(_order(placed, "web", "ready_for_pickup", pickup_items, [1, 1],
                         {"store": "s001", "shelf": "B", "ready_since": iso(now - timedelta(hours=20, minutes=32))},
                         order_id=HERO_ORDER_ID))
    cart = _cart(rng, now, favourites, picker)
    cart["updated_at"] = iso(now - timedelta(days=2))
    return {
        "id": HERO_ID, "first_name": "Jane", "last_name": "Cooper", "email": "jane.cooper@example.com",
        "phone": "+31 612 345 678",
        "tier": "Gold", "member_since": member_since, "consent": {"clienteling": True, "marketing": True},
        "preferences": preferences, "orders": orders,
        "wishlist": _wishlist(rng, now, member_since, favourites, picker, 3),
        "cart": cart,
        "recently_viewed": _recently_viewed(rng, now, member_since, favourites, picker, 5),
    }


def _order(placed: datetime, channel: str, status: str, products: list[dict], quantities: list[int],
           pickup: dict | None, order_id: str | None = None) -> dict:
    items = [{"gtin": p["gtin"], "name": p["name"], "quantity": q, "price": p["price"]}
             for p, q in zip(products, quantities)]
    total = round(sum(round(i["price"] * i["quantity"], 2) for i in items), 2)
    return {"id": order_id, "number": f"#{order_id}" if order_id else None, "channel": channel,
            "status": status, "placed_at": iso(placed), "total": total, "currency": CURRENCY,
            "pickup": pickup, "items": items}


def _basket(rng: random.Random, favourites: list[str], picker: _ProductPicker) -> tuple[list[dict], list[int]]:
    products = picker.distinct(favourites, rng.choices([1, 2, 3, 4], weights=[45, 30, 17, 8])[0])
    return products, [rng.choices([1, 2, 3], weights=[85, 12, 3])[0] for _ in products]


def _history_orders(rng: random.Random, now: datetime, member_since: datetime, tier: str,
                    favourites: list[str], picker: _ProductPicker) -> list[dict]:
    """Finished orders from the last three years (older than two weeks)."""
    start = max(member_since, now - timedelta(days=3 * 365))
    end = now - timedelta(days=14)
    if end <= start:
        return []
    low, high = TIER_ORDER_COUNTS[tier]
    orders = []
    for _ in range(rng.randint(low, high)):
        channel = rng.choices(CHANNELS, weights=[45, 30, 10, 15])[0]
        placed = _shopping_time(rng, start, end, channel)
        collect = channel in ("web", "app") and rng.random() < 0.25
        products, quantities = _basket(rng, favourites, picker)
        outcome = rng.random()
        if channel == "store":  # bought at the till: handed over on the spot
            status = "returned" if outcome < 0.07 else "delivered"
        elif outcome < 0.05:
            status = "cancelled"
        elif outcome < 0.12:
            status = "returned"
        else:
            status = "picked_up" if collect else "delivered"
        pickup = None
        if collect:
            ready = status != "cancelled"
            pickup = {"store": rng.choice(["s001", "s001", "s002", "s003"]),
                      "shelf": rng.choice(SHELVES) if ready else None,
                      "ready_since": iso(placed + timedelta(hours=rng.randint(18, 52))) if ready else None}
        orders.append(_order(placed, channel, status, products, quantities, pickup))
    return orders


# Relative online orders per UTC hour: quiet at night, peaking in the Dutch evening.
ONLINE_HOURS = [1, 1, 1, 1, 1, 2, 3, 4, 5, 6, 6, 7, 7, 6, 6, 6, 7, 8, 10, 11, 10, 7, 4, 2]


def _shopping_time(rng: random.Random, start: datetime, end: datetime, channel: str) -> datetime:
    """A moment between start and end at an hour people shop: store orders while the
    stores are open (09:00-19:00 Amsterdam time), online ones mostly in the evening."""
    day = start + timedelta(days=rng.randint(0, max(0, (end - start).days - 1)))
    hour = rng.randint(8, 17) if channel == "store" else rng.choices(range(24), weights=ONLINE_HOURS)[0]
    moment = day.replace(hour=hour, minute=rng.randint(0, 59), second=rng.randint(0, 59))
    return min(max(moment, start), end)


def _current_orders(rng: random.Random, now: datetime, favourites: list[str], picker: _ProductPicker,
                    pickup_s001: bool) -> list[dict]:
    """Orders still in flight: a pickup waiting at s001 (what the in-store demo shows when the
    member checks in), or at another store, or a parcel on its way."""
    orders = []
    if pickup_s001:
        orders.append(_ready_order(rng, now, "s001", favourites, picker))
    elif rng.random() < 0.05:
        orders.append(_ready_order(rng, now, rng.choice(["s002", "s003"]), favourites, picker))
    if rng.random() < 0.12:
        placed = now - timedelta(hours=rng.randint(2, 6 * 24))
        status = "placed" if now - placed < timedelta(days=2) else "shipped"
        products, quantities = _basket(rng, favourites, picker)
        channel = rng.choices(["web", "app", "marketplace"], weights=[50, 35, 15])[0]
        orders.append(_order(placed, channel, status, products, quantities, None))
    return orders


def _ready_order(rng: random.Random, now: datetime, store: str, favourites: list[str],
                 picker: _ProductPicker) -> dict:
    ready_since = now - timedelta(hours=rng.randint(1, 5 * 24))
    placed = ready_since - timedelta(hours=rng.randint(18, 52))
    products, quantities = _basket(rng, favourites, picker)
    pickup = {"store": store, "shelf": rng.choice(SHELVES), "ready_since": iso(ready_since)}
    return _order(placed, rng.choice(["web", "app"]), "ready_for_pickup", products, quantities, pickup)


def _wishlist(rng: random.Random, now: datetime, member_since: datetime, favourites: list[str],
              picker: _ProductPicker, count: int) -> list[dict]:
    span = max(1, min(180 * 24 * 60, int((now - member_since).total_seconds() // 60)))
    entries = [{"gtin": p["gtin"], "name": p["name"], "price": p["price"],
                "added_at": iso(now - timedelta(minutes=rng.randint(1, span)))}
               for p in picker.distinct(favourites, count)]
    return sorted(entries, key=lambda e: e["added_at"], reverse=True)


def _cart(rng: random.Random, now: datetime, favourites: list[str], picker: _ProductPicker) -> dict:
    products = picker.distinct(favourites, rng.randint(1, 3))
    return {"updated_at": iso(now - timedelta(minutes=rng.randint(30, 14 * 24 * 60))),
            "items": [{"gtin": p["gtin"], "name": p["name"], "quantity": rng.choice([1, 1, 1, 2]),
                       "price": p["price"]} for p in products]}


def _recently_viewed(rng: random.Random, now: datetime, member_since: datetime, favourites: list[str],
                     picker: _ProductPicker, count: int) -> list[dict]:
    span = max(5, min(30 * 24 * 60, int((now - member_since).total_seconds() // 60)))
    entries = [{"gtin": p["gtin"], "name": p["name"],
                "viewed_at": iso(now - timedelta(minutes=rng.randint(5, span))),
                "channel": rng.choice(["web", "app", "app"])}
               for p in picker.distinct(favourites, count)]
    return sorted(entries, key=lambda e: e["viewed_at"], reverse=True)


def _number_orders(rng: random.Random, drafts: list[dict]) -> None:
    """Give every order an id that grows with its placing time, as a shop's counter does.
    The hero's order keeps the number the README quotes."""
    orders = [o for d in drafts for o in d["orders"] if o["id"] is None]
    numbers = sorted(rng.sample(range(1100, 10000), len(orders)))
    for order, number in zip(sorted(orders, key=lambda o: o["placed_at"]), numbers):
        order["id"], order["number"] = str(number), f"#{number}"


# --- loyalty, lifetime value, final shape -----------------------------------------------

def _loyalty_history(rng: random.Random, now: datetime, member_since: datetime, orders: list[dict],
                     earlier_spend: float) -> list[dict]:
    """Point movements, newest first; they sum to the member's balance (1 point per euro)."""
    events = [(member_since, 250, "Welcome bonus")]
    if earlier_spend >= 1:
        events.append((member_since + timedelta(days=rng.randint(1, 20)), int(earlier_spend),
                       "Purchases before order history"))
    for order in orders:
        if order["status"] in ("delivered", "picked_up", "returned"):
            earned_at = _parse(order["placed_at"]) + timedelta(days=rng.randint(1, 4))
            events.append((earned_at, int(order["total"]), f"Order {order['number']}"))
            if order["status"] == "returned":
                events.append((earned_at + timedelta(days=rng.randint(3, 12)), -int(order["total"]),
                               f"Return of order {order['number']}"))
    if rng.random() < 0.5 and now - member_since > timedelta(days=365):
        events.append((now - timedelta(days=rng.randint(1, 364)), 100, "Birthday bonus"))
    if rng.random() < 0.3:
        events.append((now - timedelta(days=rng.randint(1, 200)), 25, "Review bonus"))
    events = [e for e in events if e[0] < now]
    events.sort(key=lambda e: e[0])

    history, balance = [], 0
    for moment, points, reason in events:
        balance += points
        history.append({"ts": iso(moment), "points": points, "reason": reason})
        # Members cash in vouchers now and then once they can afford one.
        if balance >= 1500 and rng.random() < 0.35:
            voucher = rng.choice([500, 1000])
            balance -= voucher
            history.append({"ts": iso(moment + timedelta(hours=rng.randint(1, 48))), "points": -voucher,
                            "reason": f"Redeemed: €{voucher // 100} voucher"})
    history = [h for h in history if h["ts"] < iso(now)]
    return sorted(history, key=lambda h: h["ts"], reverse=True)


def _tier_for(lifetime_value: float) -> str:
    """The highest tier whose spend threshold the member has reached."""
    tier = TIERS[0]
    for name in TIERS:
        if lifetime_value >= TIER_SPEND[name][0]:
            tier = name
    return tier


def _parse(stamp: str) -> datetime:
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


def _finish(rng: random.Random, now: datetime, draft: dict) -> dict:
    """Turn a draft into the exact profile shape of GET /api/v1/customers/<id>."""
    orders = sorted(draft["orders"], key=lambda o: o["placed_at"], reverse=True)
    kept = sum(o["total"] for o in orders if o["status"] in ("delivered", "picked_up"))
    low, high = TIER_SPEND[draft["tier"]]
    # Spend from before the order history tops the itemised orders up to the drawn tier's
    # spend; a member whose orders alone pass the tier's ceiling has earned the next tier.
    earlier_spend = round(max(0.0, rng.uniform(low, high) - kept), 2)
    lifetime_value = round(kept + earlier_spend, 2)
    # The hero stays Gold for any seed: the README walk-through quotes her tier.
    tier = draft["tier"] if draft["id"] == HERO_ID else _tier_for(lifetime_value)
    history = _loyalty_history(rng, now, draft["member_since"], orders, earlier_spend)
    points = sum(h["points"] for h in history)
    stamps = ([o["placed_at"] for o in orders] + [w["added_at"] for w in draft["wishlist"]]
              + [v["viewed_at"] for v in draft["recently_viewed"]] + [h["ts"] for h in history]
              + [o["pickup"]["ready_since"] for o in orders if o["pickup"] and o["pickup"]["ready_since"]]
              + ([draft["cart"]["updated_at"]] if draft["cart"]["updated_at"] else []))
    return {
        "id": draft["id"], "first_name": draft["first_name"], "last_name": draft["last_name"],
        "email": draft["email"], "phone": draft["phone"], "tier": tier, "points": points,
        "lifetime_value": lifetime_value, "currency": CURRENCY,
        "member_since": draft["member_since"].date().isoformat(),
        "consent": draft["consent"], "preferences": draft["preferences"],
        "orders": orders, "wishlist": draft["wishlist"], "cart": draft["cart"],
        "recently_viewed": draft["recently_viewed"],
        "loyalty": {"tier": tier, "points": points, "history": history},
        "updated_at": max(stamps, default=iso(draft["member_since"])),
    }


# --- birthdays --------------------------------------------------------------------------

BIRTHDAY_BONUS = "Birthday bonus"


def _birthdays(customers: list[dict], seed: int, now: datetime) -> list[dict]:
    """Every profile gains `birthday` ("MM-DD", no year: shops ask for the day they celebrate).

    Drawn from a generator of its own, so adding birthdays moved no other seeded value. A
    member who received a birthday bonus has their birthday on its date; the hero's falls on
    the HERO_BIRTHDAY_DAY of the month of `now` (11-28 by default), her bonus on the last one."""
    return [_hero_birthday(c, now) if c["id"] == HERO_ID else _with_birthday(c, _drawn_birthday(c, seed))
            for c in customers]


def _drawn_birthday(customer: dict, seed: int) -> str:
    bonus = next((h["ts"] for h in customer["loyalty"]["history"] if h["reason"] == BIRTHDAY_BONUS), None)
    if bonus:
        return bonus[5:10]
    day = random.Random(f"{seed}:{customer['id']}:birthday").randrange(366)
    return (datetime(2000, 1, 1) + timedelta(days=day)).strftime("%m-%d")  # 2000 is a leap year: 02-29 exists


def _hero_birthday(customer: dict, now: datetime) -> dict:
    birthday = now.replace(day=HERO_BIRTHDAY_DAY, hour=9, minute=0, second=0)
    last = birthday if birthday < now else birthday.replace(year=now.year - 1)
    history = [dict(h, ts=iso(last)) if h["reason"] == BIRTHDAY_BONUS else h for h in customer["loyalty"]["history"]]
    history.sort(key=lambda h: h["ts"], reverse=True)
    customer = {**customer, "loyalty": {**customer["loyalty"], "history": history}}
    return _with_birthday(customer, birthday.strftime("%m-%d"))


def _with_birthday(customer: dict, birthday: str) -> dict:
    """The profile with `birthday` placed after `member_since`, where the docs list it."""
    profile = {}
    for key, value in customer.items():
        profile[key] = value
        if key == "member_since":
            profile["birthday"] = birthday
    return profile


# --- home stores and online sessions (analytics feeds) -----------------------------------

# Members whose home store is not s001, as exact shares so every seed has some of each.
HOME_STORE_SHARES = {"s002": 0.10, "s003": 0.06}
# Channels a session (or an order) can come through online; hub.connector.ONLINE_CHANNELS.
SESSION_CHANNELS = ("web", "app", "social", "email", "search", "marketplace")
SESSION_CHANNEL_WEIGHTS = (35, 30, 10, 8, 12, 5)
SESSION_DAYS = 365
BROWSING_SESSIONS = (3, 25)  # per member per year, when they were a member the whole year
CART_SHARE = 0.30  # browsing sessions that put something in the cart
HELP_SHARE = 0.03  # sessions that asked for help (chat, contact form)


def _home_stores(customers: list[dict], seed: int) -> dict[str, str]:
    """customer id → home store: "s001" for most; exact quotas of "s002" and "s003". The hero
    and M0002 (the demo's consent case) are s001's."""
    rng = random.Random(f"{seed}-home-stores")
    others = [c["id"] for c in customers if c["id"] not in (HERO_ID, NO_CONSENT_ID)]
    homes = {c["id"]: "s001" for c in customers}
    for store, share in HOME_STORE_SHARES.items():
        chosen = rng.sample([cid for cid in others if homes[cid] == "s001"], round(share * len(customers)))
        homes.update({cid: store for cid in chosen})
    return homes


def _utm_source(rng: random.Random, channel: str, started: datetime) -> str | None:
    """The UTM source a session of this channel plausibly carries (None: typed in, or the app opened)."""
    if channel == "search":
        return rng.choices(["google", "bing"], weights=[82, 18])[0]
    if channel == "social":
        return rng.choices(["instagram", "facebook", "tiktok"], weights=[50, 25, 25])[0]
    if channel == "email":
        return f"newsletter-{started:%Y-%m}"
    if channel == "marketplace":
        return rng.choice(["bol", "zalando"])
    if channel == "web":
        return rng.choices([None, "referral"], weights=[90, 10])[0]
    return rng.choices([None, "push"], weights=[95, 5])[0]  # app


def _sessions(customers: list[dict], seed: int, now: datetime) -> list[dict]:
    """Members' online sessions over the SESSION_DAYS before `now`, oldest first, ids "S000001"…
    in that order. Every online order of the window has the session it was placed in (its
    channel, added_to_cart true, a few minutes before `placed_at`); besides, each member
    browses without ordering, 3 to 25 times a year (fewer for newer members). Anonymous
    visitors are left out: the feeds are per home store, and only members have one."""
    rng = random.Random(f"{seed}-sessions")
    window_start = now - timedelta(days=SESSION_DAYS)
    drafts = []
    for customer in customers:
        member_since = datetime.fromisoformat(customer["member_since"]).replace(tzinfo=timezone.utc)
        start = max(window_start, member_since)
        for order in sorted(customer["orders"], key=lambda o: (o["placed_at"], o["id"])):
            placed = _parse(order["placed_at"])
            if order["channel"] == "store" or placed < window_start:
                continue
            started = placed - timedelta(minutes=rng.randint(3, 40), seconds=rng.randint(0, 59))
            drafts.append(_session(rng, customer["id"], order["channel"], started, True))
        share = (now - start) / (now - window_start)
        low, high = BROWSING_SESSIONS
        for _ in range(round(rng.randint(low, high) * share)):
            channel = rng.choices(SESSION_CHANNELS, weights=SESSION_CHANNEL_WEIGHTS)[0]
            started = _shopping_time(rng, start, now, channel)
            drafts.append(_session(rng, customer["id"], channel, started, rng.random() < CART_SHARE))
    drafts.sort(key=lambda s: (s["started_at"], s["customer_id"]))
    return [{"id": f"S{n:06d}", **draft} for n, draft in enumerate(drafts, start=1)]


def _session(rng: random.Random, customer_id: str, channel: str, started: datetime, added_to_cart: bool) -> dict:
    return {"customer_id": customer_id, "channel": channel, "source": _utm_source(rng, channel, started),
            "started_at": iso(started), "added_to_cart": added_to_cart, "asked_for_help": rng.random() < HELP_SHARE}
