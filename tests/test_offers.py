"""Personal offers and the kiosk welcome: rules, redemption codes, consent, nothing personal on screen."""

from __future__ import annotations

import copy
import json
import re
from datetime import datetime, timedelta, timezone

import pytest

from demo import seed
from hub.offers import code_matches, end_of_day, member_offers, offer_code, profile_gtins, welcome, wishlist_here

NOW = seed.REFERENCE_NOW  # M0001's cart was last updated two days before this
SECRET = b"offer-secret-for-tests"
DATA = seed.build()
JANE = next(c for c in DATA.customers if c["id"] == "M0001")
OFFER_KEYS = {"id", "title", "text", "reason", "code", "valid_until", "gtin", "percent"}
CODE = re.compile(r"^OK-[0-9A-HJKMNP-TV-Z]{5}-[0-9A-HJKMNP-TV-Z]{5}$")


def jane(**changes) -> dict:
    profile = copy.deepcopy(JANE)
    profile.update(changes)
    return profile


def in_stock(*lines, quantity=3) -> dict[str, dict]:
    return {line["gtin"]: {"quantity": quantity, "location": f"Aisle {i + 1}", "name": line["name"]}
            for i, line in enumerate(lines)}


def line(gtin: str, name: str, price: float) -> dict:
    return {"gtin": gtin, "name": name, "price": price, "quantity": 1, "added_at": "2026-11-01T10:00:00Z"}


def offers(profile, stock, now=NOW, **kwargs):
    return member_offers(profile, stock_here=stock, now=now, secret=SECRET, **kwargs)


# --- the rules ----------------------------------------------------------------------------

def test_a_wishlist_item_in_stock_here_gets_ten_percent_off_naming_the_product():
    wish, not_here = JANE["wishlist"][0], JANE["wishlist"][1]
    found = offers(jane(tier="Bronze", cart={"updated_at": None, "items": []}), in_stock(wish))
    assert [o["id"] for o in found] == [f"wishlist-{wish['gtin']}"]
    offer = found[0]
    assert set(offer) == OFFER_KEYS
    assert (offer["gtin"], offer["percent"]) == (wish["gtin"], 10)
    assert wish["name"] in offer["text"] and "Aisle 1" in offer["text"]
    assert not_here["name"] not in offer["text"]
    assert offer["reason"] == "In their wishlist and in stock here"


def test_a_wishlist_item_with_no_stock_left_gets_no_offer():
    profile = jane(tier="Bronze", cart={"updated_at": None, "items": []})
    assert offers(profile, in_stock(JANE["wishlist"][0], quantity=0)) == []


def test_a_cart_left_for_two_days_gets_one_offer_for_its_items_in_stock_here():
    first, second = JANE["cart"]["items"]
    found = offers(jane(tier="Bronze", wishlist=[]), in_stock(first, second))
    assert len(found) == 1
    cart = found[0]
    assert (cart["id"], cart["gtin"], cart["percent"]) == ("cart", None, 10)
    assert first["name"] in cart["text"] and second["name"] in cart["text"]
    assert cart["reason"] == "Left in their online cart 2 days ago; 2 items in stock here"


def test_a_cart_offer_for_one_item_in_stock_names_that_item_only():
    first, second = JANE["cart"]["items"]
    [cart] = offers(jane(tier="Bronze", wishlist=[]), in_stock(first))
    assert cart["gtin"] == first["gtin"]
    assert second["name"] not in cart["text"]


@pytest.mark.parametrize("age, expected", [(timedelta(hours=23, minutes=59), []), (timedelta(hours=24), ["cart"])])
def test_a_cart_counts_as_left_after_24_hours(age, expected):
    updated = datetime(2026, 11, 21, 8, 0, tzinfo=timezone.utc)
    profile = jane(tier="Bronze", wishlist=[], cart={**JANE["cart"], "updated_at": "2026-11-21T08:00:00Z"})
    assert [o["id"] for o in offers(profile, in_stock(*JANE["cart"]["items"]), now=updated + age)] == expected


def test_a_cart_whose_items_are_not_here_gets_no_offer():
    assert offers(jane(tier="Bronze", wishlist=[]), in_stock(JANE["wishlist"][0])) == []


