"""Personal offers and the kiosk welcome: rules as data, catalog prices, promotions, codes, consent, privacy."""

from __future__ import annotations

import copy
import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from demo import seed
from demo.catalog_feed import catalog_feed
from hub.catalog import HubCatalog
from hub.offers import (
    COMMON_KEYS,
    COMMON_PLACEHOLDERS,
    KINDS,
    PROMOTION_PLACEHOLDERS,
    TOP_KEYS,
    OfferEngine,
    Wording,
    birthday_month,
    code_matches,
    end_of_day,
    member_offers,
    offer_code,
    offer_products,
    profile_gtins,
    welcome,
    wishlist_here,
)
from hub.store import HubStore, open_hub_db
from protocol.catalog import product_view
from protocol.settings import ConfigError

NOW = seed.REFERENCE_NOW  # 2026-11-22 09:00 UTC; M0001's cart was last updated two days before this
SECRET = b"offer-secret-for-tests"
DATA = seed.build()
# The seeded Jane has a November birthday; only the birthday tests give her one.
JANE = {**next(c for c in DATA.customers if c["id"] == "M0001"), "birthday": None}
OFFER_KEYS = {"id", "title", "text", "reason", "code", "valid_until", "gtin", "percent", "rule"}
CODE = re.compile(r"^OK-[0-9A-HJKMNP-TV-Z]{5}-[0-9A-HJKMNP-TV-Z]{5}$")
ENGINE = OfferEngine.from_file(None)
NO_CART = {"updated_at": None, "items": []}


def jane(**changes) -> dict:
    profile = copy.deepcopy(JANE)
    profile.update(changes)
    return profile


def in_stock(*lines, quantity=3) -> dict[str, dict]:
    return {line["gtin"]: {"quantity": quantity, "location": f"Aisle {i + 1}", "name": line["name"]}
            for i, line in enumerate(lines)}


def line(gtin: str, name: str, price: float) -> dict:
    return {"gtin": gtin, "name": name, "price": price, "quantity": 1, "added_at": "2026-11-01T10:00:00Z"}


def gtin(n: int) -> str:
    return f"0400000000{n:03d}1"


def product(gtin: str, name: str, price: float, *, compare_at: float | None = None, promotion: dict | None = None,
            category: str = "shoes", updated_at: str = "2026-06-01T10:00:00Z", here: int = 0,
            location: str | None = None) -> dict:
    """A product exactly as HubCatalog.product() returns it for store s001."""
    return product_view({"gtin": gtin, "name": name, "price": price, "compare_at_price": compare_at,
                         "promotion": promotion, "category": category, "updated_at": updated_at},
                        [{"gtin": gtin, "store": "s001", "quantity": here, "location": location}], "s001")


def offers(profile, stock, now=NOW, **kwargs):
    """Through the module-level API of before the engine: bundled rules, prices from the profile."""
    return member_offers(profile, stock_here=stock, now=now, secret=SECRET, **kwargs)


def engine_offers(profile, stock=None, products=None, *, engine=ENGINE, now=NOW, gtin=None):
    return engine.offers(profile, stock_here=stock or {}, products=products or {}, now=now, secret=SECRET, gtin=gtin)


def rules(text: str) -> OfferEngine:
    return OfferEngine.from_toml(text, "store-rules.toml")


def one_rule(kind: str, extra: str = "", *, text: str = "{percent}% off", reason: str = "why",
             title: str = "An offer") -> OfferEngine:
    return rules(f'[[rule]]\nid = "only"\nkind = "{kind}"\ntitle = "{title}"\ntext = "{text}"\n'
                 f'reason = "{reason}"\n{extra}\n')


# --- the rules file -------------------------------------------------------------------------

def test_the_bundled_rules_are_used_without_a_rules_file_and_run_every_kind():
    assert OfferEngine.from_file("").rules == ENGINE.rules
    assert [(r.id, r.kind) for r in ENGINE.rules] == [
        ("wishlist", "wishlist_in_stock"), ("cart", "cart_left"), ("tier", "tier_perk"),
        ("birthday", "birthday_month"), ("new-in", "new_in_category")]
    assert (ENGINE.max_offers, ENGINE.valid_days) == (4, 1)


def test_a_rules_file_on_disk_is_read_and_named(tmp_path):
    path = tmp_path / "offers.toml"
    path.write_text('max_offers = 2\n[[rule]]\nid = "vip"\nkind = "tier_perk"\ntiers = { Silver = 5 }\n'
                    'title = "Silver perk"\ntext = "{percent}% off"\nreason = "{tier} member"\n')
    engine = OfferEngine.from_file(path)
    assert engine.source == str(path) and engine.max_offers == 2
    [perk] = engine_offers(jane(tier="Silver"), engine=engine)
    assert (perk["id"], perk["percent"], perk["reason"], perk["rule"]) == ("vip-silver", 5, "Silver member", "vip")


