"""Sales from the till (POS) into the hub's `sales` tables, matched to members: a CSV streamed and
checked row by row (`python -m hub import-sales`), or a JSON or CSV body (`POST /api/v1/pos/sales`,
hub.pos_api). docs/pos.md describes both formats and the matching rules.

The CSV has one row per sale line and a header naming its columns, in any order: `sale_id`, `ts`,
`gtin`, `quantity`, `amount`, and optionally `member_id`, `loyalty_number`, `currency`. As the stock
import (hub.stock_import): a comma separates values, or a semicolon or a tab when the header has
one and no comma; UTF-8 with or without a byte order mark; a bad row is reported with its line
number and reason and the rest is imported.

- `sale_id`: the till's id of the sale, 1–64 of A–Z a–z 0–9 . _ : -; stored as `pos:<sale_id>`.
- `ts`: ISO 8601. With an offset or Z it is converted to UTC; without one it is local time in the
  store's time zone (the hub's `timezone` setting). A local time the clocks skip (spring forward)
  or pass twice (fall back) is a bad row: which moment it means is unknown.
- `gtin`: EAN-13, UPC-A, EAN-8 or GTIN-14 with a valid check digit; stored as GTIN-14.
- `quantity`: a whole number, not 0; a negative one is a returned item.
- `amount`: the line's total price, at most 2 decimals, `.` or `,` before them (no thousands
  separator); its sign follows the quantity (0 is allowed either way: a free item).
- `member_id`, `loyalty_number`: who bought, when the till knows (member_id wins; see `store_sales`).
- `currency`: ISO 4217; empty means the store's; another currency than the store's is a bad row.

A sale is all or nothing: a sale with a bad line is not imported (each of its other lines is
reported too), nor one whose lines disagree on ts, member_id, loyalty_number or currency (every
line of a sale repeats them). A sale whose id was imported before is a duplicate: skipped and
counted, so importing the same file again adds nothing.

Good lines wait in a temporary SQLite file, grouped by sale there, so a file of any length
imports in constant memory: at most one sale's lines (MAX_LINES_PER_SALE) are in memory at a time.
"""

from __future__ import annotations

import csv
import io
import json
import re
import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Iterator, Mapping, TextIO
from zoneinfo import ZoneInfo

import sqlite_utils

from hub.activity import is_erased, member_hash
from hub.analytics_data import LOYALTY_NUMBER as PROFILE_LOYALTY
from hub.analytics_data import LOYALTY_PREFIX
from hub.stock_import import (
    UnusableFile,
    _delimiter,
    _Lines,
    normalise_gtin,
    progress_text,
)
from hub.stock_import import read_header as stock_read_header
from protocol.envelope import format_ts
from protocol.requests import MEMBER_ID
from protocol.sqlite import immediate

COLUMNS = ("sale_id", "ts", "gtin", "quantity", "amount", "member_id", "loyalty_number", "currency")
REQUIRED_COLUMNS = ("sale_id", "ts", "gtin", "quantity", "amount")
REPORT_COLUMNS = ("line", "reason", *COLUMNS)
SALE_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
LOYALTY_NUMBER = re.compile(r"[A-Za-z0-9._-]{1,64}")
CURRENCY = re.compile(r"[A-Za-z]{3}")
ID_PREFIX = "pos:"
MAX_QUANTITY = 10_000
MAX_AMOUNT = Decimal(1_000_000)
MAX_LINES_PER_SALE = 1000
MAX_SALES_PER_REQUEST = 1000
SHOWN_BAD_ROWS = 20
PROGRESS_EVERY_ROWS = 2000
MATCHES = ("member", "loyalty", "unmatched", "anonymous")
_SHOWN_VALUE = 40
_AMOUNT = re.compile(r"([+-]?)([0-9]+)(?:[.,]([0-9]+))?")
_WHOLE = re.compile(r"[+-]?[0-9]+")
_CENT = Decimal("0.01")


class UnreadableBody(ValueError):
    """A request body that is not the JSON the API takes (HTTP 400)."""


class TooManySales(ValueError):
    """More sales in one request than MAX_SALES_PER_REQUEST (HTTP 413)."""


