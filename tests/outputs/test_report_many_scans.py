"""`rsi report DIR` with several scan folders below DIR (issue 21 item 4): "At a glance", the
method card, ``--markdown`` and the results summary show every scan, each row labelled by its
folder, instead of the first scan's blocks alone."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

from rsi_plugin.cli import main
from rsi_plugin.outputs.report import write_report
from rsi_plugin.outputs.summary import summarize_run


def _scan(folder: Path, block: str, passes: list[bool]) -> None:
    folder.mkdir(parents=True)
    pd.DataFrame({"source": "fz", "block": block, "channel": range(len(passes)), "passes": passes}
                 ).to_csv(folder / "scan.csv", index=False)


def _two_scans(root: Path) -> None:
    _scan(root / "alpha" / "scan", "1.1", [True, False, False, False])  # 1 of 4
    _scan(root / "beta" / "scan", "1.1", [True, True, True, False, False])  # 3 of 5, the same block name
    _scan(root / "beta" / "extra", "2.0", [False, True])


def _glance(text: str) -> str:
    start = text.index('id="at-a-glance"') if 'id="at-a-glance"' in text else text.index("At a glance")
    return text[start:text.index("</table>", start)]


def test_every_scan_below_the_directory_is_summarised_and_labelled(tmp_path, capsys):
    _two_scans(tmp_path)
    summary = summarize_run(tmp_path)
    rows = {(b["scan"], b["block"]): (b["passing"], b["channels"]) for b in summary["blocks"]}
    assert rows == {("alpha/scan", "1.1"): (1, 4), ("beta/extra", "2.0"): (1, 2), ("beta/scan", "1.1"): (3, 5)}

    text = write_report(tmp_path).read_text(encoding="utf-8")
    glance = _glance(text)
    for label in ("alpha/scan", "beta/scan", "beta/extra"):
        assert label in glance
    cells = re.findall(r"<td[^>]*>(.*?)</td>", glance)
    assert cells.count("1.1") == 2 and cells.count("2.0") == 1

    out = tmp_path / "summary.json"
    assert main(["report", str(tmp_path), "--markdown", "--summary-json", str(out)]) == 0
    markdown = capsys.readouterr().out
    header = next(line for line in markdown.splitlines() if line.startswith("| block |") and "/" in line)
    assert "alpha/scan 1.1" in header and "beta/scan 1.1" in header and "beta/extra 2.0" in header
    assert "1/4" in markdown and "3/5" in markdown and "1/2" in markdown
    saved = json.loads(out.read_text())
    assert {(b["scan"], b["block"]) for b in saved["blocks"]} == set(rows)


def test_one_scan_keeps_its_plain_block_rows(tmp_path):
    _scan(tmp_path / "scan", "1.1", [True, False])
    [row] = summarize_run(tmp_path)["blocks"]
    assert row["block"] == "1.1" and "scan" not in row
