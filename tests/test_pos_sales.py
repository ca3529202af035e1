"""Sales from the till: the CSV checked row by row, time zones, matching to members, the HTTP API on a
real server, the CLI end to end. Real SQLite files throughout."""

from __future__ import annotations

import csv
import io
import json
import socket
import subprocess
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import requests
from flask import Flask
from werkzeug.serving import make_server

from hub.activity import member_hash
from hub.config import load_config
from hub.pos_api import MAX_BODY_BYTES, NOT_CONFIGURED, PATH, register_pos_api
from hub.pos_sales import (
    BadRow,
    Sale,
    UnusableFile,
    import_sales,
    link_pending_sales,
    parse_amount,
    parse_sale_ts,
    read_sales_csv,
    sales_from_json,
    store_sales,
)
from hub.store import HubStore, open_hub_db
from protocol.settings import ConfigError

ROOT = Path(__file__).resolve().parents[1]
AMS = ZoneInfo("Europe/Amsterdam")
NOW = datetime(2026, 11, 2, 12, 0, tzinfo=timezone.utc)
EAN_13, UPC_A, EAN_8 = "4006381333931", "036000291452", "96385074"
HEADER = "sale_id,ts,gtin,quantity,amount,member_id,loyalty_number,currency\n"
KEY = b"till-key-0123456789abcdef"


@pytest.fixture
def hub_db(tmp_path) -> Path:
    path = tmp_path / "hub.db"
    HubStore(open_hub_db(path)).db.conn.close()  # migrations, 008_analytics has the sales tables
    return path


@pytest.fixture
def store(hub_db):
    hub = HubStore(open_hub_db(hub_db))
    yield hub
    hub.db.conn.close()


def sales_rows(hub: HubStore) -> dict[str, dict]:
    return {row["id"]: row for row in hub.db["sales"].rows_where(order_by="id")}


def lines_of(hub: HubStore, sale_id: str) -> list[tuple]:
    return hub.db.execute("SELECT gtin, quantity, amount FROM sale_lines WHERE sale_id = ? ORDER BY rowid",
                          [sale_id]).fetchall()


def cache_profile(hub: HubStore, member: str, loyalty: str) -> None:
    hub.cache_profile(member, {"id": member, "consent": {"clienteling": True},
                               "loyalty": {"number": loyalty, "tier": "gold", "points": 10}}, NOW.isoformat())


def run(text: str | bytes, hub: HubStore, **kw):
    data = text.encode() if isinstance(text, str) else text
    return import_sales(io.BytesIO(data), hub, tz=AMS, currency="EUR", now=NOW, **kw)


# --- values ------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, utc", [
    ("2026-03-14T15:04:05+01:00", "2026-03-14T14:04:05.000Z"),
    ("2026-06-01T10:00:00Z", "2026-06-01T10:00:00.000Z"),
    ("2026-06-01T10:00:00.250-04:00", "2026-06-01T14:00:00.250Z"),
    ("2026-01-15 09:30:00", "2026-01-15T08:30:00.000Z"),   # local, winter: +01:00
    ("2026-07-01T12:00", "2026-07-01T10:00:00.000Z"),      # local, summer: +02:00
    ("2026-03-29T01:59:59", "2026-03-29T00:59:59.000Z"),   # just before the clocks go forward
    ("2026-03-29T03:00:00", "2026-03-29T01:00:00.000Z"),   # just after
    ("2026-10-25T01:59:00", "2026-10-24T23:59:00.000Z"),   # before the hour that happens twice
    ("2026-10-25T03:00:00", "2026-10-25T02:00:00.000Z"),   # after it
    ("2026-10-25T02:30:00+01:00", "2026-10-25T01:30:00.000Z"),  # the second 02:30, with its offset: fine
])
def test_a_time_with_an_offset_is_converted_and_one_without_is_local_store_time(text, utc):
    assert parse_sale_ts(text, AMS) == utc


@pytest.mark.parametrize("text, reason", [
    ("2026-03-29T02:30:00", "does not exist in Europe/Amsterdam: the clocks skipped it"),
    ("2026-10-25T02:30:00", "happened twice in Europe/Amsterdam"),
    ("2026-03-14", "has no time of day"),
    ("14/03/2026 15:04", "is not an ISO 8601 time"),
    ("", "ts is empty"),
])
def test_a_local_time_at_a_clock_change_or_a_strange_one_is_refused(text, reason):
    with pytest.raises(ValueError, match=reason):
        parse_sale_ts(text, AMS)