@dataclass(frozen=True)
class SaleLine:
    gtin: str        # GTIN-14
    quantity: int    # negative: a returned item
    amount: Decimal  # the line's total, 2 decimals, the quantity's sign
    line: int | None = None  # in the CSV; None from JSON


@dataclass(frozen=True)
class Sale:
    """One good sale, as the till sent it (the member not yet matched)."""
    id: str                  # the till's id, without the `pos:` prefix
    ts: str                  # UTC, format_ts
    currency: str
    lines: tuple[SaleLine, ...]
    member_id: str | None = None      # as the online store spells it
    loyalty_number: str | None = None
    line: int | None = None  # its first line in the CSV

    @property
    def total(self) -> Decimal:
        return sum((line.amount for line in self.lines), Decimal(0)).quantize(_CENT)


@dataclass(frozen=True)
class BadRow:
    """A refused CSV row (`line`) or JSON sale (`index` in the request's list): why, and its values."""
    line: int | None
    reason: str
    values: Mapping[str, str] = field(default_factory=dict)
    sale_id: str | None = None
    index: int | None = None

    def rejection(self) -> dict[str, Any]:
        """As the HTTP API lists it: {"line", "reason"} for a CSV row, {"id", "index", "reason"} for a JSON sale."""
        if self.line is not None:
            return {"line": self.line, "reason": self.reason}
        return {"id": self.sale_id, "index": self.index, "reason": self.reason}


@dataclass(frozen=True)
class ImportResult:
    rows: int                # CSV rows read, or JSON sales received
    sales: int               # good sales found
    imported: int            # new sales stored (or that would be, on a dry run)
    duplicates: int          # good sales already stored earlier: skipped
    bad: int                 # bad rows (CSV) or bad sales (JSON)
    first_bad: list[BadRow]
    matched: dict[str, int]  # member, loyalty, unmatched, anonymous: of the imported sales
    dry_run: bool = False

    def summary(self) -> str:
        matched = ", ".join(f"{self.matched.get(k, 0)} {label}" for k, label in (
            ("member", "by member id"), ("loyalty", "by loyalty number"), ("unmatched", "loyalty number unknown"),
            ("anonymous", "anonymous")))
        if self.dry_run:
            return (f"dry run, nothing written: {self.imported} sales would be imported ({matched}), "
                    f"{self.duplicates} duplicates, {self.bad} bad rows")
        return f"imported {self.imported} sales ({matched}), {self.duplicates} duplicates, {self.bad} bad rows"


# --- pure: reading values -------------------------------------------------------------------

def parse_sale_id(text: str) -> str:
    value = text.strip()
    if not value:
        raise ValueError("sale_id is empty")
    if not SALE_ID.fullmatch(value):
        raise ValueError(f"sale_id {_quoted(value)} is not a sale id (1 to 64 of A-Z, a-z, 0-9, '.', '_', ':', '-')")
    return value


def parse_sale_ts(text: str, tz: ZoneInfo) -> str:
    """ISO 8601 as format_ts (UTC): with an offset or Z as it says, without one as local time in `tz`.
    ValueError for a local time that does not exist there (the clocks skipped it) or exists twice."""
    value = text.strip()
    if not value:
        raise ValueError("ts is empty")
    shown = _quoted(value)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"ts {shown} is not an ISO 8601 time such as 2026-03-14T15:04:05+01:00") from None
    if len(value) <= 10:
        raise ValueError(f"ts {shown} has no time of day; expected e.g. 2026-03-14T15:04:05+01:00")
    if not 2000 <= moment.year <= 2999:
        raise ValueError(f"ts {shown} is not a plausible time of sale")
    if moment.tzinfo is None:
        zone = getattr(tz, "key", str(tz))
        early, late = moment.replace(tzinfo=tz, fold=0), moment.replace(tzinfo=tz, fold=1)
        if early.utcoffset() != late.utcoffset():
            if early.astimezone(timezone.utc).astimezone(tz).replace(tzinfo=None) != moment:
                raise ValueError(f"ts {shown} does not exist in {zone}: the clocks skipped it (daylight saving "
                                 "time began); send the time with its offset")
            raise ValueError(f"ts {shown} happened twice in {zone} (daylight saving time ended): which one is "
                             "unknown; send the time with its offset")
        moment = early
    return format_ts(moment)