@pytest.mark.parametrize("text, message", [
    ('[[rule]]\nid = "w"\nkind = "wishlist"\ntitle = "t"\ntext = "x"\nreason = "r"\npercent = 10',
     "rule #1 ('w'): kind 'wishlist' is not a rule kind; choose one of: wishlist_in_stock, cart_left, tier_perk, "
     "birthday_month, new_in_category"),
    ('[[rule]]\nid = "w"\nkind = "wishlist_in_stock"\ntitle = "t"\ntext = "x"\nreason = "r"\npercnt = 10',
     "rule #1 ('w'): unknown key 'percnt'; allowed for kind wishlist_in_stock: id, kind, enabled, title, text, "
     "reason, percent"),
    ('[[rule]]\nid = "w"\nkind = "wishlist_in_stock"\ntext = "x"\nreason = "r"\npercent = 10',
     "rule #1 ('w'): title is required for kind wishlist_in_stock"),
    ('[[rule]]\nid = "w"\nkind = "wishlist_in_stock"\ntitle = "t"\ntext = "x"\nreason = "r"',
     "rule #1 ('w'): percent is required for kind wishlist_in_stock"),
    ('[[rule]]\nid = "w"\nkind = "wishlist_in_stock"\ntitle = "t"\ntext = "x"\nreason = "r"\npercent = 95',
     "rule #1 ('w'): percent = 95; give a whole number from 1 to 90"),
    ('[[rule]]\nid = "w"\nkind = "wishlist_in_stock"\ntitle = "t"\ntext = "x"\nreason = "r"\npercent = 0',
     "percent = 0; give a whole number from 1 to 90"),
    ('[[rule]]\nid = "w"\nkind = "wishlist_in_stock"\ntitle = "t"\ntext = "x"\nreason = "r"\npercent = 12.5',
     "percent = 12.5; give a whole number from 1 to 90"),
    ('[[rule]]\nid = "w"\nkind = "wishlist_in_stock"\ntitle = "t"\ntext = "{prodct} is here"\nreason = "r"\n'
     'percent = 10',
     "rule #1 ('w'): text uses {prodct}, which is not a placeholder of kind wishlist_in_stock; use {first_name}, "
     "{location}, {percent}, {product}"),
    ('[[rule]]\nid = "w"\nkind = "wishlist_in_stock"\ntitle = "t"\ntext = "{product.__class__}"\nreason = "r"\n'
     'percent = 10', "text uses {product.__class__}, which is not a placeholder"),
    ('[[rule]]\nid = "w"\nkind = "wishlist_in_stock"\ntitle = "{percent:.1f}%"\ntext = "x"\nreason = "r"\n'
     'percent = 10', "rule #1 ('w'): title: write {percent} without a format or conversion"),
    ('[[rule]]\nid = "w"\nkind = "wishlist_in_stock"\ntitle = "t"\ntext = "x"\nreason = "in {tier"\npercent = 10',
     "rule #1 ('w'): reason has an unmatched { or }"),
    ('[[rule]]\nid = "c"\nkind = "cart_left"\ntitle = "t"\ntext = "x"\nreason = "r"\npercent = 10\n'
     'min_age_hours = -1', "rule #1 ('c'): min_age_hours = -1; give a number of hours from 0 to 8760"),
    ('[[rule]]\nid = "t"\nkind = "tier_perk"\ntitle = "t"\ntext = "x"\nreason = "r"\ntiers = { Gold = 100 }',
     "rule #1 ('t'): tiers.Gold = 100; give a whole number from 1 to 90"),
    ('[[rule]]\nid = "t"\nkind = "tier_perk"\ntitle = "t"\ntext = "x"\nreason = "r"\npercent = 10',
     "rule #1 ('t'): unknown key 'percent'; allowed for kind tier_perk: id, kind, enabled, title, text, reason, "
     "tiers"),
    ('[[rule]]\nid = "n"\nkind = "new_in_category"\ntitle = "t"\ntext = "x"\nreason = "r"\npercent = 10\n'
     'days = 0', "rule #1 ('n'): days = 0; give a whole number from 1 to 365"),
    ('[[rule]]\nid = "Big Sale"\nkind = "birthday_month"\ntitle = "t"\ntext = "x"\nreason = "r"\npercent = 10',
     "id 'Big Sale' must be 1 to 40 lower-case letters, digits and hyphens"),
    ('[[rule]]\nid = "b"\nkind = "birthday_month"\ntitle = "t"\ntext = "x"\nreason = "r"\npercent = 10\n'
     '[[rule]]\nid = "b"\nkind = "birthday_month"\ntitle = "t"\ntext = "x"\nreason = "r"\npercent = 5',
     "rule #2 ('b'): id 'b' is used by an earlier rule"),
    ('max_offer = 3', "unknown key 'max_offer'; allowed at the top: max_offers, valid_days, promotion, rule"),
    ('max_offers = 0', "max_offers = 0; give a whole number from 1 to 10"),
    ('valid_days = 40', "valid_days = 40; give a whole number from 1 to 31"),
    ('[promotion]\noffer_wins = "Better than {promo}"',
     "promotion.offer_wins uses {promo}, which is not a placeholder of promotion sentences; use {percent}, "
     "{product}, {promotion}"),
    ('[[rule]\nid = "w"', "not valid TOML"),
])
def test_a_rules_file_with_a_mistake_is_refused_naming_the_file_the_rule_and_what_is_allowed(text, message):
    with pytest.raises(ConfigError) as refused:
        rules(text)
    assert str(refused.value).startswith("store-rules.toml: ")
    assert message in str(refused.value)


