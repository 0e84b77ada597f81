"""The report's HTML helpers (rsi_plugin.outputs.html), against html.parser and hand-made cases."""

from __future__ import annotations

import math
from html.parser import HTMLParser

import numpy as np
import pandas as pd

from rsi_plugin.outputs.html import Page, escape, format_value, html_table, percent, scale_label, settings_table


class Cells(HTMLParser):
    """The text of every td/th and the class of every td, as a browser would read them."""

    def __init__(self):
        super().__init__()
        self.cells, self.classes, self.tags, self._cell = [], [], [], None

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag in ("td", "th"):
            self._cell = []
            if tag == "td":
                self.classes.append(dict(attrs).get("class"))

    def handle_data(self, text):
        if self._cell is not None:
            self._cell.append(text)

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.cells.append("".join(self._cell))
            self._cell = None


def parsed(text: str) -> Cells:
    cells = Cells()
    cells.feed(text)
    cells.close()
    return cells


def test_values_are_formatted_and_markup_is_escaped():
    assert [format_value(v) for v in (None, float("nan"), math.inf, -math.inf, np.bool_(True), False, 1 / 3,
                                      np.float32(2.5), [0.1, 2], 7)] == \
        ["–", "–", "∞", "−∞", "yes", "no", "0.3333", "2.5", "0.1, 2", "7"]
    assert percent(0.25) == "25.0%" and percent(float("nan")) == "–" and percent("x") == "x"
    assert scale_label(0.2) == "20%" and scale_label("none") == "none"
    assert escape('<a href="x">&') == "&lt;a href=&quot;x&quot;&gt;&amp;"


def test_a_table_reads_back_as_its_frame():
    frame = pd.DataFrame({"<b>name</b>": ["<script>x</script>", "a&b"], "value": [0.5, float("nan")]})
    text = html_table(frame, {"value": percent}, row_class=lambda r: "pass" if r["value"] == 0.5 else "")
    cells = parsed(text)
    assert "script" not in cells.tags and "b" not in cells.tags  # nothing from the data became markup
    assert cells.cells == ["<b>name</b>", "value", "<script>x</script>", "50.0%", "a&b", "–"]
    assert cells.classes == ["txt", "num", "txt", "num"]
    assert text.count('<tr class="pass">') == 1
    nested = parsed(settings_table({"model": "tiny", "config": {"scales": [0.0, 0.5], "seed": 3}, "empty": {}}))
    assert nested.cells == ["model", "tiny", "config.scales", "0, 0.5", "config.seed", "3", "empty", "{}"]
    assert "(empty)" in settings_table({})


def test_the_page_links_only_files_inside_the_run(tmp_path):
    run = tmp_path / "run"
    (run / "sub dir").mkdir(parents=True)
    inside = run / "sub dir" / "a#1.png"
    inside.write_bytes(b"x")
    outside = tmp_path / "elsewhere.png"
    outside.write_bytes(b"x")
    page = Page(run)
    assert page.rel(inside) == "sub%20dir/a%231.png"
    assert page.rel(outside) is None and page.rel(run / "missing.png") is None and page.rel(run / "sub dir") is None
    assert page.link(outside, "<x>") == "&lt;x&gt;"
    assert page.figure(inside, "cap <i>") and not page.figure(outside, "cap")
    assert len(page.parts) == 1 and "cap &lt;i&gt;" in page.parts[0]
    page.section("Scan (§3)")
    page.section("Scan (§3)")
    page.section("Detail", level=3)
    assert [name for name, _ in page.toc] == ["scan-3", "scan-3-2"]
