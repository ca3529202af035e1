"""The manager's analytics page as people read it: figures formatted, charts chosen, quick ranges, and
the CSV export (safe from formula injection). hub/analytics.py computes, hub/charts.py draws,
hub/templates/manager.html shows, hub/web.py routes."""

from __future__ import annotations

import csv
import io
import math
import re
from datetime import date, timedelta
from typing import Any

from flask import url_for

from hub import charts

FORM_FIELDS = ("from", "to", "channel", "window")     # the page's GET form: what hub.analytics.parse_query reads
CSV_RISKY = ("=", "+", "-", "@", "\t", "\r")          # a spreadsheet runs a cell starting with these as a formula
PLAIN_NUMBER = re.compile(r"-?\d+(\.\d+)?(e-?\d+)?")


def quick_ranges(today: date, args: dict[str, Any], current: tuple[date, date] | None = None
                 ) -> list[dict[str, Any]]:
    """The quick links of the date picker, keeping the channel and window of `args`."""
    first = today.replace(day=1)
    last_month_end = first - timedelta(days=1)
    ranges = [("Last 7 days", today - timedelta(days=6), today), ("Last 30 days", today - timedelta(days=29), today),
              ("This month", first, today), ("Last month", last_month_end.replace(day=1), last_month_end),
              ("Last 365 days", today - timedelta(days=364), today)]
    keep = {k: v for k, v in args.items() if k not in ("from", "to") and v not in (None, "")}
    return [{"label": label, "active": current == (start, end),
             "url": url_for("manager_page", **keep, **{"from": start.isoformat(), "to": end.isoformat()})}
            for label, start, end in ranges]


