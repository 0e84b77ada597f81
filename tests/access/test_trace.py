"""capture() and ablate() against plain PyTorch hooks, and the invariants of every trace."""

from __future__ import annotations

import pytest
import torch
from rsi_plugin.testing.state import assert_same_state, model_state
from rsi_plugin.testing.hooks_reference import hook_ablate, hook_ablate_sum, hook_nodes

import rsi_plugin as rsi
from rsi_plugin.access.nnsight import wrap

NODES = ("in", "pre", "sum", "post")


@pytest.mark.parametrize("model_name", ["resnet18", "resnet50"])
def test_post_equals_relu_in_plus_pre_every_block(model_name, request, images):
    model = request.getfixturevalue(model_name)
    acts = rsi.capture(model, images, nodes=("in", "pre", "post"), center=False)
    for block in rsi.residual_blocks(model):
        i, p, o = (acts[(block.name, n)] for n in ("in", "pre", "post"))
        assert not torch.equal(p, o), f"Pre of {block.name} aliases Post (not cloned)"
        torch.testing.assert_close(o, torch.relu(i + p), rtol=0, atol=1e-5)


@pytest.mark.parametrize("model_name", ["resnet18", "resnet50"])
def test_capture_equals_raw_hooks(model_name, request, images):
    model = request.getfixturevalue(model_name)
    blocks = rsi.residual_blocks(model)
    chosen = [blocks[0], blocks[len(blocks) // 2], blocks[-1]]  # with and without downsample
    assert any(b.downsample_path for b in chosen) and any(not b.downsample_path for b in chosen)
    acts = rsi.capture(model, images, blocks=[b.name for b in chosen], nodes=NODES, center=False)
    for block in chosen:
        reference = hook_nodes(model, images, block.path)
        for node in ("in", "pre", "post"):
            assert torch.equal(acts[(block.name, node)], reference[node]), (block.name, node)
        # sum = in + pre is one float add away from what the ReLU sees
        torch.testing.assert_close(acts[(block.name, "sum")], reference["sum"], rtol=0, atol=1e-6)


def test_center_is_h_over_2_w_over_2(resnet18):
    x = torch.randn(1, 3, 72, 88, generator=torch.Generator().manual_seed(0))  # odd-ish, non-square maps
    full = rsi.capture(resnet18, x, blocks=["2.1"], nodes=("pre",), center=False)[("2.1", "pre")]
    centre = rsi.capture(resnet18, x, blocks=["2.1"], nodes=("pre",), center=True)[("2.1", "pre")]
    h, w = full.shape[-2:]
    assert centre.shape == full.shape[:2]
    assert torch.equal(centre, full[:, :, h // 2, w // 2])


def test_in_of_first_block_is_maxpool_and_downsample_output(resnet18, images):
    seen = {}
    handles = [resnet18.maxpool.register_forward_hook(lambda m, a, o: seen.__setitem__("maxpool", o.clone())),
               resnet18.layer3[0].downsample.register_forward_hook(lambda m, a, o: seen.__setitem__("ds", o.clone()))]
    try:
        with torch.no_grad():
            resnet18(images)
    finally:
        for h in handles:
            h.remove()
    acts = rsi.capture(resnet18, images, blocks=["1.0", "3.0"], nodes=("in",), center=False)
    assert torch.equal(acts[("1.0", "in")], seen["maxpool"])
    assert torch.equal(acts[("3.0", "in")], seen["ds"])


def test_trace_without_intervention_equals_model(resnet18, images):
    with torch.no_grad():
        expected = resnet18(images)
    assert torch.equal(rsi.ablate(resnet18, images, block="3.1", channels=[]), expected)


@pytest.mark.parametrize("values", [0.0, [0.5, -1.25, 2.0]])
def test_ablate_equals_hook_ablation(resnet18, images, values):
    channels = [1, 9, 200]
    got = rsi.ablate(resnet18, images, block="3.1", channels=channels, values=values)
    expected = hook_ablate(resnet18, images, "layer3.1", channels, values)
    assert torch.equal(got, expected)
    with torch.no_grad():
        assert not torch.equal(got, resnet18(images))


def test_ablate_at_sum_equals_patched_relu_input(resnet18, images):
    channels, values = [3, 4], [-0.5, 0.75]
    got = rsi.ablate(resnet18, images, block="2.1", channels=channels, values=values, node="sum")
    expected = hook_ablate_sum(resnet18, images, "layer2.1", channels, values)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


def test_ablation_changes_only_later_nodes_and_chosen_channels(resnet18, images):
    """Raw hooks watch rsi.ablate: everything before block 3.1 is as in a clean run, and
    what 3.1 passes on differs from the clean Post in the chosen channels only."""
    channels = [0, 5]
    seen = {}
    handles = [
        resnet18.layer2[1].register_forward_hook(lambda m, a, o: seen.__setitem__("2.1", o.clone())),
        resnet18.layer3[1].conv1.register_forward_hook(lambda m, a, o: seen.__setitem__("3.1.conv1", o.clone())),
        resnet18.layer4[0].register_forward_pre_hook(lambda m, a: seen.__setitem__("3.1 out", a[0].clone())),
    ]
    try:
        rsi.ablate(resnet18, images, block="3.1", channels=channels, values=0.25)
        ablated = dict(seen)
        with torch.no_grad():
            resnet18(images)
        clean = dict(seen)
    finally:
        for h in handles:
            h.remove()
    assert torch.equal(ablated["2.1"], clean["2.1"])
    assert torch.equal(ablated["3.1.conv1"], clean["3.1.conv1"])
    others = [c for c in range(ablated["3.1 out"].shape[1]) if c not in channels]
    assert torch.equal(ablated["3.1 out"][:, others], clean["3.1 out"][:, others])
    assert torch.all(ablated["3.1 out"][:, channels] == 0.25)
    assert not torch.equal(clean["3.1 out"][:, channels], ablated["3.1 out"][:, channels])


def test_batch_equals_items_one_by_one(resnet18, images):
    whole = rsi.capture(resnet18, images, blocks=["2.0"], nodes=NODES)
    single = [rsi.capture(resnet18, images[i:i + 1], blocks=["2.0"], nodes=NODES) for i in range(len(images))]
    for key, value in whole.items():
        torch.testing.assert_close(value, torch.cat([s[key] for s in single]), rtol=1e-5, atol=1e-5)
    logits = rsi.ablate(resnet18, images, block="2.0", channels=[1], values=0.3)
    items = torch.cat([rsi.ablate(resnet18, images[i:i + 1], block="2.0", channels=[1], values=0.3)
                       for i in range(len(images))])
    torch.testing.assert_close(logits, items, rtol=1e-5, atol=1e-5)


def test_inputs_as_list_and_dataloader_equal_tensor(resnet18, images):
    reference = rsi.capture(resnet18, images, blocks=["1.1"])
    as_list = rsi.capture(resnet18, list(images), blocks=["1.1"])
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, torch.zeros(2)), batch_size=1)
    as_loader = rsi.capture(resnet18, loader, blocks=["1.1"])
    split = rsi.capture(resnet18, images, blocks=["1.1"], batch_size=1)
    for key, value in reference.items():
        for other in (as_list, as_loader, split):
            torch.testing.assert_close(other[key], value, rtol=1e-5, atol=1e-5)


def test_stop_early_gives_the_same_values(resnet18, images):
    a = rsi.capture(resnet18, images, blocks=["1.1"], nodes=NODES, stop_early=True)
    b = rsi.capture(resnet18, images, blocks=["1.1"], nodes=NODES, stop_early=False)
    for key in a:
        assert torch.equal(a[key], b[key])


def test_stop_early_really_stops(resnet18, images):
    calls = []
    handle = resnet18.fc.register_forward_hook(lambda *a: calls.append(1))
    try:
        rsi.capture(resnet18, images, blocks=["1.1"], stop_early=True)
        assert calls == []
        rsi.capture(resnet18, images, blocks=["1.1"], stop_early=False)
        assert calls == [1]
    finally:
        handle.remove()


def test_model_unchanged_after_calls_and_errors(resnet18, images):
    user_calls = []
    handle = resnet18.layer2.register_forward_hook(lambda *a: user_calls.append(1))
    try:
        wrap(resnet18)  # nnsight instruments once; what matters is that calls leave no trace
        before = model_state(resnet18)
        rsi.capture(resnet18, images, blocks=["2.1", "4.0"], nodes=NODES)
        rsi.ablate(resnet18, images, block="3.1", channels=[1], values=0.0)
        rsi.ablate(resnet18, images, block="3.1", channels=[1], node="sum")
        with pytest.raises(IndexError):
            rsi.ablate(resnet18, images, block="3.1", channels=[10_000])
        with pytest.raises(ValueError):
            rsi.capture(resnet18, images[:, :1], blocks=["2.1"])
        # an error raised inside the trace, by the model itself
        envoy = wrap(resnet18)
        with pytest.raises(RuntimeError, match="boom"):
            with envoy.trace(images):
                envoy.layer2[1].output.save()
                raise RuntimeError("boom")
        assert_same_state(before, model_state(resnet18))
        n = len(user_calls)
        with torch.no_grad():
            resnet18(images)
        assert len(user_calls) == n + 1, "the user's own hook was lost"
    finally:
        handle.remove()


def test_training_mode_and_grad_flags_kept():
    model = rsi.load_model("resnet18")
    model.train()
    model.layer1.requires_grad_(False)
    x = torch.randn(2, 3, 64, 64)
    before = model_state(model)
    rsi.capture(model, x, blocks=["1.0"], nodes=("pre",))
    after = model_state(model)
    # BatchNorm in train mode updates its running stats in any forward: a capture must not
    # be special about that, but flags must stay
    assert before["training"] == after["training"] and before["requires_grad"] == after["requires_grad"]
    assert before["hooks"] == after["hooks"]


@pytest.mark.parametrize("call, error, match", [
    (lambda m, x: rsi.capture(m, x, blocks=["9.9"]), ValueError, r"valid blocks: 1\.0, 1\.1, 2\.0"),
    (lambda m, x: rsi.capture(m, x, blocks=["2.1"], nodes=("middle",)), ValueError, "valid nodes: in, pre, sum, post"),
    (lambda m, x: rsi.ablate(m, x, block="2.1", channels=[128]), IndexError, r"128 channels \(0\.\.127\)"),
    (lambda m, x: rsi.ablate(m, x, block="2.1", channels=[-1]), IndexError, "out of range"),
    (lambda m, x: rsi.ablate(m, x, block="2.1", channels=[1, 2], values=[1.0, 2.0, 3.0]), ValueError, "one per channel"),
    (lambda m, x: rsi.ablate(m, x, block="2.1", channels=[1], node="nope"), ValueError, "valid nodes"),
    (lambda m, x: rsi.capture(m, x[0], blocks=["2.1"]), ValueError, r"\[N, C, H, W\]"),
    (lambda m, x: rsi.capture(m, x[:, :2], blocks=["2.1"]), ValueError, "3 channels"),
    (lambda m, x: rsi.capture(m, (x * 255).to(torch.uint8), blocks=["2.1"]), TypeError, "floating point"),
    (lambda m, x: rsi.capture(m, x.numpy(), blocks=["2.1"]), TypeError, "torch.Tensor"),
])
def test_clear_errors(resnet18, images, call, error, match):
    with pytest.raises(error, match=match):
        call(resnet18, images)


def test_model_without_residual_blocks():
    plain = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())
    with pytest.raises(ValueError, match="no residual block"):
        rsi.residual_blocks(plain)
    with pytest.raises(ValueError, match="no residual block"):
        rsi.capture(plain, torch.randn(1, 3, 8, 8))
