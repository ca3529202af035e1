"""Envelope validation: every kind of bad envelope gets its own reason."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone

import pytest

from protocol.envelope import MAX_ENVELOPE_BYTES, REJECTION_REASONS, make_envelope, parse_envelope, uuid7

NOW = datetime(2026, 11, 22, 10, 15, 3, 120000, tzinfo=timezone.utc)


def good(**changes):
    envelope = json.loads(make_envelope(store="s001", device="s001-k01", type="scan.member", seq=7, now=NOW,
                                        data={"session": "s", "member": "M0001", "jti": "j", "typ": "app"}).to_json())
    envelope.update(changes)
    return envelope


def raw(obj) -> bytes:
    return json.dumps(obj).encode()


def test_valid_envelope_round_trips():
    parsed = parse_envelope(raw(good()), topic_store="s001", topic_device="s001-k01")
    assert parsed and parsed.seq == 7 and parsed.type == "scan.member" and parsed.ts == "2026-11-22T10:15:03.120Z"


def test_uuid7_has_version_7_and_sorts_by_time():
    earlier, later = uuid7(NOW), uuid7(NOW.replace(second=4))
    assert uuid.UUID(earlier).version == 7 and uuid.UUID(earlier).variant == uuid.RFC_4122
    assert earlier < later


@pytest.mark.parametrize("payload, reason", [
    (b"x" * (MAX_ENVELOPE_BYTES + 1), "too_large"),
    (b"\xff\xfe", "not_utf8"),
    (b"{not json", "not_json"),
    (b"[1, 2]", "not_an_object"),
    (raw(good(v=2)), "unknown_version"),
    (raw({k: v for k, v in good().items() if k != "v"}), "missing_field"),
    (raw({k: v for k, v in good().items() if k != "seq"}), "missing_field"),
    (raw(good(seq="7")), "bad_field"),
    (raw(good(seq=True)), "bad_field"),
    (raw(good(v=True)), "bad_field"),
    (raw(good(seq=0)), "bad_field"),
    (raw(good(id="not-a-uuid")), "bad_field"),
    (raw(good(ts="2026-11-22 10:15")), "bad_field"),
    (raw(good(device="S001/K01")), "bad_field"),
    (raw(good(data=[])), "bad_field"),
    (raw(good(extra=1)), "bad_field"),
    (raw(good(type="scan.teleport")), "unknown_type"),
    (raw(good(data={"session": "s"})), "bad_data"),
    (raw(good(device="s001-k02")), "device_mismatch"),
    (raw(good(store="s002")), "store_mismatch"),
])
def test_each_bad_envelope_gets_its_reason(payload, reason):
    rejection = parse_envelope(payload, topic_store="s001", topic_device="s001-k01")
    assert not rejection and rejection.reason == reason
    assert reason in REJECTION_REASONS


def test_rejection_detail_never_echoes_the_payload():
    secret = "eyJhbGciOiJFZERTQSJ9.secret-member-token"
    rejection = parse_envelope(raw(good(type=secret)), topic_store="s001", topic_device="s001-k01")
    assert rejection.reason == "unknown_type" and "secret-member-token" not in rejection.detail


def test_make_envelope_refuses_programming_errors():
    with pytest.raises(ValueError, match="bad_data"):
        make_envelope(store="s001", device="s001-k01", type="scan.member", seq=1, data={}, now=NOW)
