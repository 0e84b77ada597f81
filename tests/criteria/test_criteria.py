"""The criteria of §3: tensor functions, a hand-built network with planted scale-invariant
channels, ScaleInvariance against capture and raw hooks, the table, errors."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
from captum.attr import Attribution
from torch import nn
from torchvision.models.resnet import BasicBlock, ResNet

import rsi_plugin as rsi
from rsi_plugin.criteria.captum import ScaleInvariance
from rsi_plugin.criteria.equations import (
    TABLE_COLUMNS, check_tolerance, eq1, eq1_margin, eq2, eq2_margin, eq2_status,
    invariance_criteria, node_sites, post_ratio, summarize,
)
from rsi_plugin.core.transforms import S, get_transform

from rsi_plugin.testing.state import assert_same_state, model_state
from rsi_plugin.testing.hooks_reference import hook_nodes

# --------------------------------------------------------------------------- tensor functions


def test_eq1_uses_relu_of_pre_and_is_strict():
    pre_in = torch.tensor([-3.0, -3.0, 2.0, 1.0, -0.5, 0.0])
    pre_scaled = torch.tensor([0.5, -1.0, 2.0, 1.5, 0.0, 1e-6])
    # negative Pre counts as 0: Eq. (1) then only asks Pre(S(x)) > 0
    assert eq1(pre_in, pre_scaled).tolist() == [True, False, False, True, False, True]
    torch.testing.assert_close(eq1_margin(pre_in, pre_scaled), torch.tensor([0.5, -1.0, 0.0, 0.5, 0.0, 1e-6]))


def test_eq2_bounds_are_strict_and_tolerance_configurable():
    post_pre = torch.ones(6)
    post_in = torch.tensor([1.0, 1.49, 1.5, 0.7, 2.0 / 3.0 - 1e-6, 1.9])
    assert eq2(post_in, post_pre).tolist() == [True, True, False, True, False, False]
    assert eq2(post_in, post_pre, tolerance=2.0).tolist() == [True, True, True, True, True, True]
    assert eq2_status(post_in, post_pre) == ["ok", "ok", "high", "ok", "low", "high"]


def test_eq2_zero_and_negative_denominators_fail():
    post_in = torch.tensor([1.0, 1.0, -1.0, 0.0, 0.0, 1.0])
    post_pre = torch.tensor([0.0, -1.0, -1.0, 1.0, 0.0, float("nan")])
    assert not eq2(post_in, post_pre).any()
    ratio = post_ratio(post_in, post_pre)
    # -1 / -1 would be a perfect 1.0; a negative denominator is undefined, not invariant
    assert torch.isnan(ratio[[0, 1, 2, 4, 5]]).all() and ratio[3] == 0
    assert eq2_status(post_in, post_pre) == [
        "zero denominator", "negative denominator", "negative denominator", "low", "zero denominator", "nan"]
    margin = eq2_margin(post_in, post_pre)
    assert torch.isneginf(margin).all()


def test_margins_agree_with_booleans_and_a_scalar_reference():
    g = torch.Generator().manual_seed(0)
    pre_in, pre_scaled, post_in = (torch.randn(200, generator=g) for _ in range(3))
    post_pre = torch.randn(200, generator=g).abs() * 2 - 0.3
    result = invariance_criteria(pre_in, pre_scaled, post_in, post_pre, tolerance=1.5)
    for i in range(200):
        a, b, c, d = (float(v[i]) for v in (pre_in, pre_scaled, post_in, post_pre))
        first = max(a, 0.0) < b
        second = d > 0 and 2 / 3 < c / d < 3 / 2
        assert bool(result.eq1[i]) == first
        assert bool(result.eq2[i]) == second
        assert bool(result.passes[i]) == (first and second)
        if d > 0 and c > 0:
            assert float(result.log_ratio[i]) == pytest.approx(abs(math.log(c / d)), rel=1e-5)
    assert torch.equal(result.eq1, result.eq1_margin > 0)
    assert torch.equal(result.eq2, result.eq2_margin > 0)
    assert 0 < int(result.passes.sum()) < 200  # the sample exercises both outcomes


@pytest.mark.parametrize("bad", [1.0, 0.5, float("nan"), float("inf"), -2])
def test_tolerance_must_exceed_one(bad):
    with pytest.raises(ValueError, match="tolerance"):
        check_tolerance(bad)
    with pytest.raises(ValueError, match="tolerance"):
        eq2(torch.ones(1), torch.ones(1), tolerance=bad)


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="same shape"):
        eq1(torch.zeros(3), torch.zeros(4))
    with pytest.raises(TypeError):
        post_ratio([1.0], torch.ones(1))


# --------------------------------------------------------------------------- planted network
#
# Images are 32 px grey discs at the centre: a small one (radius 2) and a large one
# (radius 4); S of the small disc is about the large one. The stem conv (15x15) computes
# radial filters read at the centre neuron:
#   SB  = disc(2.5) - 0.5 ring(2.5, 6)   small-blob detector:  small 13, large 7
#   LB  = disc(5)   - 0.25 ring(5, 7)    large-blob detector:  small 13, large 49
# In of block 1.0 is the stem output. The block's 3x3 convs use only their centre taps and
# its BatchNorms are identities (plus a bias on bn2), so Pre_c = w * relu(In_j) + b:
#   ch 0 (planted): In = SB,  Pre = 0.25 relu(LB) - 5  -> Pre grows with scale (Eq. 1),
#        Post(small) = 13 - 1.75 = 11.25, Post(large) = 7 + 7.25 = 14.25, ratio 0.79 (Eq. 2)
#   ch 1: In = LB, Pre = 0                              -> Eq. 1 fails (0 < 0), ratio 13/49
#   ch 2: In = LB, Pre = 3 relu(SB)   Pre shrinks with scale -> Eq. 1 fails; ratio 52/70 ok
#   ch 3 (planted): ch 0 times two                      -> same ratio, passes
#   ch 4: In = 0,  Pre = as ch 0                         -> Post(small) = 0: ratio 0, Eq. 2 fails
#   ch 5: In = SB with a strong surround (large: -35), Pre = as ch 0
#        -> Post(large) = relu(-35 + 7.25) = 0: zero denominator, Eq. 2 fails
PLANTED = {0, 3}
SIZE, KERNEL = 32, 15


def _ring(r0: float, r1: float) -> torch.Tensor:
    c = KERNEL // 2
    y, x = torch.meshgrid(torch.arange(KERNEL) - c, torch.arange(KERNEL) - c, indexing="ij")
    d = (x ** 2 + y ** 2).float().sqrt()
    return ((d > r0) & (d <= r1)).float()


def disc_image(radius: float) -> torch.Tensor:
    c = SIZE // 2  # the centre neuron's pixel
    y, x = torch.meshgrid(torch.arange(SIZE) - c, torch.arange(SIZE) - c, indexing="ij")
    return ((x ** 2 + y ** 2).float().sqrt() <= radius).float().expand(3, SIZE, SIZE).clone()


SB = _ring(-1, 2.5) - 0.5 * _ring(2.5, 6)
SB_STRONG = _ring(-1, 2.5) - 2.0 * _ring(2.5, 6)
LB = _ring(-1, 5) - 0.25 * _ring(5, 7)


class PlantedNet(nn.Module):
    """Stem conv (the In of block "1.0") and one torchvision BasicBlock."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, KERNEL, padding=KERNEL // 2, bias=False)
        self.layer1 = nn.Sequential(BasicBlock(6, 6))
        stem = [SB, LB, LB, 2 * SB, torch.zeros(KERNEL, KERNEL), SB_STRONG]
        block = self.layer1[0]
        with torch.no_grad():
            for c, kernel in enumerate(stem):
                self.conv1.weight[c] = kernel / 3  # grey images: the three colours sum
            block.conv1.weight.zero_()
            block.conv2.weight.zero_()
            for bn in (block.bn1, block.bn2):
                bn.running_mean.zero_()
                bn.running_var.fill_(1.0)
                bn.eps = 0.0
                bn.weight.fill_(1.0)
                bn.bias.zero_()
            block.conv1.weight[0, 1, 1, 1] = 1.0  # mid 0 = relu(LB)
            block.conv1.weight[2, 0, 1, 1] = 1.0  # mid 2 = relu(SB)
            for c, w, b in ((0, 0.25, -5.0), (3, 0.5, -10.0), (4, 0.25, -5.0), (5, 0.25, -5.0)):
                block.conv2.weight[c, 0, 1, 1] = w
                block.bn2.bias[c] = b
            block.conv2.weight[2, 2, 1, 1] = 3.0
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer1(self.conv1(x)).mean((2, 3))


