"""The shop floor as staff tablets see it: a resumable feed of arrivals, calls for help and what members do
here; claims, notes and assistance; the customer view (audited); search; and, for IT, the fleet.

Every change is one row of `floor_feed` (ids only grow) and one live "floor" event to the store's
room, so a tablet that lost Wi-Fi asks for everything after the last id it has and gets each item
once. Privacy rules hold here as everywhere: a member without clienteling consent is "Member checked
in" and nothing more, and every look at a profile is written to the audit log.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from hub import offers
from hub.catalog import HubCatalog
from hub.online import OnlineStoreError
from hub.online_updates import CartPusher, OnlineUpdates
from hub.profiles import ProfileSource
from hub.roster import ExpectedDevice, Roster
from hub.store import HubStore
from protocol.commands import COMMANDS, check_args, command_payload
from protocol.envelope import Envelope, format_ts, parse_ts

log = logging.getLogger("hub.floor")

Emit = Callable[[str, dict[str, Any], str], None]   # (event, payload, room)
ACTIVITY_TYPES = ("scan.product", "offer.shown", "assist.requested")
VISIT_WINDOW = timedelta(hours=3)
MAX_NOTE_CHARS = 1000
OFFLINE_ALERT_S = 120
OUTBOX_ALERT_S = 300
GTIN14 = re.compile(r"^[0-9]{14}$")


class FloorError(Exception):
    """An action staff cannot take as asked: `status` is the HTTP answer, `code` a stable reason."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def store_room(store: str) -> str:
    return f"store:{store}"


def it_room(store: str) -> str:
    return f"it:{store}"


def mask_email(email: str | None) -> str | None:
    """Enough to tell two Janes apart at a tablet, not enough to write to her: ja•••@example.com."""
    if not email or "@" not in email:
        return None
    name, _, domain = email.partition("@")
    return f"{name[:2]}•••@{domain}"


def mask_phone(phone: str | None) -> str | None:
    digits = [ch for ch in phone or "" if ch.isdigit()]
    return f"•••• {''.join(digits[-3:])}" if len(digits) >= 6 else None


def device_health(row: dict[str, Any], now: datetime, expected: ExpectedDevice | None = None, *,
                  roster: bool = False) -> dict[str, Any]:
    """One device for the IT view: state, the figures its last report gave, and what needs a look. Pure.

    `expected` is its entry in the fleet file; `roster` says whether the hub has a fleet file at all
    (then a device missing from it is flagged: a replaced device, or credentials used elsewhere)."""
    telemetry = json.loads(row["telemetry"]) if row.get("telemetry") else None
    alerts = []
    if roster and expected is None:
        alerts.append({"kind": "not_in_fleet", "text": "not in fleet file"})
    seen = _age_s(row.get("last_seen"), now)
    if row.get("state") != "online":
        since = _age_s(row.get("status_ts"), now) or seen
        if since is None or since > OFFLINE_ALERT_S:
            alerts.append({"kind": "offline", "text": f"{row.get('state') or 'unknown'} for {_span(since)}"})
    if telemetry:
        outbox = telemetry.get("outbox") or {}
        if (outbox.get("oldest_age_s") or 0) > OUTBOX_ALERT_S:
            alerts.append({"kind": "outbox", "text": f"{outbox.get('depth')} events waiting since "
                                                     f"{_span(outbox['oldest_age_s'])}"})
        if (outbox.get("refused") or 0) > 0:
            alerts.append({"kind": "outbox_full", "text": f"{outbox['refused']} scans refused: outbox full"})
        camera = (telemetry.get("scan") or {}).get("camera")
        if camera == "lost":
            alerts.append({"kind": "camera", "text": "camera lost"})
        if telemetry.get("disk_free_mb") is not None and telemetry["disk_free_mb"] < 500:
            alerts.append({"kind": "disk", "text": f"{telemetry['disk_free_mb']} MB free"})
        if telemetry.get("cpu_temp_c") is not None and telemetry["cpu_temp_c"] >= 80:
            alerts.append({"kind": "temperature", "text": f"{telemetry['cpu_temp_c']} °C"})
    return {"id": row["id"], "state": row.get("state") or "unknown", "session": row.get("session"),
            "version": row.get("version"), "last_seen": row.get("last_seen"), "last_seen_s": seen,
            "events": row.get("events") or 0, "gaps": row.get("gaps") or 0, "telemetry": telemetry, "alerts": alerts,
            **_fleet_entry(expected, roster)}


