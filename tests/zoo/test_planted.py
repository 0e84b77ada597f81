"""The planted positive control (rsi_plugin.zoo.planted): the construction's known answer read
through capture and raw hooks, the real scan recovering the planted channels over FZ seeds, the
random-init copies not recovering them, determinism, and the Eq. 3 positive control (a known
scale-specific deficit that the Eq. 3 tests detect, and none at strength 0)."""

from __future__ import annotations

import copy

import pytest
import torch
from torchvision.models.resnet import BasicBlock, ResNet

import rsi_plugin as rsi
from rsi_plugin.ablation.eq3_stats import ALPHA, ratio_tests
from rsi_plugin.ablation.experiment import SweepConfig, sweep
from rsi_plugin.core.models import MODEL_NAMES
from rsi_plugin.criteria.channel_scan import ScanConfig, scan
from rsi_plugin.criteria.controls import control_rows
from rsi_plugin.errors import ConfigError
from rsi_plugin.featureviz.optimize import FeatureVizConfig
from rsi_plugin.testing.hooks_reference import hook_nodes
from rsi_plugin.zoo.data import default_data
from rsi_plugin.zoo.planted import (
    CHANNELS, INPUT_SIZE, KERNEL_SIZE, LARGE_RADIUS, PLANTED_BLOCK, PLANTED_CHANNELS, PLANTED_FZ,
    SMALL_CHANNELS, SMALL_RADIUS, PlantedDataset, build_planted, kernels, pattern_image, planted_data,
)

SEEDS = (0, 1, 2)
OTHERS = [c for c in range(len(CHANNELS)) if c not in PLANTED_CHANNELS]


@pytest.fixture(scope="module")
def planted():
    return rsi.load_model("planted")


@pytest.fixture(scope="module")
def fz_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("planted_fz")


@pytest.fixture(scope="module")
def planted_scan(planted, fz_cache):
    config = ScanConfig(featureviz=FeatureVizConfig(**PLANTED_FZ), seeds=SEEDS, cache_dir=fz_cache)
    return scan(planted, PLANTED_BLOCK, config, progress=False)


# --------------------------------------------------------------------------- the model


def test_load_model_planted_is_a_torchvision_resnet_carrying_its_answer(planted, tmp_path):
    assert "planted" in MODEL_NAMES
    assert isinstance(planted, ResNet) and not planted.training
    blocks = rsi.residual_blocks(planted)
    assert [(b.name, b.channels) for b in blocks] == [(PLANTED_BLOCK, len(CHANNELS))]
    assert isinstance(planted.get_submodule(blocks[0].path), BasicBlock)
    info = planted.rsi_info
    assert (info.name, info.input_size, info.resize_size, info.num_classes) == ("planted", INPUT_SIZE, INPUT_SIZE, 3)
    assert info.mean == info.std == (0.5, 0.5, 0.5)
    # the known answer: the planted channels are those the table expects to pass, and it survives a copy
    assert PLANTED_CHANNELS == tuple(c for c, spec in enumerate(CHANNELS) if spec.expected == "pass")
    assert len(PLANTED_CHANNELS) == 4 and len(OTHERS) == 24
    twin = copy.deepcopy(planted)
    assert twin.planted_channels == PLANTED_CHANNELS and twin.planted_block == PLANTED_BLOCK
    assert twin.rsi_info == info and twin.strength == 1.0
    # a state dict written and loaded back by path gives the same model
    path = tmp_path / "planted.pt"
    torch.save(planted.state_dict(), path)
    again = rsi.load_model("planted", weights=path)
    assert again.rsi_info.weights == str(path)
    x = rsi.normalize(planted_data(6, seed=3)[0], planted)
    torch.testing.assert_close(again(x), planted(x), rtol=0, atol=0)


