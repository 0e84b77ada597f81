"""The report as a reader sees it (issue 21 item 19): the Eq. 3 chart on an honest axis with the
null it is judged against, the screening tolerance actually used, readable settings and Fig.-1
grids, and no table running off a 1,400 px window, checked in a real headless browser
(``chromium``) where one is installed, and by the style rules that prevent the overflow where
none is.

The run directory is written from tables alone (no model): a scan with the wide
``summary.csv`` that ``rsi scan`` writes, a ``settings.json`` with the ``runs`` list of
``rsi demo``, a Fig.-1 grid image and an ablation sweep with null sets and tolerance ``auto``.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from rsi_plugin.ablation.eq3 import eq3_summary
from rsi_plugin.core.runfolder import grid_filename
from rsi_plugin.outputs.plots import eq3_figure
from rsi_plugin.outputs.report import write_report

WIDTH = 1400

#: the columns of a real summary.csv (rsi scan with seeds and untrained controls)
SUMMARY_COLUMNS = ("source transform block channels passing share seeds robust any_seed undetermined not_robust "
                   "passing_mean passing_min passing_max undetermined_mean jaccard_mean jaccard_min jaccard_max "
                   "null_expected null_low null_high null_p layer index control_trained control_trained_determined "
                   "controls control_names control_counts control_mean control_max control_determined "
                   "control_passing control_p control_rank_p control_verdict control_compared_seeds").split()


def _cells(scales=(0.0, 0.1, 0.2), trials=3, null_sets=12, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for scale in scales:
        rows.append({"condition": "none", "trial": 0, "scale": scale, "accuracy": 0.98 - 0.05 * scale})
        rows.append({"condition": "invariant", "trial": 0, "scale": scale, "accuracy": 0.97 - 0.15 * scale})
        for trial in range(trials):
            rows.append({"condition": "random", "trial": trial, "scale": scale,
                         "accuracy": 0.975 - 0.05 * scale + rng.normal(0, 0.002)})
        for trial in range(null_sets):
            rows.append({"condition": "null_set", "trial": trial, "scale": scale,
                         "accuracy": 0.97 - 0.06 * scale + rng.normal(0, 0.004)})
    frame = pd.DataFrame(rows)
    frame["n_images"] = 1000
    frame["correct"] = (frame["accuracy"] * 1000).round().astype(int)
    return frame


def _run(root: Path) -> Path:
    scan = root / "scan"
    scan.mkdir(parents=True)
    pd.DataFrame({"source": "fz", "block": "1.1", "channel": range(16), "passes": [c == 9 for c in range(16)]}
                 ).to_csv(scan / "scan.csv", index=False)
    summary = {c: [0.123456] for c in SUMMARY_COLUMNS}
    summary.update(source="fz", transform="scale", block="1.1", channels=16, passing=1,
                   control_names="random-init@1000 random-init@1001", control_verdict="not above the untrained network")
    pd.DataFrame(summary).to_csv(scan / "summary.csv", index=False)
    figures = root / "figures"
    figures.mkdir()
    Image.new("RGB", (504, 456), "white").save(figures / grid_filename("1.1", 9))
    runs = [{"started": "2026-12-03T10:05:31", "wall_time_s": {"scan": 633.09, "planted": 23.2, "ablation": 22.76,
                                                               "total_before_report": 689.42, "report": 0.27}},
            {"started": "2026-12-03T10:18:19", "wall_time_s": {"scan": 4.33, "planted": 5.21, "ablation": 0.78,
                                                               "total_before_report": 13.37, "report": 0.28}}]
    (root / "settings.json").write_text(json.dumps({"model": "tiny", "weights": "shipped", "blocks": ["1.1"],
                                                    "runs": runs}))
    sweep = root / "ablation" / "1.1"
    sweep.mkdir(parents=True)
    cells = _cells()
    cells.to_csv(sweep / "ablation.csv", index=False)
    eq3 = eq3_summary(cells)
    eq3 = eq3.assign(trials_asked=3, trials_kept=3, draws=5, tolerance=0.0010000000000000009, tolerance_setting="auto")
    eq3.to_csv(sweep / "eq3.csv", index=False)
    pd.DataFrame({"draw": range(5), "channels": "3 4", "correct": 975, "n_images": 1000, "accuracy": 0.975,
                  "invariant_accuracy": 0.97, "kept": [True, True, False, True, False], "trial": [0, 1, -1, 2, -1]}
                 ).to_csv(sweep / "draws.csv", index=False)
    (sweep / "sweep.json").write_text(json.dumps({"block": "1.1", "channels": [9], "scales": [0.0, 0.1, 0.2],
                                                  "trials": 3, "tolerance": "auto", "null_sets": 12, "node": "post",
                                                  "model": "tiny"}))
    return root


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    return write_report(_run(tmp_path_factory.mktemp("browser") / "run"))


def test_eq3_chart_starts_at_zero_and_shows_the_null_beside_the_invariant_set():
    cells = _cells()
    figure = eq3_figure(eq3_summary(cells), results=cells)
    ratio, deficit = figure.axes[:2]
    assert ratio.get_ylim()[0] == 0.0  # bars of a ratio near 1 start at 0
    labels = [t.get_text() for t in deficit.get_legend().get_texts()]
    assert any("null" in t and "5" in t and "95" in t for t in labels), labels
    assert any("invariant" in t for t in labels), labels
    low, high = deficit.get_ylim()
    assert low < 0 < high  # deficits on an axis through 0
    assert len(eq3_figure(eq3_summary(cells)).axes) == 1  # without the cells: the ratio panel alone


def test_the_report_says_the_tolerance_used_and_renders_settings_and_grids_readably(report):
    text = report.read_text(encoding="utf-8")
    sentence = re.search(r"Screening of random control sets[^<]*", text).group(0)
    assert "+ auto" not in sentence and "+ 0.001 " in sentence and "auto" in sentence, sentence
    settings = text[text.index('id="settings"'):text.index("</table>", text.index('id="settings"'))]
    assert "{&quot;" not in settings and '{"' not in settings  # no raw JSON
    assert "wall_time_s" in settings and "633.1" in settings and "2026-12-03T10:18:19" in settings
    assert "width: 300px" not in text
    assert re.search(r"\.gallery figure\.grid img \{[^}]*max-width: 100%", text)


class _Tables(HTMLParser):
    """Each <table> and whether an ancestor is a scrolling container (class wide or scroll)."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.tables: list[bool] = []

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append(any(c in ("wide", "scroll") for c in " ".join(self.stack).split()))
        if tag == "div":
            self.stack.append(dict(attrs).get("class") or "")

    def handle_endtag(self, tag):
        if tag == "div" and self.stack:
            self.stack.pop()