def parse_sale_quantity(text: str) -> int:
    value = text.strip()
    if not value:
        raise ValueError("quantity is empty")
    if not _WHOLE.fullmatch(value):
        raise ValueError(f"quantity {_quoted(value)} is not a whole number")
    quantity = int(value)
    if quantity == 0:
        raise ValueError("quantity is 0: a sale line sells at least 1 (a negative quantity is a return)")
    if abs(quantity) > MAX_QUANTITY:
        raise ValueError(f"quantity {quantity} is more than {MAX_QUANTITY:,} items: a typo?")
    return quantity


def parse_amount(text: str, quantity: int) -> Decimal:
    """A line's total price: digits, then `.` or `,` and at most 2 decimals; its sign the quantity's."""
    value = text.strip()
    if not value:
        raise ValueError("amount is empty")
    match = _AMOUNT.fullmatch(value)
    if match is None:
        raise ValueError(f"amount {_quoted(value)} is not a number such as 12.50 or 12,50 (no currency sign, "
                         "no thousands separator)")
    sign, whole, decimals = match.groups()
    if decimals is not None and len(decimals) > 2:
        raise ValueError(f"amount {_quoted(value)} has more than 2 decimals (a thousands separator? leave it out)")
    if len(whole.lstrip("0")) > len(str(int(MAX_AMOUNT))):  # before Decimal: 400 digits would not quantize
        raise ValueError(f"amount {_quoted(value)} is more than {MAX_AMOUNT:,}: a typo?")
    amount = Decimal(f"{sign}{whole}.{decimals or '0'}").quantize(_CENT)
    return _checked_amount(amount, quantity, value)


def parse_currency(text: str, store_currency: str) -> str:
    value = text.strip().upper() or store_currency
    if not CURRENCY.fullmatch(value):
        raise ValueError(f"currency {_quoted(text.strip())} is not a currency code such as {store_currency}")
    if value != store_currency:
        raise ValueError(f"currency {value} is not the store's {store_currency}")
    return value


def parse_member_id(text: str) -> str | None:
    value = text.strip()
    if not value:
        return None
    if not MEMBER_ID.match(value):
        raise ValueError(f"member_id {_quoted(value)} is not a member id (1 to 64 of A-Z, a-z, 0-9, '.', '_', '-')")
    return value  # as the online store spells it: ids are opaque, never re-cased


def parse_loyalty_number(text: str) -> str | None:
    value = text.strip()
    if not value:
        return None
    if not LOYALTY_NUMBER.fullmatch(value):
        raise ValueError(f"loyalty_number {_quoted(value)} is not a loyalty number (1 to 64 of A-Z, a-z, 0-9, '.', "
                         "'_', '-')")
    return value


def _checked_amount(amount: Decimal, quantity: int, shown: str) -> Decimal:
    if abs(amount) > MAX_AMOUNT:
        raise ValueError(f"amount {_quoted(shown)} is more than {MAX_AMOUNT:,}: a typo?")
    if quantity > 0 and amount < 0:
        raise ValueError(f"amount {_quoted(shown)} is negative but quantity {quantity} is not: a return has a "
                         "negative quantity and amount")
    if quantity < 0 and amount > 0:
        raise ValueError(f"amount {_quoted(shown)} is positive but quantity {quantity} is a return: a return's "
                         "amount is negative")
    return amount


def _quoted(value: str) -> str:
    return repr(value if len(value) <= _SHOWN_VALUE else value[:_SHOWN_VALUE] + "…")


@dataclass(frozen=True)
class _Row:
    """One good CSV row, before it is grouped with the others of its sale."""
    sale_id: str
    ts: str
    member_id: str | None
    loyalty_number: str | None
    currency: str
    line: SaleLine


def read_header(cells: list[str]) -> dict[str, int]:
    """Column name → position; UnusableFile when the first line is not a header we can use."""
    return stock_read_header(cells, COLUMNS, REQUIRED_COLUMNS,
                             f"{','.join(REQUIRED_COLUMNS)}[,{'][,'.join(COLUMNS[len(REQUIRED_COLUMNS):])}]")


