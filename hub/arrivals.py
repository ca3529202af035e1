"""Arrivals: a member checked in at a kiosk → their online life on every staff tablet.

`arrival_card` is pure (profile in, card out); `ArrivalDesk` does the I/O around it on its
own thread, so a slow online store never holds back ingest.
"""

from __future__ import annotations

import logging
import queue
import threading
from datetime import datetime, timezone
from typing import Any, Callable

from hub.profiles import ProfileSource
from hub.store import HubStore
from protocol.envelope import Envelope, parse_ts

log = logging.getLogger("hub.arrivals")

OPEN_ORDER_STATUSES = ("placed", "shipped", "ready_for_pickup")


def arrival_card(event: Envelope, profile: dict[str, Any] | None, *, store: str, now: datetime,
                 profile_source: str, profile_age_s: float | None, late: bool,
                 stock_here: dict[str, dict[str, Any]] | None = None, first_visit: bool = False) -> dict[str, Any]:
    """What staff see for one check-in. Without clienteling consent: only that a member checked in.
    `stock_here`: the member's wishlist products in stock in this store; `first_visit`: never checked in here before."""
    card: dict[str, Any] = {
        "event_id": event.id, "kiosk": event.device, "at": event.ts, "late": late,
        "profile_source": profile_source,
        "profile_age_s": None if profile_age_s is None else round(profile_age_s),
    }
    if profile is None:
        card.update(consent=True, customer={"id": event.data["member"], "first_name": None,
                                            "last_name": None, "tier": None, "points": None},
                    flags=[{"kind": "unavailable", "text": "Online profile unavailable right now"}],
                    orders=[], wishlist=[], cart={"items": [], "updated_at": None}, recently_viewed=[])
        return card
    if not profile.get("consent", {}).get("clienteling", False):
        card.update(consent=False, customer=None, flags=[{"kind": "member", "text": "Member checked in"}],
                    orders=[], wishlist=[], cart={"items": [], "updated_at": None}, recently_viewed=[])
        return card
    orders = profile.get("orders", [])
    cart = profile.get("cart") or {"items": [], "updated_at": None}
    card.update(
        consent=True,
        customer={key: profile.get(key) for key in
                  ("id", "first_name", "last_name", "tier", "points", "lifetime_value", "currency", "member_since")},
        flags=_flags(profile, store=store, now=now, stock_here=stock_here or {}, first_visit=first_visit),
        orders=[_order_summary(order, store) for order in orders[:10]],
        wishlist=profile.get("wishlist", [])[:10],
        cart={"updated_at": cart.get("updated_at"), "items": cart.get("items", [])[:10]},
        recently_viewed=profile.get("recently_viewed", [])[:10],
    )
    return card


def _order_summary(order: dict[str, Any], store: str) -> dict[str, Any]:
    pickup = order.get("pickup") or None
    return {
        "id": order.get("id"), "number": order.get("number"), "channel": order.get("channel"),
        "status": order.get("status"), "placed_at": order.get("placed_at"), "total": order.get("total"),
        "currency": order.get("currency"), "items": order.get("items", []),
        "pickup": pickup,
        "ready_here": order.get("status") == "ready_for_pickup" and bool(pickup) and pickup.get("store") == store,
    }


def _flags(profile: dict[str, Any], *, store: str, now: datetime, stock_here: dict[str, dict[str, Any]],
           first_visit: bool) -> list[dict[str, str]]:
    """What matters now, most urgent first: a pickup waiting here, then what they want that is on the shelf."""
    flags = []
    for order in profile.get("orders", []):
        pickup = order.get("pickup") or {}
        if order.get("status") == "ready_for_pickup" and pickup.get("store") == store:
            items = sum(int(item.get("quantity", 1)) for item in order.get("items", []))
            shelf = f", shelf {pickup['shelf']}" if pickup.get("shelf") else ""
            flags.append({"kind": "pickup", "text": f"Pickup ready: order {order.get('number')}, "
                                                    f"{items} item{'s' if items != 1 else ''}{shelf}"})
    wishlist = profile.get("wishlist", [])
    here = [item for item in wishlist if item.get("gtin") in stock_here]
    if here:
        flags.append({"kind": "wishlist_here", "text": f"{len(here)} wishlist item{'s' if len(here) != 1 else ''} "
                                                       "in stock here"})
    cart = profile.get("cart") or {}
    if cart.get("items"):
        count = sum(int(item.get("quantity", 1)) for item in cart["items"])
        flags.append({"kind": "cart", "text": f"Left a cart online {_ago(cart.get('updated_at'), now)} "
                                              f"({count} item{'s' if count != 1 else ''})"})
    if wishlist and not here:
        flags.append({"kind": "wishlist", "text": f"{len(wishlist)} wishlist item{'s' if len(wishlist) != 1 else ''}"})
    if first_visit:
        flags.append({"kind": "first_visit", "text": "First visit to this store"})
    return flags