PROBE = """<script>
window.addEventListener('load', function () {
  var width = document.documentElement.clientWidth, out = [];
  document.querySelectorAll('table, img, figure').forEach(function (el) {
    var box = el, r = el.getBoundingClientRect();
    if (r.right <= width + 0.5) return;
    for (var p = el.parentElement; p; p = p.parentElement) {  // a table may scroll inside its own box
      var s = getComputedStyle(p).overflowX;
      if (s === 'auto' || s === 'scroll' || s === 'hidden') { box = p; break; }
    }
    if (box.getBoundingClientRect().right > width + 0.5) out.push(el.tagName + '.' + el.className);
  });
  var grids = Array.prototype.map.call(document.querySelectorAll('figure.grid img'), function (i) {
    return Math.round(i.getBoundingClientRect().width); });
  document.title = 'PROBE' + JSON.stringify({scroll: document.documentElement.scrollWidth, width: width,
                                             overflow: out, grids: grids});
});
</script>"""


def test_no_table_runs_off_a_1400_px_window(report, tmp_path):
    text = report.read_text(encoding="utf-8")
    parser = _Tables()
    parser.feed(text)
    assert parser.tables and all(parser.tables)  # every table scrolls inside its own container
    assert re.search(r"\.wide \{[^}]*overflow-x: auto", text) and re.search(r"\.scroll \{[^}]*overflow: auto", text)
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:  # no browser on this machine: the static checks above are the test
        return
    probe = report.parent / ".probe.html"  # beside the report, so its relative image paths resolve
    probe.write_text(text.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    try:
        dom = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", f"--window-size={WIDTH},1000",
                              "--virtual-time-budget=3000", "--dump-dom", probe.as_uri()],
                             capture_output=True, text=True, timeout=60).stdout
    finally:
        probe.unlink()
    found = re.search(r"<title>PROBE(.*?)</title>", dom)
    assert found, dom[-2000:]
    result = json.loads(found.group(1).replace("&quot;", '"'))
    assert result["width"] <= WIDTH and result["scroll"] <= result["width"], result
    assert result["overflow"] == [], result
    assert result["grids"] and min(result["grids"]) >= 450, result  # the 504 px grid near its natural size


def test_the_starved_banner_names_the_screening_flag_of_today():
    from rsi_plugin.outputs.report import _starved

    text = _starved({"block": "1.1", "trials_kept": 1, "trials_asked": 10, "draws": 12, "tolerance": 0.0})
    assert "--screen-tolerance auto" in text and "--tolerance auto" not in text.replace("--screen-tolerance", "")
