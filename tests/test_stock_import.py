"""Stock counts from the till into the hub's catalog: checked row by row, one catalog version, the CLI end to end."""

from __future__ import annotations

import copy
import csv
import io
import subprocess
import sys
from pathlib import Path

import pytest

from demo import seed
from demo.catalog_feed import catalog_feed
from edge_agent.catalog import CatalogCache
from edge_agent.outbox import open_device_db
from hub.catalog import HubCatalog
from hub.stock_import import (
    StockCount,
    UnusableFile,
    import_stock,
    normalise_gtin,
    parse_quantity,
    progress_text,
    read_counts,
    read_header,
)
from hub.store import HubStore, open_hub_db
from protocol.catalog import stock_key

ROOT = Path(__file__).resolve().parents[1]
UPC_A, EAN_8 = "036000291452", "96385074"  # valid codes whose GTIN-14s start with zeros


@pytest.fixture(scope="module")
def demo_feed():
    feed = catalog_feed(seed.build())
    # Products printed with a UPC-A and an EAN-8 label, as some suppliers' are.
    for code, name in ((UPC_A, "Imported sneaker"), (EAN_8, "Small socks")):
        feed["products"].append({"gtin": code.zfill(14), "name": name, "price": 9.95, "category": "shoes"})
        feed["stock"].append({"gtin": code.zfill(14), "store": "s001", "quantity": 1, "location": "Aisle 9"})
    return feed


@pytest.fixture
def feed(demo_feed):
    return copy.deepcopy(demo_feed)


@pytest.fixture
def hub_db(tmp_path, feed) -> Path:
    path = tmp_path / "hub.db"
    HubStore(open_hub_db(path)).db.conn.close()
    catalog = HubCatalog(open_hub_db(path))
    catalog.apply_feed(feed)
    catalog.db.conn.close()
    return path


@pytest.fixture
def hub(hub_db):
    catalog = HubCatalog(open_hub_db(hub_db))
    yield catalog
    catalog.db.conn.close()


def held(feed: dict, store: str = "s001") -> list[dict]:
    return [s for s in feed["stock"] if s["store"] == store]


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def ean13(gtin14: str) -> str:
    return gtin14[1:]


def sync_all(hub: HubCatalog, device: CatalogCache) -> list[dict]:
    since, cursor = device.resume_point()
    changes = []
    while True:
        page = hub.changes(since, cursor, 200)
        device.apply_page(page, since=since)
        changes += page["changes"]
        cursor = page["next_cursor"]
        if cursor is None:
            return changes


# --- reading values ---------------------------------------------------------------------------

@pytest.mark.parametrize("code, gtin14", [
    ("4006381333931", "04006381333931"), ("04006381333931", "04006381333931"), (UPC_A, "00036000291452"),
    (EAN_8, "00000096385074"), (" 4006381333931 ", "04006381333931"),
])
def test_ean13_upca_ean8_and_gtin14_become_gtin14(code, gtin14):
    assert normalise_gtin(code) == gtin14


@pytest.mark.parametrize("code, reason", [
    ("", "gtin is empty"),
    ("4006381333932", "gtin '4006381333932' has a wrong check digit (the last digit should be 1)"),
    ("4.00638E+12", "is not a number"),
    ("400638133393", "has a wrong check digit"),
    ("40063813339", "gtin '40063813339' has 11 digits; expected 8 (EAN-8), 12 (UPC-A), 13 (EAN-13), 14 (GTIN-14)"),
    ("４００６３８１３３３９３１", "is not a number"),
])
def test_a_gtin_that_is_not_one_says_why(code, reason):
    with pytest.raises(ValueError) as refused:
        normalise_gtin(code)
    assert reason in str(refused.value)


@pytest.mark.parametrize("text, outcome", [
    ("0", 0), (" 12 ", 12), ("+3", 3), ("-1", "quantity -1 is negative"),
    ("2.5", "quantity '2.5' is not a whole number"),
    ("", "quantity is empty"), ("lots", "is not a whole number"), ("99999999999", "a typo?"),
])
def test_a_quantity_is_a_whole_number_from_zero(text, outcome):
    if isinstance(outcome, int):
        assert parse_quantity(text) == outcome
    else:
        with pytest.raises(ValueError, match=outcome.replace("?", r"\?").replace(".", r"\.")):
            parse_quantity(text)


@pytest.mark.parametrize("header, message", [
    (["4006381333931", "s001", "3"], "no header: line 1 looks like data"),
    (["gtin", "qty"], "unknown column 'qty' in the header"),
    (["gtin", "store"], "the header has no quantity column"),
    (["gtin", "quantity", "GTIN"], "column 'gtin' appears twice"),
])
def test_a_header_we_cannot_use_makes_the_file_unusable(header, message):
    with pytest.raises(UnusableFile, match=message):
        read_header(header)


