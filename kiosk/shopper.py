"""What a scan means for the shopper in front of the kiosk: sessions, member check-in, products, rejections.

Every outcome is appended to the outbox (durably) before the screen shows it, so no result a
shopper saw can be lost. The screen gets only what a passer-by may see: a member's first
name, tier and points, never more.
"""

from __future__ import annotations

import functools
import logging
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

import segno

from edge_agent.catalog import CatalogCache
from edge_agent.outbox import Outbox, OutboxFull
from kiosk.decode import Code
from kiosk.hub_requests import TILL_FALLBACK, HubRequests
from protocol.codes import MemberCandidate, Product, classify
from protocol.tokens import KeySet, MemberClaims, verify_member_token

log = logging.getLogger("kiosk")

# What the shopper reads for each kind of refusal: friendly, never blaming.
FRIENDLY = {
    "expired": "That member code has expired. Open the app again to refresh it.",
    "not_yet_valid": "Your phone's clock seems off. Please check it, or ask a colleague.",
    "replayed": "That member code was already used. Open the app to get a fresh one.",
    "foreign_url": "That link isn't one of ours. Try a product barcode or your member QR.",
    "bad_check_digit": "We couldn't read that barcode cleanly. Please try again.",
}
FRIENDLY_DEFAULT = "That code isn't one we know. Try a product barcode or your member QR."
# The outbox is at its bound with nothing it may drop: nothing new can be recorded, so nothing is shown.
PAUSED = "This kiosk can't take scans right now — please ask a colleague"
TOKEN_REJECTION_DEFAULT = "We couldn't check that member code. Please ask a colleague."


@dataclass
class ShopperSession:
    id: str
    started: float
    last_activity: float
    member: MemberClaims | None = None  # who checked in, if anyone: offers and "send to my cart" need it


@functools.lru_cache(maxsize=256)
def qr_data_uri(text: str) -> str:
    """A QR code as an SVG data URI the page can show under its CSP (img-src data:)."""
    return segno.make_qr(text, error="m").svg_data_uri(scale=4, border=2)


