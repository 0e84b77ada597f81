"""`rsi demo --quick` end to end on the bundled model: every stage writes its files, the report
links only to files that exist, a rerun reuses the caches, and bad settings are clear errors."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from rsi_plugin.cli import main
from rsi_plugin.apps.demo import DemoConfig, pick_ablation_blocks


QUICK_BLOCKS = ("1.0", "1.1", "2.0", "2.1")


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "run"
    # four blocks keep the suite fast; that the quick run covers every block by default is
    # tested on its settings (test_default_scope_is_layers_1_to_3_of_tiny_and_all_elsewhere)
    assert main(["demo", "--quick", "--blocks", *QUICK_BLOCKS, "--out", str(out), "--no-progress"]) == 0
    return out


def test_demo_writes_every_stage(demo_dir):
    settings = json.loads((demo_dir / "settings.json").read_text())
    assert settings["model"] == "tiny" and settings["quick"] is True
    assert set(settings["wall_time_s"]) >= {"scan", "figures", "ablation", "report", "total"}
    scan = pd.read_csv(demo_dir / "scan" / "scan.csv", dtype={"block": str})
    for column in ("block", "channel", "seed", "pre_in", "pre_scaled", "post_in", "post_pre", "ratio", "eq1", "eq2",
                   "in_status", "pre_status", "verdict", "passes"):
        assert column in scan.columns
    # every channel of the four blocks was scanned in the first seed; later seeds only where the
    # adaptive rule asked for them, never for a channel the first seed settled
    first = scan[scan["seed"] == 0]
    assert sorted(first["block"].unique()) == list(QUICK_BLOCKS)
    assert len(first) == 16 + 16 + 32 + 32
    assert set(scan["seed"]) <= {0, 1} and settings["seeds"] == 2
    # an undetermined verdict never passes
    assert not (scan["passes"].astype(bool) & (scan["verdict"] == "undetermined")).any()
    # summary.csv's robust count equals the channels passing in every seed they were rendered in,
    # recomputed here from scan.csv
    summary = pd.read_csv(demo_dir / "scan" / "summary.csv", dtype={"block": str})
    per_channel = scan.groupby(["block", "channel"])["passes"].agg(lambda v: bool(v.astype(bool).all()))
    robust = per_channel.groupby(level="block").sum()
    assert list(summary["passing"]) == [int(robust.get(b, 0)) for b in summary["block"]]
    assert list(summary["undetermined"]) == [
        int((scan[(scan.block == b) & (scan.seed == 0)]["verdict"] == "undetermined").sum()) for b in summary["block"]]
    for block in settings["ablation_blocks_chosen"]:
        folder = demo_dir / "ablation" / block
        for name in ("ablation.csv", "eq3.csv", "eq3.png", "accuracy.png", "sweep.json"):
            assert (folder / name).is_file(), name
        cells = pd.read_csv(folder / "ablation.csv")
        assert {"condition", "trial", "scale", "accuracy", "n_images"} <= set(cells.columns)
        assert set(cells["scale"]) == {0.0, 0.2, 0.4}
    grids = list((demo_dir / "figures").glob("grid_*.png"))
    # a smoke run: when nothing is robust at 8 steps, forced channels still go through the grids and
    # the sweep, and settings.json says it is no result
    assert settings["smoke"] is True and "not a result" in settings["smoke_note"]
    forced = settings["smoke_channels"]
    if forced is not None:
        assert int(robust.sum()) == 0 and len(grids) == sum(len(v) for v in forced.values())
    else:
        assert len(grids) == sum(min(2, int(n)) for n in robust)
    assert len(settings["ablation_blocks_chosen"]) == 2 and len(grids) > 0
    assert "plateau" in settings["step_cap_warning"]
    results = json.loads((demo_dir / "results-summary.json").read_text())
    assert [b["block"] for b in results["blocks"]] == list(summary["block"])

    # the controls ran through the same code: one untrained copy (quick), its rows and comparison
    # written, carried into the results summary that the method card reads
    controls = pd.read_csv(demo_dir / "scan" / "scan_controls.csv", dtype={"block": str})
    assert set(controls["control"]) == {"random-init@1000"}
    assert len(controls[controls["seed"] == 0]) == len(first)
    assert {"control_counts", "control_p", "control_verdict"} <= set(summary.columns)
    for block in results["blocks"]:
        row = summary[summary["block"] == block["block"]].iloc[0]
        assert block["controls"]["counts"] == [int(row["control_counts"])]
        assert block["controls"]["trained"] == int(row["passing"])
        assert set(block["sensitivity"]) == {"zoom_center", "png"}
    sensitivity = pd.read_csv(demo_dir / "scan" / "sensitivity_summary.csv", dtype={"block": str})
    assert set(sensitivity["block"]) == set(summary["block"]) | {"all"}
    assert "sensitivity" in settings["wall_time_s"]
    # the planted positive control ran for real even in the smoke run (its FZs are not capped at 8 steps)
    planted = json.loads((demo_dir / "planted" / "planted.json").read_text())
    assert planted["recall"] >= 0.9 and planted["false_positive_rate"] <= 0.05
    assert results["planted"]["recall"] == planted["recall"] and "planted" in settings["wall_time_s"]


def test_grid_rows_are_the_first_seeds_rows_of_the_channel_set():
    from rsi_plugin.apps.demo import _grid_rows

    table = pd.DataFrame({
        "block": ["2.1"] * 6, "channel": [0, 1, 2, 0, 1, 2], "seed": [0, 0, 0, 1, 1, 1],
        "passes": [True, True, False, True, False, False],
        "verdict": ["pass", "pass", "undetermined", "pass", "fail", "undetermined"]})
    config = DemoConfig(seed=0)
    rows = _grid_rows(table, config)
    assert list(rows["seed"]) == [0, 0, 0]
    assert list(rows["passes"]) == [True, False, False]  # only channel 0 passes in both seeds
    config.channel_set = "any"
    assert list(_grid_rows(table, config)["passes"]) == [True, True, False]


def test_report_links_only_existing_files(demo_dir):
    html = (demo_dir / "report.html").read_text()
    targets = re.findall(r'(?:src|href)="([^"#]+)"', html)
    assert targets, "the report shows no figure"
    for target in targets:
        if target.startswith(("http://", "https://", "data:")):
            continue
        assert (demo_dir / target).is_file(), target


def test_rerun_reuses_the_caches(demo_dir, monkeypatch):
    import rsi_plugin.featureviz.optimize as featureviz

    def no_optimisation(*args, **kwargs):
        raise AssertionError("a feature visualisation was recomputed")

    monkeypatch.setattr(featureviz, "_optimize_stream", no_optimisation)
    before = pd.read_csv(demo_dir / "scan" / "scan.csv", dtype={"block": str})
    assert main(["demo", "--quick", "--blocks", *QUICK_BLOCKS, "--out", str(demo_dir), "--no-progress"]) == 0
    after = pd.read_csv(demo_dir / "scan" / "scan.csv", dtype={"block": str})
    runs = json.loads((demo_dir / "settings.json").read_text())["runs"]
    assert len(runs) == 2 and all("scan" in r["wall_time_s"] for r in runs), "the first run's times were lost"
    pd.testing.assert_frame_equal(before.drop(columns=["fz_computed"], errors="ignore"),
                                  after.drop(columns=["fz_computed"], errors="ignore"))


def test_default_scope_is_layers_1_to_3_of_tiny_and_all_elsewhere(tmp_path):
    from rsi_plugin.cli import build_parser
    from rsi_plugin.apps.demo import TINY_DEFAULT_BLOCKS

    assert DemoConfig().resolved().blocks == list(TINY_DEFAULT_BLOCKS) == ["1.1", "2.0", "2.1", "3.1"]
    assert DemoConfig(blocks="all").resolved().blocks == "all"
    assert DemoConfig(model="resnet18", data=str(tmp_path)).resolved().blocks == "all"
    assert DemoConfig.quick_run(str(tmp_path)).resolved().blocks == "all"  # the smoke run covers every block
    assert build_parser(["demo"]).parse_args(["demo"]).blocks is None


def test_pick_ablation_blocks():
    summary = pd.DataFrame({"block": ["1.1", "2.1", "3.1", "4.1"], "passing": [3, 9, 9, 100]})
    channels = {"1.1": 16, "2.1": 32, "3.1": 64, "4.1": 128}
    # 4.1 has too few non-passing channels to draw a random set; ties go to the earlier block
    assert pick_ablation_blocks(summary, 2, channels) == ["2.1", "3.1"]
    assert pick_ablation_blocks(summary, ["4.1"], channels) == ["4.1"]


def test_the_blocks_ablated_follow_the_channel_set():
    """--channel-set any must choose blocks by their any-seed sets, not by the robust count
    (a demo with no robust channel but any-seed ones ablated nothing before this test)."""
    from rsi_plugin.apps.demo import channel_set_sizes

    # 1.1: channel 0 passes in both seeds, 1 in seed 1 only; 2.1: channels 0-2 pass in seed 0 only
    rows = [("1.1", 0, 0, True), ("1.1", 0, 1, True), ("1.1", 1, 0, False), ("1.1", 1, 1, True)]
    rows += [("1.1", c, s, False) for c in range(2, 8) for s in (0, 1)]
    rows += [("2.1", c, 0, c < 3) for c in range(8)] + [("2.1", c, 1, False) for c in range(8)]
    table = pd.DataFrame(rows, columns=["block", "channel", "seed", "passes"])
    table["verdict"] = ["pass" if p else "fail" for p in table["passes"]]
    channels = {"1.1": 8, "2.1": 8}
    robust = channel_set_sizes(table, ["1.1", "2.1"], "robust")
    assert robust["passing"].tolist() == [1, 0]
    assert pick_ablation_blocks(robust, 2, channels) == ["1.1"]
    any_seed = channel_set_sizes(table, ["1.1", "2.1"], "any")
    assert any_seed["passing"].tolist() == [2, 3]
    assert pick_ablation_blocks(any_seed, 2, channels) == ["2.1", "1.1"]
    assert channel_set_sizes(table, ["1.1", "2.1"], "seed:1")["passing"].tolist() == [2, 0]


@pytest.mark.parametrize("kwargs, match", [
    ({"steps": 0}, "steps must be a positive integer"),
    ({"trials": -1}, "trials must be an integer >= 0"),
    ({"model": "resnet18"}, "needs data="),
])
def test_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DemoConfig(**kwargs).resolved()
