"""Charts for the staff app as inline SVG, built on the server: no script, no chart library, no external
reference, so the page's CSP stays as it is and the page works without JavaScript.

Every function returns `markupsafe.Markup` holding one `<svg>` element: role="img" with a <title> and a
<desc>, a viewBox (the chart scales to its container's width), every text node and attribute escaped,
colours from the staff app's palette (hub/static/staff.css). Figures are clamped at zero: a negative value
draws as an empty bar and the chart says so in a note (bars cannot show a refund well; the table can).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

from markupsafe import Markup, escape

# The staff app's palette (staff.css :root): text on white at AA contrast or better.
PRIMARY = "#1346d6"
SECOND = "#0f7a45"     # --ok
TEXT = "#111827"
MUTED = "#5b6472"
GRID = "#e3e6eb"
EMPTY = "#f3f4f7"
SERIES = (PRIMARY, "#c2410c", SECOND, "#9d174d")   # blue, orange, green, pink: told apart also by the legend order
FONT = "system-ui, -apple-system, Segoe UI, Roboto, Noto Sans, Liberation Sans, Arial, sans-serif"

Format = Callable[[float], str]


def _plain(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def _num(value: float) -> str:
    """A coordinate, short."""
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _clamp(values: Iterable[float]) -> tuple[list[float], bool]:
    """Values as floats at least 0 (None and NaN count as 0); whether any was below zero."""
    out, negative = [], False
    for value in values:
        number = float(value or 0)
        if math.isnan(number):
            number = 0.0
        if number < 0:
            negative, number = True, 0.0
        out.append(number)
    return out, negative


def _svg(width: float, height: float, title: str, desc: str, body: list[str], css_class: str) -> Markup:
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" class="chart-svg {escape(css_class)}" role="img" '
            f'viewBox="0 0 {_num(width)} {_num(height)}" preserveAspectRatio="xMinYMin meet" '
            f'font-family="{escape(FONT)}" focusable="false">'
            f'<title>{escape(title)}</title><desc>{escape(desc)}</desc>')
    return Markup(head + "".join(body) + "</svg>")


def _text(x: float, y: float, text: str, *, size: int = 14, anchor: str = "start", fill: str = TEXT,
          weight: str = "normal", baseline: str = "central") -> str:
    return (f'<text x="{_num(x)}" y="{_num(y)}" font-size="{size}" text-anchor="{anchor}" fill="{fill}" '
            f'font-weight="{weight}" dominant-baseline="{baseline}">{escape(text)}</text>')


def _rect(x: float, y: float, w: float, h: float, fill: str, tooltip: str | None = None, rx: float = 3) -> str:
    title = f"<title>{escape(tooltip)}</title>" if tooltip is not None else ""
    close = f">{title}</rect>" if title else "/>"
    return f'<rect x="{_num(x)}" y="{_num(y)}" width="{_num(max(w, 0))}" height="{_num(max(h, 0))}" rx="{_num(rx)}" fill="{fill}"{close}'


def _note(negative: bool) -> str:
    return " Negative values are drawn as zero." if negative else ""


def _truncate(label: str, chars: int) -> str:
    return label if len(label) <= chars else label[:chars - 1] + "…"


def _label_width(labels: Iterable[str], size: int, width: int, cap: int, value_w: int) -> tuple[int, int]:
    """Room for the labels left of the bars (leaving the bars at least 140 units), and how many characters fit."""
    per_char = size * 0.6
    longest = max((len(str(label)) for label in labels), default=1)
    room = int(min(max(per_char * min(longest, cap) + 14, 48), width * 0.5, width - value_w - 140))
    return room, max(4, int((room - 12) / per_char))


def _empty(width: float, title: str, css_class: str) -> Markup:
    return _svg(width, 60, title, "No data.", [_text(width / 2, 30, "No data", anchor="middle", fill=MUTED)], css_class)


def bars(items: Sequence[tuple[str, float]], *, title: str, fmt: Format = _plain, colour: str = PRIMARY,
         width: int = 380, label_chars: int = 22) -> Markup:
    """Horizontal bars, one per (label, value), in the order given; the value is written after each bar.
    Labels longer than fits (at most `label_chars`) are cut with an ellipsis; the tooltip has them whole."""
    if not items:
        return _empty(width, title, "chart-bars")
    values, negative = _clamp(v for _, v in items)
    top = max(values) or 1.0
    row, bar_h, size = 30, 20, 14
    value_w = int(max(len(fmt(float(v or 0))) for _, v in items) * 13 * 0.6 + 12)
    label_w, fits = _label_width((label for label, _ in items), size, width, label_chars, value_w)
    plot_w = width - label_w - value_w
    body = []
    for i, ((label, raw), value) in enumerate(zip(items, values)):
        y = 8 + i * row
        shown = fmt(float(raw or 0))
        body.append(_text(label_w - 10, y + bar_h / 2, _truncate(str(label), fits), size=size, anchor="end"))
        body.append(_rect(label_w, y, plot_w, bar_h, EMPTY, rx=4))
        body.append(_rect(label_w, y, plot_w * value / top, bar_h, colour, f"{label}: {shown}", rx=4))
        body.append(_text(label_w + plot_w * value / top + 6, y + bar_h / 2, shown, size=13, fill=MUTED))
    height = 8 + len(items) * row + 4
    note = _note(negative)
    if negative:
        body.append(_text(label_w, height + 6, note.strip(), size=12, fill=MUTED))
        height += 20
    desc = "; ".join(f"{label}: {fmt(float(raw or 0))}" for label, raw in items) + "." + note
    return _svg(width, height, title, desc, body, "chart-bars")


def grouped_bars(categories: Sequence[str], series: Sequence[tuple[str, Sequence[float]]], *, title: str,
                 fmt: Format = _plain, width: int = 380, label_chars: int = 16) -> Markup:
    """Horizontal bars grouped by category: one bar per series in each group, a legend on top."""
    if not categories or not series:
        return _empty(width, title, "chart-grouped")
    clamped = [_clamp(values) for _, values in series]
    negative = any(n for _, n in clamped)
    top = max((max(vals) if vals else 0) for vals, _ in clamped) or 1.0
    bar_h, gap, legend_h, size = 14, 12, 30, 14
    value_w = int(max((len(fmt(float(v or 0))) for _, vals in series for v in vals), default=4) * 12 * 0.6 + 12)
    label_w, fits = _label_width(categories, size, width, label_chars, value_w)
    plot_w = width - label_w - value_w
    group_h = bar_h * len(series) + 2 * (len(series) - 1)
    body = []
    x = label_w
    for s, (name, _) in enumerate(series):   # the legend
        body.append(_rect(x, 6, 14, 14, SERIES[s % len(SERIES)], rx=3))
        body.append(_text(x + 20, 13, str(name), size=13, fill=TEXT))
        x += 30 + 8 * len(str(name))
    for i, category in enumerate(categories):
        y0 = legend_h + i * (group_h + gap)
        body.append(_text(label_w - 10, y0 + group_h / 2, _truncate(str(category), fits), size=size, anchor="end"))
        for s, (name, raw_values) in enumerate(series):
            value = clamped[s][0][i] if i < len(clamped[s][0]) else 0.0
            raw = float(raw_values[i] or 0) if i < len(raw_values) else 0.0
            y = y0 + s * (bar_h + 2)
            body.append(_rect(label_w, y, plot_w * value / top, bar_h, SERIES[s % len(SERIES)],
                              f"{category}, {name}: {fmt(raw)}", rx=3))
            body.append(_text(label_w + plot_w * value / top + 6, y + bar_h / 2, fmt(raw), size=12, fill=MUTED))
    height = legend_h + len(categories) * (group_h + gap)
    note = _note(negative)
    if negative:
        body.append(_text(label_w, height + 4, note.strip(), size=12, fill=MUTED))
        height += 20
    desc = "; ".join(f"{category}: " + ", ".join(
        f"{name} {fmt(float(values[i] or 0)) if i < len(values) else fmt(0)}" for name, values in series)
        for i, category in enumerate(categories)) + "." + note
    return _svg(width, height, title, desc, body, "chart-grouped")


def _shade(fraction: float) -> str:
    """From the palette's soft blue (#eef2ff) at 0 to the primary blue at 1."""
    low, high = (0xee, 0xf2, 0xff), (0x13, 0x46, 0xd6)
    fraction = min(max(fraction, 0.0), 1.0)
    return "#" + "".join(f"{round(a + (b - a) * fraction):02x}" for a, b in zip(low, high))