def _with_codes(offers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    keep = ("id", "title", "text", "code")
    return [{**{k: o.get(k) for k in keep}, "code_qr": qr_data_uri(str(o["code"]))} for o in offers if o.get("code")]


def _points(from_hub: Any, from_token: int | None) -> int | None:
    return from_hub if isinstance(from_hub, int) and not isinstance(from_hub, bool) else from_token


class Shopper:
    """Turns decoded codes into events and screens. Thread-safe: the scan loop and the page both call it."""

    def __init__(self, *, outbox: Outbox, keys: KeySet, screen: Callable[[dict[str, Any]], None],
                 catalog: CatalogCache | None = None, hub: HubRequests | None = None, store: str = "",
                 notice: Callable[[str, str], None] = lambda kind, text: None,
                 idle_timeout_s: float = 30.0, issuer: str | None = None, leeway_s: int = 30,
                 wall_clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)):
        self.outbox = outbox
        self.catalog = catalog
        self.hub = hub
        self.store = store or outbox.store
        self.notice = notice
        self.keys = keys
        self.screen = screen
        self.idle_timeout_s = idle_timeout_s
        self.issuer = issuer or None
        self.leeway_s = leeway_s
        self._wall_clock = wall_clock
        self._lock = threading.RLock()
        self.session: ShopperSession | None = None
        self._used_app_tokens: dict[str, tuple[str, int]] = {}  # jti → (session id, exp)
        self.counters = {"scans": 0, "members": 0, "products": 0, "unknown_products": 0, "rejected": 0,
                         "sessions": 0, "assists": 0, "carts": 0, "outbox_full": 0}

    def scan(self, code: Code, now: float) -> dict[str, Any]:
        """Handle one (already debounced) code; returns the screen shown."""
        with self._lock:
            self.counters["scans"] += 1
            result = classify(code.symbology, code.text)
            try:
                if isinstance(result, MemberCandidate):
                    return self._member(result.token, code, now)
                if isinstance(result, Product):
                    return self._product(result, now)
                return self._reject(result.reason, "code", code.symbology, now)
            except OutboxFull as exc:
                # Nothing a shopper sees may go unrecorded: say so plainly instead of showing a result.
                self.counters["outbox_full"] += 1
                log.error("scan not recorded: the outbox is full", extra={"detail": str(exc)})
                return self._show({"view": "unavailable", "message": PAUSED})

    def _member(self, token: str, code: Code, now: float) -> dict[str, Any]:
        wall = self._wall_clock()
        claims = verify_member_token(token, self.keys, now=wall, issuer=self.issuer, leeway_s=self.leeway_s)
        if not isinstance(claims, MemberClaims):
            return self._reject(claims.reason, "member_token", code.symbology, now)
        self._forget_expired_tokens(wall.timestamp())
        if claims.typ == "app":
            used = self._used_app_tokens.get(claims.jti)
            if used and (self.session is None or used[0] != self.session.id):
                return self._reject("replayed", "member_token", code.symbology, now)
        session = self._ensure_session(now)
        if claims.typ == "app":
            self._used_app_tokens[claims.jti] = (session.id, claims.exp)
        session.member = claims
        self.outbox.append("scan.member", {"session": session.id, "member": claims.member, "jti": claims.jti,
                                           "typ": claims.typ})
        self.counters["members"] += 1
        log.info("member checked in", extra={"session": session.id, "typ": claims.typ})
        answer = self.hub.member_welcome(claims.member) if self.hub else None
        offers = _with_codes(answer.get("offers", [])) if answer else []
        self._record_offers_shown(session, answer.get("offers", []) if answer else [], claims.member)
        # The hub's figures are fresher (points change online); the signed token's stand in when it is away.
        return self._show({
            "view": "member", "first_name": (answer or {}).get("first_name") or claims.given_name,
            "tier": (answer or {}).get("tier") or claims.tier,
            "points": _points((answer or {}).get("points"), claims.points),
            "offers": offers,
            "offers_note": None if answer else TILL_FALLBACK,
            "wishlist_here": [{"name": w.get("name"), "location": w.get("location")}
                              for w in (answer or {}).get("wishlist_here", [])][:4],
        })

    def _product(self, product: Product, now: float) -> dict[str, Any]:
        session = self._ensure_session(now)
        self.outbox.append("scan.product", {"session": session.id, "gtin": product.gtin, "source": product.source})
        self.counters["products"] += 1
        details = self.catalog.product(product.gtin, self.store) if self.catalog else None
        if details is None and self.hub:
            details = self.hub.product_detail(product.gtin)  # newer than this kiosk's catalog, if the hub is there
        member = session.member
        view: dict[str, Any] = {
            "view": "product", "gtin": product.gtin, "known": details is not None,
            "member": {"first_name": member.given_name, "tier": member.tier} if member else None,
            "can_send_to_cart": member is not None and details is not None,
        }
        if details is None:
            self.counters["unknown_products"] += 1
            return self._show(view)
        view.update({k: v for k, v in details.items() if k != "gtin"})
        view["online_qr"] = qr_data_uri(details["online_url"]) if details.get("online_url") else None
        view["member_offer"], view["offers_note"] = None, None
        if member:
            answer = self.hub.member_offers(member.member, product.gtin) if self.hub else None
            offers = _with_codes(answer.get("offers", [])) if answer else []
            view["member_offer"] = offers[0] if offers else None
            view["offers_note"] = None if answer else TILL_FALLBACK
            self._record_offers_shown(session, [o for o in (answer or {}).get("offers", []) if o.get("code")][:1],
                                      member.member)
        return self._show(view)

    def _record_offers_shown(self, session: ShopperSession, offers: list[dict[str, Any]], member: str) -> None:
        """An `offer.shown` per offer on screen (low priority: dropped first when the outbox is full), so the
        online store learns which offers the member saw in the store."""
        for offer in (o for o in offers if isinstance(o, dict) and o.get("code") and o.get("id")):
            data: dict[str, Any] = {"session": session.id, "offer": str(offer["id"])[:64], "member": member}
            if isinstance(offer.get("gtin"), str):
                data["gtin"] = offer["gtin"]
            try:
                self.outbox.append("offer.shown", data)
            except OutboxFull:
                self.counters["outbox_full"] += 1
                return

    def request_assistance(self, gtin: str | None, now: float) -> None:
        """The shopper tapped "Ask for help": staff get an `assist.requested` with the kiosk and product."""
        with self._lock:
            session = self._ensure_session(now)
            data: dict[str, Any] = {"session": session.id}
            if gtin:
                data["gtin"] = gtin
            if session.member:
                data["member"] = session.member.member
            try:
                self.outbox.append("assist.requested", data)
            except OutboxFull:
                self.counters["outbox_full"] += 1
                self.notice("error", PAUSED)
                return
            self.counters["assists"] += 1
        self.notice("assist", "A colleague is on the way")

    def send_to_cart(self, gtin: str, now: float) -> None:
        """Only a checked-in member can send a product to their own online cart."""
        with self._lock:
            session = self.session
            if session is None or session.member is None or not gtin.isdigit() or len(gtin) != 14:
                self.notice("error", "Scan your member QR first to use your online cart")
                return
            session.last_activity = now
            member = session.member.member
            try:
                event = self.outbox.append("cart.sent", {"session": session.id, "gtin": gtin, "member": member})
            except OutboxFull:
                self.counters["outbox_full"] += 1
                self.notice("error", PAUSED)
                return
            self.counters["carts"] += 1
        # The event alone will reach the hub, which adds the line; asking now only says whether it is there yet.
        # The event id keys the line, so both paths together add it once.
        status = self.hub.cart_add(member, gtin, event.id) if self.hub else None
        self.notice("cart", "Sent to your online cart" if status == "added" else
                    "It will be in your online cart in a moment")

    def _reject(self, reason: str, kind: str, symbology: str, now: float) -> dict[str, Any]:
        # The reason and the kind of code, never the payload: it may be someone's personal data.
        data = {"reason": reason, "kind": kind, "symbology": symbology}
        if self.session:
            data["session"] = self.session.id
            self.session.last_activity = now
        self.outbox.append("scan.rejected", data)
        self.counters["rejected"] += 1
        log.info("scan rejected", extra=data)
        default = TOKEN_REJECTION_DEFAULT if kind == "member_token" else FRIENDLY_DEFAULT
        return self._show({"view": "rejected", "message": FRIENDLY.get(reason, default)})

    def _ensure_session(self, now: float) -> ShopperSession:
        if self.session is None:
            self.session = ShopperSession(id=str(uuid.uuid4()), started=now, last_activity=now)
            self.outbox.append("session.started", {"session": self.session.id})
            self.counters["sessions"] += 1
        self.session.last_activity = now
        return self.session

    def end_session(self, reason: str) -> None:
        """`done` (the shopper tapped Done) or `idle`; the screen forgets everything."""
        with self._lock:
            if self.session is not None:
                try:
                    self.outbox.append("session.ended", {"session": self.session.id, "reason": reason})
                except OutboxFull:
                    self.counters["outbox_full"] += 1  # the session ends on screen all the same
                log.info("session ended", extra={"session": self.session.id, "reason": reason})
                self.session = None
            self._show({"view": "idle"})

    def tick(self, now: float) -> None:
        """Called by the scan loop: ends a session nobody touched for the idle timeout."""
        with self._lock:
            if self.session and now - self.session.last_activity > self.idle_timeout_s:
                self.end_session("idle")

    def _forget_expired_tokens(self, wall_ts: float) -> None:
        for jti in [j for j, (_, exp) in self._used_app_tokens.items() if exp + self.leeway_s < wall_ts]:
            del self._used_app_tokens[jti]

    def _show(self, view: dict[str, Any]) -> dict[str, Any]:
        self.screen(view)
        return view
