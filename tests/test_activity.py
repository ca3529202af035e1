"""In-store activity at the hub: visits, what is queued for the online store, and privacy (consent, erasure),
on a real hub database."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from hub.activity import KIND_ACTIVITY, close_visits, member_hash, track
from hub.store import HubStore, open_hub_db
from protocol.envelope import format_ts, make_envelope

NOW = datetime(2026, 11, 29, 10, 0, tzinfo=timezone.utc)
CONSENTING = {"id": "M0001", "first_name": "Jane", "consent": {"clienteling": True, "marketing": True}}
PRIVATE = {"id": "M0002", "first_name": "Sam", "consent": {"clienteling": False, "marketing": False}}


@pytest.fixture
def hub(tmp_path):
    return HubStore(open_hub_db(tmp_path / "hub.db"))


class Kiosk:
    def __init__(self, device="s001-k01"):
        self.device, self.seq = device, 0

    def event(self, event_type, data, at=NOW):
        self.seq += 1
        return make_envelope(store="s001", device=self.device, type=event_type, seq=self.seq, data=data, now=at)


def ingest(hub, events, now=NOW):
    """What the ingest writer does: insert, then track, in one transaction."""
    with hub.transaction() as db:
        for event in events:
            db.insert_event(event, format_ts(now))
        return track(db.db, events, store="s001", now=now)


def updates(hub, kind=None):
    rows = hub.db.execute("SELECT key, kind, customer_id, payload FROM online_updates ORDER BY created_at, key").fetchall()
    return [(k, kd, c, json.loads(p)) for k, kd, c, p in rows if kind in (None, kd)]


def member_of(hub, event):
    row = hub.db.execute("SELECT json_extract(data, '$.member') FROM events WHERE id = ?", [event.id]).fetchone()
    return row[0]


def a_visit(kiosk, member="M0001", session="s1", at=NOW):
    return [kiosk.event("session.started", {"session": session}, at),
            kiosk.event("scan.member", {"session": session, "member": member, "jti": f"j-{session}", "typ": "app"}, at),
            kiosk.event("scan.product", {"session": session, "gtin": "04006381333931", "source": "ean13"}, at),
            kiosk.event("session.ended", {"session": session, "reason": "done"}, at + timedelta(minutes=2))]


def test_a_consenting_members_visit_is_queued_once_it_is_over_with_start_end_and_kiosks(hub):
    hub.cache_profile("M0001", CONSENTING, format_ts(NOW))
    first, second = Kiosk("s001-k01"), Kiosk("s001-k02")
    ingest(hub, a_visit(first, session="s1"))
    ingest(hub, a_visit(second, session="s2", at=NOW + timedelta(minutes=5)))
    with hub.transaction() as db:
        assert close_visits(db.db, now=NOW + timedelta(minutes=20), gap_s=1800) == 0  # still in the store
    with hub.transaction() as db:
        assert close_visits(db.db, now=NOW + timedelta(minutes=60), gap_s=1800) == 1
    (visit,) = [u for u in updates(hub, KIND_ACTIVITY) if u[3]["type"] == "visit"]
    key, _, customer, payload = visit
    assert customer == "M0001" and key.startswith("visit:")
    assert payload["data"]["kiosks"] == ["s001-k01", "s001-k02"]
    assert payload["data"]["started_at"] == format_ts(NOW)
    assert payload["data"]["ended_at"] == format_ts(NOW + timedelta(minutes=7))
    scans = [u for u in updates(hub, KIND_ACTIVITY) if u[3]["type"] == "scan.product"]
    assert len(scans) == 2 and {u[2] for u in scans} == {"M0001"}


def test_a_member_without_clienteling_consent_is_never_linked_to_what_they_do(hub):
    hub.cache_profile("M0002", PRIVATE, format_ts(NOW))
    kiosk = Kiosk()
    events = a_visit(kiosk, member="M0002")
    done = ingest(hub, events)
    assert done["anonymous"] == 1 and done["visits_opened"] == 0
    assert member_of(hub, events[1]) is None
    assert hub.db.execute("SELECT count(*) FROM visits").fetchone()[0] == 0
    assert {u[2] for u in updates(hub)} == {""}  # the scan still goes online, anonymously
    assert hub.db.execute("SELECT type, count FROM anonymous_counts").fetchall() == [("scan.member", 1)]


def test_learning_later_that_a_member_did_not_consent_unlinks_what_was_stored(hub):
    kiosk = Kiosk()
    events = a_visit(kiosk, member="M0002")
    ingest(hub, events)                    # no profile yet: linked for now
    assert member_of(hub, events[1]) == "M0002"
    hub.cache_profile("M0002", PRIVATE, format_ts(NOW))  # the arrival desk fetched it: no consent
    assert member_of(hub, events[1]) is None
    assert hub.db.execute("SELECT count(*) FROM visits").fetchone()[0] == 0
    assert hub.db.execute("SELECT count(*) FROM online_updates WHERE customer_id = 'M0002'").fetchone()[0] == 0


def test_a_cart_line_is_queued_with_the_event_keyed_by_its_id(hub):
    hub.cache_profile("M0001", CONSENTING, format_ts(NOW))
    kiosk = Kiosk()
    cart = kiosk.event("cart.sent", {"session": "s1", "gtin": "04006381333931", "member": "M0001"})
    ingest(hub, a_visit(kiosk)[:2] + [cart])
    assert [(k, c) for k, kd, c, _ in updates(hub, "cart.add")] == [(cart.id, "M0001")]
    ingest(hub, [cart])  # a redelivery queues nothing new
    assert len(updates(hub, "cart.add")) == 1


def test_an_erased_member_leaves_nothing_personal_behind(hub):
    hub.cache_profile("M0001", CONSENTING, format_ts(NOW))
    kiosk = Kiosk()
    events = a_visit(kiosk)
    ingest(hub, events)
    hub.add_arrival(event_id=events[1].id, store="s001", device="s001-k01", customer_id="M0001", jti="j-s1",
                    scanned_at=events[1].ts, late=False, payload={"customer": {"id": "M0001"}})
    hub.audit("maria", "view_profile", "M0001")
    removed = hub.erase_member("M0001", now=NOW)
    assert removed["events"] == 1 and removed["arrivals"] == 1 and removed["profiles"] == 1
    assert hub.cached_profile("M0001") is None
    left = json.dumps(hub.db.execute("SELECT * FROM events").fetchall()) + json.dumps(
        hub.db.execute("SELECT * FROM audit_log").fetchall()) + json.dumps(
        hub.db.execute("SELECT * FROM online_updates WHERE done_at IS NULL").fetchall())
    assert "M0001" not in left
    assert hub.db.execute("SELECT member_hash FROM erased_members").fetchone()[0] == member_hash("M0001")
    # A late event naming them (a kiosk that was offline) is kept anonymous; the profile is not cached again.
    late = Kiosk("s001-k02").event("scan.member", {"session": "s9", "member": "M0001", "jti": "j9", "typ": "app"})
    ingest(hub, [late])
    assert member_of(hub, late) is None
    assert hub.cache_profile("M0001", CONSENTING, format_ts(NOW)) is False