def test_columns_may_come_in_any_order_and_in_any_case():
    assert read_header([" Quantity", "GTIN ", "location"]) == {"quantity": 0, "gtin": 1, "location": 2}


def rows(text: str, store: str = "s001") -> list:
    return [parsed for parsed, _ in read_counts(io.BytesIO(text.encode("utf-8")), store=store)]


def test_semicolons_a_byte_order_mark_blank_lines_and_quoted_line_breaks_are_read_with_true_line_numbers():
    text = ("\ufeffgtin;quantity;location\r\n"
            "\r\n"
            "4006381333931;3;\"Shoes,\naisle 4\"\r\n"
            ";;\r\n"
            "036000291452;1;\r\n")
    assert rows(text) == [StockCount(3, "04006381333931", "s001", 3, "Shoes,\naisle 4"),
                          StockCount(6, "00036000291452", "s001", 1, None)]


def test_the_hubs_store_fills_an_absent_or_empty_store():
    assert [r.store for r in rows("gtin,store,quantity\n4006381333931,,1\n4006381333931,s002,1\n", store="s009")] \
        == ["s009", "s002"]
    assert rows("gtin,quantity\n4006381333931,1\n", store="s009")[0].store == "s009"


def test_progress_shows_a_bar_the_share_of_bytes_and_rows_per_second():
    assert progress_text(90_000, 38, 100, 2.0, width=10) == "[####......]  38% · 90,000 rows · 45,000 rows/s"
    assert progress_text(0, 0, 0, 0.0, width=4) == "[####] 100% · 0 rows · 0 rows/s"


# --- importing -------------------------------------------------------------------------------

def test_a_good_file_changes_exactly_the_changed_rows_in_one_version(tmp_path, hub, feed):
    device = CatalogCache(open_device_db(tmp_path / "catalog.db"))
    sync_all(hub, device)
    same, recounted, moved, elsewhere = held(feed)[:4]
    path = write_csv(tmp_path / "pos.csv", "gtin,store,quantity,location\n"
                     f"{ean13(same['gtin'])},s001,{same['quantity']},\n"                    # unchanged
                     f"{ean13(recounted['gtin'])},,{recounted['quantity'] + 5},\n"          # hub's store, new count
                     f"{moved['gtin']},s001,{moved['quantity']},Window display\n"           # new location
                     f"{ean13(elsewhere['gtin'])},s002,77,\n"                               # another store
                     f"{UPC_A},s001,1,Aisle 9\n"                                            # UPC-A, unchanged
                     f"{EAN_8},s001,4,\n")                                                  # EAN-8, new count
    result = import_stock(path, hub, store="s001")
    assert (result.rows, result.imported, result.changed, result.bad, result.version) == (6, 6, 4, 0, 2)
    assert result.summary() == "imported 6 rows, 4 changed, 0 bad; catalog version 2"
    changes = sync_all(hub, device)
    assert sorted(c["key"] for c in changes) == sorted([
        stock_key(recounted["gtin"], "s001"), stock_key(moved["gtin"], "s001"), stock_key(elsewhere["gtin"], "s002"),
        stock_key(EAN_8.zfill(14), "s001")])
    assert {c["version"] for c in changes} == {2}
    assert device.product(recounted["gtin"], "s001")["stock"]["here"] == {
        "quantity": recounted["quantity"] + 5, "location": recounted["location"]}  # empty location kept
    assert device.product(moved["gtin"], "s001")["stock"]["here"]["location"] == "Window display"
    assert device.product(EAN_8.zfill(14), "s001")["stock"]["here"] == {"quantity": 4, "location": "Aisle 9"}
    assert import_stock(path, hub, store="s001").changed == 0  # the same file again changes nothing
    device.db.conn.close()