@pytest.mark.parametrize("text, quantity, amount", [
    ("12.50", 1, "12.50"), ("12,5", 2, "12.50"), ("7", 1, "7.00"), ("-3,99", -1, "-3.99"), ("0", 1, "0.00"),
])
def test_amounts_take_a_point_or_a_comma(text, quantity, amount):
    assert str(parse_amount(text, quantity)) == amount


# --- the CSV -----------------------------------------------------------------------------------

def test_a_good_file_imports_each_sale_once_with_its_total_and_utc_time(store):
    text = (HEADER +
            f"T1-1,2026-03-14T15:04:05+01:00,{EAN_13},2,59.90,,,EUR\n"
            f"T1-1,2026-03-14T15:04:05+01:00,{UPC_A},1,12.50,,,\n"
            f"T1-2,2026-06-01T10:00:00Z,{EAN_8},1,5.00,,,\n"
            "\n"
            f"T1-3,2026-10-25 03:30:00,{EAN_13},3,89.85,,,\n"
            f"T1-4,2026-07-01T12:00:00,{EAN_13},-1,-29.95,,,\n")
    result = run(text, store)
    assert (result.rows, result.sales, result.imported, result.duplicates, result.bad) == (5, 4, 4, 0, 0)
    assert result.matched == {"member": 0, "loyalty": 0, "unmatched": 0, "anonymous": 4}
    rows = sales_rows(store)
    assert {k: (v["ts"], v["total"], v["status"]) for k, v in rows.items()} == {
        "pos:T1-1": ("2026-03-14T14:04:05.000Z", 72.4, "completed"),
        "pos:T1-2": ("2026-06-01T10:00:00.000Z", 5.0, "completed"),
        "pos:T1-3": ("2026-10-25T02:30:00.000Z", 89.85, "completed"),
        "pos:T1-4": ("2026-07-01T10:00:00.000Z", -29.95, "refunded"),
    }
    first = rows["pos:T1-1"]
    assert (first["origin"], first["channel"], first["currency"], first["customer"], first["loyalty"],
            first["received_at"]) == ("pos", "store", "EUR", None, None, "2026-11-02T12:00:00.000Z")
    assert lines_of(store, "pos:T1-1") == [("0" + EAN_13, 2, 59.9), ("00" + UPC_A, 1, 12.5)]
    assert lines_of(store, "pos:T1-2") == [("000000" + EAN_8, 1, 5.0)]


def test_a_semicolon_file_with_comma_decimals_and_a_bom_imports(store):
    text = ("\ufeffSALE_ID;Amount;Quantity;GTIN;TS\n"
            f"T9-1;19,99;1;{EAN_13};2026-02-02T10:00:00\n"
            f"T9-1;0,01;1;{EAN_8};2026-02-02T10:00:00\n")
    result = run(text.encode("utf-8"), store)
    assert (result.imported, result.bad) == (1, 0)
    assert sales_rows(store)["pos:T9-1"]["total"] == 20.0
    assert sales_rows(store)["pos:T9-1"]["ts"] == "2026-02-02T09:00:00.000Z"