def never_seen(expected: ExpectedDevice) -> dict[str, Any]:
    """A device the fleet file expects that has never reported to this hub. Pure."""
    return {"id": expected.id, "state": "never_seen", "session": None, "version": None, "last_seen": None,
            "last_seen_s": None, "events": 0, "gaps": 0, "telemetry": None,
            "alerts": [{"kind": "never_seen", "text": f"expected but never came online — {expected.location}"}],
            **_fleet_entry(expected, True)}


def fleet_health(rows: list[dict[str, Any]], roster: Roster | None, now: datetime) -> list[dict[str, Any]]:
    """Every device for the IT view, by id: each one the fleet file expects (seen or not), then any other
    that reports. Without a fleet file, the devices that report. Pure."""
    if roster is None:
        return sorted((device_health(row, now) for row in rows), key=lambda d: d["id"])
    seen = {row["id"]: row for row in rows}
    devices = [device_health(seen[d.id], now, d, roster=True) if d.id in seen else never_seen(d)
               for d in roster.devices]
    devices += [device_health(row, now, roster=True) for row in rows if row["id"] not in roster]
    return sorted(devices, key=lambda d: d["id"])


def _fleet_entry(expected: ExpectedDevice | None, roster: bool) -> dict[str, Any]:
    """`in_fleet` is None when the hub has no fleet file: nothing is expected, nothing is a stranger."""
    return {"location": expected.location if expected else None, "role": expected.role if expected else None,
            "in_fleet": (expected is not None) if roster else None}


def _age_s(stamp: str | None, now: datetime) -> float | None:
    if not stamp:
        return None
    try:
        return max(0.0, (now - parse_ts(stamp)).total_seconds())
    except ValueError:
        return None


def _span(seconds: float | None) -> str:
    if seconds is None:
        return "a while"
    if seconds < 120:
        return f"{int(seconds)} s"
    if seconds < 7200:
        return f"{int(seconds // 60)} min"
    return f"{int(seconds // 3600)} h"


