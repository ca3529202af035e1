"""Server-side SVG charts (hub/charts.py): well-formed, accessible, every label escaped, nothing that runs or
loads anything, and sane with no data, zeros and negative figures."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from markupsafe import Markup

from hub import charts

SVG = "{http://www.w3.org/2000/svg}"
EVIL = '<script>alert(1)</script>" onload="alert(2)'


def parse(svg: Markup) -> ET.Element:
    assert isinstance(svg, Markup)
    root = ET.fromstring(str(svg))     # raises on anything not well-formed XML
    assert root.tag == SVG + "svg" and root.get("role") == "img" and root.get("viewBox")
    assert root.find(SVG + "title").text and root.find(SVG + "desc") is not None
    return root


def texts(root: ET.Element) -> list[str]:
    return ["".join(node.itertext()) for node in root.iter() if node.tag in (SVG + "text", SVG + "title", SVG + "desc")]


def nothing_active(svg: Markup) -> None:
    root = ET.fromstring(str(svg))
    for node in root.iter():
        assert node.tag.split("}")[1] not in ("script", "foreignObject", "image", "use", "a", "style"), node.tag
        for name, value in node.attrib.items():
            assert not name.lower().startswith("on"), name
            assert "href" not in name.lower() and "url(" not in value and "style" != name, (name, value)


ALL = {
    "bars": lambda label, values: charts.bars([(label, values[0]), ("b", values[1])], title=label),
    "grouped": lambda label, values: charts.grouped_bars([label, "b"], [("first", values), ("last", values[::-1])],
                                                         title=label),
    "heatmap": lambda label, values: charts.heatmap([label, "Tue"], ["00", "01"], [values, values[::-1]], title=label),
    "columns": lambda label, values: charts.columns([(label, values[0]), ("b", values[1])], title=label,
                                                    line=values[::-1], line_label=label),
}


@pytest.mark.parametrize("kind", ALL)
def test_a_script_label_is_escaped_text(kind):
    svg = ALL[kind](EVIL, [3, 5])
    root = parse(svg)
    assert "<script" not in str(svg) and 'onload="' not in str(svg)
    assert any("<script>" in t for t in texts(root))   # shown as the characters it is
    nothing_active(svg)


@pytest.mark.parametrize("kind", ALL)
def test_zeros_draw_without_dividing_by_zero(kind):
    root = parse(ALL[kind]("zero", [0, 0]))
    for rect in root.iter(SVG + "rect"):
        assert float(rect.get("width")) >= 0 and float(rect.get("height")) >= 0


@pytest.mark.parametrize("kind", ALL)
def test_negative_values_are_clamped_with_a_note(kind):
    svg = ALL[kind]("refunds", [-40, 10])
    root = parse(svg)
    for rect in root.iter(SVG + "rect"):
        assert float(rect.get("width")) >= 0 and float(rect.get("height")) >= 0
    assert any("Negative values are drawn as zero" in t for t in texts(root))
    assert "-40" in str(svg)   # the real figure is still told (tooltip, description)


def test_empty_data_says_so():
    for svg in (charts.bars([], title="t"), charts.grouped_bars([], [], title="t"), charts.heatmap([], [], [], title="t"),
                charts.columns([], title="t")):
        root = parse(svg)
        assert "No data" in texts(root)
        nothing_active(svg)


def test_bars_are_proportional_and_show_formatted_values():
    root = parse(charts.bars([("store", 100), ("web", 50)], title="Revenue", fmt=lambda v: f"{v:,.2f} EUR"))
    coloured = [r for r in root.iter(SVG + "rect") if r.get("fill") == charts.PRIMARY]
    assert float(coloured[0].get("width")) == pytest.approx(2 * float(coloured[1].get("width")))
    assert "100.00 EUR" in texts(root) and "store: 100.00 EUR" in texts(root)


def test_heatmap_shades_by_count_and_tells_each_value_in_a_tooltip():
    values = [[0] * 24 for _ in range(7)]
    values[5][14] = 9
    values[0][9] = 3
    root = parse(charts.heatmap(["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"], [f"{h:02d}" for h in range(24)],
                                values, title="Peak hours"))
    tips = {"".join(r.find(SVG + "title").itertext()): r.get("fill") for r in root.iter(SVG + "rect")
            if r.find(SVG + "title") is not None}
    assert len(tips) == 7 * 24
    assert tips["Sat 14: 9"] == "#1346d6" and tips["Mon 09: 3"] not in ("#1346d6", charts.EMPTY)
    assert tips["Sun 23: 0"] == charts.EMPTY
    assert "00" in texts(root) and "21" in texts(root)   # hour labels


def test_columns_with_a_line_have_a_point_per_column():
    items = [(f"2026-11-{d:02d}", d * 10.0) for d in range(1, 31)]
    root = parse(charts.columns(items, title="Revenue per day", line=list(range(30)), line_label="sessions"))
    assert len(list(root.iter(SVG + "circle"))) == 30 + 1   # the points and the legend's dot
    assert root.find(f"{SVG}polyline") is not None