@pytest.mark.parametrize("row, reason", [
    ("S,2026-01-01T10:00:00Z,4006381333932,1,1.00,,,", "gtin '4006381333932' has a wrong check digit"),
    ("S,2026-01-01T10:00:00Z,4.00638E+12,1,1.00,,,", "gtin '4.00638E+12' is not a number"),
    (f"S,2026-01-01T10:00:00Z,{EAN_13},0,0.00,,,", "quantity is 0"),
    (f"S,2026-01-01T10:00:00Z,{EAN_13},1.5,1.00,,,", "quantity '1.5' is not a whole number"),
    (f"S,2026-01-01T10:00:00Z,{EAN_13},1,\"1.234,50\",,,", "amount '1.234,50' is not a number"),
    (f"S,2026-01-01T10:00:00Z,{EAN_13},1,12.345,,,", "amount '12.345' has more than 2 decimals"),
    (f"S,2026-01-01T10:00:00Z,{EAN_13},1,€5,,,", "amount '€5' is not a number"),
    (f"S,2026-01-01T10:00:00Z,{EAN_13},1,-5.00,,,", "amount '-5.00' is negative but quantity 1 is not"),
    (f"S,2026-01-01T10:00:00Z,{EAN_13},-1,5.00,,,", "a return's amount is negative"),
    (f"S,2026-03-29T02:30:00,{EAN_13},1,1.00,,,", "ts '2026-03-29T02:30:00' does not exist in Europe/Amsterdam"),
    (f"S,2026-10-25T02:30:00,{EAN_13},1,1.00,,,", "ts '2026-10-25T02:30:00' happened twice in Europe/Amsterdam"),
    (f"S,yesterday,{EAN_13},1,1.00,,,", "ts 'yesterday' is not an ISO 8601 time"),
    (f"S,2026-01-01T10:00:00Z,{EAN_13},1,1.00,,,USD", "currency USD is not the store's EUR"),
    (f"S,2026-01-01T10:00:00Z,{EAN_13},1,1.00,,,euro", "currency 'euro' is not a currency code"),
    (f"S,2026-01-01T10:00:00Z,{EAN_13},1,1.00,M 1,,", "member_id 'M 1' is not a member id"),
    (f"S/1,2026-01-01T10:00:00Z,{EAN_13},1,1.00,,,", "sale_id 'S/1' is not a sale id"),
    (f",2026-01-01T10:00:00Z,{EAN_13},1,1.00,,,", "sale_id is empty"),
    (f"S,2026-01-01T10:00:00Z,{EAN_13},1", "expected 8 values"),
])
def test_each_bad_row_is_reported_with_its_line_and_reason_and_the_others_import(store, row, reason, tmp_path):
    text = HEADER + f"G-1,2026-01-01T10:00:00Z,{EAN_13},1,1.00,,,\n" + row + "\n" + \
        f"G-2,2026-01-01T10:00:00Z,{EAN_13},1,1.00,,,\n"
    report = io.StringIO()
    result = run(text, store, report=report)
    assert (result.imported, result.bad) == (2, 1)
    assert result.first_bad[0].line == 3 and reason in result.first_bad[0].reason, result.first_bad[0].reason
    assert set(sales_rows(store)) == {"pos:G-1", "pos:G-2"}
    reported = list(csv.reader(io.StringIO(report.getvalue())))
    assert reported[0][:3] == ["line", "reason", "sale_id"] and reported[1][0] == "3" and reason in reported[1][1]


def test_a_sale_with_one_bad_line_is_not_imported_and_its_other_lines_say_why(store):
    text = (HEADER + f"B-1,2026-01-01T10:00:00Z,{EAN_13},1,1.00,,,\n"
            f"B-1,2026-01-01T10:00:00Z,{EAN_13},x,1.00,,,\n"
            f"B-1,2026-01-01T10:00:00Z,{EAN_8},1,1.00,,,\n")
    result = run(text, store)
    assert (result.imported, result.bad) == (0, 3)
    assert [row.line for row in result.first_bad] == [2, 3, 4]
    assert "quantity 'x' is not a whole number" in result.first_bad[1].reason
    assert result.first_bad[0].reason.startswith("sale B-1 has a bad line (line 3: quantity 'x'")
    assert sales_rows(store) == {}


def test_a_short_row_refuses_its_sale_too(store):
    text = HEADER + f"B-2,2026-01-01T10:00:00Z,{EAN_13},1,1.00,,,\nB-2,2026-01-01T10:00:00Z,{EAN_13}\n"
    result = run(text, store)
    assert (result.imported, result.bad) == (0, 2)
    assert result.first_bad[0].reason.startswith("sale B-2 has a bad line (line 3: expected 8 values")


@pytest.mark.parametrize("second, column", [
    (f"C-1,2026-01-01T10:00:01Z,{EAN_8},1,1.00,M0001,,", "ts"),
    (f"C-1,2026-01-01T10:00:00Z,{EAN_8},1,1.00,M0002,,", "member_id"),
    (f"C-1,2026-01-01T10:00:00Z,{EAN_8},1,1.00,,,", "member_id"),
    (f"C-1,2026-01-01T10:00:00Z,{EAN_8},1,1.00,M0001,L-77,", "loyalty_number"),
])
def test_lines_of_one_sale_that_disagree_make_every_line_of_it_bad(store, second, column):
    text = (HEADER + f"C-1,2026-01-01T10:00:00Z,{EAN_13},1,1.00,M0001,,\n"
            f"OK-1,2026-01-01T10:00:00Z,{EAN_13},1,1.00,,,\n" + second + "\n")
    result = run(text, store)
    assert (result.imported, result.bad) == (1, 2)
    assert [row.line for row in result.first_bad] == [2, 4]
    assert all(f"sale C-1 is ambiguous: its lines disagree on {column}" in row.reason for row in result.first_bad)
    assert set(sales_rows(store)) == {"pos:OK-1"}


