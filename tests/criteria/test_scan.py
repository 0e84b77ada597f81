"""scan end to end on a small model (FZs, natural images, both), its cache and the top-k search.
Seeds: test_seeds.py; the paper's lists and compare_to_paper: test_paper.py; `rsi scan`:
tests/cli/test_scan_cli.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from rsi_plugin.testing.state import assert_same_state, model_state
from torch import nn
from torchvision.models.resnet import BasicBlock, ResNet

import rsi_plugin as rsi
from rsi_plugin.featureviz import optimize as featureviz
from rsi_plugin.criteria.captum import ScaleInvariance
from rsi_plugin.criteria.equations import TABLE_COLUMNS, summarize
from rsi_plugin.featureviz.optimize import FeatureVizConfig
from rsi_plugin.criteria.natural import top_k_images
from rsi_plugin.criteria.paper_comparison import compare_to_paper
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
    assert config.resolved().featureviz.paper_compat  # __post_init__ validates; resolved() settles
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
    from rsi_plugin.core.modelinfo import ModelInfo
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
