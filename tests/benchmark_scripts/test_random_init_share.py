"""The README's untrained-resnet18 table is generated from its committed JSON
(benchmarks/random_init_share.py), and the shares are counted as stated."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.random_init_share import END, START, block_text, shares  # noqa: E402

COMMITTED = ROOT / "benchmarks" / "results" / "resnet18_random_init.json"


def test_readme_block_is_the_committed_measurement():
    text = (ROOT / "README.md").read_text()
    result = json.loads(COMMITTED.read_text())
    assert text.count(START) == 1 and text.count(END) == 1
    assert block_text(result) in text
    # the JSON is the committed scan's count, not a typed number
    recount = shares(COMMITTED.parent / "resnet18_random_init")
    assert [b["passing"] for b in recount["blocks"]] == [b["passing"] for b in result["blocks"]]


def test_shares_count_determined_channels_with_a_wilson_interval(tmp_path):
    rows = [{"block": "2.1", "channel": c, "passes": c == 0, "verdict": v, "in_steps_used": 10, "pre_steps_used": 20}
            for c, v in ((0, "pass"), (1, "fail"), (2, "undetermined"), (3, "fail"))]
    pd.DataFrame(rows).to_csv(tmp_path / "scan.csv", index=False)
    block = shares(tmp_path)["blocks"][0]
    assert (block["passing"], block["determined"], block["undetermined"]) == (1, 3, 1)
    assert block["share_determined"] == pytest.approx(1 / 3)
    assert block["wilson_low"] < 1 / 3 < block["wilson_high"] and block["paper_passing"] == 23