def test_lines_of_a_sale_need_not_be_next_to_each_other(store):
    text = (HEADER + f"A,2026-01-01T10:00:00Z,{EAN_13},1,1.00,,,\nB,2026-01-01T10:00:00Z,{EAN_13},1,2.00,,,\n"
            f"A,2026-01-01T10:00:00Z,{EAN_8},1,3.00,,,\n")
    run(text, store)
    assert {k: v["total"] for k, v in sales_rows(store).items()} == {"pos:A": 4.0, "pos:B": 2.0}


def test_importing_the_same_file_again_imports_nothing_new(store):
    text = HEADER + f"R-1,2026-01-01T10:00:00Z,{EAN_13},1,1.00,,,\nR-2,2026-01-01T10:00:00Z,{EAN_13},1,1.00,,,\n"
    assert run(text, store).imported == 2
    again = run(text, store)
    assert (again.imported, again.duplicates, again.bad) == (0, 2, 0)
    assert store.db.execute("SELECT count(*) FROM sale_lines").fetchone()[0] == 2


def test_a_dry_run_counts_the_same_and_writes_nothing(store):
    text = HEADER + f"D-1,2026-01-01T10:00:00Z,{EAN_13},1,1.00,m0001,,\n"
    result = run(text, store, dry_run=True)
    assert (result.imported, result.matched["member"], result.dry_run) == (1, 1, True)
    assert result.summary().startswith("dry run, nothing written: 1 sales would be imported")
    assert sales_rows(store) == {}


@pytest.mark.parametrize("text, message", [
    ("", "the file is empty"),
    (f"T1,2026-01-01T10:00:00Z,{EAN_13},1,1.00\n", "no header: line 1 looks like data"),
    ("sale_id,when,gtin,quantity,amount\n", "unknown column 'when'"),
    (f"{EAN_13},1\n", "no header"),
    ("sale_id,ts,gtin,quantity\n", "the header has no amount column"),
    ("sale_id,ts,gtin,quantity,amount,amount\n", "column 'amount' appears twice"),
])
def test_an_unusable_file_raises_before_anything_is_written(store, text, message):
    with pytest.raises(UnusableFile, match=message):
        run(text, store)


def test_the_reader_keeps_memory_flat_grouping_a_large_file_on_disk(store):
    rows = "".join(f"L-{n // 3},2026-01-01T10:00:00Z,{EAN_13},1,1.00,,,\n" for n in range(30_000))
    result = run(HEADER + rows, store)
    assert (result.rows, result.imported, result.bad) == (30_000, 10_000, 0)
    assert store.db.execute("SELECT count(*), sum(total) FROM sales").fetchone() == (10_000, 30_000.0)


# --- matching to members -----------------------------------------------------------------------

def test_a_member_id_links_the_sale_as_spelled_and_keeps_the_loyalty_number(store):
    """Member ids are the online store's and opaque: never re-cased (c-7f3a and C-7F3A are two members)."""
    run(HEADER + f"M-1,2026-01-01T10:00:00Z,{EAN_13},1,1.00,c-7f3a,L-1,\n", store)
    row = sales_rows(store)["pos:M-1"]
    assert (row["customer"], row["loyalty"]) == ("c-7f3a", "L-1")


