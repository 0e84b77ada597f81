"""Lucent objectives for the residual nodes: they read the node (Pre cloned before the in-place
sum), Lucent's render_vis with them optimises Pre step for step like rsi.visualize, Lucent's
own bn2 objective optimises Post, the TransformerLens view works with render_vis, and the
objectives' hooks go away."""

from __future__ import annotations

import copy
import gc

import pytest
import torch
from rsi_plugin.testing.state import assert_same_state, model_state
from rsi_plugin.testing.lucent_reference import lucent_render_vis
from torch import nn

import rsi_plugin as rsi
from rsi_plugin.featureviz.optimize import FeatureVizConfig, visualize
from rsi_plugin.zoo.model import build_tiny_resnet

SIZE, STEPS = 32, 6
NODES = ("in", "pre", "sum", "post")


def _tiny(seed: int) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_tiny_resnet(width=8)
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():  # BatchNorm away from identity, so Pre and Post differ clearly
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data = 0.5 + torch.rand(m.num_features, generator=g)
            m.bias.data = 0.3 * torch.randn(m.num_features, generator=g)
    return model.eval()


@pytest.fixture(scope="module")
def tiny() -> nn.Module:
    return _tiny(5)


@pytest.mark.parametrize("block", ["2.0", "2.1"])  # with and without a downsample
@pytest.mark.parametrize("node", NODES)
def test_objectives_read_the_node(tiny, block, node):
    x = torch.randn(3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    value = rsi.capture(tiny, x, blocks=[block], nodes=node, center=False)[(block, node)]
    c = 3
    with rsi.lucent.neuron(tiny, block, node, c) as neuron, rsi.lucent.channel(tiny, block, node, c) as chan:
        with torch.no_grad():
            tiny(x)
        h, w = value.shape[2] // 2, value.shape[3] // 2
        torch.testing.assert_close(neuron(None), -value[:, c, h, w].mean())
        torch.testing.assert_close(chan(None), -value[:, c].mean())
        both = neuron - 2 * chan  # Lucent's composition
        torch.testing.assert_close(both(None), -value[:, c, h, w].mean() + 2 * value[:, c].mean())
        assert "2" in neuron.description and node in neuron.description
    with pytest.raises(RuntimeError, match="removed"):
        neuron(None)


def test_objective_errors(tiny):
    with pytest.raises(ValueError, match="valid blocks"):
        rsi.lucent.neuron(tiny, "9.9", "pre", 0)
    with pytest.raises(ValueError, match="valid nodes"):
        rsi.lucent.neuron(tiny, "2.1", "mid", 0)
    with pytest.raises(IndexError, match="0..15"):
        rsi.lucent.channel(tiny, "2.1", "pre", 16)
    with pytest.raises(TypeError, match="int"):
        rsi.lucent.channel(tiny, "2.1", "pre", 1.5)
    fresh = _tiny(1)
    with rsi.lucent.neuron(fresh, "2.1", "pre", 0) as objective:
        with pytest.raises(RuntimeError, match="no forward"):
            objective(None)


def test_hooks_removed_by_remove_and_by_garbage_collection():
    model = _tiny(2)
    before = model_state(model)
    objective = rsi.lucent.neuron(model, "2.1", "sum", 1)
    assert model_state(model)["hooks"] != before["hooks"]
    objective.remove()
    objective.remove()  # idempotent
    assert_same_state(before, model_state(model))
    composed = 2 * rsi.lucent.channel(model, "2.0", "pre", 1) + rsi.lucent.neuron(model, "1.0", "in", 0)
    assert model_state(model)["hooks"] != before["hooks"]
    del composed
    gc.collect()
    assert_same_state(before, model_state(model))


def _render_vis(model, objective, channel, cfg, monkeypatch):
    """Lucent's render_vis on one channel from our initial spectrum and scale draws
    (rsi_plugin/testing/lucent_reference.py)."""
    return lucent_render_vis(model, objective, channel, cfg, STEPS, SIZE, monkeypatch)


def test_render_vis_optimises_pre_like_rsi_and_lucents_bn2_optimises_post(tiny, monkeypatch):
    from lucent.optvis import objectives

    channel = 2
    cfg = FeatureVizConfig(image_size=SIZE, steps=STEPS, jitter=0, angles=(0.0,), channels_per_batch=1)
    ours = visualize(tiny, "2.1", "pre", [channel], cfg).images
    resolved = cfg.resolved(tiny, "2.1", "pre")

    def lucent_image(objective_of):
        model = copy.deepcopy(tiny)  # Lucent leaves a hook on every module
        objective = objective_of(model)
        try:
            return _render_vis(model, objective, channel, resolved, monkeypatch)
        finally:
            getattr(objective, "remove", lambda: None)()

    pre = lucent_image(lambda m: rsi.lucent.neuron(m, "2.1", "pre", channel))
    torch.testing.assert_close(pre, ours, atol=1e-4, rtol=0)  # render_vis + our objective == rsi.visualize
    bn2 = lucent_image(lambda m: objectives.neuron("layer2_1_bn2", channel))
    post = lucent_image(lambda m: rsi.lucent.neuron(m, "2.1", "post", channel))
    torch.testing.assert_close(bn2, post, atol=1e-6, rtol=0)  # Lucent's "bn2" is Post
    assert (bn2 - pre).abs().max() > 0.05


def test_render_vis_on_the_hooked_view_equals_the_channel_objective(tiny, monkeypatch):
    channel = 4
    cfg = FeatureVizConfig(image_size=SIZE, steps=STEPS, jitter=0, angles=(0.0,),
                           channels_per_batch=1).resolved(tiny, "2.1", "pre")
    view_model = copy.deepcopy(tiny)
    by_view = _render_vis(rsi.hooked(view_model, blocks=["2.1"]), f"blocks_2_1_hook_pre:{channel}", channel, cfg,
                          monkeypatch)
    model = copy.deepcopy(tiny)
    with rsi.lucent.channel(model, "2.1", "pre", channel) as objective:
        by_objective = _render_vis(model, objective, channel, cfg, monkeypatch)
    torch.testing.assert_close(by_view, by_objective, atol=1e-6, rtol=0)