def _ago(ts: str | None, now: datetime) -> str:
    if not ts:
        return "recently"
    seconds = (now - parse_ts(ts)).total_seconds()
    if seconds < 3600:
        return "within the hour"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h ago"
    days = int(seconds // 86400)
    return "yesterday" if days == 1 else f"{days} days ago"


class ArrivalDesk:
    """Turns stored `scan.member` events into arrival cards and pushes them to staff."""

    def __init__(self, *, store: str, hub_store: HubStore, online, emit: Callable[[dict[str, Any]], None],
                 profile_ttl_s: float = 900, late_after_s: float = 120,
                 stock_here: Callable[[list[str], str], dict[str, dict[str, Any]]] = lambda gtins, store: {},
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)):
        self.store = store
        self.hub_store = hub_store
        self.stock_here = stock_here
        self.profiles = ProfileSource(hub_store=hub_store, online=online, ttl_s=profile_ttl_s)
        self.emit = emit
        self.late_after_s = late_after_s
        self._clock = clock
        self._queue: "queue.Queue[Envelope | None]" = queue.Queue()
        self._thread: threading.Thread | None = None
        self.counters = {"arrivals": 0, "replays": 0, "profile_online": 0, "profile_cache": 0,
                         "profile_unavailable": 0}

    def on_stored(self, events: list[Envelope]) -> None:
        """Ingest hook: called after commit with newly stored events; must not block."""
        for event in events:
            if event.type == "scan.member":
                self._queue.put(event)

    def start(self) -> "ArrivalDesk":
        self._thread = threading.Thread(target=self._run, name="arrival-desk", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._queue.put(None)
        if self._thread:
            self._thread.join(5)

    def _run(self) -> None:
        while (event := self._queue.get()) is not None:
            try:
                self.handle(event)
            except Exception:
                log.exception("arrival failed", extra={"event_id": event.id})

    def handle(self, event: Envelope) -> dict[str, Any] | None:
        member, jti = event.data["member"], event.data["jti"]
        other = self.hub_store.jti_seen_elsewhere(jti, event.device)
        if other:
            # One token, two kiosks: a screenshot of someone's app QR. No arrival, but say so.
            self.counters["replays"] += 1
            log.warning("member token replayed on another kiosk",
                        extra={"event_id": event.id, "device": event.device, "first_device": other})
            return None
        now = self._clock()
        late = (now - parse_ts(event.ts)).total_seconds() > self.late_after_s
        profile, source, age = self._profile(member, now)
        wanted = [item.get("gtin") for item in (profile or {}).get("wishlist", []) if item.get("gtin")]
        first_visit = not self.hub_store.arrived_before(member, self.store, event.id)
        card = arrival_card(event, profile, store=self.store, now=now, profile_source=source, profile_age_s=age,
                            late=late, stock_here=self.stock_here(wanted, self.store) if wanted else {},
                            first_visit=first_visit)
        # Without clienteling consent the arrival is not linked to the member (only that someone checked in).
        arrival_id = self.hub_store.add_arrival(event_id=event.id, store=self.store, device=event.device,
                                                customer_id=member if card["consent"] else "", jti=jti,
                                                scanned_at=event.ts, late=late, payload=card)
        if arrival_id is None:
            return None  # already announced (a redelivered event)
        card["id"] = arrival_id
        self.counters["arrivals"] += 1
        log.info("arrival", extra={"arrival_id": arrival_id, "device": event.device, "late": late,
                                   "profile_source": source})
        self.emit(card)
        return card

    def _profile(self, member: str, now: datetime) -> tuple[dict[str, Any] | None, str, float | None]:
        profile, source, age = self.profiles.get(member, now)
        self.counters[{"online": "profile_online", "cache": "profile_cache"}.get(source, "profile_unavailable")] += 1
        return profile, source, age