def test_a_loyalty_number_links_through_a_cached_profile_and_an_unknown_one_waits(store):
    cache_profile(store, "M0002", "L-2002")
    text = (HEADER + f"Y-1,2026-01-01T10:00:00Z,{EAN_13},1,1.00,,L-2002,\n"
            f"Y-2,2026-01-01T10:00:00Z,{EAN_13},1,1.00,,L-3003,\n"
            f"Y-3,2026-01-01T10:00:00Z,{EAN_13},1,1.00,,,\n"
            f"Y-4,2026-01-01T10:00:00Z,{EAN_13},1,1.00,M0001,,\n")
    result = run(text, store)
    assert result.matched == {"member": 1, "loyalty": 1, "unmatched": 1, "anonymous": 1}
    rows = sales_rows(store)
    assert (rows["pos:Y-1"]["customer"], rows["pos:Y-1"]["loyalty"]) == ("M0002", "L-2002")
    assert (rows["pos:Y-2"]["customer"], rows["pos:Y-2"]["loyalty"]) == (None, "L-3003")
    assert link_pending_sales(store) == 0
    cache_profile(store, "M0003", "L-3003")  # the profile arrives later
    assert link_pending_sales(store) == 1
    assert sales_rows(store)["pos:Y-2"]["customer"] == "M0003"
    assert link_pending_sales(store) == 0


def test_an_erased_member_is_never_linked(store):
    store.erase_member("M0009", now=NOW)
    store.db.execute("INSERT INTO erased_members VALUES (?, ?)", [member_hash("M0010"), "2026-01-01T00:00:00.000Z"])
    # A profile the hub still has of a member erased since (a stale copy): its loyalty number links nobody.
    store.db.execute("INSERT INTO customers VALUES ('M0010', ?, '2026-01-01')",
                     [json.dumps({"loyalty": {"number": "L-10"}})])
    text = (HEADER + f"E-1,2026-01-01T10:00:00Z,{EAN_13},1,1.00,M0009,L-9,\n"
            f"E-2,2026-01-01T10:00:00Z,{EAN_13},1,1.00,,L-10,\n")
    result = run(text, store)
    assert result.matched == {"member": 0, "loyalty": 0, "unmatched": 1, "anonymous": 1}
    rows = sales_rows(store)
    assert (rows["pos:E-1"]["customer"], rows["pos:E-1"]["loyalty"]) == (None, None)
    assert rows["pos:E-2"]["customer"] is None
    assert link_pending_sales(store) == 0
    assert sales_rows(store)["pos:E-2"]["customer"] is None


def test_an_erased_members_loyalty_number_is_forgotten_on_waiting_and_later_sales(store):
    """The online store erases M0007 while a till sale with their card number waits for a match, and
    another arrives after: neither keeps the number, and nobody who gets the card next inherits them."""
    run(HEADER + f"W-1,2026-01-01T10:00:00Z,{EAN_13},1,1.00,,L-77,\n", store)  # no profile yet: waits
    cache_profile(store, "M0007", "L-77")
    store.erase_member("M0007", now=NOW)
    assert (sales_rows(store)["pos:W-1"]["customer"], sales_rows(store)["pos:W-1"]["loyalty"]) == (None, None)
    result = run(HEADER + f"W-2,2026-01-02T10:00:00Z,{EAN_13},1,1.00,,L-77,\n", store)
    assert result.matched["anonymous"] == 1 and sales_rows(store)["pos:W-2"]["loyalty"] is None
    cache_profile(store, "M0008", "L-77")  # the card number given to someone else
    assert link_pending_sales(store) == 0


def test_link_pending_sales_works_on_a_bare_database_too(hub_db):
    db = open_hub_db(hub_db)
    sale = Sale(id="X-1", ts="2026-01-01T10:00:00.000Z", currency="EUR", lines=(), loyalty_number="L-5")
    store_sales(db, [sale], now=NOW)
    db.execute("INSERT INTO customers VALUES ('M0005', ?, '2026-01-01')", [json.dumps({"loyalty": {"number": "L-5"}})])
    assert link_pending_sales(db) == 1
    assert db.execute("SELECT customer FROM sales").fetchone()[0] == "M0005"
    db.conn.close()


# --- JSON ----------------------------------------------------------------------------------------

def json_sale(sale_id: str, **extra) -> dict:
    return {"id": sale_id, "ts": "2026-05-05T12:00:00+02:00",
            "lines": [{"gtin": EAN_13, "quantity": 2, "amount": 19.9}, {"gtin": UPC_A, "quantity": 1, "amount": "5,05"}],
            **extra}


