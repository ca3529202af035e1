"""Stock counts from the till (POS) into the catalog: a CSV streamed, checked row by row, applied as one version.

The file has a header naming its columns, in any order: `gtin`, `quantity`, and optionally
`store` and `location`. A comma separates values; a file whose header has semicolons (or tabs)
and no comma uses those (spreadsheets in much of Europe save CSV that way). UTF-8, with or
without a byte order mark.

- `gtin`: EAN-13, UPC-A, EAN-8 or GTIN-14 with a valid check digit; stored as GTIN-14.
- `store`: a store id (`s001`); absent or empty → the hub's own store.
- `quantity`: a whole number, 0 or more.
- `location`: where the product is in the store; absent or empty keeps the location the catalog has.

A row that fails a check is skipped and reported with its line number and reason; the others
are imported. A gtin+store that appears on more than one line is ambiguous (which count is
right?), so none of its lines is applied and each is reported. A product the catalog does not
have is a bad row too (`unknown product`): stock of a product no screen can show helps nobody.

The good rows wait in a temporary SQLite file, not in memory, so a file of any length imports
in constant memory; then they go to `HubCatalog.update_stock` in one transaction, where only
rows whose quantity or location changed get the new catalog version.
"""

from __future__ import annotations

import csv
import re
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Iterator, Mapping, TextIO

from hub.catalog import HubCatalog
from protocol.codes import gtin_check_digit
from protocol.envelope import ID_PATTERN

COLUMNS = ("gtin", "store", "quantity", "location")
REQUIRED_COLUMNS = ("gtin", "quantity")
SHOWN_BAD_ROWS = 20
MAX_QUANTITY = 10_000_000
MAX_LOCATION = 100
REPORT_COLUMNS = ("line", "reason", *COLUMNS)
PROGRESS_EVERY_ROWS = 2000
_SHOWN_VALUE = 40  # characters of a bad value quoted in a reason
_GTIN_LENGTHS = {8: "EAN-8", 12: "UPC-A", 13: "EAN-13", 14: "GTIN-14"}
_WHOLE = re.compile(r"[+-]?[0-9]+")


class UnusableFile(Exception):
    """The file cannot be imported at all: missing, empty, no header, wrong columns."""


@dataclass(frozen=True)
class StockCount:
    """One good row: a count of a product in a store."""
    line: int
    gtin: str
    store: str
    quantity: int
    location: str | None


@dataclass(frozen=True)
class BadRow:
    """A skipped row: its line in the file, why, and the values it had (by column name)."""
    line: int
    reason: str
    values: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ImportResult:
    rows: int              # data rows read (blank lines not counted)
    imported: int          # rows applied to the catalog, changed or not
    changed: int           # rows whose quantity or location changed
    bad: int               # rows skipped
    first_bad: list[BadRow]
    version: int           # the catalog version afterwards
    dry_run: bool = False

    def summary(self) -> str:
        if self.dry_run:
            return (f"dry run, nothing written: {self.imported} rows would be imported, {self.changed} would change, "
                    f"{self.bad} bad; catalog version stays {self.version}")
        return f"imported {self.imported} rows, {self.changed} changed, {self.bad} bad; catalog version {self.version}"


# --- pure: reading values -------------------------------------------------------------------

def normalise_gtin(text: str) -> str:
    """An EAN-13, UPC-A, EAN-8 or GTIN-14 as GTIN-14; ValueError saying what is wrong."""
    digits = text.strip()
    if not digits:
        raise ValueError("gtin is empty")
    if not digits.isascii() or not digits.isdigit():
        raise ValueError(f"gtin {_quoted(digits)} is not a number (a spreadsheet may have written it as 4.0E+12: "
                         "format the column as text)")
    if len(digits) not in _GTIN_LENGTHS:
        kinds = ", ".join(f"{n} ({name})" for n, name in _GTIN_LENGTHS.items())
        raise ValueError(f"gtin {_quoted(digits)} has {len(digits)} digits; expected {kinds}")
    expected = gtin_check_digit(digits[:-1])
    if int(digits[-1]) != expected:
        raise ValueError(f"gtin {_quoted(digits)} has a wrong check digit (the last digit should be {expected})")
    # Checked just above; protocol.codes.to_gtin14 would check it again, at a cost 200,000 rows notice.
    return digits.zfill(14)