def test_two_builds_are_identical_and_the_data_is_deterministic():
    a, b = build_planted().state_dict(), build_planted().state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    weaker = build_planted(strength=0.5).state_dict()
    differing = sorted(k for k in a if not torch.equal(a[k], weaker[k]))
    assert differing == ["fc.bias", "fc.weight"]  # strength is the classifier's only
    x1, y1 = planted_data(40, seed=7)
    x2, y2 = planted_data(40, seed=7)
    x3, _ = planted_data(40, seed=8)
    assert torch.equal(x1, x2) and torch.equal(y1, y2) and not torch.equal(x1, x3)
    assert torch.equal(planted_data(10, seed=7)[0], x1[:10])  # image i does not depend on n
    assert x1.shape == (40, 3, INPUT_SIZE, INPUT_SIZE) and 0 <= float(x1.min()) and float(x1.max()) <= 1
    assert y1.tolist()[:8] == [0, 1, 0, 2, 0, 1, 0, 2] and torch.equal(y1.bincount(), torch.tensor([20, 10, 10]))
    data = PlantedDataset(12, seed=7)
    assert torch.equal(data.tensors()[0], x1[:12]) and data[-1][1] == int(y1[11])


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), "1", True])
def test_bad_strength_and_counts_raise(bad):
    with pytest.raises(ConfigError, match="strength"):
        build_planted(strength=bad)
    with pytest.raises(ConfigError, match="n must be"):
        planted_data(-1)
    with pytest.raises(ConfigError, match="polarity"):
        pattern_image(2.0, polarity=0)


def _window(images: torch.Tensor) -> torch.Tensor:
    """The normalised grey patch the centre neuron sees: ``[N, K, K]`` about pixel (12, 12)."""
    half, c = KERNEL_SIZE // 2, INPUT_SIZE // 2
    return (2 * images[:, 0] - 1)[:, c - half:c + half + 1, c - half:c + half + 1].double()


