"""`rsi demo --quick` is a smoke run of every stage (issue 21 item 16): with no channel in the
ablated set at its step cap it forces the best raw candidates through the Fig.-1 grids and the
ablation sweep, records ``smoke`` in settings.json, and a step cap below the plateau the model
needs is warned about once."""

from __future__ import annotations

import json
import logging

import pandas as pd
import pytest

import rsi_plugin as rsi
from rsi_plugin.apps.demo import DemoConfig, run_demo, smoke_channels, step_cap_warning
from rsi_plugin.criteria.channel_scan import ScanConfig, scan
from rsi_plugin.errors import RSIError
from rsi_plugin.featureviz.optimize import FeatureVizConfig


@pytest.fixture(scope="module")
def tiny():
    return rsi.load_model("tiny")


def test_a_quick_run_draws_grids_and_sweeps_smoke_channels(tmp_path, caplog, monkeypatch):
    out = tmp_path / "run"
    config = DemoConfig.quick_run(str(out), blocks=["1.0"], seeds=1, controls=0, planted=False,
                                  samples=32, natural_samples=16, null_sets=4, trials=1)
    with caplog.at_level(logging.WARNING, logger="rsi_plugin.apps.demo"):
        result = run_demo(config, progress=False)
    settings = json.loads((out / "settings.json").read_text())
    assert settings["smoke"] is True and "not a result" in settings["smoke_note"]
    forced = settings["smoke_channels"]
    assert list(forced) == ["1.0"] and len(forced["1.0"]) == 2
    scan_rows = pd.read_csv(out / "scan" / "scan.csv", dtype={"block": str})
    assert not scan_rows["passes"].any()  # nothing passes at 8 steps: the grids and the sweep are forced
    grids = sorted(p.name for p in (out / "figures").glob("grid_*.png"))
    assert grids == sorted(f"grid_{b}_{c}.png" for b, cs in forced.items() for c in cs)
    [block] = settings["ablation_blocks_chosen"]
    eq3 = pd.read_csv(out / "ablation" / block / "eq3.csv")
    assert len(eq3) == 3 and set(result["eq3"]) == {block}
    cells = pd.read_csv(out / "ablation" / block / "ablation.csv")
    assert {"invariant", "none"} <= set(cells["condition"])
    # the 8-step cap: warned once, and recorded
    assert "plateau" in settings["step_cap_warning"]
    assert sum("plateau" in r.getMessage() for r in caplog.records) == 1
    # a rerun into the same folder with other blocks and other settings is refused before any FZ is
    # rendered (issue 21 item 9): its scan would have been merged with rows of other settings
    import rsi_plugin.featureviz.optimize as featureviz

    monkeypatch.setattr(featureviz, "_optimize_stream", lambda *a, **k: pytest.fail("an FZ was rendered"))
    other = DemoConfig.quick_run(str(out), blocks=["1.1"], steps=9, seeds=1, controls=0, planted=False)
    with pytest.raises(RSIError, match="featureviz.steps: 8 there, 9 here"):
        run_demo(other, progress=False)


def test_smoke_channels_rank_the_raw_criteria():
    table = pd.DataFrame({"block": ["2.1"] * 4 + ["2.1"] * 4, "channel": [0, 1, 2, 3] * 2, "seed": [0] * 4 + [1] * 4,
                          "eq1": [False, True, True, True, True, True, True, True],
                          "eq2": [True, True, False, True, True, True, True, True],
                          "eq2_margin": [0.5, 0.1, 0.9, 0.3, 0, 0, 0, 0]})
    assert smoke_channels(table, "2.1", seed=0, k=2) == [3, 1]  # both criteria first, then the Eq. 2 margin
    assert smoke_channels(table, "2.1", seed=0, k=3) == [3, 1]  # at most half: a random set must remain
    assert smoke_channels(table, "2.1", seed=1, k=2) == [0, 1]  # ties: the lower channel
    assert smoke_channels(table[table.channel != 3], "2.1", seed=0, k=1) == [1]
    assert smoke_channels(table, "9.9", seed=0, k=2) == []


def test_the_step_cap_warning_on_tiny(tiny):
    block, channels = "1.1", [2]
    capped = scan(tiny, block, ScanConfig(featureviz=FeatureVizConfig(steps=64), channels=channels), progress=False)
    message = step_cap_warning(capped, 64)
    assert message is not None and "2 of 2" in message and "64-step cap" in message
    default = scan(tiny, block, ScanConfig(channels=channels), progress=False)  # the paper's 2560 cap
    assert step_cap_warning(default, 2560) is None