def parse_quantity(text: str) -> int:
    """A count on the shelf: a whole number from 0; ValueError saying what is wrong."""
    value = text.strip()
    if not value:
        raise ValueError("quantity is empty")
    if not _WHOLE.fullmatch(value):
        raise ValueError(f"quantity {_quoted(value)} is not a whole number")
    quantity = int(value)
    if quantity < 0:
        raise ValueError(f"quantity {quantity} is negative")
    if quantity > MAX_QUANTITY:
        raise ValueError(f"quantity {quantity} is more than {MAX_QUANTITY:,}: a typo?")
    return quantity


def read_header(cells: list[str], columns_allowed: tuple[str, ...] = COLUMNS,
                required: tuple[str, ...] = REQUIRED_COLUMNS, usage: str = "") -> dict[str, int]:
    """Column name → position; UnusableFile when the first line is not a header we can use.
    Also the till's sales file's (hub.pos_sales), with its own columns."""
    names = [cell.strip().lower() for cell in cells]
    usage = "the first line must name the columns: " + (usage or f"{','.join(COLUMNS[:3])}[,{COLUMNS[3]}]")
    if any(name.isdigit() and len(name) >= 8 for name in names):
        raise UnusableFile(f"no header: line 1 looks like data; {usage}")
    columns: dict[str, int] = {}
    for position, name in enumerate(names):
        if name not in columns_allowed:
            raise UnusableFile(f"unknown column {name[:_SHOWN_VALUE]!r} in the header; {usage}")
        if name in columns:
            raise UnusableFile(f"column {name!r} appears twice in the header")
        columns[name] = position
    missing = [name for name in required if name not in columns]
    if missing:
        raise UnusableFile(f"the header has no {' or '.join(missing)} column; {usage}")
    return columns


def parse_row(cells: list[str], columns: Mapping[str, int], *, line: int, store: str) -> StockCount | BadRow:
    """One data row as a stock count, or the reason it cannot be one. `store` fills an absent or empty store."""
    values = {name: cells[i].strip()[:_SHOWN_VALUE * 2] for name, i in columns.items() if i < len(cells)}
    extra = cells[len(columns):]
    if len(cells) < len(columns) or any(cell.strip() for cell in extra):
        return BadRow(line, f"expected {len(columns)} values ({', '.join(columns)}), found {len(cells)}", values)
    try:
        gtin = normalise_gtin(values["gtin"])
        quantity = parse_quantity(values["quantity"])
    except ValueError as exc:
        return BadRow(line, str(exc), values)
    row_store = values.get("store") or store
    if not ID_PATTERN.match(row_store):
        return BadRow(line, f"store {_quoted(row_store)} is not a store id (lower-case letters, digits and "
                            "hyphens, e.g. s001)", values)
    location = cells[columns["location"]].strip() if "location" in columns else ""
    if len(location) > MAX_LOCATION:
        return BadRow(line, f"location is longer than {MAX_LOCATION} characters", values)
    return StockCount(line, gtin, row_store, quantity, location or None)


def progress_text(rows: int, done_bytes: int, total_bytes: int, seconds: float, width: int = 24) -> str:
    """One line of progress, e.g. `[#########...............]  38% · 90,000 rows · 51,000 rows/s`."""
    share = min(1.0, done_bytes / total_bytes) if total_bytes else 1.0
    filled = round(share * width)
    rate = rows / seconds if seconds > 0 else 0.0
    return f"[{'#' * filled}{'.' * (width - filled)}] {100 * share:3.0f}% · {rows:,} rows · {rate:,.0f} rows/s"


def _quoted(value: str) -> str:
    return repr(value if len(value) <= _SHOWN_VALUE else value[:_SHOWN_VALUE] + "…")


# --- reading the file -------------------------------------------------------------------------