@pytest.fixture(scope="module")
def planted() -> PlantedNet:
    return PlantedNet()


def planted_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    return disc_image(2).expand(6, 3, SIZE, SIZE), disc_image(4).expand(6, 3, SIZE, SIZE)


def test_planted_channels_are_exactly_found(planted):
    si = ScaleInvariance(planted, "1.0")
    scores = si.attribute(planted_inputs())
    table = si.evaluate(planted_inputs()).table()
    assert set(table.loc[table["passes"], "channel"]) == PLANTED
    assert set(table.loc[table["eq1"], "channel"]) == {0, 3, 4, 5}
    assert set(table.loc[table["eq2"], "channel"]) == {0, 2, 3}
    assert torch.equal((scores > 0).all(1), torch.tensor(table["passes"].to_list()))
    assert table.loc[5, "eq2_status"] == "zero denominator" and math.isnan(table.loc[5, "ratio"])
    assert table.loc[4, "ratio"] == 0.0
    # the values are the hand-computed filter responses (plain sums, no conv)
    small = disc_image(2)[0, SIZE // 2 - 7:SIZE // 2 + 8, SIZE // 2 - 7:SIZE // 2 + 8]
    large = disc_image(4)[0, SIZE // 2 - 7:SIZE // 2 + 8, SIZE // 2 - 7:SIZE // 2 + 8]
    sb_s, lb_s, sb_l, lb_l = (SB * small).sum(), (LB * small).sum(), (SB * large).sum(), (LB * large).sum()
    row = table.loc[0]
    assert row["in_in"] == pytest.approx(float(sb_s), abs=1e-4)
    assert row["pre_in"] == pytest.approx(float(0.25 * lb_s - 5), abs=1e-4)
    assert row["post_in"] == pytest.approx(float(torch.relu(sb_s + 0.25 * lb_s - 5)), abs=1e-4)
    assert row["post_pre"] == pytest.approx(float(torch.relu(sb_l + 0.25 * lb_l - 5)), abs=1e-4)
    assert summarize(table).loc[0, ["channels", "passing"]].tolist() == [6, 2]


def test_flip_family_on_symmetric_discs(planted):
    # a flip leaves a centred disc (almost) as it is, so Pre(T(x)) == Pre(x): Eq. (1) is
    # then strict-fails wherever Pre(x) >= 0
    si = ScaleInvariance(planted, "1.0")
    table = si.evaluate(planted_inputs(), transform="hflip").table()
    assert (table["transform"] == "hflip").all()
    flipped = rsi.capture(planted, planted_inputs()[0].flip(-1), blocks="1.0", nodes="pre")[("1.0", "pre")]
    torch.testing.assert_close(torch.tensor(table["pre_scaled"].to_numpy()), flipped.diagonal())


# --------------------------------------------------------------------------- ScaleInvariance vs capture


@pytest.fixture(scope="module")
def small_resnet() -> nn.Module:
    torch.manual_seed(0)
    model = ResNet(BasicBlock, [2, 1, 1, 1], num_classes=10)
    return model.eval()


def _random_inputs(k_images: int, channels: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    shape = (channels, 3, 32, 32) if k_images == 1 else (channels, k_images, 3, 32, 32)
    return torch.randn(*shape, generator=g), torch.randn(*shape, generator=g)


@pytest.mark.parametrize("block,k_images,transform", [
    ("1.1", 1, "scale"), ("2.0", 1, "scale"), ("2.0", 3, "scale"), ("1.1", 1, "rotate:30"),
])
def test_attribute_equals_criteria_from_capture(small_resnet, block, k_images, transform):
    channels = [0, 5, 17, 33]
    x_in, x_pre = _random_inputs(k_images, len(channels), seed=1)
    before = model_state(small_resnet)
    si = ScaleInvariance(small_resnet, block)
    scores = si.attribute((x_in, x_pre), channels=channels, transform=transform, tolerance=1.5)
    assert_same_state(before, model_state(small_resnet))
    assert scores.shape == (len(channels), 2)

    fn = get_transform(transform)
    flat_in, flat_pre = x_in.reshape(-1, 3, 32, 32), x_pre.reshape(-1, 3, 32, 32)
    a_in = rsi.capture(small_resnet, flat_in, blocks=block, nodes=("pre", "post"))
    a_s = rsi.capture(small_resnet, fn(flat_in), blocks=block, nodes=("pre",))
    a_pre = rsi.capture(small_resnet, flat_pre, blocks=block, nodes=("post",))
    idx = torch.tensor(channels).repeat_interleave(k_images)
    rows = torch.arange(len(idx))

    def pick(acts):
        return acts[rows, idx].view(len(channels), k_images).mean(1)

    pre_in, post_in = pick(a_in[(block, "pre")]), pick(a_in[(block, "post")])
    pre_scaled, post_pre = pick(a_s[(block, "pre")]), pick(a_pre[(block, "post")])
    expected = invariance_criteria(pre_in, pre_scaled, post_in, post_pre, 1.5)
    torch.testing.assert_close(scores[:, 0], expected.eq1_margin)
    torch.testing.assert_close(scores[:, 1], expected.eq2_margin)
    table = si.evaluate((x_in, x_pre), channels=channels, transform=transform, tolerance=1.5).table()
    assert table["passes"].tolist() == expected.passes.tolist()
    torch.testing.assert_close(torch.tensor(table["post_pre"].to_numpy()), post_pre)
    assert table["images_per_channel"].eq(k_images).all()


def test_attribute_matches_raw_hooks(small_resnet):
    # independent of nnsight: read Pre and Post with register_forward_hook
    x_in, x_pre = _random_inputs(1, 64, seed=2)
    si = ScaleInvariance(small_resnet, "2.0")
    scores = si.attribute((x_in, x_pre), channels=range(64, 128))
    ch = torch.arange(64, 128)
    # 32 px input: 4x4 maps in stage 2, the centre neuron is (2, 2)
    ref_in = hook_nodes(small_resnet, x_in, "layer2.0")
    ref_s = hook_nodes(small_resnet, S(x_in), "layer2.0")
    ref_pre = hook_nodes(small_resnet, x_pre, "layer2.0")
    n = torch.arange(64)
    pre_in = ref_in["pre"][n, ch, 2, 2]
    expected = invariance_criteria(pre_in, ref_s["pre"][n, ch, 2, 2], ref_in["post"][n, ch, 2, 2],
                                   ref_pre["post"][n, ch, 2, 2])
    torch.testing.assert_close(scores[:, 0], expected.eq1_margin, atol=1e-5, rtol=1e-5)
    table = si.evaluate((x_in, x_pre), channels=range(64, 128)).table()
    assert table["passes"].tolist() == expected.passes.tolist()
    torch.testing.assert_close(torch.tensor(table["in_in"].to_numpy()), ref_in["in"][n, ch, 2, 2],
                               atol=1e-5, rtol=1e-5)


def test_code_variant_reads_the_pre_relu_sum(small_resnet):
    assert node_sites(small_resnet, "1.1", "text") == {"in": ("1.1", "in"), "pre": ("1.1", "pre"), "post": ("1.1", "post")}
    assert node_sites(small_resnet, "1.1", "code") == {"in": ("1.0", "sum"), "pre": ("1.1", "pre"), "post": ("1.1", "sum")}
    # a block with a downsample, and the first block, keep In
    assert node_sites(small_resnet, "2.0", "code")["in"] == ("2.0", "in")
    assert node_sites(small_resnet, "1.0", "code")["in"] == ("1.0", "in")
    channels = [1, 2, 3]
    x_in, x_pre = _random_inputs(1, 3, seed=3)
    si = ScaleInvariance(small_resnet, "1.1", node_variant="code")
    table = si.evaluate((x_in, x_pre), channels=channels).table()
    ref_in = hook_nodes(small_resnet, x_in, "layer1.1")
    ref_prev = hook_nodes(small_resnet, x_in, "layer1.0")
    n, ch = torch.arange(3), torch.tensor(channels)
    torch.testing.assert_close(torch.tensor(table["post_in"].to_numpy()), ref_in["sum"][n, ch, 4, 4], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(torch.tensor(table["in_in"].to_numpy()), ref_prev["sum"][n, ch, 4, 4], atol=1e-5, rtol=1e-5)
    assert (table["node_variant"] == "code").all()


def test_table_schema_and_summary(small_resnet):
    x_in, x_pre = _random_inputs(1, 64, seed=4)
    si = ScaleInvariance(small_resnet, "1.0")
    result = si.evaluate((x_in, x_pre))
    table = result.table()
    assert tuple(table.columns) == TABLE_COLUMNS
    assert len(table) == 64 and table["channel"].tolist() == list(range(64))
    assert (table["block"] == "1.0").all()
    for column in ("eq1", "eq2", "passes"):
        assert table[column].dtype == bool
    assert table["passes"].equals(table["eq1"] & table["eq2"])
    summary = result.summary()
    assert list(summary.columns) == ["transform", "block", "channels", "passing", "share", "eq1", "eq2"]
    assert summary.loc[0, "channels"] == 64
    assert summary.loc[0, "passing"] == int(table["passes"].sum())
    assert summary.loc[0, "share"] == pytest.approx(table["passes"].mean())


def test_is_a_captum_attribution(small_resnet):
    si = ScaleInvariance(small_resnet, "1.0")
    assert isinstance(si, Attribution)
    assert si.forward_func is small_resnet
    assert not si.has_convergence_delta()
    # an NNsight wrapper is unwrapped
    assert ScaleInvariance(rsi.wrap(small_resnet), "1.0").model is small_resnet


def test_batch_size_does_not_change_the_result(small_resnet):
    x_in, x_pre = _random_inputs(1, 8, seed=5)
    si = ScaleInvariance(small_resnet, "2.0")
    whole = si.attribute((x_in, x_pre), channels=range(8))
    split = si.attribute((x_in, x_pre), channels=range(8), batch_size=3)
    torch.testing.assert_close(whole, split, atol=1e-5, rtol=1e-5)


def test_errors(small_resnet):
    si = ScaleInvariance(small_resnet, "1.0")
    x_in, x_pre = _random_inputs(1, 4, seed=6)
    with pytest.raises(TypeError, match="pair"):
        si.attribute(x_in)
    with pytest.raises(ValueError, match="64"):
        si.attribute((x_in, x_pre))  # 4 images, 64 channels
    with pytest.raises(IndexError, match="0..63"):
        si.attribute((x_in, x_pre), channels=[0, 1, 2, 64])
    with pytest.raises(ValueError, match="duplicates"):
        si.attribute((x_in, x_pre), channels=[0, 1, 1, 2])
    with pytest.raises(ValueError, match="x_pre"):
        si.attribute((x_in, x_pre[:3]), channels=[0, 1, 2, 3])
    with pytest.raises(ValueError, match=r"\[K, 3, H, W\]"):
        si.attribute((x_in[0], x_pre), channels=[0, 1, 2, 3])
    with pytest.raises(ValueError, match="valid"):
        si.attribute((x_in, x_pre), channels=[0, 1, 2, 3], transform="zoom")
    with pytest.raises(ValueError, match="tolerance"):
        si.attribute((x_in, x_pre), channels=[0, 1, 2, 3], tolerance=1)
    with pytest.raises(ValueError, match="valid blocks"):
        ScaleInvariance(small_resnet, "9.9")
    with pytest.raises(ValueError, match="node_variant"):
        ScaleInvariance(small_resnet, "1.0", node_variant="paper")


def test_summarize_groups_by_source_and_checks_columns():
    table = pd.DataFrame({
        "source": ["fz"] * 3 + ["natural"] * 3, "block": ["2.1"] * 6,
        "passes": [True, False, True, False, False, True],
    })
    summary = summarize(table)
    assert summary[["source", "channels", "passing"]].values.tolist() == [["fz", 3, 2], ["natural", 3, 1]]
    with pytest.raises(ValueError, match="passes"):
        summarize(table.drop(columns="passes"))


def test_summarize_counts_channels_not_channel_seed_rows():
    # 6 channels x 3 seeds: channel 9 passes in every seed (robust), channel 3 in seed 0 only
    rows = [{"block": "2.1", "channel": c, "seed": s, "passes": c == 9 or (c == 3 and s == 0),
             "eq1": c in (3, 9), "eq2": c == 9 or s == 0}
            for s in (0, 1, 2) for c in (0, 1, 2, 3, 4, 9)]
    summary = summarize(pd.DataFrame(rows))
    assert summary.loc[0, ["channels", "passing", "eq1", "eq2"]].tolist() == [6, 1, 2, 1]
    assert summary.loc[0, "share"] == pytest.approx(1 / 6)
    # a channel that was rendered in one seed only (adaptive stop) is judged on that seed
    stopped = pd.DataFrame(rows[:6] + [{"block": "2.1", "channel": 9, "seed": 1, "passes": True}])
    assert summarize(stopped).loc[0, ["channels", "passing"]].tolist() == [6, 2]