def test_every_mistake_in_a_rules_file_is_reported_at_once():
    with pytest.raises(ConfigError) as refused:
        rules('max_offers = 0\n[[rule]]\nid = "a"\nkind = "wishlist_in_stock"\ntitle = "t"\ntext = "{x}"\n'
              'reason = "r"\npercent = 99\n')
    assert len(str(refused.value).splitlines()) == 3


def test_a_missing_rules_file_is_a_config_error_saying_what_to_do(tmp_path):
    with pytest.raises(ConfigError, match=r"nowhere\.toml: cannot read the offer rules file .*offers\.rules_file"):
        OfferEngine.from_file(tmp_path / "nowhere.toml")


def test_a_disabled_rule_makes_no_offers_but_is_still_checked():
    assert engine_offers(jane(tier="Gold"), engine=one_rule("tier_perk", "tiers = { Gold = 5 }\nenabled = false")) == []
    with pytest.raises(ConfigError, match="percent = 99"):
        one_rule("birthday_month", "percent = 99\nenabled = false")


# --- each kind, as the rules say --------------------------------------------------------------

def test_a_wishlist_item_in_stock_here_gets_ten_percent_off_naming_the_product():
    wish, not_here = JANE["wishlist"][0], JANE["wishlist"][1]
    found = offers(jane(tier="Bronze", cart=NO_CART), in_stock(wish))
    assert [o["id"] for o in found] == [f"wishlist-{wish['gtin']}"]
    offer = found[0]
    assert set(offer) == OFFER_KEYS
    assert (offer["gtin"], offer["percent"], offer["rule"]) == (wish["gtin"], 10, "wishlist")
    assert offer["title"] == "10% off a wishlist item"
    assert offer["text"] == f"{wish['name']} from your wishlist is here (Aisle 1): 10% off today."
    assert not_here["name"] not in offer["text"]
    assert offer["reason"] == "In their wishlist and in stock here"


def test_a_wishlist_item_without_a_shelf_location_tells_the_shopper_to_ask_staff():
    wish = JANE["wishlist"][0]
    stock = {wish["gtin"]: {"quantity": 1, "location": None, "name": wish["name"]}}
    [offer] = offers(jane(tier="Bronze", cart=NO_CART), stock)
    assert "(ask staff)" in offer["text"]


def test_a_wishlist_item_with_no_stock_left_gets_no_offer():
    assert offers(jane(tier="Bronze", cart=NO_CART), in_stock(JANE["wishlist"][0], quantity=0)) == []


def test_the_words_and_numbers_of_an_offer_come_from_the_rules_file():
    engine = one_rule("wishlist_in_stock", "percent = 25", title="{first_name}, {percent}% for you",
                      text="{product} waits at {location}", reason="wished for")
    wish = JANE["wishlist"][0]
    [offer] = engine_offers(jane(cart=NO_CART), in_stock(wish), engine=engine)
    assert (offer["title"], offer["text"], offer["reason"], offer["percent"], offer["id"]) == (
        "Jane, 25% for you", f"{wish['name']} waits at Aisle 1", "wished for", 25, f"only-{wish['gtin']}")


def test_a_cart_left_for_two_days_gets_one_offer_for_its_items_in_stock_here():
    first, second = JANE["cart"]["items"]
    found = offers(jane(tier="Bronze", wishlist=[]), in_stock(first, second))
    assert len(found) == 1
    cart = found[0]
    assert (cart["id"], cart["gtin"], cart["percent"], cart["rule"]) == ("cart", None, 10, "cart")
    assert first["name"] in cart["text"] and second["name"] in cart["text"]
    assert cart["reason"] == "Left in their online cart 2 days ago; 2 items in stock here"


def test_a_cart_offer_for_one_item_in_stock_names_that_item_only():
    first, second = JANE["cart"]["items"]
    [cart] = offers(jane(tier="Bronze", wishlist=[]), in_stock(first))
    assert cart["gtin"] == first["gtin"]
    assert second["name"] not in cart["text"]
    assert cart["reason"].endswith("1 item in stock here")


@pytest.mark.parametrize("age, expected", [(timedelta(hours=23, minutes=59), []), (timedelta(hours=24), ["cart"])])
def test_a_cart_counts_as_left_after_24_hours(age, expected):
    updated = datetime(2026, 11, 21, 8, 0, tzinfo=timezone.utc)
    profile = jane(tier="Bronze", wishlist=[], cart={**JANE["cart"], "updated_at": "2026-11-21T08:00:00Z"})
    assert [o["id"] for o in offers(profile, in_stock(*JANE["cart"]["items"]), now=updated + age)] == expected