def parse_row(cells: list[str], columns: Mapping[str, int], *, line: int, tz: ZoneInfo,
              currency: str) -> _Row | BadRow:
    """One data row as a sale line of its sale, or the reason it cannot be one."""
    values = {name: cells[i].strip()[:_SHOWN_VALUE * 2] for name, i in columns.items() if i < len(cells)}
    extra = cells[len(columns):]
    try:
        sale_id: str | None = parse_sale_id(values.get("sale_id", ""))
        problem = None
    except ValueError as exc:
        sale_id, problem = None, str(exc)
    if len(cells) < len(columns) or any(cell.strip() for cell in extra):
        # Its sale is refused too: imported without this line, its total would be wrong.
        return BadRow(line, f"expected {len(columns)} values ({', '.join(columns)}), found {len(cells)}", values,
                      sale_id=sale_id)
    if sale_id is None:
        return BadRow(line, problem or "sale_id is empty", values)
    try:
        ts = parse_sale_ts(values["ts"], tz)
        gtin = normalise_gtin(values["gtin"])
        quantity = parse_sale_quantity(values["quantity"])
        amount = parse_amount(values["amount"], quantity)
        member_id = parse_member_id(values.get("member_id", ""))
        loyalty = parse_loyalty_number(values.get("loyalty_number", ""))
        row_currency = parse_currency(values.get("currency", ""), currency)
    except ValueError as exc:
        return BadRow(line, str(exc), values, sale_id=sale_id)
    return _Row(sale_id, ts, member_id, loyalty, row_currency, SaleLine(gtin, quantity, amount, line))


# --- reading a CSV ----------------------------------------------------------------------------

class _TextLines(_Lines):
    """_Lines over a text stream (counting characters as bytes: close enough for progress)."""

    def __iter__(self) -> Iterator[str]:
        for text in self.stream:
            self.bytes += len(text)
            if self._first:
                text, self._first = text.removeprefix("\ufeff"), False
            yield text


def read_sales_csv(stream: BinaryIO | TextIO, *, tz: ZoneInfo, currency: str,
                   progress: Callable[[int, int], None] | None = None,
                   counts: dict[str, int] | None = None) -> Iterator[Sale | BadRow]:
    """The good sales of a sales CSV, then its bad rows in line order. UnusableFile (before anything is
    yielded) when the header cannot be used. `progress` is called now and then with (rows read, bytes
    read); `counts["rows"]` (when given) ends up as the number of data rows read."""
    lines = _TextLines(stream) if isinstance(stream, io.TextIOBase) else _Lines(stream)
    source = iter(lines)
    header_number = 0
    for header_line in source:
        header_number += 1
        if header_line.strip(" ,;\t\r\n"):
            break
    else:
        raise UnusableFile(f"the file is empty; the first line must name the columns: {','.join(REQUIRED_COLUMNS)}")
    delimiter = _delimiter(header_line)
    try:
        cells = next(csv.reader([header_line], delimiter=delimiter))
    except csv.Error as exc:
        raise UnusableFile(f"the header (line {header_number}) is unreadable CSV ({exc})") from None
    columns = read_header(cells)
    reader = csv.reader(source, delimiter=delimiter)
    with _Staging() as staging:
        rows = 0
        while True:
            first_line = header_number + reader.line_num + 1
            try:
                cells = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                parsed: _Row | BadRow = BadRow(first_line, f"unreadable CSV ({exc})")
            else:
                if not any(cell.strip() for cell in cells):
                    continue
                parsed = parse_row(cells, columns, line=first_line, tz=tz, currency=currency)
            rows += 1
            if isinstance(parsed, BadRow):
                staging.bad(parsed)
            else:
                staging.row(parsed)
            if progress is not None and rows % PROGRESS_EVERY_ROWS == 0:
                progress(rows, lines.bytes)
        if progress is not None:
            progress(rows, lines.bytes)
        if counts is not None:
            counts["rows"] = rows
        yield from staging.sales()
        yield from staging.bad_rows()