class _Lines:
    """The file's lines as text, counting the bytes read so far (progress is a share of the file's bytes)."""

    def __init__(self, stream: BinaryIO):
        self.stream, self.bytes, self._first = stream, 0, True

    def __iter__(self) -> Iterator[str]:
        for raw in self.stream:
            self.bytes += len(raw)
            # A stray non-UTF-8 byte spoils one value, which then fails its check: not the whole file.
            text = raw.decode("utf-8", errors="replace")
            if self._first:
                text, self._first = text.removeprefix("\ufeff"), False
            yield text


def _delimiter(header: str) -> str:
    for candidate in (";", "\t"):
        if candidate in header and "," not in header:
            return candidate
    return ","


def read_counts(stream: BinaryIO, *, store: str) -> Iterator[tuple[StockCount | BadRow, int]]:
    """Each data row of a CSV, parsed, with the bytes read so far; UnusableFile before the first
    row when the header cannot be used. Blank lines are skipped but counted, so line numbers are
    what an editor shows; a row with a quoted line break is numbered by its first line."""
    lines = _Lines(stream)
    source = iter(lines)
    header_number = 0
    for header_line in source:
        header_number += 1
        if header_line.strip(" ,;\t\r\n"):
            break
    else:
        raise UnusableFile(f"the file is empty; the first line must name the columns: {','.join(COLUMNS[:3])}"
                           f"[,{COLUMNS[3]}]")
    delimiter = _delimiter(header_line)
    try:
        cells = next(csv.reader([header_line], delimiter=delimiter))
    except csv.Error as exc:  # e.g. a lone carriage return inside the header line
        raise UnusableFile(f"the header (line {header_number}) is unreadable CSV ({exc})") from None
    columns = read_header(cells)
    reader = csv.reader(source, delimiter=delimiter)
    while True:
        first_line = header_number + reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # e.g. a NUL byte: that row is bad, the rest may be fine
            yield BadRow(first_line, f"unreadable CSV ({exc})"), lines.bytes
            continue
        if any(cell.strip() for cell in cells):
            yield parse_row(cells, columns, line=first_line, store=store), lines.bytes


# --- the import ---------------------------------------------------------------------------------

def import_stock(path: str | Path, catalog: HubCatalog, *, store: str, dry_run: bool = False,
                 now: datetime | None = None, report: TextIO | None = None,
                 progress: Callable[[int, int], None] | None = None) -> ImportResult:
    """Import a stock CSV into `catalog` as one version. `store` fills rows without one; `report`
    receives every bad row as CSV (line, reason, the row's values), in line order; `progress` is
    called now and then with (rows read, bytes read). UnusableFile when the file cannot be
    imported at all; nothing is written then, nor on a dry run."""
    try:
        stream = open(path, "rb")
    except OSError as exc:
        raise UnusableFile(f"{path}: cannot read it ({exc.strerror})") from None
    with stream, _Staging() as staging:
        rows, done = 0, 0
        for parsed, done in read_counts(stream, store=store):
            rows += 1
            if isinstance(parsed, BadRow):
                staging.bad(parsed)
            else:
                staging.count(parsed)
            if progress is not None and rows % PROGRESS_EVERY_ROWS == 0:
                progress(rows, done)
        if progress is not None:
            progress(rows, done)
        staging.refuse_duplicates()
        imported = 0

        def counts() -> Iterator[dict[str, Any]]:
            nonlocal imported
            for count in staging.counts():
                imported += 1
                yield count

        def unknown(row: Mapping[str, Any]) -> None:
            nonlocal imported
            imported -= 1
            staging.bad(BadRow(row["line"], f"unknown product: the catalog has no product {row['gtin']}",
                               {"gtin": row["gtin"], "store": row["store"], "quantity": str(row["quantity"]),
                                "location": row["location"] or ""}))

        version, changed = catalog.update_stock(counts(), now=now, dry_run=dry_run, on_unknown=unknown)
        staging.done()
        if report is not None:
            write_report(report, staging.bad_rows())
        return ImportResult(rows=rows, imported=imported, changed=changed, bad=staging.bad_count(),
                            first_bad=list(islice(staging.bad_rows(), SHOWN_BAD_ROWS)), version=version,
                            dry_run=dry_run)