def format_cell(kind: str, value: Any, currency: str = "EUR") -> str:
    """A figure as the page shows it: money with 2 decimals, thousands separators and the currency; a share
    as "12.3 %"."""
    if value is None or value == "":
        return "—"
    if kind == "text":
        return str(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if kind == "money":
        return f"{number:,.2f} {currency}"
    if kind == "pct":
        return f"{number * 100:.1f} %"
    if kind == "int":
        return f"{round(number):,}"
    return f"{number:,.2f}"


def csv_value(kind: str, value: Any) -> str:
    """A figure for a spreadsheet: plain numbers (money with 2 decimals, a share as 0..1), text as is."""
    if value is None:
        return ""
    if kind in ("int", "money", "pct", "float") and isinstance(value, (int, float)) and not isinstance(value, bool):
        return {"int": lambda v: str(round(v)), "money": lambda v: f"{v:.2f}",
                "pct": lambda v: f"{v:.4f}", "float": lambda v: f"{v:.4f}"}[kind](value)
    return csv_safe(str(value))


def csv_safe(text: str) -> str:
    """No formula injection: a cell a spreadsheet would run (=, +, -, @, tab, CR first) starts with an apostrophe;
    a plain negative number stays a number."""
    if text.startswith(CSV_RISKY) and not PLAIN_NUMBER.fullmatch(text):
        return "'" + text
    return text


def csv_text(table: Any) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([csv_safe(str(column.label)) for column in table.columns])
    for row in table.rows:
        writer.writerow([csv_value(column.kind, row.get(column.key)) for column in table.columns])
    return out.getvalue()


def _number(value: Any) -> float:
    try:
        number = float(value or 0)
    except (TypeError, ValueError):
        return 0.0
    return 0.0 if math.isnan(number) else number


def _sum(table: Any, key: str) -> float:
    return sum(_number(row.get(key)) for row in table.rows) if table is not None else 0.0


def analytics_view(tables: dict[str, Any], *, currency: str, args: dict[str, Any]) -> dict[str, Any]:
    """What manager.html shows: headline cards, then each table with its figures formatted, its chart(s)
    and its CSV link."""

    def money(value: float) -> str:
        return format_cell("money", value, currency)

    def count(value: float) -> str:
        return format_cell("int", value)

    summary, assisted, repeat = tables.get("summary"), tables.get("assisted"), tables.get("repeat")
    repeat_row = repeat.rows[0] if repeat is not None and repeat.rows else {}
    assisted_total = _sum(assisted, "assisted_revenue")
    cards = [
        {"key": "revenue", "label": "Revenue", "value": money(_sum(summary, "revenue"))},
        {"key": "sales", "label": "Sales", "value": count(_sum(summary, "sales"))},
        {"key": "sessions", "label": "Sessions", "value": count(_sum(summary, "sessions"))},
        {"key": "contacts", "label": "Contacts", "value": count(_sum(summary, "contacts")),
         "hint": "known customers, each once"},
        {"key": "assisted", "label": "Kiosk-assisted revenue", "value": money(assisted_total)},
        {"key": "repeat", "label": "Repeat-visit rate",
         "value": format_cell("pct", repeat_row.get("repeat_visit_rate")) if repeat_row else "—"},
    ]
    shown = []
    for name, table in tables.items():
        if name == "summary":  # the cards above
            continue
        rows = [[{"kind": c.kind, "text": format_cell(c.kind, row.get(c.key), currency)} for c in table.columns]
                for row in table.rows]
        # Nothing to draw: no rows, or rows of zeros only (every channel listed, none with a figure).
        empty = not any(_number(row.get(c.key)) for row in table.rows for c in table.columns if c.kind != "text")

        def series(key: str, label_key: str = "channel", table: Any = table) -> list[tuple[str, float]]:
            return [(str(row.get(label_key, "")), _number(row.get(key))) for row in table.rows]

        graphs, figures = [], []
        if not empty:
            if name == "channels":
                graphs = [charts.bars(series("sessions"), title="Sessions per channel", fmt=count),
                          charts.bars(series("revenue"), title="Revenue per channel", fmt=money, colour=charts.SECOND)]
            elif name == "attribution":
                graphs = [charts.grouped_bars([str(r.get("channel", "")) for r in table.rows],
                                              [("First touch", [_number(r.get("first_revenue")) for r in table.rows]),
                                               ("Last touch", [_number(r.get("last_revenue")) for r in table.rows])],
                                              title="Revenue by first and last touch", fmt=money)]
            elif name == "assisted":
                figures = [{"label": "Kiosk-assisted revenue", "value": money(assisted_total), "big": True},
                           {"label": "Assisted sales", "value": count(_sum(table, "assisted_sales"))},
                           {"label": "All sales", "value": count(_sum(table, "all_sales"))}]
            elif name == "lost_demand":
                top = sorted(table.rows, key=lambda r: -_number(r.get("scans")))[:10]
                graphs = [charts.bars([(str(r.get("product") or r.get("gtin") or ""), _number(r.get("scans")))
                                       for r in top], title="Most scanned products without stock (top 10)",
                                      fmt=count, colour="#c2410c", label_chars=22)]
            elif name == "peak_hours":
                hours = [c.key for c in table.columns if c.kind != "text"]
                graphs = [charts.heatmap([str(r.get("weekday", "")) for r in table.rows], hours,
                                         [[_number(r.get(h)) for h in hours] for r in table.rows],
                                         title="Sessions by weekday and hour", fmt=count)]
            elif name == "repeat":
                figures = [{"label": c.label, "value": format_cell(c.kind, repeat_row.get(c.key), currency)}
                           for c in table.columns]
            elif name == "kiosks":
                graphs = [charts.bars(series("sessions", "device"), title="Sessions per kiosk", fmt=count)]
            elif name == "daily":
                graphs = [charts.columns(series("revenue", "day"), title="Revenue per day", label="Revenue",
                                         fmt=money,
                                         line=[_number(r.get("sessions")) for r in table.rows],
                                         line_label="Sessions", line_fmt=count)]
        captions = {"channels": ["Sessions", "Revenue"]}.get(name, [""] * len(graphs))
        shown.append({"name": name, "title": table.title, "note": table.note, "columns": table.columns,
                      "rows": rows, "empty": empty, "charts": list(zip(captions, graphs)), "figures": figures,
                      "split": name in ("attribution", "lost_demand", "kiosks"),   # chart beside its table
                      "long": len(table.rows) > 14 or len(table.columns) > 10,
                      "csv": url_for("manager_export", table=name, **{k: v for k, v in args.items()
                                                                      if v not in (None, "")})})
    return {"cards": cards, "tables": shown}