def test_a_cart_rule_with_its_own_min_age_counts_the_hours():
    engine = one_rule("cart_left", "percent = 5\nmin_age_hours = 2", reason="left {age} ago: {items}, {count}")
    profile = jane(wishlist=[], cart={**JANE["cart"], "updated_at": "2026-11-22T06:00:00Z"})
    [cart] = engine_offers(profile, in_stock(*JANE["cart"]["items"]), engine=engine)
    assert cart["reason"] == "left 3 hours ago: 2 items, 2"
    assert engine_offers(profile, in_stock(*JANE["cart"]["items"]), engine=engine,
                         now=datetime(2026, 11, 22, 7, 59, tzinfo=timezone.utc)) == []


def test_a_cart_whose_items_are_not_here_gets_no_offer():
    assert offers(jane(tier="Bronze", wishlist=[]), in_stock(JANE["wishlist"][0])) == []


@pytest.mark.parametrize("tier, percent", [("Gold", 15), ("Platinum", 20), ("Silver", None), ("Bronze", None)])
def test_gold_and_platinum_members_get_a_tier_perk(tier, percent):
    found = offers(jane(tier=tier), {})
    if percent is None:
        assert found == []
    else:
        assert [(o["id"], o["percent"], o["gtin"], o["rule"]) for o in found] == [
            (f"tier-{tier.lower()}", percent, None, "tier")]
        assert found[0]["title"] == f"{tier} member perk" and found[0]["reason"] == f"{tier} tier perk"


def test_a_wishlist_item_already_in_the_left_cart_is_offered_once_through_the_cart():
    cart_line = JANE["cart"]["items"][0]
    profile = jane(tier="Bronze", wishlist=[line(cart_line["gtin"], cart_line["name"], cart_line["price"])])
    assert [o["id"] for o in offers(profile, in_stock(cart_line))] == ["cart"]


# --- birthdays ----------------------------------------------------------------------------------

def test_a_member_gets_the_birthday_offer_in_their_birthday_month_only():
    found = engine_offers(jane(tier="Bronze", birthday="11-30", wishlist=[], cart=NO_CART))
    assert [(o["id"], o["percent"], o["rule"], o["gtin"]) for o in found] == [("birthday", 15, "birthday", None)]
    assert found[0]["reason"] == "Birthday this month (November)"
    assert "30" not in found[0]["text"] + found[0]["title"]  # the screen is public: the month, never the date
    assert engine_offers(jane(tier="Bronze", birthday="10-31", wishlist=[], cart=NO_CART)) == []


@pytest.mark.parametrize("birthday, now, offered", [
    ("12-31", datetime(2026, 12, 31, 23, 59, 59, tzinfo=timezone.utc), True),
    ("12-31", datetime(2027, 1, 1, 0, 0, tzinfo=timezone.utc), False),
    ("01-01", datetime(2026, 12, 31, 23, 59, 59, tzinfo=timezone.utc), False),
    ("01-01", datetime(2027, 1, 1, 0, 0, tzinfo=timezone.utc), True),
    # The month is that of UTC: 00:30 on 1 January in Amsterdam is still December.
    ("12-15", datetime(2027, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=1))), True),
    # 2027 has no 29 February: the birthday counts as 28 February, so it is still a February birthday.
    ("02-29", datetime(2027, 2, 28, 12, 0, tzinfo=timezone.utc), True),
    ("02-29", datetime(2027, 2, 1, 0, 0, tzinfo=timezone.utc), True),
    ("02-29", datetime(2027, 3, 1, 0, 0, tzinfo=timezone.utc), False),
    ("02-29", datetime(2028, 2, 29, 12, 0, tzinfo=timezone.utc), True),
])
def test_the_birthday_month_is_the_calendar_month_in_utc(birthday, now, offered):
    found = engine_offers(jane(tier="Bronze", birthday=birthday, wishlist=[], cart=NO_CART), now=now)
    assert [o["id"] for o in found] == (["birthday"] if offered else [])


@pytest.mark.parametrize("birthday", [None, "", "11", "2026-11-22", "11-31", "02-30", "13-01", "00-10", "1-5", 1122])
def test_a_missing_or_impossible_birthday_gets_no_birthday_offer(birthday):
    assert birthday_month(birthday) is None
    assert engine_offers(jane(tier="Bronze", birthday=birthday, wishlist=[], cart=NO_CART)) == []


# --- new in a favourite category -------------------------------------------------------------

def new_arrivals() -> dict[str, dict]:
    """Jane likes shoes, knitwear and bags; NOW is 2026-11-22."""
    return {
        gtin(1): product(gtin(1), "Old boot", 80.0, category="shoes", updated_at="2026-09-01T10:00:00Z", here=4),
        gtin(2): product(gtin(2), "New boot", 90.0, category="shoes", updated_at="2026-11-10T10:00:00Z", here=2,
                         location="Shoes · aisle 4"),
        gtin(3): product(gtin(3), "Newest jacket", 150.0, category="jackets", updated_at="2026-11-21T10:00:00Z",
                         here=5),
        gtin(4): product(gtin(4), "Newest bag", 60.0, category="bags", updated_at="2026-11-20T10:00:00Z", here=0),
        gtin(5): product(gtin(5), "New scarf", 30.0, category="knitwear", updated_at="2026-11-05T10:00:00Z", here=9),
    }


