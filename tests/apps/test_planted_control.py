"""The planted positive control of a run (apps.planted): the real scan recovers the planted
channels across seeds, the untrained copies do not carry them, the Eq. 3 positive control is
detected, and the numbers reach the results summary and the method card."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from rsi_plugin.apps.planted import PlantedControlConfig, eq3_detected, recovery, run_planted_control
from rsi_plugin.core.runfolder import RunLayout
from rsi_plugin.outputs.method_card import method_card
from rsi_plugin.outputs.summary import render_markdown, summarize_contents
from rsi_plugin.zoo.planted import PLANTED_BLOCK, PLANTED_CHANNELS


@pytest.fixture(scope="module")
def planted_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    config = PlantedControlConfig(seeds=(0, 1, 2), controls=2, samples=300, trials=3, null_sets=60,
                                  scales=(0.0, 0.3, 0.5))
    return root, run_planted_control(RunLayout(root).planted.dir, config, progress=False)


def test_the_instrument_sees_the_planted_answer(planted_run):
    root, result = planted_run
    files = RunLayout(root).planted
    assert json.loads(files.summary.read_text())["recall"] == result["recall"]
    table = pd.read_csv(files.scan, dtype={"block": str})
    assert sorted(table["seed"].unique()) == [0, 1, 2]
    # recomputed here from the written rows: recall over the planted (channel, seed) rows, false
    # positives over the others, an undetermined row never passing
    part = table[table["block"] == PLANTED_BLOCK]
    planted = part["channel"].isin(PLANTED_CHANNELS)
    assert result["recall"] == pytest.approx(part.loc[planted, "passes"].mean()) and result["recall"] >= 0.9
    assert result["false_positive_rate"] == pytest.approx(part.loc[~planted, "passes"].mean())
    assert result["false_positive_rate"] <= 0.05
    assert not (part["passes"] & (part["verdict"] == "undetermined")).any()
    # the untrained copies, scanned the same way, do not carry the planted property
    copies = pd.read_csv(files.controls, dtype={"block": str})
    assert sorted(copies["control"].unique()) == result["controls"] and len(result["controls"]) == 2
    assert result["control_planted_p"] < 0.05
    # the Eq. 3 positive control: a known scale-specific deficit, detected
    eq3 = pd.read_csv(files.eq3)
    assert result["eq3_detected"] is True and eq3_detected(eq3)
    assert "distinguishable from the null" in result["eq3_verdict"] and "not distinguishable" not in result["eq3_verdict"]


def test_summary_and_card_carry_the_planted_control(planted_run):
    from rsi_plugin.outputs.contents import RunContents

    root, result = planted_run
    summary = summarize_contents(RunContents(root=root, settings={}, scans=[], sweeps=[], grids={}))
    assert summary["planted"]["recall"] == pytest.approx(result["recall"])
    card = method_card({**summary, "blocks": [{"block": "2.1"}]})
    assert next(c for c in card if c.check == "planted").mark == "pass"
    assert "Planted positive control" in render_markdown({**summary, "blocks": [{"block": "2.1", "channels": 4}]})


def test_recovery_and_detection_on_constructed_tables():
    rows = [{"block": "1.0", "channel": c, "seed": s, "passes": p, "verdict": "pass" if p else v}
            for s in (0, 1) for c, p, v in ((0, True, "fail"), (1, s == 0, "undetermined"), (2, False, "fail"),
                                            (3, s == 1, "fail"))]
    got = recovery(pd.DataFrame(rows), planted=[0, 1], block="1.0")
    assert got["recall"] == 3 / 4 and got["false_positive_rate"] == 1 / 4
    assert got["missed"] == [1] and got["false_positives"] == [3] and got["undetermined"] == 1
    assert got["per_seed"] == {"0": [0, 1], "1": [0, 3]}
    eq3 = pd.DataFrame({"scale": [0.0, 0.25, 0.5], "p_null": [float("nan"), 0.02, 0.03]})
    assert eq3_detected(eq3)                                # 0.02 x 2 scaled conditions = 0.04 < 0.05
    eq3.loc[1, "p_null"] = 0.03
    assert not eq3_detected(eq3)                            # 0.06: not after Bonferroni
    assert not eq3_detected(eq3.drop(columns=["p_null"]))   # no null drawn: nothing detected
    with pytest.raises(Exception, match="no row of block"):
        recovery(pd.DataFrame(rows), planted=[0], block="2.1")
