"""Captum fit: ScaleInvariance.attribute with Captum's log_usage and NoiseTunnel, keywords that do
not apply rejected, and Captum's own layer methods giving the numbers of capture,
node_gradient and ablate."""

from __future__ import annotations

import pytest
import torch
from captum.attr import LayerActivation, LayerFeatureAblation, NeuronGradient, NoiseTunnel
from torch import nn
from torchvision.models.resnet import BasicBlock, ResNet

import rsi_plugin as rsi
from rsi_plugin.criteria.captum import ScaleInvariance
from rsi_plugin.errors import RSIError, ShapeError


@pytest.fixture(scope="module")
def small() -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return ResNet(BasicBlock, [2, 1, 1, 1], num_classes=10).eval()


def _pairs(channels: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(channels, 3, 32, 32, generator=g), torch.randn(channels, 3, 32, 32, generator=g)


# ----------------------------------------------------------------------------- ScaleInvariance


@pytest.mark.parametrize("keyword", ["target", "baselines", "additional_forward_args", "n_steps"])
def test_attribute_rejects_keywords_that_do_not_apply(small, keyword):
    si = ScaleInvariance(small, "1.1")
    x_in, x_pre = _pairs(4, 0)
    with pytest.raises(TypeError, match=rf"unexpected keyword argument\(s\) '{keyword}'.*remote"):
        si.attribute((x_in, x_pre), channels=[0, 1, 2, 3], **{keyword: 3})
    if keyword == "target":
        with pytest.raises(TypeError, match="does not apply"):
            si.attribute((x_in, x_pre), channels=[0, 1, 2, 3], target=3)
        scores = si.attribute((x_in, x_pre), channels=[0, 1, 2, 3], remote=False, verbose=False)  # trace options pass
        torch.testing.assert_close(scores, si.attribute((x_in, x_pre), channels=[0, 1, 2, 3]))


def test_attribute_keeps_no_state_and_evaluate_returns_its_margins(small):
    si = ScaleInvariance(small, "2.0")
    before = dict(vars(si))
    chans = [1, 4, 9]
    first_in, first_pre = _pairs(3, 3)
    second_in, second_pre = _pairs(2, 4)
    scores = si.attribute((first_in, first_pre), channels=chans)
    assert isinstance(scores, torch.Tensor) and scores.shape == (3, 2)
    first = si.evaluate((first_in, first_pre), channels=chans)
    table = first.table()
    si.attribute((second_in, second_pre), channels=[0, 2])
    second = si.evaluate((second_in, second_pre), channels=[0, 2])
    # nothing was added to or changed on the method by the calls (Captum keeps no state)
    assert vars(si).keys() == before.keys() and all(vars(si)[k] is v for k, v in before.items())
    assert not hasattr(si, "table") and not hasattr(si, "_last")
    torch.testing.assert_close(first.margins, scores, rtol=0, atol=0)
    # a result is a value: a later call does not change an earlier result
    assert first.table().equals(table) and table["channel"].tolist() == chans
    assert second.table()["channel"].tolist() == [0, 2]
    # the table is a function of the result: its margins and verdicts are those of .margins
    torch.testing.assert_close(torch.tensor(table[["eq1_margin", "eq2_margin"]].to_numpy()), first.margins)
    assert table["passes"].tolist() == (first.margins > 0).all(1).tolist()
    assert first.summary().loc[0, "passing"] == int((first.margins > 0).all(1).sum())


def test_scale_invariance_still_importable_from_equations():
    from rsi_plugin.criteria import equations

    assert equations.ScaleInvariance is ScaleInvariance  # moved to criteria.captum; old import kept
    assert "ScaleInvariance" not in equations.__all__
    with pytest.raises(AttributeError):
        equations.NotAName  # noqa: B018


def test_attribute_is_logged_like_captums_methods():
    assert hasattr(ScaleInvariance.attribute, "__wrapped__")  # what Captum's methods carry and NoiseTunnel calls
    assert ScaleInvariance.attribute.__wrapped__.__name__ == "attribute"


def test_rows_repeated_per_channel_are_scored_one_by_one(small):
    si = ScaleInvariance(small, "2.0")
    chans = [3, 7, 11]
    x_in, x_pre = _pairs(6, 1)  # two rows per channel, in repeat_interleave order
    scores = si.attribute((x_in, x_pre), channels=chans, rows_per_channel=2)
    assert scores.shape == (6, 2)
    table = si.evaluate((x_in, x_pre), channels=chans, rows_per_channel=2).table()
    assert table["channel"].tolist() == [3, 3, 7, 7, 11, 11]
    for row in range(6):
        alone = si.attribute((x_in[row:row + 1], x_pre[row:row + 1]), channels=[chans[row // 2]])
        torch.testing.assert_close(scores[row:row + 1], alone, atol=1e-4, rtol=1e-4)  # batch of 6 vs 1
    with pytest.raises(ValueError, match="x_pre"):
        si.attribute((x_in, x_pre[:3]), channels=chans, rows_per_channel=2)


def test_extra_rows_are_a_shape_error_unless_repeated_layout_is_asked(small):
    # issue 21 item 3: extra rows were silently read as NoiseTunnel copies
    si = ScaleInvariance(small, "2.0")  # 128 channels
    x_in, x_pre = _pairs(256, 1)  # images for a 256-channel block
    with pytest.raises(ShapeError, match="expected 128 rows"):
        si.attribute((x_in, x_pre))
    with pytest.raises(ShapeError, match="expected 1 row"):
        si.attribute((x_in[:2], x_pre[:2]), channels=[5])
    with pytest.raises(ShapeError, match="expected 3 rows"):
        si.evaluate((x_in[:6], x_pre[:6]), channels=[1, 2, 3])
    with pytest.raises(ShapeError, match="expected 6 rows"):
        si.attribute((x_in[:4], x_pre[:4]), channels=[1, 2, 3], rows_per_channel=2)
    with pytest.raises(RSIError, match="rows_per_channel"):
        si.attribute((x_in[:2], x_pre[:2]), channels=[5], rows_per_channel=0)
    both = si.attribute((x_in[:2], x_pre[:2]), channels=[5], rows_per_channel=2)
    assert both.shape == (2, 2)


def test_noise_tunnel_over_the_input_images(small):
    si = ScaleInvariance(small, "2.0")
    chans = [0, 5, 9, 30]
    x_in, x_pre = _pairs(4, 2)
    nt = NoiseTunnel(si)
    plain = si.attribute((x_in, x_pre), channels=chans)
    noiseless = nt.attribute((x_in, x_pre), nt_type="smoothgrad", nt_samples=3, stdevs=0.0, channels=chans)
    torch.testing.assert_close(noiseless, plain, atol=1e-5, rtol=1e-5)

    samples, stdev = 3, 0.2
    torch.manual_seed(7)
    smooth = nt.attribute((x_in, x_pre), nt_type="smoothgrad", nt_samples=samples, stdevs=stdev, channels=chans)
    torch.manual_seed(7)  # NoiseTunnel's draws, one normal per input, in order
    noisy = [x.repeat_interleave(samples, 0) + torch.normal(0, torch.full((4 * samples, 3, 32, 32), stdev))
             for x in (x_in, x_pre)]
    per_row = si.attribute(tuple(noisy), channels=chans, rows_per_channel=samples)
    expected = per_row.view(4, samples, 2).mean(1)
    assert smooth.shape == (4, 2)
    torch.testing.assert_close(smooth, expected, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(smooth, plain)  # the noise did something
    with pytest.raises(TypeError, match="target"):
        nt.attribute((x_in, x_pre), nt_samples=2, stdevs=0.1, channels=chans, target=1)


# ----------------------------------------------------------------------------- Captum parity


@pytest.mark.parametrize("block,node,module", [
    ("2.1", "pre", "layer2.1.bn2"), ("2.1", "post", "layer2.1"), ("2.0", "in", "layer2.0.downsample"),
])
def test_layer_activation_equals_capture(resnet18, images, block, node, module):
    ours = rsi.capture(resnet18, images, blocks=[block], nodes=node, center=False)[(block, node)]
    theirs = LayerActivation(resnet18, resnet18.get_submodule(module)).attribute(images)
    torch.testing.assert_close(theirs, ours)


@pytest.mark.parametrize("block,node,module", [("2.1", "pre", "layer2.1.bn2"), ("3.1", "post", "layer3.1")])
def test_neuron_gradient_equals_node_gradient(resnet18, images, block, node, module):
    channel = 5
    _, grad = rsi.node_gradient(resnet18, images, block, node, [channel] * len(images), objective="neuron")
    side = rsi.capture(resnet18, images[:1], blocks=[block], nodes=node, center=False)[(block, node)].shape[-1]
    theirs = NeuronGradient(resnet18, resnet18.get_submodule(module)).attribute(
        images, neuron_selector=(channel, side // 2, side // 2))
    torch.testing.assert_close(theirs, grad, atol=1e-5, rtol=1e-4)


def test_layer_feature_ablation_equals_ablate():
    from rsi_plugin.zoo.model import build_tiny_resnet

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        tiny = build_tiny_resnet(width=8).eval()  # 32 channels at block 3.0: 32 ablations
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    target, block = 3, tiny.layer3[0]
    channels = block.bn2.num_features
    mask = torch.arange(channels).view(1, channels, 1, 1)  # one group per channel
    theirs = LayerFeatureAblation(tiny, block).attribute(x, target=target, layer_mask=mask, layer_baselines=0.0)
    with torch.no_grad():
        base = tiny(x)[:, target]
    for c in (0, 17, channels - 1):
        ablated = rsi.ablate(tiny, x, "3.0", [c], 0.0)[:, target]
        torch.testing.assert_close(theirs[:, c, 0, 0], base - ablated, atol=1e-5, rtol=1e-4)