def test_the_newest_product_in_stock_in_a_favourite_category_gets_one_offer():
    found = engine_offers(jane(tier="Bronze", wishlist=[], cart=NO_CART), products=new_arrivals())
    assert [(o["id"], o["gtin"], o["rule"]) for o in found] == [(f"new-in-{gtin(2)}", gtin(2), "new-in")]
    assert found[0]["title"] == "New in shoes"
    assert found[0]["text"] == "Just in: New boot (Shoes · aisle 4), 10% off today."
    assert found[0]["reason"] == "New in shoes (one of their favourite categories) within 30 days"


def test_new_in_category_skips_what_the_member_already_wants_or_bought_and_respects_its_days():
    wants_new_boot = jane(tier="Bronze", wishlist=[line(gtin(2), "New boot", 90.0)], cart=NO_CART)
    found = engine_offers(wants_new_boot, products=new_arrivals())
    assert {o["id"] for o in found} == {f"wishlist-{gtin(2)}", f"new-in-{gtin(5)}"}
    bought = jane(tier="Bronze", wishlist=[], cart=NO_CART,
                  orders=[{"items": [{"gtin": gtin(2)}, {"gtin": gtin(5)}]}])
    assert engine_offers(bought, products=new_arrivals()) == []
    week = one_rule("new_in_category", "percent = 10\ndays = 7")
    assert engine_offers(jane(wishlist=[], cart=NO_CART), products=new_arrivals(), engine=week) == []


def test_of_two_equally_new_products_every_kiosk_offers_the_one_with_the_lower_gtin():
    products = {g: product(g, f"Bag {g}", 50.0, category="bags", updated_at="2026-11-20T10:00:00Z", here=1)
                for g in (gtin(9), gtin(7), gtin(8))}
    [offer] = engine_offers(jane(tier="Bronze", wishlist=[], cart=NO_CART), products=products)
    assert offer["gtin"] == gtin(7)


# --- values: catalog prices and promotions ------------------------------------------------------

def test_the_catalog_price_values_an_offer_not_the_profiles_copy():
    cheap_on_profile, dear_on_profile = line(gtin(1), "Coat", 10.0), line(gtin(2), "Socks", 300.0)
    profile = jane(tier="Gold", wishlist=[cheap_on_profile, dear_on_profile], cart=NO_CART)
    stock = in_stock(cheap_on_profile, dear_on_profile)
    # By the profile's stale copies the socks are worth more ...
    assert [o["id"] for o in engine_offers(profile, stock)] == ["tier-gold", f"wishlist-{gtin(2)}",
                                                               f"wishlist-{gtin(1)}"]
    # ... by the catalog, which the web shop shows too, the coat is: 300.00 against 10.00.
    catalog = {gtin(1): product(gtin(1), "Coat", 300.0), gtin(2): product(gtin(2), "Socks", 10.0)}
    assert [o["id"] for o in engine_offers(profile, stock, catalog)] == ["tier-gold", f"wishlist-{gtin(1)}",
                                                                        f"wishlist-{gtin(2)}"]


def test_a_promotion_that_beats_the_offer_applies_instead_and_the_text_says_so():
    wish = line(gtin(1), "Boot", 100.0)
    on_sale = {gtin(1): product(gtin(1), "Boot", 75.0, compare_at=100.0,
                                promotion={"label": "-25%", "text": "Winter sale"})}
    [offer] = engine_offers(jane(tier="Bronze", wishlist=[wish], cart=NO_CART), in_stock(wish), on_sale)
    assert offer["text"] == ("Boot from your wishlist is here (Aisle 1): 10% off today. "
                             "Already -25% on promotion, which beats 10% off: the promotion applies.")
    assert offer["percent"] == 10


def test_an_offer_that_beats_the_promotion_replaces_it_and_the_text_says_so():
    wish = line(gtin(1), "Boot", 100.0)
    on_sale = {gtin(1): product(gtin(1), "Boot", 75.0, compare_at=100.0,
                                promotion={"label": "-25%", "text": "Winter sale"})}
    engine = one_rule("wishlist_in_stock", "percent = 30", text="{percent}% off {product}")
    [offer] = engine_offers(jane(wishlist=[wish], cart=NO_CART), in_stock(wish), on_sale, engine=engine)
    assert offer["text"] == "30% off Boot Better than its -25% promotion, which it replaces."


