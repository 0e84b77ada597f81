"""Model randomisation as a control of the scan: control specs, the exact test, the verdict
on constructed tables, the scan of untrained copies on the planted network (the planted
channel passes in the trained network, not in its random-init copies), cascades, the files
and `rsi scan --control`."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, ResNet

from rsi_plugin.cli import main
from rsi_plugin.criteria import controls as ctl
from rsi_plugin.criteria.channel_scan import ScanConfig, read_table, scan, scan_controls, write_scan
from rsi_plugin.criteria.controls import (
    ABOVE,
    NOT_ABOVE,
    UNDETERMINED,
    ControlSpec,
    compare_to_controls,
    control_rows,
    fisher_greater,
    mark_control_channels,
    parse_controls,
    plan_controls,
    rank_p,
)
from rsi_plugin.criteria.seeds import block_summary, channel_table
from rsi_plugin.errors import ConfigError, RSIError, UnknownNameError
from rsi_plugin.featureviz import optimize as featureviz
from rsi_plugin.featureviz.optimize import FeatureVizConfig
from rsi_plugin.testing.state import assert_same_state, model_state

# --------------------------------------------------------------------------- specs


def test_control_specs_parse_to_canonical_forms():
    assert [str(s) for s in parse_controls(["random-init", "random-init:3", " cascade:2.1", "cascade:3.10:2"])] == \
        ["random-init", "random-init:3", "cascade:2.1", "cascade:3.10:2"]
    assert parse_controls("random-init:2") == (ControlSpec("random-init", 2),)
    assert parse_controls("cascade:2.1:2") == (ControlSpec("cascade", 2, "2.1"),)
    assert parse_controls(None) == () == parse_controls([])
    assert ScanConfig(controls="random-init:2").controls == ("random-init:2",)
    assert ScanConfig().controls == () and ScanConfig().control_seed == 1000
    for bad in ("random", "random-init:0", "random-init:x", "random-init:2.1", "cascade", "cascade:", "cascade:2.1:",
                "cascade:2.1:0", "cascade:2.1:k", 3):
        with pytest.raises(ConfigError, match="valid: random-init, random-init:K, cascade:BLOCK or cascade:BLOCK:K"):
            ScanConfig(controls=(bad,))
    with pytest.raises(ConfigError, match="control seed must be an integer >= 0"):
        ScanConfig(controls=("random-init",), control_seed=-1)


def test_control_copies_are_numbered_over_all_specs():
    plan = plan_controls(["random-init:2", "cascade:2.1"], seed=10)
    assert [(c.name, c.kind, c.seed, c.cascade_to) for c in plan] == [
        ("random-init@10", "random-init", 10, None), ("random-init@11", "random-init", 11, None),
        ("cascade:2.1@12", "cascade:2.1", 12, "2.1")]
    assert [c.seed for c in plan_controls(["random-init:2"])] == [1000, 1001]


# --------------------------------------------------------------------------- the test and the verdict


def _fisher_by_enumeration(a: int, n1: int, b: int, n2: int) -> float:
    """The share of the ways to pick n1 of the pooled units that hold >= a passing ones."""
    units = [1] * (a + b) + [0] * (n1 + n2 - a - b)
    picks = list(itertools.combinations(range(len(units)), n1))
    return sum(sum(units[i] for i in pick) >= a for pick in picks) / len(picks)


@pytest.mark.parametrize("a,n1,b,n2", [(1, 1, 0, 2), (3, 3, 0, 3), (2, 4, 1, 8), (0, 3, 2, 6), (4, 5, 5, 10),
                                       (3, 6, 6, 6)])
def test_fisher_greater_equals_enumeration(a, n1, b, n2):
    assert fisher_greater(a, n1, b, n2) == pytest.approx(_fisher_by_enumeration(a, n1, b, n2), abs=1e-12)


def test_fisher_and_rank_p_known_values_and_errors():
    assert fisher_greater(3, 3, 0, 3) == 1 / math.comb(6, 3) == 0.05
    assert fisher_greater(0, 10, 0, 20) == 1.0
    assert fisher_greater(9, 10, 9, 20) == pytest.approx((math.comb(18, 9) * 12 + math.comb(18, 10)) / math.comb(30, 10))
    with pytest.raises(RSIError, match="0 <= a <= n1"):
        fisher_greater(4, 3, 0, 3)
    assert rank_p(5, [0, 1]) == pytest.approx(1 / 3)  # the floor with two copies
    assert rank_p(1, [1, 0]) == pytest.approx(2 / 3)  # a tie counts against the trained network
    assert math.isnan(rank_p(3, []))


def _rows(block: str, passing: dict[int, list[str]], control: str | None = None) -> pd.DataFrame:
    """Scan rows: channel -> its verdict per seed."""
    rows = []
    for channel, verdicts in passing.items():
        for seed, verdict in enumerate(verdicts):
            rows.append({"source": "fz", "transform": "scale", "block": block, "channel": channel, "seed": seed,
                         "verdict": verdict, "passes": verdict == "pass"})
    frame = pd.DataFrame(rows)
    if control is not None:
        frame.insert(0, "control", control)
    return frame


def _block(n: int, robust: int, undetermined: int = 0, once: int = 0) -> dict[int, list[str]]:
    """n channels over 2 seeds: ``robust`` pass in both, ``undetermined`` are undetermined in
    both, ``once`` pass in one seed only (not robust), the rest fail."""
    out = {}
    for c in range(n):
        if c < robust:
            out[c] = ["pass", "pass"]
        elif c < robust + undetermined:
            out[c] = ["undetermined", "undetermined"]
        elif c < robust + undetermined + once:
            out[c] = ["pass", "fail"]
        else:
            out[c] = ["fail", "fail"]
    return out


def test_verdict_on_constructed_tables():
    trained = pd.concat([_rows("1.0", _block(10, 6)), _rows("2.0", _block(10, 2)), _rows("3.0", _block(10, 1)),
                         _rows("4.0", _block(10, 9)), _rows("5.0", _block(10, 3))], ignore_index=True)
    controls = pd.concat([
        _rows("1.0", _block(10, 0, once=4), "a"), _rows("1.0", _block(10, 1, undetermined=2), "b"),
        _rows("2.0", _block(10, 2), "a"), _rows("2.0", _block(10, 0), "b"),          # a tie
        _rows("3.0", _block(10, 0), "a"), _rows("3.0", _block(10, 0), "b"),          # above both, test disagrees
        _rows("4.0", _block(10, 0), "a"), _rows("4.0", _block(10, 9), "b"),          # test agrees, one copy ties
        _rows("5.0", _block(10, 0, undetermined=10), "a"),                          # every control channel undetermined
    ], ignore_index=True)
    out = compare_to_controls(trained, controls).set_index("block")
    assert list(out.columns[:2]) == ["source", "transform"]
    row = out.loc["1.0"]
    assert (row.channels, row.trained, row.determined, row.controls) == (10, 6, 10, 2)
    assert row.trained_share == 0.6 and row.control_names == "a b" and row.control_counts == "0 1"
    assert (row.control_mean, row.control_max, row.control_determined, row.control_passing) == (0.5, 1, 18, 1)
    assert row.control_p == pytest.approx(fisher_greater(6, 10, 1, 18)) and row.control_p < 0.05
    assert row.control_rank_p == pytest.approx(1 / 3) and row.control_verdict == ABOVE
    assert out.loc["2.0", "control_verdict"] == NOT_ABOVE  # 2 vs 2 and 0
    assert out.loc["3.0", "control_p"] == pytest.approx(1 / 3) and out.loc["3.0", "control_verdict"] == NOT_ABOVE
    assert out.loc["4.0", "control_p"] < 0.05 and out.loc["4.0", "control_verdict"] == NOT_ABOVE  # 9 is not > 9
    assert out.loc["5.0", "controls"] == 1 and out.loc["5.0", "control_verdict"] == UNDETERMINED
    assert np.isnan(out.loc["5.0", "control_p"])
    # no control at all: undetermined, not a pass
    alone = compare_to_controls(trained, None)
    assert (alone["control_verdict"] == UNDETERMINED).all() and (alone["controls"] == 0).all()
    assert alone["control_p"].isna().all() and alone["control_max"].isna().all()
    # every trained channel undetermined: undetermined
    blind = compare_to_controls(_rows("3.0", _block(4, 0, undetermined=4)), _rows("3.0", _block(4, 0), "a"))
    assert blind.loc[0, "control_verdict"] == UNDETERMINED
    with pytest.raises(RSIError, match="'control' column"):
        compare_to_controls(trained, _rows("1.0", _block(3, 1)))

    marked = mark_control_channels(channel_table(trained), controls.assign())
    assert list(marked.columns[-2:]) == ["controls_passing", "passes_in_control"]
    one = marked[marked.block == "1.0"].set_index("channel")
    assert one.loc[0, "controls_passing"] == 1 and one.loc[0, "passes_in_control"]  # robust in copy b
    assert one.loc[1, "controls_passing"] == 0 and not one.loc[1, "passes_in_control"]  # copy a passes it once only
    four = marked[marked.block == "4.0"].set_index("channel")
    assert four.loc[8, "controls_passing"] == 1 and four.loc[9, "controls_passing"] == 0
    unmarked = mark_control_channels(channel_table(trained), None)
    assert unmarked["controls_passing"].isna().all() and unmarked["passes_in_control"].isna().all()


# --------------------------------------------------------------------------- the planted network
#
# test_seeds's planted network: channel 0 of block 1.0 passes in every seed. Its untrained copies
# (each module's reset_parameters: the planted stem filters and bn2's bias of 2000 are gone)
# must not pass it. The FZs run to a plateau (a short plateau window keeps the test fast).

PLANTED_QUICK = FeatureVizConfig(image_size=32, steps=128, lr=0.2, jitter=0, channels_per_batch=8, plateau_window=16)


@pytest.fixture(scope="module")
def planted() -> nn.Module:
    from test_seeds import biased_planted_net

    return biased_planted_net()


def test_the_planted_channel_passes_in_the_trained_network_not_in_its_random_copies(planted, tmp_path, monkeypatch):
    cache = tmp_path / "fz"
    config = ScanConfig(featureviz=PLANTED_QUICK, controls=("random-init:2",), cache_dir=cache)
    before = model_state(planted)
    table = scan(planted, "1.0", config, progress=False)
    assert_same_state(before, model_state(planted))
    assert table.loc[table.channel == 0, "verdict"].tolist() == ["pass"]
    rows = control_rows(table)
    assert rows["control"].unique().tolist() == ["random-init@1000", "random-init@1001"]
    assert rows["control_seed"].unique().tolist() == [1000, 1001]
    assert list(rows.columns[2:]) == list(table.columns)
    assert (rows.loc[rows.channel == 0, "verdict"] != "pass").all()  # the planted channel: not in a random copy
    assert set(rows["zoom_center"]) == set(table["zoom_center"])  # S about the trained network's centre
    assert [(c["name"], c["seed"], c["weights"], c["init"]) for c in table.attrs["controls"]] == [
        ("random-init@1000", 1000, "random-init@seed=1000", "reset_parameters"),
        ("random-init@1001", 1001, "random-init@seed=1001", "reset_parameters")]
    assert len([p for p in cache.iterdir() if p.is_dir()]) == 3  # one fingerprint per model: no shared FZ

    # the trained rows are exactly a scan without controls (whose FZs all come from the cache)
    monkeypatch.setattr(featureviz, "_optimize_stream", lambda *a, **k: pytest.fail("an FZ was recomputed"))
    plain = scan(planted, "1.0", ScanConfig(featureviz=PLANTED_QUICK, cache_dir=cache), progress=False)
    assert "controls" not in plain.attrs and "control_rows" not in plain.attrs
    pd.testing.assert_frame_equal(table.drop(columns="fz_computed"), plain.drop(columns="fz_computed"))
    own = ("controls", "control_rows", "settings")  # the settings name the controls (a folder merges by them)
    assert {k: v for k, v in table.attrs.items() if k not in own} == {
        k: v for k, v in plain.attrs.items() if k != "settings"}
    assert table.attrs["settings"] == {**plain.attrs["settings"], "controls": ["random-init:2"],
                                       "control_seed": 1000, "control_seeds": None}
    again = scan_controls(planted, "1.0", config, progress=False)  # the copies alone, cached
    pd.testing.assert_frame_equal(again[["control", "channel", "verdict", "ratio"]],
                                  rows[["control", "channel", "verdict", "ratio"]], check_dtype=False, rtol=1e-6)

    # the comparison, by hand: one seed, so robust = passes, determined = not undetermined
    compared = compare_to_controls(table, rows).iloc[0]
    a, n1 = int((table.verdict == "pass").sum()), int((table.verdict != "undetermined").sum())
    counts = [int((part.verdict == "pass").sum()) for _, part in rows.groupby("control", sort=True)]
    b, n2 = sum(counts), int((rows.verdict != "undetermined").sum())
    assert (compared.trained, compared.determined, compared.control_passing, compared.control_determined) == (a, n1, b, n2)
    assert compared.control_counts == " ".join(map(str, counts)) and compared.control_max == max(counts)
    assert compared.control_p == pytest.approx(fisher_greater(a, n1, b, n2))
    expected = ABOVE if a > max(counts) and compared.control_p < 0.05 else NOT_ABOVE
    assert compared.control_verdict == expected

    # the files: the copies' rows, the comparison and the channel marks after the existing columns
    out = tmp_path / "out"
    names = {p.name for p in write_scan(table, out)}
    assert {"scan.csv", "scan_channels.csv", "summary.csv", "scan_controls.csv"} <= names
    summary = read_table(out / "summary.csv")
    old = list(block_summary(table).columns)
    assert list(summary.columns[:len(old)]) == old
    renamed = {"trained": "control_trained", "determined": "control_trained_determined"}
    assert list(summary.columns[len(old):]) == [renamed.get(c, c) for c in ctl.COMPARISON_COLUMNS
                                                if c.startswith("control") or c in renamed] + ["control_compared_seeds"]
    assert summary["control_trained"].tolist() == [compared.trained]
    assert summary.loc[0, "control_verdict"] == compared.control_verdict
    channels = read_table(out / "scan_channels.csv").set_index("channel")
    assert list(channels.columns[-2:]) == ["controls_passing", "passes_in_control"]
    assert channels.loc[0, "controls_passing"] == 0 and not channels.loc[0, "passes_in_control"]
    back = read_table(out / "scan_controls.csv")
    assert back[["control", "channel", "verdict"]].equals(rows[["control", "channel", "verdict"]])
    write_scan(plain, out)  # a scan without controls leaves no stale control rows behind
    assert not (out / "scan_controls.csv").exists() and "control_verdict" not in read_table(out / "summary.csv")


# --------------------------------------------------------------------------- cascades and errors

FAST = FeatureVizConfig(image_size=32, steps=2, jitter=0, channels_per_batch=4)


@pytest.fixture(scope="module")
def model() -> nn.Module:
    torch.manual_seed(0)
    return ResNet(BasicBlock, [2, 1, 1, 1], num_classes=10).eval()


def test_a_cascade_copy_scans_only_the_blocks_it_randomised(model, tmp_path, monkeypatch):
    config = ScanConfig(featureviz=FAST, channels=[0, 1], cache_dir=tmp_path, controls=("cascade:2.0",))
    table = scan(model, ["1.1", "2.0"], config, progress=False)
    rows = control_rows(table)
    assert rows["block"].unique().tolist() == ["2.0"] and rows["control"].unique().tolist() == ["cascade:2.0@1000"]
    assert table.attrs["controls"][0]["blocks"] == ["2.0"]
    assert table.attrs["controls"][0]["weights"].startswith("cascade:2.0@seed=1000 over ")
    compared = compare_to_controls(table, rows).set_index("block")
    assert compared.loc["1.1", "controls"] == 0 and compared.loc["1.1", "control_verdict"] == UNDETERMINED
    assert compared.loc["2.0", "controls"] == 1
    marked = mark_control_channels(channel_table(table), rows)
    assert marked.loc[marked.block == "1.1", "controls_passing"].isna().all()
    assert marked.loc[marked.block == "2.0", "controls_passing"].notna().all()

    # an unknown cascade block fails before any FZ is rendered, listing the valid blocks
    monkeypatch.setattr(featureviz, "_optimize_stream", lambda *a, **k: pytest.fail("an FZ was rendered"))
    with pytest.raises(UnknownNameError, match=r"unknown block '9\.9'; valid blocks: 1\.0, 1\.1, 2\.0"):
        scan(model, "1.1", ScanConfig(featureviz=FAST, controls=("cascade:9.9",)), progress=False)
    with pytest.raises(ConfigError, match="controls is empty"):
        scan_controls(model, "1.1", ScanConfig(featureviz=FAST), progress=False)
    with pytest.raises(TypeError, match="one-pass iterator"):
        scan(model, "1.1", ScanConfig(source="natural", controls=("random-init",)),
             data=iter([torch.zeros(2, 3, 32, 32)]), progress=False)


def test_cli_scan_with_controls(tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["scan", "--model", "tiny", "--blocks", "1.0", "--channels", "0", "1", "--steps", "2", "--jitter", "0",
            "--out", str(out), "--no-progress", "--control", "random-init:1", "--control-seed", "7"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "against untrained copies" in printed and "control_verdict" in printed
    rows = read_table(out / "scan_controls.csv")
    assert rows["control"].unique().tolist() == ["random-init@7"] and len(rows) == 2
    assert "control_verdict" in read_table(out / "summary.csv").columns

    bad = ["scan", "--model", "tiny", "--out", str(tmp_path / "bad"), "--control"]
    for spec, message in (("random-init:0", "valid: random-init, random-init:K, cascade:BLOCK"),
                          ("cascade:9.9", "unknown block '9.9'; valid blocks: 1.0, 1.1")):
        assert main(bad + [spec]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("rsi scan: error:") and message in err


def test_control_seeds_renders_the_copies_with_fewer_seeds_and_compares_on_those(planted, tmp_path):
    config = ScanConfig(featureviz=PLANTED_QUICK, seeds=(0, 1), controls=("random-init:1",), control_seeds=1,
                        cache_dir=tmp_path / "fz")
    table = scan(planted, "1.0", config, progress=False)
    rows = control_rows(table)
    assert sorted(table["seed"].unique()) == [0, 1] and sorted(rows["seed"].unique()) == [0]
    compared = compare_to_controls(table, rows).iloc[0]
    first = table[table["seed"] == 0]  # the trained side judged on seed 0 only, as the copy was
    assert compared.trained == int((first.verdict == "pass").sum())
    assert compared.determined == int((first.verdict != "undetermined").sum())
    with pytest.raises(RSIError, match="control_seeds must be"):
        ScanConfig(seeds=(0, 1), controls=("random-init",), control_seeds=3)