@pytest.mark.parametrize("tier, percent", [("Gold", 15), ("Platinum", 20), ("Silver", None), ("Bronze", None)])
def test_gold_and_platinum_members_get_a_tier_perk(tier, percent):
    found = offers(jane(tier=tier), {})
    if percent is None:
        assert found == []
    else:
        assert [(o["id"], o["percent"], o["gtin"]) for o in found] == [(f"tier-{tier.lower()}", percent, None)]
        assert tier in found[0]["title"] and found[0]["reason"] == f"{tier} tier perk"


def test_a_wishlist_item_already_in_the_left_cart_is_offered_once_through_the_cart():
    cart_line = JANE["cart"]["items"][0]
    profile = jane(tier="Bronze", wishlist=[line(cart_line["gtin"], cart_line["name"], cart_line["price"])])
    assert [o["id"] for o in offers(profile, in_stock(cart_line))] == ["cart"]


def test_offers_are_ordered_by_what_they_save_the_shopper_and_at_most_four():
    wishes = [line(f"0400000000{i:03d}1", f"Item {i}", price) for i, price in
              enumerate([20.0, 300.0, 90.0, 150.0, 60.0])]
    profile = jane(tier="Gold", wishlist=wishes, cart={"updated_at": None, "items": []})
    found = offers(profile, in_stock(*wishes))
    # Gold: 15% of the dearest wish (45.00) beats 10% of it (30.00), then the wishes by price.
    assert [o["id"] for o in found] == ["tier-gold", f"wishlist-{wishes[1]['gtin']}",
                                        f"wishlist-{wishes[3]['gtin']}", f"wishlist-{wishes[2]['gtin']}"]


def test_a_big_left_cart_outranks_a_single_wishlist_item():
    first, second = JANE["cart"]["items"]  # 199.99 + 290.95 in the cart
    wish = line("04000000009991", "Small thing", 500.0)
    found = offers(jane(tier="Bronze", wishlist=[wish]), in_stock(first, second, wish))
    assert [o["id"] for o in found] == ["wishlist-04000000009991", "cart"]
    cheap = dict(wish, price=5.0)
    found = offers(jane(tier="Bronze", wishlist=[cheap]), in_stock(first, second, cheap))
    assert [o["id"] for o in found] == ["cart", "wishlist-04000000009991"]


# --- consent -------------------------------------------------------------------------------

def test_without_marketing_consent_only_the_tier_perk_is_offered():
    profile = jane(consent={"clienteling": True, "marketing": False})
    stock = in_stock(*JANE["wishlist"], *JANE["cart"]["items"])
    assert [o["id"] for o in offers(profile, stock)] == ["tier-gold"]
    assert offers(dict(profile, tier="Bronze"), stock) == []


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
    shown = welcome(JANE, stock_here=stock, now=NOW, secret=SECRET)
    assert set(shown) == {"first_name", "tier", "points", "offers", "wishlist_here"}
    assert (shown["first_name"], shown["tier"], shown["points"]) == ("Jane", "Gold", JANE["points"])
    assert shown["offers"] == offers(JANE, stock)
    text = json.dumps(shown)
    for private in (JANE["last_name"], JANE["email"], JANE["phone"], "#1043", str(JANE["lifetime_value"])):
        assert private not in text, private


def test_wishlist_here_lists_wishes_in_stock_newest_first_with_where_to_find_them():
    wishes = [line(f"0400000000{i:03d}1", f"Item {i}", 10.0) for i in range(6)]
    stock = in_stock(*wishes[1:])
    stock[wishes[3]["gtin"]]["quantity"] = 0
    found = wishlist_here(jane(wishlist=wishes), stock)
    assert [w["gtin"] for w in found] == [wishes[i]["gtin"] for i in (1, 2, 4, 5)]
    assert found[0] == {"gtin": wishes[1]["gtin"], "name": "Item 1", "location": "Aisle 1"}


def test_profile_gtins_are_the_wishlist_and_cart_products_once_each():
    gtins = profile_gtins(JANE)
    assert gtins == [w["gtin"] for w in JANE["wishlist"]] + [c["gtin"] for c in JANE["cart"]["items"]]