def test_offers_on_promoted_products_are_valued_by_what_they_add_not_by_both_discounts():
    sale, full = line(gtin(1), "Sale boot", 100.0), line(gtin(2), "Full-price scarf", 40.0)
    catalog = {gtin(1): product(gtin(1), "Sale boot", 75.0, compare_at=100.0),
               gtin(2): product(gtin(2), "Full-price scarf", 40.0)}
    engine = one_rule("wishlist_in_stock", "percent = 30")
    found = engine_offers(jane(wishlist=[sale, full], cart=NO_CART), in_stock(sale, full), catalog, engine=engine)
    # The boot: 70.00 at 30% off its regular 100.00, 5.00 below its sale price; the scarf: 12.00 off.
    assert [o["gtin"] for o in found] == [gtin(2), gtin(1)]
    assert "Better than its -25% promotion" in found[1]["text"]  # label worked out from the earlier price


def test_a_left_cart_with_items_on_promotion_says_they_get_the_better_of_the_two():
    first, second = JANE["cart"]["items"]
    catalog = {first["gtin"]: product(first["gtin"], first["name"], first["price"] / 2, compare_at=first["price"]),
               second["gtin"]: product(second["gtin"], second["name"], second["price"])}
    [cart] = engine_offers(jane(tier="Bronze", wishlist=[]), in_stock(first, second), catalog)
    assert cart["text"].endswith(" Items already on promotion get the better of the two.")


def test_a_perk_is_worth_what_it_saves_on_the_item_the_member_wants_most_at_catalog_prices():
    coat, socks = line(gtin(1), "Coat", 10.0), line(gtin(2), "Socks", 50.0)
    profile = jane(tier="Gold", wishlist=[coat, socks], cart=NO_CART)
    catalog = {gtin(1): product(gtin(1), "Coat", 400.0), gtin(2): product(gtin(2), "Socks", 50.0)}
    found = engine_offers(profile, in_stock(coat, socks), catalog)
    # Gold 15% of the coat (60.00) beats 10% of it (40.00): the perk comes first.
    assert [o["id"] for o in found] == ["tier-gold", f"wishlist-{gtin(1)}", f"wishlist-{gtin(2)}"]


# --- ordering and how many ---------------------------------------------------------------------

def test_offers_are_ordered_by_what_they_save_the_shopper_and_at_most_four():
    wishes = [line(gtin(i), f"Item {i}", price) for i, price in enumerate([20.0, 300.0, 90.0, 150.0, 60.0])]
    profile = jane(tier="Gold", wishlist=wishes, cart=NO_CART)
    found = offers(profile, in_stock(*wishes))
    # Gold: 15% of the dearest wish (45.00) beats 10% of it (30.00), then the wishes by price.
    assert [o["id"] for o in found] == ["tier-gold", f"wishlist-{wishes[1]['gtin']}",
                                        f"wishlist-{wishes[3]['gtin']}", f"wishlist-{wishes[2]['gtin']}"]


def test_max_offers_from_the_rules_file_caps_the_list_keeping_the_most_valuable():
    wishes = [line(gtin(i), f"Item {i}", price) for i, price in enumerate([20.0, 300.0, 90.0])]
    engine = rules('max_offers = 2\n[[rule]]\nid = "w"\nkind = "wishlist_in_stock"\npercent = 10\ntitle = "t"\n'
                   'text = "x"\nreason = "r"\n')
    found = engine_offers(jane(wishlist=wishes, cart=NO_CART), in_stock(*wishes), engine=engine)
    assert [o["gtin"] for o in found] == [wishes[1]["gtin"], wishes[2]["gtin"]]


def test_a_big_left_cart_outranks_a_single_wishlist_item():
    first, second = JANE["cart"]["items"]  # 199.99 + 290.95 in the cart
    wish = line("04000000009991", "Small thing", 500.0)
    found = offers(jane(tier="Bronze", wishlist=[wish]), in_stock(first, second, wish))
    assert [o["id"] for o in found] == ["wishlist-04000000009991", "cart"]
    cheap = dict(wish, price=5.0)
    found = offers(jane(tier="Bronze", wishlist=[cheap]), in_stock(first, second, cheap))
    assert [o["id"] for o in found] == ["cart", "wishlist-04000000009991"]


# --- consent -------------------------------------------------------------------------------

def test_without_marketing_consent_only_the_tier_and_birthday_perks_are_offered():
    profile = jane(consent={"clienteling": True, "marketing": False}, birthday="11-02")
    stock = in_stock(*JANE["wishlist"], *JANE["cart"]["items"])
    assert {o["id"] for o in engine_offers(profile, stock, new_arrivals())} == {"tier-gold", "birthday"}
    assert offers(dict(profile, tier="Bronze", birthday=None), stock) == []


def test_without_marketing_consent_offer_products_does_not_look_for_new_products(tmp_path):
    catalog = demo_catalog(tmp_path)
    profile = jane(consent={"clienteling": True, "marketing": False})
    products = offer_products(ENGINE, profile, catalog, store="s001", now=NOW)
    assert set(products) == set(profile_gtins(profile)) & set(products)


def test_without_clienteling_consent_the_member_still_sees_their_own_offers():
    profile = jane(consent={"clienteling": False, "marketing": True})
    ids = [o["id"] for o in offers(profile, in_stock(*JANE["wishlist"], *JANE["cart"]["items"]))]
    # Cart 10% of 490.94, Gold 15% of 290.95, then the two dearest wishes; the 45.95 one is fifth.
    assert ids == ["cart", "tier-gold", f"wishlist-{JANE['wishlist'][1]['gtin']}",
                   f"wishlist-{JANE['wishlist'][2]['gtin']}"]


