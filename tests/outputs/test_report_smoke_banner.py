"""A smoke run (``rsi demo --quick``) and a step cap below the plateau are said before any
number, in report.html and in ``rsi report --markdown`` (issue 21 item 16)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from rsi_plugin.cli import main
from rsi_plugin.core.runfolder import RunLayout
from rsi_plugin.outputs.report import write_report


def _run(root: Path, **settings) -> RunLayout:
    run = RunLayout(root)
    run.scan.dir.mkdir(parents=True)
    pd.DataFrame({"source": "fz", "block": ["2.1"] * 4, "channel": [0, 1, 2, 3],
                  "passes": [True, False, False, False]}).to_csv(run.scan.table, index=False)
    run.settings.write_text(json.dumps({"model": "tiny", **settings}))
    return run


def test_a_smoke_run_is_labelled_before_the_method_card(tmp_path, capsys):
    run = _run(tmp_path / "run", smoke=True, smoke_note="a smoke run of every stage at an 8-step cap",
               smoke_channels={"2.1": [1, 3]}, step_cap_warning="2 of 2 FZs ended unconverged at the 8-step cap")
    html = write_report(run.root).read_text()
    smoke = html.index("SMOKE RUN, NOT A RESULT")
    assert smoke < html.index('id="method-card"') and "2.1: 1, 3" in html
    assert "STEP CAP BELOW THE PLATEAU: 2 of 2 FZs" in html
    assert main(["report", str(run.root), "--markdown"]) == 0
    markdown = capsys.readouterr().out.split("\n", 1)[1]  # after the line naming report.html
    assert markdown.lstrip().startswith("> **SMOKE RUN, NOT A RESULT")


def test_an_ordinary_run_has_no_smoke_banner(tmp_path, capsys):
    run = _run(tmp_path / "run", smoke=False, step_cap_warning=None)
    html = write_report(run.root).read_text()
    assert "SMOKE RUN" not in html and "STEP CAP" not in html
    assert main(["report", str(run.root), "--markdown"]) == 0
    assert "SMOKE RUN" not in capsys.readouterr().out