def write_report(out: TextIO, bad: Iterable[BadRow]) -> None:
    """Bad rows as CSV: line, reason and the row's values, for whoever fixes the till's export."""
    writer = csv.writer(out)
    writer.writerow(REPORT_COLUMNS)
    for row in bad:
        writer.writerow([row.line, row.reason, *(row.values.get(c, "") for c in COLUMNS)])


class _Staging:
    """The rows between reading and applying, in a temporary SQLite file (gone when closed), so
    memory does not grow with the file; duplicates of a gtin+store are found by its primary key."""

    def __init__(self):
        # "" is a private temporary database on disk, deleted when the connection closes.
        self.conn = sqlite3.connect("", isolation_level=None)
        self.conn.execute("CREATE TABLE counts (key TEXT PRIMARY KEY, line INTEGER NOT NULL, gtin TEXT NOT NULL,"
                          " store TEXT NOT NULL, quantity INTEGER NOT NULL, location TEXT,"
                          " duplicate INTEGER NOT NULL DEFAULT 0)")
        self.conn.execute("CREATE TABLE bad (line INTEGER NOT NULL, reason TEXT NOT NULL, gtin TEXT, store TEXT,"
                          " quantity TEXT, location TEXT)")
        self.conn.execute("BEGIN")

    def __enter__(self) -> "_Staging":
        return self

    def __exit__(self, *_: Any) -> None:
        self.conn.close()

    def count(self, count: StockCount) -> None:
        key = f"{count.gtin}/{count.store}"
        inserted = self.conn.execute("INSERT OR IGNORE INTO counts VALUES (?, ?, ?, ?, ?, ?, 0)",
                                     [key, count.line, count.gtin, count.store, count.quantity, count.location])
        if inserted.rowcount == 0:
            (first,) = self.conn.execute("SELECT line FROM counts WHERE key = ?", [key]).fetchone()
            self.conn.execute("UPDATE counts SET duplicate = 1 WHERE key = ?", [key])
            self.bad(BadRow(count.line, f"duplicate: {count.gtin} in store {count.store} is also on line {first}; "
                                        "none of its lines is applied",
                            {"gtin": count.gtin, "store": count.store, "quantity": str(count.quantity),
                             "location": count.location or ""}))

    def bad(self, row: BadRow) -> None:
        self.conn.execute("INSERT INTO bad VALUES (?, ?, ?, ?, ?, ?)",
                          [row.line, row.reason, *(row.values.get(c) for c in COLUMNS)])

    def refuse_duplicates(self) -> None:
        """The first line of a duplicated gtin+store is refused too: which of its counts is right is unknown."""
        self.conn.execute(
            "INSERT INTO bad SELECT line, 'duplicate: ' || gtin || ' in store ' || store || ' appears again later in "
            "the file; none of its lines is applied', gtin, store, CAST(quantity AS TEXT), coalesce(location, '') "
            "FROM counts WHERE duplicate = 1")
        self.conn.execute("DELETE FROM counts WHERE duplicate = 1")

    def counts(self) -> Iterator[dict[str, Any]]:
        # A cursor of its own: `unknown` writes to `bad` while this one is still being read.
        rows = self.conn.cursor().execute("SELECT line, gtin, store, quantity, location FROM counts ORDER BY key")
        for line, gtin, store, quantity, location in rows:
            yield {"line": line, "gtin": gtin, "store": store, "quantity": quantity, "location": location}

    def done(self) -> None:
        self.conn.execute("COMMIT")

    def bad_rows(self) -> Iterator[BadRow]:
        for line, reason, *values in self.conn.execute("SELECT * FROM bad ORDER BY line, rowid"):
            yield BadRow(line, reason, {c: v for c, v in zip(COLUMNS, values, strict=True) if v is not None})

    def bad_count(self) -> int:
        return self.conn.execute("SELECT count(*) FROM bad").fetchone()[0]