class _Staging:
    """Good rows grouped by sale, and bad rows, in a temporary SQLite file (gone when closed)."""

    def __init__(self):
        self.conn = sqlite3.connect("", isolation_level=None)
        self.conn.execute("CREATE TABLE lines (sale_id TEXT NOT NULL, line INTEGER NOT NULL, ts TEXT NOT NULL,"
                          " member TEXT, loyalty TEXT, currency TEXT NOT NULL, gtin TEXT NOT NULL,"
                          " quantity INTEGER NOT NULL, amount TEXT NOT NULL, raw TEXT NOT NULL)")
        self.conn.execute("CREATE INDEX lines_sale ON lines (sale_id, line)")
        self.conn.execute("CREATE TABLE bad (line INTEGER NOT NULL, reason TEXT NOT NULL, sale_id TEXT,"
                          " raw TEXT NOT NULL)")
        self.conn.execute("CREATE INDEX bad_sale ON bad (sale_id, line)")
        self.conn.execute("BEGIN")

    def __enter__(self) -> "_Staging":
        return self

    def __exit__(self, *_: Any) -> None:
        self.conn.close()

    def row(self, row: _Row) -> None:
        item = row.line
        raw = {"sale_id": row.sale_id, "ts": row.ts, "gtin": item.gtin, "quantity": str(item.quantity),
               "amount": str(item.amount), "member_id": row.member_id or "", "loyalty_number": row.loyalty_number or "",
               "currency": row.currency}
        self.conn.execute("INSERT INTO lines VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                          [row.sale_id, item.line, row.ts, row.member_id, row.loyalty_number, row.currency,
                           item.gtin, item.quantity, str(item.amount), json.dumps(raw)])

    def bad(self, row: BadRow) -> None:
        self.conn.execute("INSERT INTO bad VALUES (?, ?, ?, ?)",
                          [row.line, row.reason, row.sale_id, json.dumps(dict(row.values))])

    def sales(self) -> Iterator[Sale]:
        """Each sale whose lines are all good and agree; the lines of the others become bad rows."""
        sale_ids = self.conn.cursor().execute(
            "SELECT sale_id, min(line), count(*) FROM lines GROUP BY sale_id ORDER BY min(line)")
        for sale_id, first, count in sale_ids:
            refusal = self._refusal(sale_id, count)
            if refusal is not None:
                self.conn.execute("INSERT INTO bad SELECT line, ?, sale_id, raw FROM lines WHERE sale_id = ?",
                                  [refusal, sale_id])
                continue
            rows = self.conn.execute("SELECT ts, member, loyalty, currency, gtin, quantity, amount, line FROM lines "
                                     "WHERE sale_id = ? ORDER BY line", [sale_id]).fetchall()
            ts, member, loyalty, currency = rows[0][:4]
            yield Sale(id=sale_id, ts=ts, currency=currency, member_id=member, loyalty_number=loyalty, line=first,
                       lines=tuple(SaleLine(gtin, quantity, Decimal(amount), line)
                                   for *_, gtin, quantity, amount, line in rows))

    def _refusal(self, sale_id: str, count: int) -> str | None:
        bad = self.conn.execute("SELECT line, reason FROM bad WHERE sale_id = ? ORDER BY line LIMIT 1",
                                [sale_id]).fetchone()
        if bad is not None:
            return f"sale {sale_id} has a bad line (line {bad[0]}: {bad[1]}); none of its lines is imported"
        if count > MAX_LINES_PER_SALE:
            return f"sale {sale_id} has more than {MAX_LINES_PER_SALE} lines; none of its lines is imported"
        agreeing = self.conn.execute(
            "SELECT count(DISTINCT ts) = 1 AND count(DISTINCT coalesce(member, '')) = 1 AND count(DISTINCT "
            "coalesce(loyalty, '')) = 1 AND count(DISTINCT currency) = 1 FROM lines WHERE sale_id = ?",
            [sale_id]).fetchone()[0]
        if agreeing:
            return None
        for column, name in (("ts", "ts"), ("member", "member_id"), ("loyalty", "loyalty_number"),
                             ("currency", "currency")):
            values = self.conn.execute(f"SELECT coalesce({column}, ''), min(line) FROM lines WHERE sale_id = ? "
                                       f"GROUP BY 1 ORDER BY 2 LIMIT 2", [sale_id]).fetchall()
            if len(values) > 1:
                (one, at_one), (other, at_other) = values
                return (f"sale {sale_id} is ambiguous: its lines disagree on {name} ({_quoted(one)} on line {at_one}, "
                        f"{_quoted(other)} on line {at_other}); none of its lines is imported")
        return None

    def bad_rows(self) -> Iterator[BadRow]:
        for line, reason, sale_id, raw in self.conn.cursor().execute("SELECT * FROM bad ORDER BY line, rowid"):
            yield BadRow(line, reason, json.loads(raw), sale_id=sale_id)


