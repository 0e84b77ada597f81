"""Residual nodes inside a user's own nnsight trace (rsi.block_nodes), library calls nested in a
trace (a clear error), and several invokes batched into one forward by VisionModel."""

from __future__ import annotations

import pytest
import torch
from rsi_plugin.testing.state import assert_same_state, model_state
from nnsight import NNsight

import rsi_plugin as rsi
from rsi_plugin.access.intrace import NestedTraceError

NODES = ("in", "pre", "sum", "post")


@pytest.mark.parametrize("order", [NODES, ("sum", "pre", "in", "post"), ("pre", "post"), ("post",)])
def test_block_nodes_in_a_users_trace_equal_capture(resnet18, images, order):
    blocks = ["1.1", "2.0", "3.1"]  # without and with a downsample
    reference = rsi.capture(resnet18, images, blocks=blocks, nodes=NODES, center=False)
    env = rsi.wrap(resnet18)
    got = {}
    with env.trace(images):
        for name in blocks:
            b = rsi.block_nodes(env, name)
            for node in order:
                got[(name, node)] = getattr(b, "in_" if node == "in" else node).save()
        logits = env.output.save()
    for key, value in got.items():
        assert torch.equal(value, reference[key]), key
    if "pre" in order:  # the clone was taken before the in-place sum and ReLU
        assert not torch.allclose(got[("2.0", "pre")], reference[("2.0", "post")])
    with torch.no_grad():
        torch.testing.assert_close(logits, resnet18(images))


def test_block_nodes_on_the_users_own_nnsight_wrapper(resnet18, images):
    reference = rsi.capture(resnet18, images, blocks=["2.1"], nodes=("pre", "sum"), center=False)
    mine = NNsight(resnet18)
    with mine.trace(images):
        b = rsi.block_nodes(mine, "2.1")
        pre, total = b.pre.save(), b.sum.save()
    assert torch.equal(pre, reference[("2.1", "pre")])
    assert torch.equal(total, reference[("2.1", "sum")])


@pytest.mark.parametrize("block", ["2.1", "3.0"])  # without and with a downsample
@pytest.mark.parametrize("node", NODES)
def test_patch_in_a_users_trace_equals_ablate(resnet18, images, block, node):
    channels, values = [1, 9, 100], torch.tensor([0.5, -1.0, 2.0])
    expected = rsi.ablate(resnet18, images, block, channels, values, node=node)
    env, seen = rsi.wrap(resnet18), {}
    with torch.no_grad(), env.trace(images):
        b = rsi.block_nodes(env, block)
        if node == "post":  # In, Pre and Sum run before Post: read them first
            for n in ("in", "pre", "sum"):
                seen[n] = b.get(n).save()
        b.patch(node, channels, values)
        for n in NODES:  # read after the patch: they show it
            if n not in seen:
                seen[n] = b.get(n).save()
        logits = env.output.save()
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)
    fill = values[None, :, None, None].expand(len(images), -1, *seen["pre"].shape[2:])
    torch.testing.assert_close(seen[node][:, channels], fill)
    if node != "sum":
        torch.testing.assert_close(seen["sum"], seen["in"] + seen["pre"])
    if node != "post":
        torch.testing.assert_close(seen["post"], torch.relu(seen["sum"]), atol=1e-6, rtol=0)


@pytest.mark.parametrize("call", [
    lambda m, x: rsi.capture(m, x, blocks=["2.1"]),
    lambda m, x: rsi.ablate(m, x, "2.1", [0]),
    lambda m, x: rsi.node_gradient(m, x, "2.1", "pre", [0, 1]),
])
def test_library_calls_inside_a_trace_raise_a_clear_error(resnet18, images, call):
    before = model_state(resnet18)
    env = rsi.wrap(resnet18)
    with pytest.raises(NestedTraceError, match=r"inside a `with model.trace\(...\)` block.*block_nodes"):
        with env.trace(images):
            call(resnet18, images)
    assert_same_state(before, model_state(resnet18))
    assert rsi.capture(resnet18, images, blocks=["2.1"])[("2.1", "pre")].shape == (2, 128)  # still usable


def test_block_nodes_errors(resnet18, images):
    b = rsi.block_nodes(resnet18, "2.1")
    with pytest.raises(RuntimeError, match="inside a `with model.trace"):
        b.pre
    with pytest.raises(ValueError, match="valid blocks"):
        rsi.block_nodes(resnet18, "9.9")
    with pytest.raises(TypeError, match="nn.Module"):
        rsi.block_nodes("resnet18", "2.1")
    env = rsi.wrap(resnet18)
    with pytest.raises(ValueError, match="root envoy"):
        rsi.block_nodes(env.layer2, "2.1")
    with pytest.raises(ValueError, match="valid nodes"):
        with env.trace(images):
            rsi.block_nodes(env, "2.1").get("mid")


@pytest.mark.parametrize("remote", [None, "local"])
def test_invokes_batched_in_one_trace_equal_separate_traces(resnet18, remote):
    """Clean and corrupted images in one forward: each invoke reads and patches only its rows."""
    g = torch.Generator().manual_seed(3)
    clean, corrupt = torch.randn(2, 3, 64, 64, generator=g), torch.randn(3, 3, 64, 64, generator=g)
    kwargs = {} if remote is None else {"remote": remote}
    env = rsi.wrap(resnet18)
    with torch.no_grad(), env.trace(**kwargs) as tracer:
        with tracer.invoke(clean):
            clean_pre = rsi.block_nodes(env, "3.1").pre.save()
            clean_logits = env.output.save()
        with tracer.invoke(corrupt):
            rsi.block_nodes(env, "2.1").patch("post", [1, 9], 0.0)
            corrupt_pre = rsi.block_nodes(env, "3.1").pre.save()
            corrupt_logits = env.output.save()
    assert clean_logits.shape == (2, 1000) and corrupt_logits.shape == (3, 1000)
    ref_clean = rsi.capture(resnet18, clean, blocks=["3.1"], nodes="pre", center=False)[("3.1", "pre")]
    torch.testing.assert_close(clean_pre, ref_clean, atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(clean_logits, resnet18(clean), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(corrupt_logits, rsi.ablate(resnet18, corrupt, "2.1", [1, 9], 0.0),
                               atol=1e-5, rtol=1e-5)
    env2 = rsi.wrap(resnet18)
    with torch.no_grad(), env2.trace(corrupt):
        rsi.block_nodes(env2, "2.1").patch("post", [1, 9], 0.0)
        ref_corrupt_pre = rsi.block_nodes(env2, "3.1").pre.save()
    torch.testing.assert_close(corrupt_pre, ref_corrupt_pre, atol=1e-5, rtol=1e-5)


def test_batched_invokes_need_one_image_size(resnet18):
    env = rsi.wrap(resnet18)
    with pytest.raises(ValueError, match="one size"):
        with torch.no_grad(), env.trace() as tracer:
            with tracer.invoke(torch.randn(1, 3, 64, 64)):
                env.output.save()
            with tracer.invoke(torch.randn(1, 3, 32, 32)):
                env.output.save()
