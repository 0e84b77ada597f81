"""scan end to end on a small model (FZs, natural images, both), its cache, the top-k search,
the paper's channel lists and compare_to_paper, and `rsi scan`."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from rsi_plugin.testing.state import assert_same_state, model_state
from PIL import Image
from torch import nn
from torchvision.models.resnet import BasicBlock, ResNet

import rsi_plugin as rsi
from rsi_plugin.featureviz import optimize as featureviz
from rsi_plugin.cli import main
from rsi_plugin.criteria.captum import ScaleInvariance
from rsi_plugin.criteria.equations import TABLE_COLUMNS, summarize
from rsi_plugin.featureviz.optimize import FeatureVizConfig
from rsi_plugin.criteria.natural import top_k_images
from rsi_plugin.paper import PAPER_BLOCKS, compare_to_paper, paper_channels
from rsi_plugin.criteria.channel_scan import ScanConfig, natural_data, scan

FAST = FeatureVizConfig(image_size=32, steps=2, jitter=0, channels_per_batch=4)


@pytest.fixture(scope="module")
def model() -> nn.Module:
    torch.manual_seed(0)
    return ResNet(BasicBlock, [2, 1, 1, 1], num_classes=10).eval()


@pytest.fixture(scope="module")
def data() -> torch.Tensor:
    return torch.randn(30, 3, 32, 32, generator=torch.Generator().manual_seed(7))


def close(a, b, tol=1e-4) -> bool:
    return np.allclose(np.asarray(a, dtype=float), np.asarray(b, dtype=float), atol=tol, rtol=tol)


# --------------------------------------------------------------------------- scan with FZs


def test_scan_end_to_end_then_rerun_uses_the_cache(model, tmp_path, monkeypatch):
    config = ScanConfig(featureviz=FAST, channels=[0, 1, 2], cache_dir=tmp_path)
    before = model_state(model)
    table = scan(model, ["1.1", "2.0"], config, progress=False)
    assert_same_state(before, model_state(model))  # no hook left, weights, modes and flags as they were
    assert list(table.columns[:1 + len(TABLE_COLUMNS)]) == ["source", *TABLE_COLUMNS]
    assert list(table.columns[-3:]) == ["seed", "layer", "index"] and "verdict" in table.columns
    assert len(table) == 6 and (table["source"] == "fz").all() and (table["seed"] == 0).all()
    assert table["layer"].tolist() == [1] * 3 + [2] * 3 and table["index"].tolist() == [1] * 3 + [0] * 3
    assert table["block"].tolist() == ["1.1"] * 3 + ["2.0"] * 3
    assert table["fz_computed"].all()
    # the activation each FZ achieved (the renderer's own reading) equals In_c / Pre_c of
    # the same image read back through capture
    assert close(table["in_fz_act"], table["in_in"])
    assert close(table["pre_fz_act"], table["pre_pre"])
    assert set(table["verdict"]) <= {"pass", "fail", "undetermined"}
    assert table["passes"].equals(table["eq1"] & table["eq2"] & (table["verdict"] != "undetermined"))
    for path in table["in_fz_path"].tolist() + table["pre_fz_path"].tolist():
        assert Path(path).is_file() and path.endswith(".png")
    assert table.attrs["node_variant"] == "text" and table.attrs["transform"] == "scale"
    summary = summarize(table)
    assert summary["channels"].tolist() == [3, 3]
    assert summary["passing"].tolist() == [int(table.loc[table.block == b, "passes"].sum()) for b in ("1.1", "2.0")]

    def no_optimisation(*args, **kwargs):
        raise AssertionError("an FZ was recomputed")

    monkeypatch.setattr(featureviz, "_optimize_stream", no_optimisation)
    again = scan(model, ["1.1", "2.0"], config, progress=False)
    assert not again["fz_computed"].any()
    numeric = ["pre_in", "pre_scaled", "post_in", "post_pre", "in_fz_act", "pre_fz_act"]
    assert close(again[numeric], table[numeric], tol=1e-6)
    assert again["passes"].tolist() == table["passes"].tolist()


def test_scan_matches_scale_invariance_on_the_rendered_images(model, tmp_path):
    config = ScanConfig(featureviz=FAST, channels=[3, 4], cache_dir=tmp_path, transform="rotate:90", tolerance=2.0)
    table = scan(model, "2.0", config, progress=False)
    fz_in = featureviz.render(model, "2.0", "in", [3, 4], FAST, cache_dir=tmp_path, progress=False)
    fz_pre = featureviz.render(model, "2.0", "pre", [3, 4], FAST, cache_dir=tmp_path, progress=False)
    assert fz_in.computed == [] and fz_pre.computed == []
    si = ScaleInvariance(model, "2.0")
    expected = si.evaluate((rsi.normalize(fz_in.images, model), rsi.normalize(fz_pre.images, model)), channels=[3, 4],
                           transform="rotate:90", tolerance=2.0).table()
    assert (table["transform"] == "rotate:90").all() and (table["tolerance"] == 2.0).all()
    assert close(table["pre_scaled"], expected["pre_scaled"]) and close(table["post_pre"], expected["post_pre"])


def test_code_variant_renders_in_at_the_previous_sum(model, tmp_path):
    config = ScanConfig(featureviz=FAST, channels=[0, 1], cache_dir=tmp_path, node_variant="code")
    table = scan(model, "1.1", config, progress=False)
    for path in table["in_fz_path"]:
        assert Path(path).parent.parent.parent.name == "1.0" and Path(path).parent.parent.name == "sum"
    for path in table["pre_fz_path"]:
        assert Path(path).parent.parent.parent.name == "1.1" and Path(path).parent.parent.name == "pre"
    assert close(table["in_fz_act"], table["in_in"])  # In read at 1.0's pre-ReLU sum
    assert (table["node_variant"] == "code").all()


def test_paper_compat_optimises_the_aliased_post(model, tmp_path):
    config = ScanConfig(featureviz=FAST, channels=[0, 1, 2], cache_dir=tmp_path, paper_compat=True)
    assert config.featureviz.paper_compat
    table = scan(model, "1.1", config, progress=False)
    # Lucent's reading of bn2 is Post: the achieved "Pre" activation is Post of the Pre FZ
    assert close(table["pre_fz_act"], table["post_pre"])
    assert not close(table["pre_fz_act"], table["pre_pre"])


# --------------------------------------------------------------------------- natural images


def test_top_k_images_equal_a_brute_force_search(model, data):
    keys = [("1.1", "in"), ("2.0", "pre")]
    found = top_k_images(model, data, keys, k=4, batch_size=7, progress=False)
    assert found.num_images == 30
    for key in keys:
        acts = rsi.capture(model, data, blocks=key[0], nodes=key[1])[key]  # [30, C]
        values, index = acts.T.sort(dim=1, descending=True, stable=True)  # ties: earlier image first
        values, index = values[:, :4], index[:, :4]
        assert close(found.values[key], values, tol=1e-5)
        assert torch.equal(found.indices[key], index)
        torch.testing.assert_close(found.images(key, [0, 5], k=2), data[index[[0, 5], :2]])
    assert len(found.bank) == len(set(torch.cat([i.flatten() for i in found.indices.values()]).tolist()))
    with pytest.raises(ValueError, match="fewer than k"):
        top_k_images(model, data[:3], keys, k=4, progress=False)
    with pytest.raises(KeyError, match="searched"):
        found.images(("3.0", "in"))


@pytest.mark.parametrize("reduce", ["top1", "mean"])
def test_natural_source(model, data, reduce):
    config = ScanConfig(source="natural", top_k=3, natural_reduce=reduce, channels=[0, 1, 2, 3])
    table = scan(model, ["1.1", "2.0"], config, data=data, progress=False)
    assert (table["source"] == "natural").all() and len(table) == 8
    assert (table["images_per_channel"] == (1 if reduce == "top1" else 3)).all()
    # the top activations are In_c / Pre_c of the very images that drive the criteria
    assert close(table["in_top_act"], table["in_in"])
    assert close(table["pre_top_act"], table["pre_pre"])
    acts = rsi.capture(model, data, blocks="2.0", nodes="in")[("2.0", "in")]
    assert table.loc[table.block == "2.0", "in_top_index"].tolist() == acts[:, :4].argmax(0).tolist()


def test_both_sources_and_the_paper_comparison(model, data, tmp_path):
    config = ScanConfig(featureviz=FAST, source="both", top_k=2, channels=[0, 1], cache_dir=tmp_path)
    table = scan(model, "1.1", config, data=data, progress=False)
    assert table["source"].tolist() == ["fz", "fz", "natural", "natural"]
    summary = summarize(table)
    assert summary[["source", "block", "channels"]].values.tolist() == [["fz", "1.1", 2], ["natural", "1.1", 2]]
    comparison = compare_to_paper(table)
    assert comparison["source"].tolist() == ["fz", "natural"] and (comparison["scanned"] == 2).all()


def test_natural_default_data_for_the_tiny_architecture():
    from rsi_plugin.core.images import ModelInfo
    from rsi_plugin.zoo import build_tiny_resnet, generate

    torch.manual_seed(0)
    tiny = build_tiny_resnet().eval()
    tiny.rsi_info = ModelInfo(name="tiny", weights="random", input_size=64, resize_size=73,
                              mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3), num_classes=10)
    images = natural_data(tiny, n=24, seed=3)
    expected = rsi.normalize(generate(24, 3, size=64)[0], tiny)
    torch.testing.assert_close(images, expected)
    table = scan(tiny, "2.1", ScanConfig(source="natural", top_k=2, natural_samples=24, seed=3, channels=[0, 1]),
                 progress=False)
    assert len(table) == 2 and table["in_top_index"].between(0, 23).all()
    assert table.attrs["model"] == "tiny"


def test_natural_data_needs_the_tiny_model_or_data(model):
    with pytest.raises(ValueError, match="data="):
        scan(model, "1.1", ScanConfig(source="natural"), progress=False)
    with pytest.raises(ValueError, match="data="):
        natural_data(model)


def test_scan_config_errors(model):
    with pytest.raises(ValueError, match="source"):
        ScanConfig(source="imagenet")
    with pytest.raises(ValueError, match="tolerance"):
        ScanConfig(tolerance=0.9)
    with pytest.raises(ValueError, match="valid"):
        ScanConfig(transform="zoom")
    with pytest.raises(ValueError, match="natural_reduce"):
        ScanConfig(natural_reduce="median")
    with pytest.raises(ValueError, match="top_k"):
        ScanConfig(top_k=0)
    with pytest.raises(ValueError, match="node_variant"):
        ScanConfig(node_variant="lucent")
    with pytest.raises(TypeError, match="FeatureVizConfig"):
        ScanConfig(featureviz={"steps": 3})
    with pytest.raises(IndexError, match="0..63"):
        scan(model, "1.1", ScanConfig(featureviz=FAST, channels=[64]), progress=False)
    with pytest.raises(ValueError, match="valid blocks"):
        scan(model, "7.7", ScanConfig(featureviz=FAST), progress=False)


# --------------------------------------------------------------------------- the paper's channels


def test_paper_channel_lists_match_the_counts_of_section_3():
    table = paper_channels()
    assert table.groupby("block").size().to_dict() == {"1.1": 6, "2.0": 2, "2.1": 23, "3.1": 46}
    # the shares the paper quotes: ~9.4 % of 1.1's 64 channels, ~18 % of 2.1's 128 and 3.1's 256
    assert round(100 * 6 / 64, 1) == 9.4
    assert round(100 * 23 / 128) == 18 and round(100 * 46 / 256) == 18
    assert not table.duplicated(["block", "channel"]).any()
    fig1 = table[table.source == "Fig. 1"]
    assert fig1.loc[fig1.block == "2.1", "channel"].tolist() == [15, 21, 48, 68, 88, 108]
    assert fig1.loc[fig1.block == "3.1", "channel"].tolist() == [22, 29, 80, 113, 178, 215]
    assert set(table.loc[table.block == "3.1", "source"]) == {"Fig. 1", "Fig. 4"}
    assert paper_channels("2.0")["channel"].tolist() == [50, 53]
    with pytest.raises(ValueError, match="probed"):
        paper_channels("1.0")


def test_compare_to_paper_counts():
    channels = list(range(128))
    found_21 = {15, 21, 48, 0, 1}  # three of the paper's 23, two others
    table = pd.DataFrame({
        "block": ["2.1"] * 128 + ["3.0"] * 4 + ["1.0"] * 2,
        "channel": channels + [0, 1, 2, 3] + [0, 1],
        "passes": [c in found_21 for c in channels] + [False] * 4 + [True, False],
    })
    result = compare_to_paper(table).set_index("block")
    row = result.loc["2.1"]
    assert (row.found, row.paper, row.overlap) == (5, 23, 3)
    assert row.precision == pytest.approx(3 / 5) and row.recall == pytest.approx(3 / 23)
    assert row.jaccard == pytest.approx(3 / 25)
    empty = result.loc["3.0"]  # probed, nothing found on either side: ratios undefined
    assert empty.probed and empty.found == 0 and math.isnan(empty.precision) and math.isnan(empty.jaccard)
    assert not result.loc["1.0"].probed and math.isnan(result.loc["1.0"].recall)
    assert set(PAPER_BLOCKS) == {"1.1", "2.0", "2.1", "3.0", "3.1", "4.0", "4.1"}
    # a scan of a few channels is compared on those only
    some = compare_to_paper(table[table.channel.isin([15, 21, 29])]).set_index("block").loc["2.1"]
    assert (some.scanned, some.paper, some.found) == (3, 2, 2)
    with pytest.raises(ValueError, match="passes"):
        compare_to_paper(table.drop(columns="passes"))


# --------------------------------------------------------------------------- rsi scan


def test_cli_scan_writes_tables_and_resumes(tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["scan", "--model", "resnet18", "--blocks", "1.1", "--channels", "0", "1", "--steps", "2",
            "--image-size", "32", "--jitter", "0", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "agreement with the paper" in printed
    table = pd.read_csv(out / "scan.csv", dtype={"block": str})
    assert len(table) == 2 and table["fz_computed"].all()
    assert pd.read_parquet(out / "scan.parquet")["channel"].tolist() == [0, 1]
    summary = pd.read_csv(out / "summary.csv", dtype={"block": str})
    assert summary[["block", "channels"]].values.tolist() == [["1.1", 2]]
    assert (out / "paper_comparison.csv").is_file()
    assert len(list((out / "fz").rglob("*.png"))) == 4
    assert main(argv) == 0  # resumes: every FZ from the cache
    assert not pd.read_csv(out / "scan.csv")["fz_computed"].any()
    assert not list(out.glob("*.tmp"))


def test_cli_scan_natural_images_from_a_folder(tmp_path):
    root = tmp_path / "val"
    g = np.random.default_rng(0)
    for label in ("a", "b"):
        (root / label).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(g.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(root / label / f"{i}.png")
    out = tmp_path / "out"
    argv = ["scan", "--model", "resnet18", "--blocks", "1.1", "--channels", "3", "4", "--source", "natural",
            "--top-k", "2", "--data", str(root), "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    table = pd.read_csv(out / "scan.csv")
    assert table["source"].tolist() == ["natural", "natural"]
    assert table["in_top_index"].between(0, 5).all()
    assert main(argv + ["--tolerance", "1"]) == 2  # a bad tolerance is an error, not a traceback


# --------------------------------------------------------------------------- seeds
#
# The planted network of test_criteria (a stem of radial filters and one BasicBlock with
# hand-set weights), with bn2's bias of channels 0 and 4 raised so that Post answers alike
# to the In and the Pre FZ (ratio ~ 1 whatever the FZ's step count):
#   ch 0 (planted): In = small-blob detector, Pre = 0.25 relu(large-blob) + BIAS:
#        zooming the In FZ raises Pre (Eq. 1), Post ratio ~ 1 (Eq. 2)  -> passes in every seed
#   ch 4 (dead):    In = 0 (a zero stem filter): its In FZ cannot drive its target (it stays
#        the initial noise), so every verdict on it is undetermined, never a pass, although
#        Eq. 2 holds and Eq. 1 on a noise image is a coin flip
#   ch 1, 2: a Pre that is 0 for the initial noise (Pre = 0 or relu of a negative): dead Pre FZ
#   ch 3, 5: clear fails (Eq. 2 ratio far outside the tolerance)
PLANTED_BIAS = 2000.0
SEEDS = (0, 1, 2)
# FZs run until their objective plateaus (about 200 steps at lr 0.2 for this net), so that a
# validity check that flags unconverged FZs finds them converged
PLANTED_CONVERGED = FeatureVizConfig(image_size=32, steps=256, lr=0.2, jitter=0, channels_per_batch=8)
PLANTED_FZ = FeatureVizConfig(image_size=32, steps=8, jitter=0, channels_per_batch=8)  # resume checks only


def biased_planted_net() -> nn.Module:
    """test_criteria's planted network with bn2's bias of channels 0 and 4 raised (see above);
    test_controls_scan and test_sensitivity build theirs from it."""
    from test_criteria import PlantedNet

    net = PlantedNet()
    with torch.no_grad():
        net.layer1[0].bn2.bias[0] = PLANTED_BIAS
        net.layer1[0].bn2.bias[4] = PLANTED_BIAS
    return net


@pytest.fixture(scope="module")
def planted() -> nn.Module:
    return biased_planted_net()


@pytest.fixture(scope="module")
def planted_full(planted, tmp_path_factory) -> tuple[pd.DataFrame, Path]:
    cache = tmp_path_factory.mktemp("planted_fz")
    config = ScanConfig(featureviz=PLANTED_CONVERGED, seeds=SEEDS, cache_dir=cache)
    return scan(planted, "1.0", config, progress=False), cache


def test_planted_channel_passes_in_every_seed_and_the_dead_one_is_undetermined(planted_full, tmp_path):
    from rsi_plugin.criteria.seeds import block_summary, channel_table

    table, _ = planted_full
    assert table["seed"].tolist() == [s for s in SEEDS for _ in range(6)]
    assert table.attrs["seeds"] == list(SEEDS)
    # the FZs differ between seeds (they are rendered per seed, not reused)
    in_acts = table[table.channel == 0].set_index("seed")["in_fz_act"]
    assert in_acts.nunique() == len(SEEDS)
    dead = table[table.channel == 4]
    assert (dead["in_fz_act"] == 0).all()  # the planted dead In: nothing drives it
    assert (dead["verdict"] == "undetermined").all() and not dead["passes"].any()
    assert dead["eq2"].all()  # Eq. 2 alone would have let it through
    assert (table.loc[table.channel == 0, "verdict"] == "pass").all()
    assert set(table.loc[table.passes, "channel"]) == {0}

    channels = channel_table(table).set_index("channel")
    assert channels.loc[0, "pass_rate"] == 1.0 and channels.loc[0, "robust"] and channels.loc[0, "status"] == "robust"
    assert channels.loc[0, "pass_rate_low"] == pytest.approx(0.4385, abs=1e-3)  # Wilson 3/3
    assert channels.loc[4, "pass_rate"] == 0.0 and not channels.loc[4, "any_seed"]
    assert channels.loc[4, "status"] == "undetermined" and channels.loc[4, "n_undetermined"] == 3
    assert channels.loc[3, "status"] == "not robust" and channels.loc[5, "status"] == "not robust"
    summary = block_summary(table).iloc[0]
    assert (summary.channels, summary.seeds, summary.robust, summary.any_seed) == (6, 3, 1, 1)
    assert summary.undetermined == int((channels["status"] == "undetermined").sum()) >= 1
    assert summary.jaccard_mean == summary.jaccard_min == summary.jaccard_max == 1.0
    # one passing channel per seed among 6: by chance all three seeds agree with p = 1/36
    assert summary.null_expected == pytest.approx(6 * (1 / 6) ** 3, abs=0.02)
    assert summary.null_p == pytest.approx(1 / 36, abs=0.02)

    from rsi_plugin.criteria.channel_scan import read_table, write_scan

    written = write_scan(table, tmp_path)
    assert {p.name for p in written} >= {"scan.csv", "scan_channels.csv", "summary.csv"}
    back = read_table(tmp_path / "scan_channels.csv").set_index("channel")
    assert back.loc[0, "robust"] and back.loc[4, "status"] == "undetermined"
    assert read_table(tmp_path / "summary.csv").loc[0, "undetermined"] == summary.undetermined
    assert read_table(tmp_path / "summary.csv").loc[0, "block"] == "1.0"


def test_adaptive_seeds_on_the_planted_model(planted, planted_full, monkeypatch):
    from rsi_plugin.criteria.seeds import adaptive_error, channel_table

    full, cache = planted_full
    measured = adaptive_error(full)
    assert measured["stopped"] >= 2 and measured["errors"] == 0 and measured["error_rate"] == 0.0
    assert measured["renders_adaptive"] < measured["renders_full"] == 18
    calls = []
    original = featureviz._optimize_stream

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(featureviz, "_optimize_stream", counting)
    config = ScanConfig(featureviz=PLANTED_CONVERGED, seeds=SEEDS, cache_dir=cache, adaptive=True)
    adaptive = scan(planted, "1.0", config, progress=False)
    assert calls == []  # every FZ it needs is cached by the full run (per seed)
    first = adaptive[adaptive.seed == 0]
    stopped = set(first.loc[first.adaptive_stop, "channel"])
    assert len(stopped) == measured["stopped"] and 4 not in stopped  # undetermined channels get more seeds
    for seed in SEEDS[1:]:
        assert set(adaptive.loc[adaptive.seed == seed, "channel"]) == set(range(6)) - stopped
    assert len(adaptive) == measured["renders_adaptive"]
    same = ["verdict", "pre_scaled", "post_pre"]
    merged = adaptive.merge(full, on=["seed", "channel"], suffixes=("", "_full"))
    for column in same:
        assert merged[column].tolist() == merged[f"{column}_full"].tolist()
    a = channel_table(adaptive).set_index("channel")
    f = channel_table(full).set_index("channel")
    assert a["status"].equals(f["status"]) and a["robust"].equals(f["robust"])  # error rate 0 here
    assert (a.loc[sorted(stopped), "n_seeds"] == 1).all() and a.loc[sorted(stopped), "adaptive_stop"].all()


def test_adaptive_rule_on_constructed_rows():
    from rsi_plugin.criteria.seeds import adaptive_stop, eq1_relative

    rows = pd.DataFrame({
        # pre_in, pre_scaled -> eq1_rel; eq2_margin; passes
        "pre_in": [1.0, 1.0, 1.0, 1.0, -2.0, 1.0, 1.0],
        "pre_scaled": [3.0, 1.2, 3.0, 0.2, -1.0, 3.0, 3.0],
        "eq2_margin": [0.3, 0.3, 0.1, 0.3, 0.3, -0.3, float("-inf")],
        "passes": [True, True, True, False, False, False, False],
        "in_status": ["ok"] * 6 + ["dead"],
    })
    # eq1_rel = (Pre(S x) - relu(Pre x)) / (|Pre(S x)| + |Pre x|)
    assert eq1_relative(rows).round(4).tolist() == [0.5, round(0.2 / 2.2, 4), 0.5, round(-0.8 / 1.2, 4),
                                                      round(-1 / 3, 4), 0.5, 0.5]
    stop = adaptive_stop(rows, eq1=0.25, eq2=0.25).tolist()
    # clear pass | eq1 near | eq2 near | clear eq1 fail | clear eq1 fail | clear eq2 fail | undetermined
    assert stop == [True, False, False, True, True, True, False]
    assert adaptive_stop(rows, eq1=0.9, eq2=0.25).tolist() == [False, False, False, False, False, True, False]
    # a Pre from -1.7 to just above 0 passes Eq. 1 by a hair: not far from its threshold
    hair = pd.DataFrame({"pre_in": [-1.686], "pre_scaled": [0.167], "eq2_margin": [0.35], "passes": [True]})
    assert eq1_relative(hair).iloc[0] == pytest.approx(0.167 / 1.853) and not adaptive_stop(hair).iloc[0]
    with pytest.raises(ValueError, match="eq1"):
        adaptive_stop(rows, eq1=0.0)
    with pytest.raises(ValueError, match="eq2"):
        adaptive_stop(rows, eq2=-1.0)


def test_adaptive_error_counts_membership_flips():
    from rsi_plugin.criteria.seeds import adaptive_error

    base = {"source": "fz", "block": "2.1", "pre_in": 1.0, "pre_scaled": 0.0, "eq2_margin": -1.0}
    rows = [  # channels 0, 1, 2 are clear fails in seed 0 (stopped); 3 is near (kept)
        {**base, "seed": 0, "channel": 0, "verdict": "fail"}, {**base, "seed": 1, "channel": 0, "verdict": "pass"},
        {**base, "seed": 0, "channel": 1, "verdict": "fail"},
        {**base, "seed": 1, "channel": 1, "verdict": "undetermined"},
        {**base, "seed": 0, "channel": 2, "verdict": "fail"}, {**base, "seed": 1, "channel": 2, "verdict": "fail"},
        {**base, "seed": 0, "channel": 3, "verdict": "fail", "eq2_margin": -0.1, "pre_scaled": 1.1},
        {**base, "seed": 1, "channel": 3, "verdict": "pass"},
    ]
    table = pd.DataFrame(rows)
    table["passes"] = table["verdict"] == "pass"
    measured = adaptive_error(table)
    assert (measured["stopped"], measured["errors"], measured["verdict_changes"]) == (3, 1, 2)
    assert measured["error_rate"] == pytest.approx(1 / 3)
    assert (measured["renders_full"], measured["renders_adaptive"]) == (8, 5)


def test_wilson_interval_known_values():
    from rsi_plugin.criteria.seeds import wilson_interval

    low, high = wilson_interval([0, 3, 5, 10], [5, 10, 5, 10])
    # Wilson score interval, 95 % (e.g. Newcombe 1998: 3/10 -> 0.108 to 0.603)
    assert np.round(low, 4).tolist() == [0.0, 0.1078, 0.5655, 0.7225]
    assert np.round(high, 4).tolist() == [0.4345, 0.6032, 1.0, 1.0]
    low, high = wilson_interval(0, 0)
    assert math.isnan(float(low)) and math.isnan(float(high))
    with pytest.raises(ValueError):
        wilson_interval(4, 3)


def _rows(passing: dict[int, set[int]], channels: int = 6, undetermined: dict[int, set[int]] | None = None):
    undetermined = undetermined or {}
    rows = []
    for seed, found in passing.items():
        for c in range(channels):
            verdict = "undetermined" if c in undetermined.get(seed, set()) else ("pass" if c in found else "fail")
            rows.append({"source": "fz", "seed": seed, "block": "3.10", "channel": c, "passes": verdict == "pass",
                         "verdict": verdict})
    return pd.DataFrame(rows)


def test_channel_table_and_block_summary_on_constructed_verdicts():
    from rsi_plugin.criteria.seeds import block_summary, channel_table

    table = _rows({0: {0, 1, 2}, 1: {0, 1, 3}, 2: {0, 2}}, undetermined={2: {1, 5}})
    channels = channel_table(table).set_index("channel")
    assert channels["n_pass"].tolist() == [3, 2, 2, 1, 0, 0]
    assert channels["robust"].tolist() == [True, False, False, False, False, False]
    # ch 1 passed twice and was undetermined once: the third seed decides -> undetermined;
    # ch 5 never passed, undetermined once: it cannot reach 3 passes -> not robust
    assert channels["status"].tolist() == ["robust", "undetermined", "not robust", "not robust", "not robust",
                                           "not robust"]
    assert channels.loc[1, "seeds_passing"] == "0 1" and (channels["layer"] == 3).all()
    assert (channels["index"] == 10).all()
    two_of_three = channel_table(table, share=2 / 3).set_index("channel")
    assert two_of_three["robust"].tolist() == [True, True, True, False, False, False]
    summary = block_summary(table).iloc[0]
    assert (summary["block"], summary["layer"], summary["index"]) == ("3.10", 3, 10)
    assert (summary.channels, summary.robust, summary.any_seed, summary.undetermined) == (6, 1, 4, 1)
    assert (summary.passing_min, summary.passing_max, summary.passing_mean) == (2, 3, pytest.approx(8 / 3))
    # Jaccard: {0,1,2} vs {0,1,3}: 2/4; {0,1,2} vs {0,2}: 2/3; {0,1,3} vs {0,2}: 1/4
    assert summary.jaccard_mean == pytest.approx((1 / 2 + 2 / 3 + 1 / 4) / 3)
    assert (summary.jaccard_min, summary.jaccard_max) == (pytest.approx(1 / 4), pytest.approx(2 / 3))
    assert summary.undetermined_mean == pytest.approx(2 / 3)
    single = block_summary(table[table.seed == 0]).iloc[0]
    assert single.seeds == 1 and math.isnan(single.jaccard_mean) and math.isnan(single.null_p)


def test_permutation_null_matches_its_closed_form():
    from rsi_plugin.criteria.seeds import permutation_null

    rng = np.random.default_rng(3)
    matrix = np.zeros((40, 3), dtype=bool)
    for j, k in enumerate((20, 16, 30)):
        matrix[rng.choice(40, k, replace=False), j] = True
    null = permutation_null(matrix, draws=4000, seed=1)
    assert null.mean() == pytest.approx(40 * (20 / 40) * (16 / 40) * (30 / 40), rel=0.05)
    assert np.array_equal(null, permutation_null(matrix, draws=4000, seed=1))  # reproducible
    # the same 10 channels pass in every seed: far above the null
    consistent = np.zeros((40, 3), dtype=bool)
    consistent[:10] = True
    assert (permutation_null(consistent, draws=2000) >= 10).mean() < 0.001
    # share 2/3: robust = passes in >= 2 of 3 seeds
    two = permutation_null(matrix, share=2 / 3, draws=4000, seed=1)
    p = np.array([20, 16, 30]) / 40
    expected = 40 * (p.prod() + sum(p[i] * p[j] * (1 - p[k]) for i, j, k in ((0, 1, 2), (0, 2, 1), (1, 2, 0))))
    assert two.mean() == pytest.approx(expected, rel=0.05)


def test_select_channels_and_the_ablate_channel_set(tmp_path):
    from rsi_plugin.cli.ablate import parse_channels
    from rsi_plugin.criteria.seeds import select_channels

    table = _rows({0: {0, 1, 2}, 1: {0, 1, 3}, 2: {0, 2}})
    table = pd.concat([table, table.assign(block="3.1", passes=False, verdict="fail")], ignore_index=True)
    assert select_channels(table, "3.10") == [0]
    assert select_channels(table, "3.10", "any") == [0, 1, 2, 3]
    assert select_channels(table, "3.10", "seed:1") == [0, 1, 3]
    assert select_channels(table, "3.1", "any") == []
    with pytest.raises(ValueError, match="robust, any, seed:K"):
        select_channels(table, "3.10", "best")
    with pytest.raises(ValueError, match="its seeds: 0, 1, 2"):
        select_channels(table, "3.10", "seed:7")
    path = tmp_path / "scan.csv"
    table.to_csv(path, index=False)
    assert parse_channels([str(path)], "3.10") == [0]
    assert parse_channels([str(path)], "3.10", channel_set="seed:2") == [0, 2]
    with pytest.raises(ValueError, match="no passing channel"):
        parse_channels([str(path)], "3.1", channel_set="any")


def test_scan_config_seeds():
    assert ScanConfig().seeds == (0,)
    assert ScanConfig(featureviz=FeatureVizConfig(seed=4)).seeds == (4,)
    assert ScanConfig(seeds=range(3)).seeds == (0, 1, 2)
    for bad, error in (([], ValueError), ((0, 0), ValueError), ((1.5,), ValueError), ((-1,), ValueError),
                       ((True,), ValueError), ("012", TypeError), (3, TypeError)):
        with pytest.raises(error, match="seeds"):
            ScanConfig(seeds=bad)
    with pytest.raises(ValueError, match="share"):
        ScanConfig(robust_share=0)
    with pytest.raises(ValueError, match="adaptive_eq1"):
        ScanConfig(adaptive_eq1=2)


def test_block_ids_round_trip_as_strings_with_resnet101(tmp_path):
    from rsi_plugin.cli.ablate import parse_channels
    from rsi_plugin.criteria.channel_scan import SCAN_FILES, read_table, write_scan

    model = rsi.load_model("resnet101", weights=None, seed=0)
    fz = FeatureVizConfig(image_size=32, steps=1, jitter=0)
    table = scan(model, ["3.1", "3.10"], ScanConfig(featureviz=fz, channels=[0, 1]), progress=False)
    assert table["block"].tolist() == ["3.1", "3.1", "3.10", "3.10"]
    table["passes"] = [True, False, False, True]  # distinct sets, so a mix-up shows
    table["verdict"] = np.where(table["passes"], "pass", "fail")
    write_scan(table, tmp_path)
    for name in SCAN_FILES[:3]:
        back = read_table(tmp_path / name)
        assert set(back["block"]) == {"3.1", "3.10"}, name
        assert back.loc[back.block == "3.10", "index"].unique().tolist() == [10], name
        assert back.loc[back.block == "3.1", "index"].unique().tolist() == [1], name
    assert read_table(tmp_path / "scan_channels.csv").set_index(["block", "channel"]).loc[("3.10", 1), "robust"]
    # a plain pd.read_csv still reads "3.10" as a number: the layer/index pair tells the blocks apart
    plain = pd.read_csv(tmp_path / "scan.csv")
    assert sorted(set(zip(plain["layer"], plain["index"]))) == [(3, 1), (3, 10)]
    assert parse_channels([str(tmp_path / "scan.csv")], "3.10") == [1]
    assert parse_channels([str(tmp_path / "scan.csv")], "3.1") == [0]


def test_cli_scan_with_seeds_threads_and_resume(tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["scan", "--model", "resnet18", "--blocks", "1.1", "--channels", "0", "1", "--steps", "2",
            "--image-size", "32", "--jitter", "0", "--out", str(out), "--no-progress", "--seeds", "2",
            "--seed", "3", "--threads", "1"]
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert main(argv) == 0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    printed = capsys.readouterr().out
    assert "seeds 3 4" in printed and "jaccard_mean" in printed
    table = pd.read_csv(out / "scan.csv", dtype={"block": str})
    assert table["seed"].tolist() == [3, 3, 4, 4] and table["fz_computed"].all()
    channels = pd.read_csv(out / "scan_channels.csv", dtype={"block": str})
    assert channels["n_seeds"].tolist() == [2, 2] and channels["seeds"].tolist() == ["3 4", "3 4"]
    summary = pd.read_csv(out / "summary.csv", dtype={"block": str})
    assert summary[["block", "channels", "seeds"]].values.tolist() == [["1.1", 2, 2]]
    comparison = pd.read_csv(out / "paper_comparison.csv", dtype={"block": str})
    assert {"seeds", "any_seed", "undetermined"} <= set(comparison.columns) and comparison["seeds"].tolist() == [2]
    assert len(list((out / "fz").rglob("*.png"))) == 8  # 2 channels x (In, Pre) x 2 seeds
    assert main(argv[:-2]) == 0  # resumes from the cache (no --threads: the thread count stays as it was)
    assert not pd.read_csv(out / "scan.csv")["fz_computed"].any()
    # an explicit list: seed 5 new, 3 cached (--seed also seeds resnet18's random init: keep it)
    assert main(argv[:-6] + ["--seed", "3", "--seeds", "5", "3"]) == 0
    table = pd.read_csv(out / "scan.csv")
    assert table["seed"].tolist() == [5, 5, 3, 3] and table["fz_computed"].tolist() == [True, True, False, False]
    assert main(argv[:-6] + ["--seeds", "0"]) == 2
    assert main(argv[:-2] + ["--threads", "0"]) == 2


def test_a_killed_multi_seed_scan_keeps_its_finished_seeds_and_resumes(planted, tmp_path, monkeypatch):
    from rsi_plugin.criteria.channel_scan import read_table, write_scan

    config = ScanConfig(featureviz=PLANTED_FZ, seeds=(7, 8), cache_dir=tmp_path / "fz")

    def write_then_die(seed, rows):
        write_scan(rows, tmp_path)
        raise KeyboardInterrupt  # killed right after the first seed's files were written

    with pytest.raises(KeyboardInterrupt):
        scan(planted, "1.0", config, progress=False, on_seed=write_then_die)
    kept = read_table(tmp_path / "scan.csv")
    assert kept["seed"].tolist() == [7] * 6 and kept["fz_computed"].all()
    assert read_table(tmp_path / "scan_channels.csv")["n_seeds"].tolist() == [1] * 6
    optimised = []
    original = featureviz._optimize_stream
    monkeypatch.setattr(featureviz, "_optimize_stream", lambda *a, **k: optimised.append(1) or original(*a, **k))
    again = scan(planted, "1.0", config, progress=False, on_seed=lambda seed, rows: write_scan(rows, tmp_path))
    assert not again.loc[again.seed == 7, "fz_computed"].any() and again.loc[again.seed == 8, "fz_computed"].all()
    assert len(optimised) == 2  # In and Pre of the missing seed only
    assert read_table(tmp_path / "scan.csv")["seed"].tolist() == [7] * 6 + [8] * 6