def heatmap(row_labels: Sequence[str], column_labels: Sequence[str], values: Sequence[Sequence[float]], *,
            title: str, fmt: Format = _plain, width: int = 960, label_every: int = 1) -> Markup:
    """A grid of cells shaded by value (darker = more), each cell's value in its <title> (the tooltip); every
    `label_every`-th column is labelled along the top. Cells at zero stay light grey."""
    if not row_labels or not column_labels:
        return _empty(width, title, "chart-heatmap")
    flat, negative = _clamp(v for row in values for v in row)
    top = max(flat, default=0) or 1.0
    label_w, head_h, legend_h = 52, 26, 34
    cell_w = (width - label_w) / len(column_labels)
    cell_h = 30
    body = []
    for c, label in enumerate(column_labels):
        if c % label_every == 0:
            body.append(_text(label_w + c * cell_w + cell_w / 2, head_h / 2, str(label), size=13, anchor="middle",
                              fill=MUTED))
    for r, row_label in enumerate(row_labels):
        y = head_h + r * cell_h
        body.append(_text(label_w - 8, y + cell_h / 2, str(row_label), size=14, anchor="end"))
        row = values[r] if r < len(values) else []
        for c, column_label in enumerate(column_labels):
            raw = float(row[c] or 0) if c < len(row) else 0.0
            value = 0.0 if math.isnan(raw) else max(raw, 0.0)
            fill = _shade(0.12 + 0.88 * value / top) if value > 0 else EMPTY
            body.append(_rect(label_w + c * cell_w + 1, y + 1, cell_w - 2, cell_h - 2, fill,
                              f"{row_label} {column_label}: {fmt(raw)}", rx=3))
    y = head_h + len(row_labels) * cell_h + 10
    body.append(_text(label_w, y + 10, "fewer", size=12, fill=MUTED))
    for step in range(6):
        body.append(_rect(label_w + 46 + step * 22, y + 2, 20, 16, _shade(0.12 + 0.88 * step / 5) if step else EMPTY,
                          rx=3))
    body.append(_text(label_w + 46 + 6 * 22 + 6, y + 10, f"more (most: {fmt(top if flat and max(flat) else 0)})",
                      size=12, fill=MUTED))
    height = y + legend_h - 10
    note = _note(negative)
    if negative:
        body.append(_text(label_w + 360, y + 10, note.strip(), size=12, fill=MUTED))
    busiest = sorted(((float(values[r][c] or 0), row_labels[r], column_labels[c])
                      for r in range(min(len(values), len(row_labels)))
                      for c in range(min(len(values[r]), len(column_labels)))), reverse=True)[:3]
    desc = ("Busiest: " + "; ".join(f"{r} {c}: {fmt(v)}" for v, r, c in busiest if v > 0) + "."
            if busiest and busiest[0][0] > 0 else "All zero.") + note
    return _svg(width, height, title, desc, body, "chart-heatmap")