# --- one product -----------------------------------------------------------------------------

def test_offers_for_one_product_are_those_that_apply_to_it():
    wish, cart_line = JANE["wishlist"][0], JANE["cart"]["items"][1]
    stock = in_stock(*JANE["wishlist"], *JANE["cart"]["items"])
    assert {o["id"] for o in offers(JANE, stock, gtin=wish["gtin"])} == {f"wishlist-{wish['gtin']}", "tier-gold"}
    assert {o["id"] for o in offers(JANE, stock, gtin=cart_line["gtin"])} == {"cart", "tier-gold"}
    assert [o["id"] for o in offers(JANE, stock, gtin="04000000009991")] == ["tier-gold"]
    assert offers(jane(tier="Silver"), stock, gtin="04000000009991") == []
    birthday = jane(tier="Silver", birthday="11-22")
    assert [o["id"] for o in engine_offers(birthday, stock, gtin="04000000009991")] == ["birthday"]


# --- codes and validity -----------------------------------------------------------------------

def test_offer_codes_are_typable_deterministic_and_differ_per_member_offer_day_and_secret():
    code = offer_code(SECRET, "M0001", "cart", "2026-11-22T23:59:59Z")
    assert CODE.match(code), code
    assert offer_code(SECRET, "M0001", "cart", "2026-11-22T23:59:59Z") == code
    others = {offer_code(SECRET, "M0003", "cart", "2026-11-22T23:59:59Z"),
              offer_code(SECRET, "M0001", "tier-gold", "2026-11-22T23:59:59Z"),
              offer_code(SECRET, "M0001", "cart", "2026-11-23T23:59:59Z"),
              offer_code(b"another hub", "M0001", "cart", "2026-11-22T23:59:59Z")}
    assert code not in others and len(others) == 4


def test_asking_again_the_same_day_gives_the_same_codes_and_the_next_day_new_ones():
    stock = in_stock(*JANE["wishlist"], *JANE["cart"]["items"])
    morning = offers(JANE, stock, now=NOW)
    evening = offers(JANE, stock, now=NOW.replace(hour=22))
    tomorrow = offers(JANE, stock, now=NOW + timedelta(days=1))
    assert [o["code"] for o in morning] == [o["code"] for o in evening]
    assert {o["valid_until"] for o in morning} == {"2026-11-22T23:59:59Z"}
    assert not {o["code"] for o in morning} & {o["code"] for o in tomorrow}
    assert all(CODE.match(o["code"]) for o in morning)


def test_the_same_offer_for_another_member_has_another_code():
    stock = in_stock(*JANE["wishlist"])
    mine = {o["id"]: o["code"] for o in offers(JANE, stock)}
    theirs = {o["id"]: o["code"] for o in offers(jane(id="M0003"), stock)}
    assert set(mine) == set(theirs) and not set(mine.values()) & set(theirs.values())


def test_valid_days_from_the_rules_file_sets_the_last_day_of_every_offer():
    engine = rules('valid_days = 3\n[[rule]]\nid = "t"\nkind = "tier_perk"\ntiers = { Gold = 15 }\ntitle = "t"\n'
                   'text = "x"\nreason = "r"\n')
    [perk] = engine_offers(JANE, engine=engine, now=datetime(2026, 12, 30, 20, 0, tzinfo=timezone.utc))
    assert perk["valid_until"] == "2027-01-01T23:59:59Z"
    assert code_matches(perk["code"], SECRET, "M0001", "t-gold", "2027-01-01T23:59:59Z")


def test_a_code_typed_at_the_till_forgives_case_dashes_and_look_alike_letters():
    until = "2026-11-22T23:59:59Z"
    offer_id, code = next((f"wishlist-{n}", c) for n in range(100)
                          if re.search(r"[01]", c := offer_code(SECRET, "M0001", f"wishlist-{n}", until)))
    typed = code.replace("-", " ").lower().replace("0", "o").replace("1", "l")
    assert code_matches(typed, SECRET, "M0001", offer_id, until)
    assert not code_matches(code, SECRET, "M0003", offer_id, until)
    assert not code_matches(code, SECRET, "M0001", offer_id, "2026-11-23T23:59:59Z")
    assert not code_matches(code[:-1] + ("A" if code[-1] != "A" else "B"), SECRET, "M0001", offer_id, until)


def test_offers_are_valid_until_the_end_of_the_day_in_utc():
    late_evening_in_amsterdam = datetime(2026, 11, 23, 0, 30, tzinfo=timezone(timedelta(hours=1)))
    assert end_of_day(late_evening_in_amsterdam) == "2026-11-22T23:59:59Z"
    with pytest.raises(ValueError, match="timezone-aware"):
        end_of_day(datetime(2026, 11, 22, 9, 0))


def test_an_empty_secret_is_refused():
    with pytest.raises(ValueError, match="secret"):
        offer_code(b"", "M0001", "cart", "2026-11-22T23:59:59Z")