def test_json_sales_are_checked_like_csv_rows():
    parsed = sales_from_json(json.dumps({"sales": [
        json_sale("J-1", member_id="M0001"), json_sale("J-2", currency="USD"),
        {**json_sale("J-3"), "lines": [{"gtin": 4006381333931, "quantity": 1, "amount": 1}]},
        json_sale("J-4", ts="2026-03-29T02:30:00"), json_sale("J-5", lines=[]), "nonsense",
        json_sale("J-6"), json_sale("J-6"),
        {**json_sale("J-7"), "lines": [{"gtin": EAN_13, "quantity": 1, "amount": 0.1 + 0.2}]},
    ]}), tz=AMS, currency="EUR")
    good = [p for p in parsed if isinstance(p, Sale)]
    assert [s.id for s in good] == ["J-1"] and str(good[0].total) == "24.95" and good[0].member_id == "M0001"
    assert good[0].ts == "2026-05-05T10:00:00.000Z"
    bad = {p.index: p.rejection() for p in parsed if isinstance(p, BadRow)}
    assert bad[1] == {"id": "J-2", "index": 1, "reason": "currency USD is not the store's EUR"}
    assert "line 1: gtin must be a string" in bad[2]["reason"]
    assert "does not exist in Europe/Amsterdam" in bad[3]["reason"]
    assert "lines must be a non-empty list" in bad[4]["reason"]
    assert bad[5] == {"id": None, "index": 5, "reason": "a sale must be a JSON object"}
    assert "appears more than once" in bad[6]["reason"] and "appears more than once" in bad[7]["reason"]
    assert "at most 2 decimals" in bad[8]["reason"]


