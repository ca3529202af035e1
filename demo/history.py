"""A store's past, generated: kiosk sessions, check-ins, scans, help, online sessions, orders and till sales.

Deterministic for a seed, shaped like a real store (busy afternoons and Saturdays, members who come
back, out-of-stock products scanned, online sessions that lead to orders, till sales after visits),
and loaded into a hub through the same code the live data takes: events through the ingest's
`insert_event` + `track`, online sessions and orders through hub.analytics_data, till sales through
hub.pos_sales. Used by the demo (a manager page with something on it), the analytics tests (a data
set whose answers they compute by brute force) and bench/analytics.py (a year of a busy store).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from itertools import accumulate
from datetime import datetime, timedelta, timezone
from typing import Any, Callable
from zoneinfo import ZoneInfo

from protocol.codes import gtin_check_digit
from protocol.envelope import Envelope, format_ts, uuid7

ONLINE_MIX = {"web": 35, "app": 30, "search": 12, "social": 10, "email": 8, "marketplace": 5}
SOURCES = {"search": ["google", "bing"], "social": ["instagram", "facebook", "tiktok"], "email": None,
           "web": [None], "app": [None], "marketplace": ["bol", "zalando"]}
# Kiosk traffic by local hour (store open 9-21) and weekday (Mon..Sun).
HOUR_WEIGHTS = {9: 2, 10: 4, 11: 6, 12: 8, 13: 8, 14: 7, 15: 7, 16: 9, 17: 10, 18: 8, 19: 5, 20: 3}
WEEKDAY_WEIGHTS = (6, 6, 7, 8, 11, 16, 9)
EVENTS_PER_SESSION = 6.2  # what the session mix below averages, to size a history by event count


@dataclass
class History:
    events: list[Envelope] = field(default_factory=list)
    online_sessions: list[dict[str, Any]] = field(default_factory=list)
    orders: list[dict[str, Any]] = field(default_factory=list)
    pos_sales: list[dict[str, Any]] = field(default_factory=list)
    products: dict[str, dict[str, Any]] = field(default_factory=dict)  # gtin -> {"name", "price", "quantity"}
    no_consent: set[str] = field(default_factory=set)
    customers: list[str] = field(default_factory=list)

    @property
    def size(self) -> int:
        return len(self.events) + len(self.online_sessions) + len(self.orders) + len(self.pos_sales)


def gtin14(body: str) -> str:
    """A GTIN-14 from up to 13 digits, with its check digit."""
    body = body.zfill(13)
    return body + str(gtin_check_digit(body))


def generate(*, customers: int = 400, days: int = 60, end: datetime, seed: int = 7, store: str = "s001",
             kiosks: int = 3, tz: ZoneInfo = ZoneInfo("Europe/Amsterdam"), sessions_per_day: float = 40,
             online_per_customer_year: float = 6.0, products: dict[str, dict[str, Any]] | None = None,
             customer_ids: list[str] | None = None, no_consent: set[str] | None = None,
             devices: list[str] | None = None,
             progress: Callable[[str], None] = lambda _: None) -> History:
    rng = random.Random(seed)
    history = History()
    history.customers = customer_ids or [f"M{n:05d}" for n in range(1, customers + 1)]
    customers = len(history.customers)
    history.no_consent = (no_consent if no_consent is not None
                          else {m for m in history.customers if rng.random() < 0.02})
    history.products = products or _products(rng, 300)
    for gtin, product in history.products.items():
        product.setdefault("quantity", 0 if rng.random() < 0.08 else rng.randint(1, 30))
    gtins = list(history.products)
    # Regulars come back; most members are seen rarely.
    weights = list(accumulate(1 / (1 + i) ** 0.6 for i in range(customers)))  # cumulative: one bisect a pick
    start = end - timedelta(days=days)
    devices = list(devices or [f"k{n:02d}" for n in range(1, kiosks + 1)])
    seqs = dict.fromkeys(devices, 0)

    def event(device: str, moment: datetime, kind: str, data: dict[str, Any]) -> None:
        seqs[device] += 1
        history.events.append(Envelope(1, uuid7(moment, rng.randbytes), seqs[device], format_ts(moment), store,
                                       device, kind, data))

    for day_index in range(days):
        local_day = (start + timedelta(days=day_index)).astimezone(tz).date()
        count = _count(rng, sessions_per_day * WEEKDAY_WEIGHTS[local_day.weekday()] / 9)
        for _ in range(count):
            hour = rng.choices(list(HOUR_WEIGHTS), weights=list(HOUR_WEIGHTS.values()))[0]
            local = datetime(local_day.year, local_day.month, local_day.day, hour, rng.randrange(60),
                             rng.randrange(60), rng.randrange(1000) * 1000, tzinfo=tz)
            moment = local.astimezone(timezone.utc)
            if not start <= moment < end:
                continue
            _kiosk_session(rng, history, event, rng.choice(devices), moment, weights, gtins)
        if day_index % 30 == 29:
            progress(f"kiosk history: {day_index + 1}/{days} days, {len(history.events):,} events")
    history.events.sort(key=lambda e: (e.ts, e.device, e.seq))
    _online(rng, history, start, end, online_per_customer_year * days / 365, gtins)
    history.online_sessions.sort(key=lambda s: s["started_at"])
    history.orders.sort(key=lambda o: o["placed_at"])
    history.pos_sales.sort(key=lambda s: s["ts"])
    return history


def _count(rng: random.Random, mean: float) -> int:
    return max(0, int(rng.gauss(mean, mean ** 0.5) + 0.5))


def _products(rng: random.Random, count: int) -> dict[str, dict[str, Any]]:
    kinds = ["Trail Runner", "Wool Jumper", "Denim Jacket", "Canvas Tote", "Linen Shirt", "Rain Parka", "Chinos",
             "Leather Belt", "Knit Beanie", "Ankle Boot"]
    return {gtin14(f"871{n:09d}"): {"name": f"{rng.choice(kinds)} {n}", "price": round(rng.uniform(15, 180), 2)}
            for n in range(1, count + 1)}


def _kiosk_session(rng, history: History, event, device: str, moment: datetime, weights, gtins) -> None:
    session = f"{device}-{moment.timestamp():.3f}"
    event(device, moment, "session.started", {"session": session})
    t = moment
    member = None
    if rng.random() < 0.45:
        member = rng.choices(history.customers, cum_weights=weights)[0]
        t += timedelta(seconds=rng.uniform(2, 20))
        event(device, t, "scan.member", {"session": session, "member": member, "jti": f"j{rng.getrandbits(48):x}",
                                         "typ": "app"})
        for offer in rng.sample(["welcome", "birthday", "new-in", "points"], rng.randint(0, 2)):
            event(device, t + timedelta(milliseconds=400), "offer.shown", {"session": session, "offer": offer})
    scanned = []
    for _ in range(rng.choices([0, 1, 2, 3, 4, 6], weights=[10, 30, 25, 15, 10, 5])[0]):
        t += timedelta(seconds=rng.uniform(5, 90))
        gtin = rng.choice(gtins)
        scanned.append(gtin)
        event(device, t, "scan.product", {"session": session, "gtin": gtin, "source": "ean13"})
    if rng.random() < 0.06:
        t += timedelta(seconds=rng.uniform(5, 60))
        event(device, t, "assist.requested", {"session": session})
    if member and scanned and rng.random() < 0.15:
        t += timedelta(seconds=rng.uniform(3, 20))
        event(device, t, "cart.sent", {"session": session, "gtin": scanned[-1], "member": member})
    t += timedelta(seconds=rng.uniform(20, 120))
    event(device, t, "session.ended", {"session": session, "reason": "idle"})
    # The till: members often buy after a visit (often what they scanned); walk-ins buy too.
    if member and rng.random() < 0.4:
        lines = _lines(rng, history, [g for g in scanned if rng.random() < 0.6] or [rng.choice(list(history.products))])
        _pos_sale(rng, history, t + timedelta(minutes=rng.uniform(2, 40)), member, lines)
    elif member and rng.random() < 0.03:  # brought something back
        gtin = rng.choice(list(history.products))
        _pos_sale(rng, history, t + timedelta(minutes=rng.uniform(2, 20)), member,
                  [{"gtin": gtin, "quantity": -1, "amount": -history.products[gtin]["price"]}])
    elif not member and rng.random() < 0.15:
        _pos_sale(rng, history, t + timedelta(minutes=rng.uniform(2, 30)), None,
                  _lines(rng, history, [rng.choice(list(history.products))]))


def _lines(rng, history: History, gtins: list[str]) -> list[dict[str, Any]]:
    lines = []
    for gtin in dict.fromkeys(gtins):
        quantity = rng.choices([1, 2], weights=[85, 15])[0]
        lines.append({"gtin": gtin, "quantity": quantity, "amount": round(history.products[gtin]["price"] * quantity, 2)})
    return lines


def _pos_sale(rng, history: History, moment: datetime, member: str | None, lines: list[dict]) -> None:
    history.pos_sales.append({"id": f"T{len(history.pos_sales) + 1:07d}", "ts": format_ts(moment),
                              "member_id": member, "currency": "EUR", "lines": lines})


def _online(rng, history: History, start: datetime, end: datetime, per_customer: float, gtins) -> None:
    span = (end - start).total_seconds()
    channels, mix = list(ONLINE_MIX), list(ONLINE_MIX.values())
    number = 0
    for customer in history.customers:
        for _ in range(_count(rng, per_customer)):
            number += 1
            moment = start + timedelta(seconds=rng.uniform(0, span))
            channel = rng.choices(channels, weights=mix)[0]
            sources = SOURCES[channel]
            source = (f"newsletter-{moment:%Y-%m}" if sources is None else rng.choice(sources))
            buys = rng.random() < 0.12
            history.online_sessions.append({
                "id": f"S{number:08d}", "customer_id": customer, "channel": channel, "source": source,
                "started_at": format_ts(moment), "added_to_cart": buys or rng.random() < 0.2,
                "asked_for_help": rng.random() < 0.03})
            if buys:
                placed = moment + timedelta(minutes=rng.uniform(1, 25))
                if placed >= end:
                    continue
                lines = _lines(rng, history, rng.sample(gtins, rng.randint(1, 3)))
                status = rng.choices(["delivered", "shipped", "cancelled", "returned"], weights=[78, 15, 4, 3])[0]
                history.orders.append({
                    "id": f"O{number:08d}", "customer_id": customer,
                    "channel": channel if channel in ("web", "app", "marketplace") else rng.choice(["web", "app"]),
                    "status": status, "placed_at": format_ts(placed), "currency": "EUR", "lines": lines,
                    "total": round(sum(line["amount"] for line in lines), 2)})


def demo_history(*, end: datetime, devices: list[str], days: int = 90, seed: int = 2026) -> History:
    """The demo store's past in the store: its members and catalog (demo/seed.py), kiosks k01 and k02,
    till sales. The online half (sessions, orders) the demo online store serves itself."""
    from demo.catalog_feed import catalog_feed
    from demo.seed import build
    data = build()
    feed = catalog_feed(data)
    stock = {row["gtin"]: row["quantity"] for row in feed["stock"] if row["store"] == "s001"}
    products = {p["gtin"]: {"name": p["name"], "price": p["price"], "quantity": stock.get(p["gtin"], 0)}
                for p in feed["products"]}
    members = [c["id"] for c in data.customers]
    refused = {c["id"] for c in data.customers if not (c.get("consent") or {}).get("clienteling")}
    return generate(end=end, days=days, seed=seed, devices=devices, sessions_per_day=45, online_per_customer_year=0,
                    products=products, customer_ids=members, no_consent=refused)


# --- loading into a hub --------------------------------------------------------------------

def load(hub_store, history: History, *, store: str = "s001", gap_s: float = 1800.0, batch: int = 2000,
         progress: Callable[[str], None] = lambda _: None) -> dict[str, int]:
    """Put a history into a hub's database through the live paths; returns what was stored.
    The past is not news for the online store: what `track` queued for it is marked done, not pushed.
    Load into a hub that is not running (its pushers would race the marking)."""
    from hub.activity import track
    from hub.analytics_data import record_online_sessions, record_orders
    from hub.catalog import HubCatalog
    from hub.pos_sales import store_sales

    now = datetime.now(timezone.utc)
    HubCatalog(hub_store.db).apply_changes(
        [{"kind": "product", "key": g, "data": {"gtin": g, "name": p["name"], "price": p["price"], "currency": "EUR"}}
         for g, p in history.products.items()]
        + [{"kind": "stock", "key": f"{g}/{store}", "data": {"gtin": g, "store": store, "quantity": p["quantity"]}}
           for g, p in history.products.items()])
    for member in sorted(history.no_consent):
        hub_store.cache_profile(member, {"id": member, "consent": {"clienteling": False}}, format_ts(now))
    for i in range(0, len(history.events), batch):
        chunk = history.events[i:i + batch]
        with hub_store.transaction():
            for envelope in chunk:
                hub_store.insert_event(envelope, format_ts(now))
            track(hub_store.db, chunk, store=store, now=now, gap_s=gap_s)
            hub_store.db.execute("UPDATE online_updates SET done_at = ?, last_error = 'history, not pushed' "
                                 "WHERE done_at IS NULL AND created_at >= ?", [format_ts(now), format_ts(now)])
        if (i // batch) % 50 == 49:
            progress(f"events stored: {i + len(chunk):,}/{len(history.events):,}")
    with hub_store.transaction():
        record_online_sessions(hub_store.db, history.online_sessions)
        record_orders(hub_store.db, history.orders, currency="EUR", now=now)
    result = store_sales(hub_store.db, pos_sales_of(history), now=now)
    return {"events": len(history.events), "online_sessions": len(history.online_sessions),
            "orders": len(history.orders), "pos_sales": getattr(result, "imported", len(history.pos_sales))}


def pos_sales_of(history: History) -> list:
    """The till's sales as hub.pos_sales takes them (read as the POS endpoint reads them, in requests' worth)."""
    from hub.pos_sales import MAX_SALES_PER_REQUEST, Sale, sales_from_json
    sales = []
    for i in range(0, len(history.pos_sales), MAX_SALES_PER_REQUEST):
        chunk = {"sales": [{k: v for k, v in sale.items() if v is not None}
                           for sale in history.pos_sales[i:i + MAX_SALES_PER_REQUEST]]}
        read = sales_from_json(chunk, tz=ZoneInfo("UTC"), currency="EUR")
        bad = [r for r in read if not isinstance(r, Sale)]
        if bad:
            raise ValueError(f"generated till sales the POS import refuses: {bad[:3]}")
        sales += read
    return sales