# --- the welcome --------------------------------------------------------------------------------

def test_welcome_carries_only_first_name_tier_points_offers_and_wishlist_here():
    stock = in_stock(*JANE["wishlist"], *JANE["cart"]["items"])
    for shown in (welcome(JANE, stock_here=stock, now=NOW, secret=SECRET),
                  ENGINE.welcome(JANE, stock_here=stock, products={}, now=NOW, secret=SECRET)):
        assert set(shown) == {"first_name", "tier", "points", "offers", "wishlist_here"}
        assert (shown["first_name"], shown["tier"], shown["points"]) == ("Jane", "Gold", JANE["points"])
        assert shown["offers"] == offers(JANE, stock)
        text = json.dumps(shown)
        for private in (JANE["last_name"], JANE["email"], JANE["phone"], "#1043", str(JANE["lifetime_value"])):
            assert private not in text, private


def test_wishlist_here_lists_wishes_in_stock_newest_first_with_where_to_find_them():
    wishes = [line(gtin(i), f"Item {i}", 10.0) for i in range(6)]
    stock = in_stock(*wishes[1:])
    stock[wishes[3]["gtin"]]["quantity"] = 0
    found = wishlist_here(jane(wishlist=wishes), stock)
    assert [w["gtin"] for w in found] == [wishes[i]["gtin"] for i in (1, 2, 4, 5)]
    assert found[0] == {"gtin": wishes[1]["gtin"], "name": "Item 1", "location": "Aisle 1"}


def test_profile_gtins_are_the_wishlist_and_cart_products_once_each():
    gtins = profile_gtins(JANE)
    assert gtins == [w["gtin"] for w in JANE["wishlist"]] + [c["gtin"] for c in JANE["cart"]["items"]]


# --- with the hub's catalog ----------------------------------------------------------------------

def demo_catalog(tmp_path) -> HubCatalog:
    path = tmp_path / "hub.db"
    HubStore(open_hub_db(path))
    catalog = HubCatalog(open_hub_db(path))
    catalog.apply_feed(catalog_feed(DATA))
    return catalog


def test_offer_products_reads_the_members_products_and_new_ones_in_their_categories_from_the_catalog(tmp_path):
    catalog = demo_catalog(tmp_path)
    products = offer_products(ENGINE, JANE, catalog, store="s001", now=NOW)
    assert set(profile_gtins(JANE)) <= set(products)
    assert all(products[g] == catalog.product(g, "s001") for g in products)
    new = {g: p for g, p in products.items() if g not in profile_gtins(JANE)}
    assert new and all(p["category"] in JANE["preferences"]["favourite_categories"]
                       and p["updated_at"] >= "2026-10-23T09:00:00Z" and p["stock"]["here"]["quantity"] > 0
                       for p in new.values())
    new_in_only = one_rule("new_in_category", "percent = 10")
    [offer] = engine_offers(JANE, catalog.stock_here(profile_gtins(JANE), "s001"), products, engine=new_in_only)
    bought = {item["gtin"] for order in JANE["orders"] for item in order["items"]}
    # max() keeps the first of equals: of two equally new products, the lower GTIN.
    newest = max(sorted(g for g in new if g not in bought), key=lambda g: new[g]["updated_at"])
    assert offer["gtin"] == newest
    catalog.db.conn.close()


# --- the documentation ---------------------------------------------------------------------------

DOC = (Path(__file__).resolve().parents[1] / "docs" / "offers.md").read_text(encoding="utf-8")


def test_every_kind_key_and_placeholder_is_in_the_offers_doc():
    names = {*KINDS, *TOP_KEYS, *COMMON_KEYS, *Wording.__dataclass_fields__,
             *(key for kind in KINDS.values() for key in kind.keys)}
    missing = {n for n in names if f"`{n}`" not in DOC and f"`[{n}]`" not in DOC and f"`[[{n}]]`" not in DOC}
    placeholders = {*COMMON_PLACEHOLDERS, *PROMOTION_PLACEHOLDERS, *(p for k in KINDS.values() for p in k.placeholders)}
    missing |= {p for p in placeholders if f"`{{{p}}}`" not in DOC}
    assert not missing


def test_the_example_in_the_offers_doc_is_a_valid_rules_file_that_does_what_the_doc_says():
    example = DOC.split("```toml\n", 1)[1].split("```", 1)[0]
    engine = OfferEngine.from_toml(example, "docs/offers.md")
    jacket = line(gtin(1), "Wool jacket", 290.95)
    stock = {gtin(1): {"quantity": 2, "location": "Outerwear · aisle 2", "name": "Wool jacket"}}
    found = engine_offers(jane(tier="Gold", wishlist=[jacket], cart=NO_CART), stock, engine=engine)
    assert [(o["title"], o["text"]) for o in found] == [
        ("Gold member perk", "15% off one item of your choice today."),
        ("10% off a wishlist item", "Wool jacket from your wishlist is here (Outerwear · aisle 2): 10% off today.")]