# --- reading a JSON body ----------------------------------------------------------------------

def sales_from_json(body: bytes | str | Mapping[str, Any], *, tz: ZoneInfo, currency: str) -> list[Sale | BadRow]:
    """The sales of a JSON body {"sales": [{"id", "ts", "member_id"?, "loyalty_number"?, "currency"?,
    "lines": [{"gtin", "quantity", "amount"}]}]}, each a Sale or a BadRow (with its index). UnreadableBody
    when the body is not that shape at all; TooManySales over MAX_SALES_PER_REQUEST."""
    if isinstance(body, (bytes, str)):
        try:
            body = json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise UnreadableBody(f"the body is not JSON ({str(exc)[:80]})") from None
    if not isinstance(body, Mapping) or not isinstance(body.get("sales"), list):
        raise UnreadableBody('the body must be a JSON object {"sales": [...]}')
    items = body["sales"]
    if len(items) > MAX_SALES_PER_REQUEST:
        raise TooManySales(f"{len(items)} sales in one request; send at most {MAX_SALES_PER_REQUEST} at a time")
    results: list[Sale | BadRow] = [_sale_from_json(index, item, tz=tz, currency=currency)
                                    for index, item in enumerate(items)]
    seen: dict[str, int] = {}
    for index, result in enumerate(results):
        if isinstance(result, Sale):
            seen[result.id] = seen.get(result.id, 0) + 1
    return [BadRow(None, f"sale {r.id} appears more than once in the request: which one is right is unknown",
                   sale_id=r.id, index=i) if isinstance(r, Sale) and seen[r.id] > 1 else r
            for i, r in enumerate(results)]


def _sale_from_json(index: int, item: Any, *, tz: ZoneInfo, currency: str) -> Sale | BadRow:
    if not isinstance(item, Mapping):
        return BadRow(None, "a sale must be a JSON object", index=index)
    raw_id = item.get("id")
    sale_id = raw_id[:_SHOWN_VALUE * 2] if isinstance(raw_id, str) else None
    try:
        if not isinstance(raw_id, str):
            raise ValueError("id is missing or not a string")
        sale_id = parse_sale_id(raw_id)
        ts = parse_sale_ts(_text(item, "ts", required=True), tz)
        member = parse_member_id(_text(item, "member_id"))
        loyalty = parse_loyalty_number(_text(item, "loyalty_number"))
        sale_currency = parse_currency(_text(item, "currency"), currency)
        lines = item.get("lines")
        if not isinstance(lines, list) or not lines:
            raise ValueError("lines must be a non-empty list of {gtin, quantity, amount}")
        if len(lines) > MAX_LINES_PER_SALE:
            raise ValueError(f"more than {MAX_LINES_PER_SALE} lines")
        sale_lines = tuple(_line_from_json(n, line) for n, line in enumerate(lines, start=1))
    except ValueError as exc:
        return BadRow(None, str(exc), sale_id=sale_id, index=index)
    return Sale(id=sale_id, ts=ts, currency=sale_currency, lines=sale_lines, member_id=member, loyalty_number=loyalty)