# --- HTTP on a real server ---------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def serve(hub_db):
    servers = []

    def start(api_key: bytes | None = KEY, use_store: bool = True):
        app = Flask(__name__)
        hub = HubStore(open_hub_db(hub_db))
        api = register_pos_api(app, open_db=hub if use_store else (lambda: open_hub_db(hub_db)), api_key=api_key,
                               tz=AMS, currency="EUR", store="s001", clock=lambda: NOW)
        server = make_server("127.0.0.1", free_port(), app, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append((server, hub))
        return f"http://127.0.0.1:{server.server_port}{PATH}", api, hub

    yield start
    for server, hub in servers:
        server.shutdown()
        hub.db.conn.close()


def post(url: str, body, *, key: bytes | None = KEY, content_type: str = "application/json") -> requests.Response:
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    headers = {"Content-Type": content_type}
    if key is not None:
        headers["Authorization"] = "Bearer " + key.decode()
    return requests.post(url, data=data, headers=headers, timeout=10)


def test_the_api_refuses_without_the_key_and_when_unconfigured(serve):
    url, api, _ = serve()
    for key in (None, b"wrong"):
        answer = post(url, {"sales": [json_sale("A-1")]}, key=key)
        assert answer.status_code == 401 and answer.headers["WWW-Authenticate"].startswith('Bearer realm="')
        assert answer.json()["error"]["code"] == "unauthorized"
    assert api.counters["unauthorized"] == 2
    answer = requests.post(url, json={"sales": []}, headers={"Authorization": f"Basic {KEY.decode()}"}, timeout=10)
    assert answer.status_code == 401
    off, _, _ = serve(api_key=None)
    answer = post(off, {"sales": [json_sale("A-1")]})
    assert answer.status_code == 503 and answer.json()["error"]["message"] == NOT_CONFIGURED


def test_the_api_imports_counts_duplicates_and_lists_what_it_rejected(serve):
    url, api, hub = serve()
    cache_profile(hub, "M0002", "L-2002")
    body = {"sales": [json_sale("H-1", member_id="M0001"), json_sale("H-2", loyalty_number="L-2002"),
                      json_sale("H-3", currency="USD")]}
    answer = post(url, body)
    assert answer.status_code == 200
    assert answer.json() == {"imported": 2, "duplicates": 0, "bad": 1,
                             "matched": {"member": 1, "loyalty": 1, "unmatched": 0, "anonymous": 0},
                             "rejected": [{"id": "H-3", "index": 2, "reason": "currency USD is not the store's EUR"}]}
    assert {k: (v["customer"], v["total"]) for k, v in sales_rows(hub).items()} == {
        "pos:H-1": ("M0001", 24.95), "pos:H-2": ("M0002", 24.95)}
    again = post(url, body)  # the till resends after a timeout: nothing twice
    assert again.status_code == 200 and (again.json()["imported"], again.json()["duplicates"]) == (0, 2)
    assert hub.db.execute("SELECT count(*) FROM sale_lines").fetchone()[0] == 4
    assert (api.counters["imported"], api.counters["duplicates"], api.counters["bad"]) == (2, 2, 2)
    assert ("omnikiosk_hub_pos_sales_total", "POS sales received over HTTP by outcome (bad: sales or CSV rows)",
            {"outcome": "imported"}, 2) in api.metrics()


def test_the_api_takes_the_csv_too(serve):
    url, _, hub = serve(use_store=False)
    text = HEADER + f"K-1,2026-01-01T10:00:00,{EAN_13},1,\"2,50\",,,\nK-2,2026-01-01T10:00:00Z,{EAN_13},x,1,,,\n"
    answer = post(url, text.encode(), content_type="text/csv; charset=utf-8")
    assert answer.status_code == 200
    assert answer.json()["rejected"] == [{"line": 3, "reason": "quantity 'x' is not a whole number"}]
    assert sales_rows(hub)["pos:K-1"]["ts"] == "2026-01-01T09:00:00.000Z"


@pytest.mark.parametrize("body, content_type, status, code", [
    (b"{not json", "application/json", 400, "unreadable"),
    (b'{"orders": []}', "application/json", 400, "unreadable"),
    (b"hello", "text/plain", 400, "unreadable"),
    (b"", "text/csv", 400, "unreadable"),
    (b"x" * (MAX_BODY_BYTES + 1), "application/json", 413, "too_large"),
    (json.dumps({"sales": [json_sale(f"T-{n}") for n in range(1001)]}).encode(), "application/json", 413,
     "too_many_sales"),
    (("sale_id,ts,gtin,quantity,amount\n" + "".join(f"C-{n},2026-01-01T10:00:00Z,{EAN_13},1,1.00\n"
                                                     for n in range(1001))).encode(), "text/csv", 413,
     "too_many_sales"),
])
def test_the_api_refuses_an_unreadable_or_too_large_body(serve, body, content_type, status, code):
    url, api, hub = serve()
    answer = post(url, body, content_type=content_type)
    assert answer.status_code == status and answer.json()["error"]["code"] == code, answer.text
    assert sales_rows(hub) == {} and api.counters["unreadable"] == 1


def test_the_api_answers_422_when_every_sale_is_bad(serve):
    url, _, hub = serve()
    answer = post(url, {"sales": [json_sale("Z-1", currency="USD"), json_sale("Z-2", ts="soon")]})
    assert answer.status_code == 422
    assert [r["id"] for r in answer.json()["rejected"]] == ["Z-1", "Z-2"] and answer.json()["imported"] == 0
    assert sales_rows(hub) == {}


def test_the_api_with_flasks_test_client_needs_no_csrf_token_of_its_own(hub_db):
    app = Flask(__name__)
    hub = HubStore(open_hub_db(hub_db))
    register_pos_api(app, open_db=hub, api_key=KEY, tz=AMS, currency="EUR", store="s001")
    answer = app.test_client().post(PATH, json={"sales": [json_sale("F-1")]},
                                    headers={"Authorization": "Bearer " + KEY.decode()})
    assert answer.status_code == 200 and answer.json["imported"] == 1
    hub.db.conn.close()


# --- settings and the command ------------------------------------------------------------------

@pytest.fixture
def config(tmp_path, hub_db) -> Path:
    (tmp_path / "secret").write_text("x")
    path = tmp_path / "hub.toml"
    path.write_text(f'store = "s001"\ndemo = true\ntimezone = "Europe/Amsterdam"\n'
                    f'[mqtt]\npassword_file = "{tmp_path / "secret"}"\n'
                    f'[online]\nbase_url = "http://127.0.0.1:9/"\napi_key_file = "{tmp_path / "secret"}"\n'
                    f'[db]\npath = "{hub_db}"\n')
    return path


def test_a_short_pos_key_is_refused_at_start(config, tmp_path):
    from hub.config import load_config
    from hub.pos_api import MIN_KEY_CHARS, pos_api_key
    from protocol.settings import ConfigError
    key = tmp_path / "pos.key"
    key.write_text("letmein\n")
    with pytest.raises(ConfigError, match=f"at least {MIN_KEY_CHARS}"):
        pos_api_key(load_config(config, environ={"OMNIKIOSK_POS_API_KEY_FILE": str(key)}))
    key.write_text("k" * MIN_KEY_CHARS + "\n")
    assert pos_api_key(load_config(config, environ={"OMNIKIOSK_POS_API_KEY_FILE": str(key)})) == b"k" * MIN_KEY_CHARS


def test_the_settings_check_the_time_zone_and_currency(config, tmp_path):
    loaded = load_config(config, environ={})
    assert (loaded["timezone"], loaded["analytics.currency"], loaded["pos.api_key_file"]) == (
        "Europe/Amsterdam", "EUR", "")
    with pytest.raises(ConfigError, match="timezone = 'Mars/Olympus' is not a time zone"):
        load_config(config, environ={"OMNIKIOSK_TIMEZONE": "Mars/Olympus"})
    with pytest.raises(ConfigError, match="analytics.currency = 'euro' is not a currency code"):
        load_config(config, environ={"OMNIKIOSK_ANALYTICS_CURRENCY": "euro"})


def sales_command(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hub", "import-sales", *map(str, args)], capture_output=True,
                          text=True, cwd=ROOT, timeout=120)


def test_the_command_imports_reports_and_a_second_run_finds_only_duplicates(tmp_path, config, hub_db):
    path = tmp_path / "sales.csv"
    path.write_text(HEADER + f"P-1,2026-10-25T03:30:00,{EAN_13},1,9.99,M0001,,\n"
                    f"P-2,2026-10-25T02:30:00,{EAN_13},1,9.99,,,\n", encoding="utf-8")
    report = tmp_path / "bad.csv"
    done = sales_command(path, "--config", config, "--report", report)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ("imported 1 sales (1 by member id, 0 by loyalty number, 0 loyalty number unknown, "
                           "0 anonymous), 0 duplicates, 1 bad rows\n")
    assert "line 3: ts '2026-10-25T02:30:00' happened twice in Europe/Amsterdam" in done.stderr
    assert len(list(csv.reader(report.open()))) == 2
    hub = HubStore(open_hub_db(hub_db))
    assert sales_rows(hub)["pos:P-1"]["ts"] == "2026-10-25T02:30:00.000Z"
    hub.db.conn.close()
    again = sales_command(path, "--config", config)
    assert again.returncode == 0 and ", 1 duplicates, 1 bad rows" in again.stdout


def test_the_command_dry_run_stores_nothing(tmp_path, config, hub_db):
    path = tmp_path / "sales.csv"
    path.write_text(HEADER + f"Q-1,2026-01-01T10:00:00Z,{EAN_13},1,9.99,,,\n")
    done = sales_command(path, "--config", config, "--dry-run")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("dry run, nothing written: 1 sales would be imported")
    hub = HubStore(open_hub_db(hub_db))
    assert sales_rows(hub) == {}
    hub.db.conn.close()


@pytest.mark.parametrize("text, status, message", [
    (None, 2, "no such file"),
    ("gtin,quantity\n", 2, "the header has no sale_id or ts or amount column"),
    (HEADER + f"W-1,2026-01-01T10:00:00Z,{EAN_13},1,9.99,,,USD\n", 3, "nothing imported: every row is bad"),
])
def test_the_command_exits_non_zero_when_nothing_can_be_imported(tmp_path, config, text, status, message):
    path = tmp_path / "sales.csv"
    if text is not None:
        path.write_text(text)
    done = sales_command(path, "--config", config)
    assert done.returncode == status and message in done.stderr, done.stderr


def test_the_command_has_help_with_an_example():
    done = subprocess.run([sys.executable, "-m", "hub", "import-sales", "--help"], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)
    assert done.returncode == 0 and "example" in done.stdout and "sale_id,ts,gtin,quantity,amount" in done.stdout


def test_the_reader_takes_a_text_stream_and_yields_sales_then_bad_rows():
    text = HEADER + f"V-1,2026-01-01T10:00:00Z,{EAN_13},1,1.00,,,\nV-2,2026-01-01T10:00:00Z,{EAN_13},1,1.00,,,GBP\n"
    parsed = list(read_sales_csv(io.StringIO("\ufeff" + text), tz=AMS, currency="EUR"))
    assert [type(p) for p in parsed] == [Sale, BadRow]
    assert parsed[0].lines[0].line == 2 and parsed[1].line == 3 and parsed[1].sale_id == "V-2"