def columns(items: Sequence[tuple[str, float]], *, title: str, fmt: Format = _plain, colour: str = PRIMARY,
            label: str = "", line: Sequence[float] | None = None, line_label: str = "",
            line_fmt: Format = _plain, width: int = 960, height: int = 260, label_every: int | None = None) -> Markup:
    """Vertical columns, one per (label, value) left to right; with `line`, a second figure per column drawn
    as dots joined by a line on its own scale (right axis), named in the legend."""
    if not items:
        return _empty(width, title, "chart-columns")
    values, negative = _clamp(v for _, v in items)
    dots, dots_negative = _clamp(line) if line is not None else ([], False)
    negative = negative or dots_negative
    top = max(values) or 1.0
    dot_top = max(dots, default=0) or 1.0
    left, right, legend_h, foot = 36, 36, 26, 24
    plot_w, plot_h = width - left - right, height - legend_h - foot
    step = plot_w / len(items)
    bar_w = max(step * 0.7, 1)
    every = label_every or max(1, round(len(items) / 8))
    legend = f"{label or title} (top: {fmt(top)})"
    body = [_rect(left, 6, 14, 14, colour, rx=3), _text(left + 20, 13, legend, size=13)]
    if line is not None:
        x = left + 40 + 7 * len(legend)
        body += [f'<circle cx="{_num(x + 7)}" cy="13" r="5" fill="{SERIES[1]}"/>',
                 _text(x + 18, 13, f"{line_label} (top: {line_fmt(dot_top)})", size=13)]
    base = legend_h + plot_h
    body.append(f'<line x1="{left}" y1="{_num(base)}" x2="{_num(width - right)}" y2="{_num(base)}" stroke="{GRID}" '
                f'stroke-width="1"/>')
    for i, ((name, raw), value) in enumerate(zip(items, values)):
        x = left + i * step + (step - bar_w) / 2
        h = plot_h * value / top
        tip = f"{name}: {fmt(float(raw or 0))}"
        if line is not None and i < len(line):
            tip += f", {line_label} {line_fmt(float(line[i] or 0))}"
        body.append(_rect(x, base - h, bar_w, h, colour, tip, rx=min(3, bar_w / 3)))
        if i % every == 0:
            body.append(_text(left + i * step + step / 2, base + foot / 2, str(name), size=12, anchor="middle",
                              fill=MUTED))
    if line is not None and dots:
        points = [(left + i * step + step / 2, legend_h + plot_h - plot_h * v / dot_top) for i, v in enumerate(dots)]
        if len(points) > 1:
            body.append(f'<polyline fill="none" stroke="{SERIES[1]}" stroke-width="2" points="'
                        + " ".join(f"{_num(x)},{_num(y)}" for x, y in points) + '"/>')
        radius = 4 if len(points) <= 62 else 2
        for (x, y), (name, _), raw in zip(points, items, line):
            body.append(f'<circle cx="{_num(x)}" cy="{_num(y)}" r="{radius}" fill="{SERIES[1]}">'
                        f'<title>{escape(f"{name}: {line_label} {line_fmt(float(raw or 0))}")}</title></circle>')
    note = _note(negative)
    if negative:
        body.append(_text(width - right, 13, note.strip(), size=12, anchor="end", fill=MUTED))
    total = sum(float(v or 0) for _, v in items)
    desc = (f"{len(items)} columns from {items[0][0]} to {items[-1][0]}; highest {fmt(top)}, total {fmt(total)}."
            + (f" {line_label} drawn as a line, highest {line_fmt(dot_top)}." if line is not None else "") + note)
    return _svg(width, height, title, desc, body, "chart-columns")