def test_nodes_on_the_planted_pattern_match_hooks_and_the_construction(planted):
    # bright and dark discs at the small and the large radius, at the centre neuron's pixel
    raw = torch.stack([pattern_image(r, p) for p in (1, -1) for r in (SMALL_RADIUS, LARGE_RADIUS)])
    x = rsi.normalize(raw, planted)
    acts = rsi.capture(planted, x, blocks=PLANTED_BLOCK, nodes=("in", "pre", "post"))
    reference = hook_nodes(planted, x, "layer1.0")
    for node in ("in", "pre", "post"):
        torch.testing.assert_close(acts[(PLANTED_BLOCK, node)], reference[node][:, :, 3, 3])
    # the same values from the table and the filters alone (plain sums, no conv)
    ks, patch = kernels(), _window(raw)
    for c, spec in enumerate(CHANNELS):
        in_ = spec.in_gain * (ks[spec.in_kernel] * patch).sum((1, 2)) if spec.in_kernel else torch.zeros(4, dtype=torch.float64)
        pre = (spec.pre_gain * (ks[spec.pre_kernel] * patch).sum((1, 2)) if spec.pre_kernel else torch.zeros(4, dtype=torch.float64)) \
            + spec.pre_bias
        torch.testing.assert_close(acts[(PLANTED_BLOCK, "in")][:, c].double(), in_, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(acts[(PLANTED_BLOCK, "pre")][:, c].double(), pre, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(acts[(PLANTED_BLOCK, "post")][:, c].double(), torch.relu(in_ + pre),
                                   atol=1e-5, rtol=1e-5)
    # the known answer on the pattern: In prefers the small blob, Pre the large one, and Post
    # answers to both within the criteria's tolerance (rows: bright small, bright large, dark ...)
    post, pre, in_ = (acts[(PLANTED_BLOCK, n)] for n in ("post", "pre", "in"))
    for c in PLANTED_CHANNELS:
        small, large = (0, 1) if CHANNELS[c].in_gain > 0 else (2, 3)
        assert in_[small, c] > in_[large, c] and pre[large, c] > max(float(pre[small, c]), 0.0)
        assert 2 / 3 < float(post[small, c] / post[large, c]) < 3 / 2
    for c in SMALL_CHANNELS:  # the classifier's small-blob evidence: silent on the large blob
        small, large = (0, 1) if CHANNELS[c].in_gain > 0 else (2, 3)
        assert post[small, c] > 0.1 and post[large, c] == 0


# --------------------------------------------------------------------------- the scan


def test_the_scan_recovers_the_planted_channels_in_every_seed(planted_scan):
    table = planted_scan
    assert sorted(table["seed"].unique()) == list(SEEDS) and (table["block"] == PLANTED_BLOCK).all()
    recall, false = [], []
    for seed in SEEDS:
        passing = set(table.loc[(table.seed == seed) & table.passes, "channel"])
        recall.append(len(passing & set(PLANTED_CHANNELS)) / len(PLANTED_CHANNELS))
        false.append(len(passing - set(PLANTED_CHANNELS)) / len(OTHERS))
    assert sum(recall) / len(SEEDS) >= 0.9 and min(recall) >= 0.75, recall
    assert max(false) <= 0.05, false
    # the FZs did what the construction says: converged, and dead exactly where In or Pre is 0
    dead = {c for c, spec in enumerate(CHANNELS) if spec.expected == "undetermined"}
    assert set(table.loc[table.verdict == "undetermined", "channel"]) == dead
    ok = table[~table.channel.isin(dead)]
    assert (ok["in_status"] == "ok").all() and (ok["pre_status"] == "ok").all()
    hits = table[table.channel.isin(PLANTED_CHANNELS)]
    assert (hits["pre_scaled"] > hits["pre_in"].clip(lower=0) + 0.1).all()  # Eq. 1 with a margin


def test_random_init_copies_do_not_recover_the_planted_set(planted, planted_scan, fz_cache):
    # the scan's model-randomisation control, on the first FZ seed (its trained FZs are cached)
    config = ScanConfig(featureviz=FeatureVizConfig(**PLANTED_FZ), seeds=(SEEDS[0],), cache_dir=fz_cache,
                        controls=("random-init:2",))
    trained = scan(planted, PLANTED_BLOCK, config, progress=False)
    assert set(trained.loc[trained.passes, "channel"]) >= set(PLANTED_CHANNELS)
    rows = control_rows(trained)
    assert sorted(rows["control"].unique()) == ["random-init@1000", "random-init@1001"]
    for name, part in rows.groupby("control"):
        recovered = set(part.loc[part.passes, "channel"]) & set(PLANTED_CHANNELS)
        # an untrained copy passes a few channels by chance (as any random net does) but the
        # planted set is not there: at most one of the four, by chance
        assert len(recovered) <= 1, (name, recovered)
        assert sorted(part["channel"]) == list(range(len(CHANNELS))) and (part["seed"] == SEEDS[0]).all()


# --------------------------------------------------------------------------- Eq. 3


EQ3 = SweepConfig(scales=(0.0, 0.25, 0.5), trials=5, null_sets=100, tolerance=0.0, batch_size=150)


def _sweep(strength: float):
    model = build_planted(strength)
    return sweep(model, planted_data(300, seed=1), PLANTED_BLOCK, PLANTED_CHANNELS, EQ3, progress=False)


def test_eq3_detects_the_planted_scale_specific_deficit():
    result = _sweep(1.0)
    summary = result.summary.set_index("scale")
    # the construction: no cost at no scale, every blob lost once it is enlarged
    assert summary.loc[0.0, "acc_none"] == 1.0 and summary.loc[0.0, "acc_invariant"] == 1.0
    assert summary.loc[0.5, "acc_none"] >= 0.95 and summary.loc[0.5, "acc_invariant"] <= 0.55
    assert result.kept == EQ3.trials and (summary["acc_random_mean"] >= 0.95).all()
    tests = ratio_tests(result.results).set_index("scale")
    assert tests.loc[0.5, "deficit"] < -0.4
    assert tests.loc[0.5, "p_null"] * 2 < ALPHA  # Bonferroni over the two scaled conditions
    assert "is distinguishable from the null at" in result.verdict and "50 %" in result.verdict


def test_eq3_at_strength_zero_finds_no_deficit():
    result = _sweep(0.0)
    cells = result.results.set_index(["condition", "scale"])["accuracy"]
    for p in EQ3.resolved().scales:  # the planted channels are not read: ablating them is a no-op
        assert cells[("invariant", p)] == cells[("none", p)]
    tests = ratio_tests(result.results).set_index("scale")
    assert (tests.loc[[0.25, 0.5], "p_null"] * 2 >= ALPHA).all()
    assert "not distinguishable from the null" in result.verdict


def test_default_data_of_the_planted_model_feeds_the_sweep(planted):
    for purpose in ("natural", "sweep"):
        data = default_data(planted, purpose, 8, seed=0)
        assert isinstance(data, PlantedDataset) and len(data) == 8
        images, labels = data.tensors()
        assert images.shape == (8, 3, INPUT_SIZE, INPUT_SIZE) and labels.tolist() == [0, 1, 0, 2] * 2
    assert not torch.equal(default_data(planted, "natural", 8)[1][0], default_data(planted, "sweep", 8)[1][0])