def test_bad_rows_are_skipped_and_each_reported_with_its_line_and_reason(tmp_path, hub, feed):
    good = held(feed)[0]
    path = write_csv(tmp_path / "pos.csv", "gtin,store,quantity,location\n"
                     "4006381333932,s001,3,\n"          # 2: check digit
                     "40063813339,s001,3,\n"            # 3: length
                     f"{good['gtin']},s001,-2,\n"       # 4: negative
                     f"{good['gtin']},s001,2.5,\n"      # 5: not whole
                     f"{good['gtin']},Store 1,3,\n"     # 6: store id
                     f"{good['gtin']},s001\n"           # 7: missing values
                     "4006381333931,s001,3,\n"          # 8: valid code, not in the catalog
                     f"{good['gtin']},s001,{good['quantity'] + 1},\n")  # 9: the good one
    result = import_stock(path, hub, store="s001")
    assert [(b.line, b.reason) for b in result.first_bad] == [
        (2, "gtin '4006381333932' has a wrong check digit (the last digit should be 1)"),
        (3, "gtin '40063813339' has 11 digits; expected 8 (EAN-8), 12 (UPC-A), 13 (EAN-13), 14 (GTIN-14)"),
        (4, "quantity -2 is negative"),
        (5, "quantity '2.5' is not a whole number"),
        (6, "store 'Store 1' is not a store id (lower-case letters, digits and hyphens, e.g. s001)"),
        (7, "expected 4 values (gtin, store, quantity, location), found 2"),
        (8, "unknown product: the catalog has no product 04006381333931"),
    ]
    assert (result.imported, result.changed, result.bad, result.version) == (1, 1, 7, 2)


def test_a_gtin_and_store_on_several_lines_is_applied_from_none_of_them(tmp_path, hub, feed):
    row, other = held(feed)[:2]
    path = write_csv(tmp_path / "pos.csv", "gtin,quantity\n"
                     f"{row['gtin']},{row['quantity'] + 1}\n"
                     f"{other['gtin']},{other['quantity'] + 1}\n"
                     f"{ean13(row['gtin'])},{row['quantity'] + 2}\n")
    result = import_stock(path, hub, store="s001")
    assert [(b.line, b.reason) for b in result.first_bad] == [
        (2, f"duplicate: {row['gtin']} in store s001 appears again later in the file; none of its lines is applied"),
        (4, f"duplicate: {row['gtin']} in store s001 is also on line 2; none of its lines is applied"),
    ]
    assert (result.imported, result.changed, result.bad) == (1, 1, 2)
    assert hub.product(row["gtin"], "s001")["stock"]["here"]["quantity"] == row["quantity"]


def test_a_dry_run_reports_what_would_change_and_writes_nothing(tmp_path, hub, feed):
    row = held(feed)[0]
    path = write_csv(tmp_path / "pos.csv", f"gtin,quantity\n{row['gtin']},{row['quantity'] + 1}\n1234,1\n")
    written = hub.db.conn.total_changes
    result = import_stock(path, hub, store="s001", dry_run=True)
    assert (result.imported, result.changed, result.bad, result.version) == (1, 1, 1, 1)
    assert result.summary() == ("dry run, nothing written: 1 rows would be imported, 1 would change, 1 bad; "
                                "catalog version stays 1")
    assert hub.db.conn.total_changes == written and hub.version == 1


def test_the_report_holds_every_bad_row_in_line_order_while_the_result_shows_the_first_twenty(tmp_path, hub, feed):
    row = held(feed)[0]
    lines = [f"{row['gtin']},s001,-{n}," for n in range(1, 31)] + ["4006381333931,s001,1,"]
    path = write_csv(tmp_path / "pos.csv", "gtin,store,quantity,location\n" + "\n".join(lines) + "\n")
    report = io.StringIO()
    result = import_stock(path, hub, store="s001", report=report)
    assert result.bad == 31 and len(result.first_bad) == 20 and result.first_bad[-1].line == 21
    written = list(csv.reader(io.StringIO(report.getvalue())))
    assert written[0] == ["line", "reason", "gtin", "store", "quantity", "location"]
    assert [int(r[0]) for r in written[1:]] == list(range(2, 33))
    assert written[1] == ["2", "quantity -1 is negative", row["gtin"], "s001", "-1", ""]
    assert written[-1][1].startswith("unknown product")


@pytest.mark.parametrize("text, message", [
    ("", "the file is empty"),
    ("\n\n", "the file is empty"),
    ("4006381333931,s001,3\n", "no header"),
    ("gtin,store,qty\n4006381333931,s001,3\n", "unknown column 'qty'"),
])
def test_an_unusable_file_is_refused_before_anything_is_written(tmp_path, hub, text, message):
    written = hub.db.conn.total_changes
    with pytest.raises(UnusableFile, match=message):
        import_stock(write_csv(tmp_path / "pos.csv", text), hub, store="s001")
    assert hub.db.conn.total_changes == written