class Floor:
    def __init__(self, *, store: str, hub_store: HubStore, catalog: HubCatalog, online, updates: OnlineUpdates,
                 pusher: CartPusher | None, profiles: ProfileSource, engine: offers.OfferEngine, offers_secret: bytes,
                 emit: Emit = lambda event, payload, room: None,
                 publish_command: Callable[[str, bytes], bool] = lambda device, payload: False,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc), roster: Roster | None = None):
        self.store = store
        self.hub_store = hub_store
        self.catalog = catalog
        self.online = online
        self.updates = updates
        self.pusher = pusher
        self.profiles = profiles
        self.engine = engine
        self.offers_secret = offers_secret
        self.emit = emit
        self.publish_command = publish_command
        self._clock = clock
        self.roster = roster   # the fleet file's expected devices (hub.roster); None: no fleet file

    # --- the feed
    def feed(self, *, after: int = 0, limit: int = 200) -> list[dict[str, Any]]:
        """Items after `after`, oldest first; with after=0, the newest `limit` (still oldest first)."""
        limit = max(1, min(int(limit), 500))
        with self.hub_store._lock:
            if after > 0:
                rows = self.hub_store.db.execute(
                    "SELECT id, kind, arrival_id, customer_id, data, created_at FROM floor_feed "
                    "WHERE store = ? AND id > ? ORDER BY id LIMIT ?", [self.store, after, limit]).fetchall()
            else:
                rows = self.hub_store.db.execute(
                    "SELECT id, kind, arrival_id, customer_id, data, created_at FROM floor_feed "
                    "WHERE store = ? ORDER BY id DESC LIMIT ?", [self.store, limit]).fetchall()[::-1]
        items = [self._item(*row) for row in rows]
        return [self._with_state(item) for item in items]

    @staticmethod
    def _item(item_id, kind, arrival_id, customer_id, data, created_at) -> dict[str, Any]:
        return {"id": item_id, "kind": kind, "at": created_at, "arrival_id": arrival_id, "customer_id": customer_id,
                "data": json.loads(data)}

    def _with_state(self, item: dict[str, Any]) -> dict[str, Any]:
        """An arrival as it is now (claimed, served), not as it was when it came in."""
        if item["kind"] == "arrival" and item["arrival_id"]:
            item["data"]["state"] = self._arrival_state(item["arrival_id"])
        if item["kind"] == "assist":
            row = self.hub_store.db.execute("SELECT answered_by FROM assists WHERE id = ?",
                                            [item["data"]["assist_id"]]).fetchone()
            item["data"]["answered_by"] = row[0] if row else None
        return item

    def _arrival_state(self, arrival_id: int) -> dict[str, Any]:
        row = self.hub_store.db.execute("SELECT claimed_by, served_by FROM arrivals WHERE id = ?",
                                        [arrival_id]).fetchone()
        return {"claimed_by": row[0], "served_by": row[1]} if row else {"claimed_by": None, "served_by": None}

    def _append(self, kind: str, data: dict[str, Any], *, arrival_id: int | None = None,
                customer_id: str | None = None) -> dict[str, Any]:
        now = format_ts(self._clock())
        with self.hub_store._lock:
            cursor = self.hub_store.db.execute(
                "INSERT INTO floor_feed (store, kind, arrival_id, customer_id, data, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                [self.store, kind, arrival_id, customer_id, json.dumps(data, separators=(",", ":")), now])
        item = {"id": cursor.lastrowid, "kind": kind, "at": now, "arrival_id": arrival_id, "customer_id": customer_id,
                "data": data}
        self.emit("floor", item, store_room(self.store))
        return item

    # --- what comes in from the kiosks (the hub's threads)
    def arrival(self, card: dict[str, Any]) -> dict[str, Any]:
        """An arrival card from the arrival desk (it carries its arrival id as "id")."""
        customer = card.get("customer") or {}
        data = {**card, "state": {"claimed_by": None, "served_by": None}}
        return self._append("arrival", data, arrival_id=card.get("id"),
                            customer_id=customer.get("id") if card.get("consent") else None)

    def on_stored(self, events: list[Envelope]) -> None:
        """After ingest committed: calls for help, what checked-in members do, IT's command results."""
        for event in events:
            try:
                if event.type == "command.result":
                    self._command_result(event)
                    continue
                if event.type not in ACTIVITY_TYPES:
                    continue
                member = self._member_of(event)
                arrival_id = self._arrival_of(member) if member else None
                if event.type == "assist.requested":
                    self._assist(event, member, arrival_id)
                if arrival_id is not None:
                    self._append("activity", {"arrival_id": arrival_id, "type": event.type,
                                              "product": self._product(event.data.get("gtin")),
                                              "offer": event.data.get("offer")},
                                 arrival_id=arrival_id, customer_id=member)
            except Exception:
                log.exception("floor update failed", extra={"event_id": event.id, "type": event.type})

    def _member_of(self, event: Envelope) -> str | None:
        """The consenting member behind an event: named in it, or checked in on its session (the hub keeps
        no link for members without consent, so those come back None)."""
        with self.hub_store._lock:
            row = self.hub_store.db.execute(
                "SELECT coalesce(json_extract(e.data, '$.member'), s.member) FROM events e "
                "LEFT JOIN sessions s ON s.id = json_extract(e.data, '$.session') WHERE e.id = ?", [event.id]).fetchone()
        member = row[0] if row else None
        if member is None:
            return None
        consent = self.hub_store.db.execute(
            "SELECT json_extract(profile, '$.consent.clienteling') FROM customers WHERE id = ?", [member]).fetchone()
        return member if consent and consent[0] else None

    def _arrival_of(self, member: str) -> int | None:
        since = format_ts(self._clock() - VISIT_WINDOW)
        with self.hub_store._lock:
            row = self.hub_store.db.execute(
                "SELECT id FROM arrivals WHERE customer_id = ? AND store = ? AND created_at >= ? "
                "ORDER BY id DESC LIMIT 1", [member, self.store, since]).fetchone()
        return row[0] if row else None

    def _product(self, gtin: Any) -> dict[str, Any] | None:
        if not isinstance(gtin, str) or not GTIN14.match(gtin):
            return None
        product = self.catalog.product(gtin, self.store)
        return {"gtin": gtin, "name": product["name"] if product else None}

    def _assist(self, event: Envelope, member: str | None, arrival_id: int | None) -> None:
        with self.hub_store._lock:
            cursor = self.hub_store.db.execute(
                "INSERT OR IGNORE INTO assists (event_id, store, device, gtin, member, arrival_id, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)", [event.id, self.store, event.device, event.data.get("gtin"), member,
                                                 arrival_id, format_ts(self._clock())])
        if cursor.rowcount != 1:
            return  # a redelivered event: already on the floor
        first_name = None
        if member:
            cached = self.hub_store.cached_profile(member)
            first_name = cached[0].get("first_name") if cached else None
        self._append("assist", {"assist_id": cursor.lastrowid, "kiosk": event.device,
                                "product": self._product(event.data.get("gtin")), "first_name": first_name,
                                "arrival_id": arrival_id, "answered_by": None},
                     arrival_id=arrival_id, customer_id=member)

    # --- what staff do
    def claim(self, arrival_id: int, staff: str) -> dict[str, Any]:
        """"I'm helping Jane": every tablet sees it at once. Claimed by someone else → 409."""
        with self.hub_store.transaction() as db:
            row = db.db.execute("SELECT claimed_by, customer_id FROM arrivals WHERE id = ? AND store = ?",
                                [arrival_id, self.store]).fetchone()
            if row is None:
                raise FloorError(404, "not_found", "no such arrival")
            if row[0] and row[0] != staff:
                raise FloorError(409, "claimed", f"{row[0]} is already helping this customer")
            db.db.execute("UPDATE arrivals SET claimed_by = ?, claimed_at = ? WHERE id = ?",
                          [staff, format_ts(self._clock()), arrival_id])
        return self._append("claim", {"arrival_id": arrival_id, "by": staff}, arrival_id=arrival_id,
                            customer_id=row[1] or None)

    def serve(self, arrival_id: int, staff: str) -> dict[str, Any]:
        with self.hub_store.transaction() as db:
            row = db.db.execute("SELECT customer_id FROM arrivals WHERE id = ? AND store = ?",
                                [arrival_id, self.store]).fetchone()
            if row is None:
                raise FloorError(404, "not_found", "no such arrival")
            db.db.execute("UPDATE arrivals SET served_by = ?, served_at = ?, claimed_by = coalesce(claimed_by, ?) "
                          "WHERE id = ?", [staff, format_ts(self._clock()), staff, arrival_id])
        return self._append("served", {"arrival_id": arrival_id, "by": staff}, arrival_id=arrival_id,
                            customer_id=row[0] or None)

    def answer_assist(self, assist_id: int, staff: str) -> dict[str, Any]:
        with self.hub_store.transaction() as db:
            row = db.db.execute("SELECT answered_by, arrival_id, member FROM assists WHERE id = ? AND store = ?",
                                [assist_id, self.store]).fetchone()
            if row is None:
                raise FloorError(404, "not_found", "no such call for help")
            if row[0] and row[0] != staff:
                raise FloorError(409, "answered", f"{row[0]} is already on the way")
            db.db.execute("UPDATE assists SET answered_by = ?, answered_at = ? WHERE id = ?",
                          [staff, format_ts(self._clock()), assist_id])
        return self._append("assist_answered", {"assist_id": assist_id, "by": staff}, arrival_id=row[1],
                            customer_id=row[2])

    def add_note(self, customer_id: str, staff: str, text: str) -> dict[str, Any]:
        text = (text or "").strip()
        if not 1 <= len(text) <= MAX_NOTE_CHARS:
            raise FloorError(400, "bad_note", f"a note is 1 to {MAX_NOTE_CHARS} characters")
        self._consenting_profile(customer_id)
        now = format_ts(self._clock())
        with self.hub_store._lock:
            cursor = self.hub_store.db.execute(
                "INSERT INTO notes (customer_id, text, author, created_at) VALUES (?, ?, ?, ?)",
                [customer_id, text, staff, now])
        note = {"id": cursor.lastrowid, "text": text, "by": staff, "at": now}
        self._append("note", {"customer_id": customer_id, "note": note}, customer_id=customer_id)
        return note

    def send_to_online(self, customer_id: str, gtin: str, where: str, staff: str, *, device: str = "") -> dict[str, Any]:
        """A product into the member's online cart or wishlist, queued until the online store takes it."""
        if where not in ("cart", "wishlist"):
            raise FloorError(400, "bad_request", "send to 'cart' or 'wishlist'")
        if not isinstance(gtin, str) or not GTIN14.match(gtin) or self.catalog.product(gtin, self.store) is None:
            raise FloorError(404, "not_found", "no such product in the catalog")
        self._consenting_profile(customer_id)
        key = str(uuid.uuid4())
        kind = "cart.add" if where == "cart" else "wishlist.add"
        self.updates.enqueue(key, kind, customer_id, {"gtin": gtin, "quantity": 1, "by": staff})
        status = self.pusher.push_now(key, 1.0) if self.pusher else "queued"
        if status == "refused":
            raise FloorError(409, "refused", "the online store refused it (unknown member or product)")
        self.hub_store.audit(staff, f"send_to_{where}", customer_id, gtin, device=device)
        return {"status": status}

    def _consenting_profile(self, customer_id: str) -> dict[str, Any]:
        cached = self.hub_store.cached_profile(customer_id)
        if cached is None:
            raise FloorError(404, "not_found", "no such member here")
        if not (cached[0].get("consent") or {}).get("clienteling", False):
            raise FloorError(403, "no_consent", "this member has not agreed to personal service")
        return cached[0]

    # --- the customer view
    def customer(self, customer_id: str, *, viewer: str, device: str) -> dict[str, Any] | None:
        """Everything staff may see of a member, and why each offer applies; the look is audited."""
        now = self._clock()
        profile, source, age = self.profiles.get(customer_id, now)
        if profile is None:
            return None
        self.hub_store.audit(viewer, "view_customer", customer_id, device=device)
        if not (profile.get("consent") or {}).get("clienteling", False):
            return {"consent": False, "customer": None, "profile_source": source, "profile_age_s": age,
                    "orders": [], "wishlist": [], "cart": {"items": [], "updated_at": None}, "recently_viewed": [],
                    "preferences": {}, "loyalty": None, "notes": [], "offers": [], "visit": None}
        wanted = offers.profile_gtins(profile)
        stock = self.catalog.stock_here(wanted, self.store)
        products = offers.offer_products(self.engine, profile, self.catalog, store=self.store, now=now)
        member_offers = self.engine.offers(profile, stock_here=stock, products=products, now=now,
                                           secret=self.offers_secret)
        keep = ("id", "first_name", "last_name", "tier", "points", "lifetime_value", "currency", "member_since")
        return {
            "consent": True, "customer": {key: profile.get(key) for key in keep},
            "profile_source": source, "profile_age_s": None if age is None else round(age),
            "orders": profile.get("orders", []),
            "wishlist": [{**item, "here": ({"quantity": stock[item["gtin"]]["quantity"],
                                            "location": stock[item["gtin"]].get("location")}
                                           if item.get("gtin") in stock else None)}
                         for item in profile.get("wishlist", [])],
            "cart": profile.get("cart") or {"items": [], "updated_at": None},
            "recently_viewed": profile.get("recently_viewed", []),
            "preferences": profile.get("preferences") or {},
            "loyalty": profile.get("loyalty") or {"tier": profile.get("tier"), "points": profile.get("points"),
                                                  "history": []},
            "notes": self.notes(customer_id),
            "offers": [{k: offer.get(k) for k in ("title", "text", "reason", "code", "valid_until", "percent")}
                       for offer in member_offers],
            "visit": self._visit(customer_id),
        }

    def notes(self, customer_id: str) -> list[dict[str, Any]]:
        with self.hub_store._lock:
            rows = self.hub_store.db.execute("SELECT id, text, author, created_at FROM notes WHERE customer_id = ? "
                                             "ORDER BY id DESC LIMIT 100", [customer_id]).fetchall()
        return [{"id": i, "text": text, "by": author, "at": at} for i, text, author, at in rows]

    def _visit(self, customer_id: str) -> dict[str, Any] | None:
        arrival_id = self._arrival_of(customer_id)
        if arrival_id is None:
            return None
        with self.hub_store._lock:
            arrival = self.hub_store.db.execute("SELECT scanned_at, device, claimed_by, served_by FROM arrivals "
                                                "WHERE id = ?", [arrival_id]).fetchone()
            activity = self.hub_store.db.execute(
                "SELECT id, data, created_at FROM floor_feed WHERE arrival_id = ? AND kind = 'activity' ORDER BY id",
                [arrival_id]).fetchall()
            assists = self.hub_store.db.execute(
                "SELECT id, device, gtin, answered_by FROM assists WHERE arrival_id = ? ORDER BY id",
                [arrival_id]).fetchall()
        return {"arrival_id": arrival_id, "started_at": arrival[0], "kiosks": [arrival[1]],
                "claimed_by": arrival[2], "served_by": arrival[3],
                "activity": [{"id": i, "at": at, **json.loads(data)} for i, data, at in activity],
                "assists": [{"assist_id": i, "kiosk": kiosk, "product": self._product(gtin), "answered_by": by}
                            for i, kiosk, gtin, by in assists]}

    # --- search
    def search(self, q: str, *, viewer: str) -> list[dict[str, Any]]:
        """A walk-in by name, email, phone or member id: the online store's search, else the hub's copy."""
        q = (q or "").strip()[:80]
        if len(q) < 2:
            raise FloorError(400, "bad_request", "type at least 2 characters")
        try:
            found = self.online.search_customers(q, limit=20)
        except OnlineStoreError:
            found = self._search_cached(q)
        self.hub_store.audit(viewer, "search_customers", f"{len(found)} results")
        return [self._found(c) for c in found]

    @staticmethod
    def _found(customer: dict[str, Any]) -> dict[str, Any]:
        """A search hit; a member without clienteling consent is only "a member matches", nothing about them."""
        if not (customer.get("consent") or {}).get("clienteling", False):
            return {"id": None, "first_name": None, "last_name": None, "tier": None, "email": None, "phone": None,
                    "consent": False}
        return {"id": customer.get("id"), "first_name": customer.get("first_name"),
                "last_name": customer.get("last_name"), "tier": customer.get("tier"),
                "email": mask_email(customer.get("email")), "phone": mask_phone(customer.get("phone")), "consent": True}

    def _search_cached(self, q: str) -> list[dict[str, Any]]:
        like = f"%{q.lower()}%"
        with self.hub_store._lock:
            rows = self.hub_store.db.execute(
                "SELECT profile FROM customers WHERE lower(id) LIKE ? OR lower(json_extract(profile, '$.first_name') "
                "|| ' ' || json_extract(profile, '$.last_name')) LIKE ? OR lower(json_extract(profile, '$.email')) "
                "LIKE ? OR json_extract(profile, '$.phone') LIKE ? LIMIT 20", [like, like, like, like]).fetchall()
        return [json.loads(row[0]) for row in rows]

    # --- IT: the fleet and its commands
    def devices(self) -> list[dict[str, Any]]:
        rows = [row for row in self.hub_store.devices() if row.get("store") == self.store]
        return fleet_health(rows, self.roster, self._clock())

    def send_command(self, device: str, command: str, args: dict[str, Any], staff: str, *,
                     from_device: str = "") -> dict[str, Any]:
        if device not in {row["id"] for row in self.hub_store.devices()}:
            if self.roster is not None and device in self.roster:
                # Nothing waits for a device that never connected: the broker would drop the command.
                raise FloorError(409, "never_seen", f"{device} is in the fleet file but has never come online; "
                                                    "send commands once it has")
            raise FloorError(404, "not_found", f"no device {device[:40]!r} in this store")
        if command not in COMMANDS:
            raise FloorError(400, "unknown_command", f"known commands: {', '.join(COMMANDS)}")
        problem = check_args(command, args if isinstance(args, dict) else {})
        if problem:
            raise FloorError(400, "bad_args", f"{command}: {problem}")
        now = self._clock()
        command_id = f"cmd-{now.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
        payload = command_payload(command_id, command, args, format_ts(now + timedelta(minutes=10)))
        with self.hub_store._lock:
            self.hub_store.db.execute("INSERT INTO commands (id, device, command, args, sent_by, sent_at) "
                                      "VALUES (?, ?, ?, ?, ?, ?)",
                                      [command_id, device, command, json.dumps(args), staff, format_ts(now)])
        if not self.publish_command(device, payload):
            raise FloorError(503, "not_connected", "the hub is not connected to the broker; try again")
        self.hub_store.audit(staff, "command", device, f"{command} {command_id}", device=from_device)
        return {"command_id": command_id}

    def command_result(self, command_id: str) -> dict[str, Any] | None:
        with self.hub_store._lock:
            row = self.hub_store.db.execute("SELECT id, device, command, sent_by, sent_at, result, result_at "
                                            "FROM commands WHERE id = ?", [command_id]).fetchone()
        if row is None:
            return None
        return {"command_id": row[0], "device": row[1], "command": row[2], "sent_by": row[3], "sent_at": row[4],
                "result": json.loads(row[5]) if row[5] else None, "result_at": row[6]}

    def _command_result(self, event: Envelope) -> None:
        with self.hub_store._lock:
            updated = self.hub_store.db.execute(
                "UPDATE commands SET result = ?, result_at = ? WHERE id = ? AND device = ? AND result IS NULL",
                [json.dumps(event.data), event.ts, event.data.get("command_id"), event.device]).rowcount
        if updated:
            self.emit("command_result", self.command_result(event.data["command_id"]), it_room(self.store))

    def audit_log(self, *, limit: int = 200, before: int | None = None) -> list[dict[str, Any]]:
        return self.hub_store.audit_log(limit=max(1, min(limit, 500)), before=before)