def _line_from_json(number: int, line: Any) -> SaleLine:
    if not isinstance(line, Mapping):
        raise ValueError(f"line {number} is not an object {{gtin, quantity, amount}}")
    try:
        gtin = line.get("gtin")
        if not isinstance(gtin, str):
            raise ValueError("gtin must be a string of digits (a number loses its leading zeros)")
        gtin = normalise_gtin(gtin)
        quantity = line.get("quantity")
        if not isinstance(quantity, int) or isinstance(quantity, bool):
            raise ValueError("quantity must be a whole number")
        quantity = parse_sale_quantity(str(quantity))
        amount = line.get("amount")
        if isinstance(amount, str):
            amount = parse_amount(amount, quantity)
        elif isinstance(amount, (int, float)) and not isinstance(amount, bool):
            exact = Decimal(repr(amount)) if isinstance(amount, float) else Decimal(amount)
            if not exact.is_finite() or exact != exact.quantize(_CENT, rounding=ROUND_HALF_EVEN):
                raise ValueError(f"amount {amount!r} is not an amount with at most 2 decimals")
            amount = _checked_amount(exact.quantize(_CENT), quantity, repr(amount))
        else:
            raise ValueError("amount must be a number or a string such as \"12.50\"")
    except (ValueError, InvalidOperation) as exc:
        raise ValueError(f"line {number}: {exc}") from None
    return SaleLine(gtin, quantity, amount)


def _text(item: Mapping[str, Any], key: str, *, required: bool = False) -> str:
    value = item.get(key)
    if value is None:
        if required:
            raise ValueError(f"{key} is missing")
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{key} must be a string")
    return value


# --- storing and matching ---------------------------------------------------------------------

class _DryRun(Exception):
    """Raised inside the transaction to roll a dry run back."""


@contextmanager
def _write(target) -> Iterator[sqlite_utils.Database]:
    """One write transaction on a HubStore (under its lock) or a bare sqlite_utils.Database."""
    from hub.store import HubStore
    if isinstance(target, HubStore):
        with target.transaction():
            yield target.db
    else:
        with immediate(target.conn):
            yield target


def match_member(db: sqlite_utils.Database, sale: Sale) -> tuple[str, str | None, str | None]:
    """(how, customer, loyalty to keep) for a sale: how is one of MATCHES. A member id wins; else a loyalty
    number a cached profile has (exactly one); an erased member is never linked and their sale is anonymous."""
    if sale.member_id is not None:
        if is_erased(db, sale.member_id):
            return "anonymous", None, None
        return "member", sale.member_id, sale.loyalty_number
    if sale.loyalty_number is None or is_erased(db, LOYALTY_PREFIX + sale.loyalty_number):
        return "anonymous", None, None  # an erased member's card number is not kept either
    found = db.execute(f"SELECT id FROM customers WHERE {PROFILE_LOYALTY} = ? LIMIT 2",
                       [sale.loyalty_number]).fetchall()
    if len(found) == 1 and not is_erased(db, found[0][0]):
        return "loyalty", found[0][0], sale.loyalty_number
    return "unmatched", None, sale.loyalty_number


def store_sales(db, sales: Iterable[Sale], *, now: datetime, dry_run: bool = False) -> ImportResult:
    """Store new sales, matched to members, in one transaction; a sale id stored before is a duplicate.
    `db` is a HubStore or a sqlite_utils.Database with the `sales` tables. A dry run counts the same and
    rolls back. Bad rows are not its business: the result's bad count is 0 (see import_sales)."""
    received_at = format_ts(now)
    counts = {"sales": 0, "imported": 0, "duplicates": 0}
    matched = dict.fromkeys(MATCHES, 0)
    try:
        with _write(db) as conn:
            for sale in sales:
                counts["sales"] += 1
                how, customer, loyalty = match_member(conn, sale)
                stored = conn.execute(
                    "INSERT OR IGNORE INTO sales (id, origin, customer, loyalty, channel, ts, total, currency, status,"
                    " received_at) VALUES (?, 'pos', ?, ?, 'store', ?, ?, ?, ?, ?)",
                    [ID_PREFIX + sale.id, customer, loyalty, sale.ts, float(sale.total), sale.currency,
                     "refunded" if sale.total < 0 else "completed", received_at])
                if stored.rowcount == 0:
                    counts["duplicates"] += 1
                    continue
                conn.conn.executemany("INSERT INTO sale_lines (sale_id, gtin, quantity, amount) VALUES (?, ?, ?, ?)",
                                      [(ID_PREFIX + sale.id, line.gtin, line.quantity, float(line.amount))
                                       for line in sale.lines])
                counts["imported"] += 1
                matched[how] += 1
            if dry_run:
                raise _DryRun
    except _DryRun:
        pass
    return ImportResult(rows=counts["sales"], sales=counts["sales"], imported=counts["imported"],
                        duplicates=counts["duplicates"], bad=0, first_bad=[], matched=matched, dry_run=dry_run)