def test_a_200000_row_file_imports_in_one_version(tmp_path, hub, feed):
    """A chain-wide export: every product in 313 stores, with two bad rows deep inside."""
    gtins = [p["gtin"] for p in feed["products"]][:640]
    before = {(s["gtin"], s["store"]): s["quantity"] for s in feed["stock"]}
    path = tmp_path / "chain.csv"
    expected_changes, line = 0, 1
    with path.open("w", encoding="utf-8") as out:
        out.write("gtin,store,quantity\n")
        for store_number in range(1, 314):
            store = f"s{store_number:03d}"
            for n, gtin in enumerate(gtins):
                line += 1
                if line == 100_001:
                    out.write("4006381333932,s001,1\n")
                    continue
                quantity = (n * 7 + store_number) % 17
                expected_changes += before.get((gtin, store)) != quantity
                out.write(f"{gtin},{store},{quantity}\n")
        out.write("4006381333931,s001,1\n")
    progress = []
    result = import_stock(path, hub, store="s001", progress=lambda rows, done: progress.append((rows, done)))
    assert result.rows == 200_321 and result.bad == 2
    assert [(b.line, b.reason.split(":")[0]) for b in result.first_bad] == [
        (100_001, "gtin '4006381333932' has a wrong check digit (the last digit should be 1)"),
        (200_322, "unknown product")]
    assert (result.imported, result.changed, result.version) == (200_319, expected_changes, 2)
    at_two = hub.db.execute("SELECT count(*) FROM catalog_rows WHERE version = 2").fetchone()[0]
    assert at_two == expected_changes
    assert progress[-1] == (200_321, path.stat().st_size) and len(progress) > 50
    assert [r for r, _ in progress] == sorted(r for r, _ in progress)


# --- the command ------------------------------------------------------------------------------

@pytest.fixture
def config(tmp_path, hub_db) -> Path:
    (tmp_path / "secret").write_text("x")
    path = tmp_path / "hub.toml"
    path.write_text(f'store = "s001"\ndemo = true\n[mqtt]\npassword_file = "{tmp_path / "secret"}"\n'
                    f'[online]\nbase_url = "http://127.0.0.1:9/"\napi_key_file = "{tmp_path / "secret"}"\n'
                    f'[db]\npath = "{hub_db}"\n')
    return path


def import_command(*args, cwd=ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hub", "import-stock", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=120)


def test_the_command_imports_prints_bad_rows_and_a_summary_and_exits_0(tmp_path, config, hub_db, feed):
    row = held(feed)[0]
    path = write_csv(tmp_path / "pos.csv", f"gtin,quantity\n{row['gtin']},{row['quantity'] + 3}\n12345678,1\n")
    done = import_command(path, "--config", config)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "imported 1 rows, 1 changed, 1 bad; catalog version 2\n"
    assert "line 3: gtin '12345678' has a wrong check digit" in done.stderr
    assert "\r" not in done.stderr  # no progress bar when stderr is not a terminal
    catalog = HubCatalog(open_hub_db(hub_db))
    assert catalog.product(row["gtin"], "s001")["stock"]["here"]["quantity"] == row["quantity"] + 3
    catalog.db.conn.close()


def test_the_command_dry_run_writes_nothing_and_report_lists_every_bad_row(tmp_path, config, hub_db, feed):
    row = held(feed)[0]
    body = "".join(f"{row['gtin']},-{n}\n" for n in range(1, 26))
    path = write_csv(tmp_path / "pos.csv", f"gtin,quantity\n{body}")
    report = tmp_path / "bad.csv"
    done = import_command(path, "--config", config, "--dry-run", "--report", report)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("dry run, nothing written: 0 rows would be imported, 0 would change, 25 bad")
    assert done.stderr.count("\nline ") + done.stderr.startswith("line ") == 20
    assert f"… and 5 more bad rows; all of them are in {report}" in done.stderr
    assert len(list(csv.reader(report.open()))) == 26
    catalog = HubCatalog(open_hub_db(hub_db))
    assert catalog.version == 1
    catalog.db.conn.close()


@pytest.mark.parametrize("text, message", [
    (None, "no such file"), ("4006381333931,s001,3\n", "no header"), ("gtin,shop,quantity\n", "unknown column 'shop'"),
])
def test_the_command_exits_2_when_the_file_is_unusable(tmp_path, config, text, message):
    path = tmp_path / "pos.csv"
    if text is not None:
        write_csv(path, text)
    done = import_command(path, "--config", config)
    assert done.returncode == 2 and message in done.stderr and f"{path}: not imported" in done.stderr
    assert done.stdout == ""


def test_the_command_has_help_with_an_example():
    done = subprocess.run([sys.executable, "-m", "hub", "import-stock", "--help"], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)
    assert done.returncode == 0 and "example" in done.stdout and "gtin,store,quantity,location" in done.stdout