def link_pending_sales(db) -> int:
    """Link sales whose loyalty number a cached profile now has (the profile arrived after the sale) to
    that member, in one UPDATE; never to an erased member, nor when two profiles have the number.
    Returns how many sales were linked. `db`: a HubStore or a sqlite_utils.Database."""
    with _write(db) as conn:
        conn.conn.create_function("omnikiosk_member_hash", 1, member_hash, deterministic=True)
        # Both sides by index: the pending sales (sales_loyalty), the profile with the number (customers_loyalty).
        return conn.execute(
            f"UPDATE sales SET customer = (SELECT c.id FROM customers c WHERE {PROFILE_LOYALTY} = sales.loyalty) "
            "WHERE customer IS NULL AND loyalty IS NOT NULL AND origin = 'pos' "
            f"AND (SELECT count(*) FROM customers c WHERE {PROFILE_LOYALTY} = sales.loyalty) = 1 "
            "AND NOT EXISTS (SELECT 1 FROM customers c JOIN erased_members e ON e.member_hash = "
            f"omnikiosk_member_hash(c.id) WHERE {PROFILE_LOYALTY} = sales.loyalty)").rowcount


# --- the import -------------------------------------------------------------------------------

def import_sales(source: str | Path | BinaryIO, db, *, tz: ZoneInfo, currency: str, now: datetime | None = None,
                 dry_run: bool = False, report: TextIO | None = None,
                 progress: Callable[[int, int], None] | None = None) -> ImportResult:
    """Import a sales CSV (a path or a binary stream) into `db` (a HubStore or a sqlite_utils.Database):
    the good sales in one transaction, the bad rows to `report` as CSV (line, reason, values) in line
    order. UnusableFile when the file cannot be imported at all; nothing is written then, nor on a dry run."""
    if isinstance(source, (str, Path)):
        try:
            stream: BinaryIO = open(source, "rb")
        except OSError as exc:
            raise UnusableFile(f"{source}: cannot read it ({exc.strerror})") from None
    else:
        stream = source
    counts: dict[str, int] = {}
    bad: list[BadRow] = []
    bad_count = 0
    writer = csv.writer(report) if report is not None else None
    if writer is not None:
        writer.writerow(REPORT_COLUMNS)

    def sales_only(parsed: Iterable[Sale | BadRow]) -> Iterator[Sale]:
        nonlocal bad_count
        for item in parsed:
            if isinstance(item, Sale):
                yield item
                continue
            bad_count += 1
            if len(bad) < SHOWN_BAD_ROWS:
                bad.append(item)
            if writer is not None:
                writer.writerow([item.line, item.reason, *(item.values.get(c, "") for c in COLUMNS)])

    try:
        parsed = read_sales_csv(stream, tz=tz, currency=currency, progress=progress, counts=counts)
        first = next(parsed, None)  # reads the whole file: UnusableFile now, before the transaction
        everything = parsed if first is None else _chain(first, parsed)
        stored = store_sales(db, sales_only(everything), now=now or datetime.now(timezone.utc), dry_run=dry_run)
    finally:
        if stream is not source:
            stream.close()
    return ImportResult(rows=counts.get("rows", 0), sales=stored.sales, imported=stored.imported,
                        duplicates=stored.duplicates, bad=bad_count, first_bad=bad, matched=stored.matched,
                        dry_run=dry_run)


def _chain(first: Sale | BadRow, rest: Iterator[Sale | BadRow]) -> Iterator[Sale | BadRow]:
    yield first
    yield from rest


def write_report(out: TextIO, bad: Iterable[BadRow]) -> None:
    """Bad rows as CSV: line, reason and the row's values."""
    writer = csv.writer(out)
    writer.writerow(REPORT_COLUMNS)
    for row in bad:
        writer.writerow([row.line, row.reason, *(row.values.get(c, "") for c in COLUMNS)])


__all__ = ["BadRow", "ImportResult", "Sale", "SaleLine", "TooManySales", "UnreadableBody", "UnusableFile",
           "import_sales", "link_pending_sales", "match_member", "progress_text", "read_sales_csv", "sales_from_json",
           "store_sales", "write_report"]
