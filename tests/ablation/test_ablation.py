"""Mean ablation and the sweep engine: the stacked (prefix-reuse) path against the naive path
and against plain PyTorch hooks; the ablation touches only the chosen channels at the block."""

from __future__ import annotations

import pytest
import torch
from rsi_plugin.testing.state import assert_same_state, model_state
from rsi_plugin.testing.hooks_reference import hook_ablate, hook_nodes
from rsi_plugin.testing.models import INPUT_SIZE, random_data, small_resnet  # noqa: F401

import rsi_plugin as rsi
from rsi_plugin.ablation import SweepConfig, ablate_conditions, channel_means, sweep, validation_loader
from rsi_plugin.ablation.means import prepare_batch
from rsi_plugin.core.transforms import scale_crop


@pytest.fixture(scope="module")
def model():
    return small_resnet()


@pytest.fixture(scope="module")
def data():
    return random_data(24, seed=3)


def test_prepare_batch_is_crop_then_normalise(model, data):
    images = data[0][:3]
    got = prepare_batch(images, model, 0.3, "text")
    expected = rsi.normalize(scale_crop(images, 0.3, INPUT_SIZE, "text"), model)
    assert got.shape == (3, 3, INPUT_SIZE, INPUT_SIZE)
    assert torch.equal(got, expected)


def test_channel_means_equal_hook_reference(model, data):
    images, labels = data
    loader = validation_loader((images, labels), model, batch_size=7)  # uneven batches
    means = channel_means(model, loader, "2.1")
    x = prepare_batch(images, model, 0.0, "text")
    post = hook_nodes(model, x, "layer2.1")["post"]
    expected = post[:, :, post.shape[2] // 2, post.shape[3] // 2].double().mean(0).float()
    assert means.shape == (post.shape[1],)
    assert torch.allclose(means, expected, rtol=1e-6, atol=1e-7)
    subset = channel_means(model, loader, "2.1", channels=[5, 1])
    assert torch.equal(subset, means[[5, 1]])


def test_channel_means_of_sum_node(model, data):
    images, labels = data
    means = channel_means(model, (images, labels), "3.1", node="sum")
    nodes = hook_nodes(model, prepare_batch(images, model, 0.0, "text"), "layer3.1")
    s = nodes["sum"]
    expected = s[:, :, s.shape[2] // 2, s.shape[3] // 2].double().mean(0).float()
    assert torch.allclose(means, expected, rtol=1e-6, atol=1e-7)
    assert (means < 0).any()  # the pre-ReLU sum, not Post


@pytest.mark.parametrize("block", ["2.1", "3.1"])
def test_stacked_conditions_equal_separate_ablations(model, data, block):
    x = prepare_batch(data[0][:6], model, 0.2, "text")
    c = rsi.get_block(model, block).channels
    values = torch.randn(c, generator=torch.Generator().manual_seed(0))
    conditions = [(), (1, 3), (0, 2, 7), tuple(range(c))]
    logits = ablate_conditions(model, x, block, conditions, values)
    assert logits.shape == (4, 6, 10)
    path = f"layer{block[0]}.{block[2]}"
    for i, channels in enumerate(conditions):
        if channels:
            expected = hook_ablate(model, x, path, list(channels), values[list(channels)])
            via_nnsight = rsi.ablate(model, x, block, list(channels), values[list(channels)])
            assert torch.allclose(logits[i], via_nnsight, atol=1e-5, rtol=1e-5)
        else:
            with torch.no_grad():
                expected = model(x)
        assert torch.allclose(logits[i], expected, atol=1e-5, rtol=1e-5)
        assert torch.equal(logits[i].argmax(1), expected.argmax(1))
    # stacks of 3 give what one stack gives
    chunked = ablate_conditions(model, x, block, conditions, values, max_stack=3)
    assert torch.allclose(chunked, logits, atol=1e-5, rtol=1e-5)


def test_stacked_sum_node_equals_hook_on_the_sum(model, data):
    from rsi_plugin.testing.hooks_reference import hook_ablate_sum

    x = prepare_batch(data[0][:4], model, 0.0, "text")
    values = torch.tensor([-0.5, 0.7])
    logits = ablate_conditions(model, x, "3.1", [(2, 9)], torch.zeros(32).index_put_((torch.tensor([2, 9]),), values),
                               node="sum")
    expected = hook_ablate_sum(model, x, "layer3.1", [2, 9], values)
    assert torch.allclose(logits[0], expected, atol=1e-5, rtol=1e-5)


def test_ablation_changes_only_chosen_channels_and_nothing_before(model, data):
    x = prepare_batch(data[0][:5], model, 0.1, "text")
    values = torch.linspace(-1, 1, 32)
    conditions = [(), (4, 6), (31,)]
    seen: dict[str, torch.Tensor] = {}
    before = ["conv1", "bn1", "maxpool", "layer1", "layer2", "layer3.0", "layer3.1.bn2"]
    handles = [model.get_submodule(name).register_forward_hook(
        lambda m, a, out, name=name: seen.__setitem__(name, out.detach().clone())) for name in before]
    handles.append(model.layer4.register_forward_pre_hook(
        lambda m, args: seen.__setitem__("after", args[0].detach().clone())))
    try:
        ablate_conditions(model, x, "3.1", conditions, values)
        stacked = {k: v for k, v in seen.items()}
        seen.clear()
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    for name in before:  # the prefix is computed once, on the batch itself, unchanged
        assert stacked[name].shape[0] == 5, name
        assert torch.equal(stacked[name], seen[name]), name
    clean = seen["after"]  # Post of block 3.1 without ablation
    after = stacked["after"].reshape(3, 5, *clean.shape[1:])
    for i, channels in enumerate(conditions):
        other = [c for c in range(32) if c not in channels]
        assert torch.equal(after[i][:, other], clean[:, other])
        for c in channels:
            assert torch.all(after[i][:, c] == values[c])


def test_ablate_conditions_leaves_model_as_found(model, data):
    x = prepare_batch(data[0][:2], model, 0.0, "text")
    state = model_state(model)
    ablate_conditions(model, x, "2.1", [(1,), ()], torch.zeros(16))
    with pytest.raises(IndexError):
        ablate_conditions(model, x, "2.1", [(99,)], torch.zeros(16))
    assert_same_state(state, model_state(model))


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(block="9.9"), ValueError, "valid blocks"),
    (dict(node="pre"), ValueError, "post, sum"),
    (dict(values=torch.zeros(3)), ValueError, "one value per channel"),
    (dict(conditions=[]), ValueError, "no condition"),
    (dict(conditions=[(1, 1)]), ValueError, "duplicates"),
    (dict(max_stack=0), ValueError, "max_stack"),
])
def test_ablate_conditions_errors(model, data, kwargs, error, match):
    args = dict(images=prepare_batch(data[0][:2], model), block="3.1", conditions=[(1,)], values=torch.zeros(32))
    args.update(kwargs)
    with pytest.raises(error, match=match):
        ablate_conditions(model, **args)


def _config(**kw):
    base = dict(scales=(0.0, 0.2, 0.4), trials=3, tolerance=1.0, null_sets=2, batch_size=10, checkpoint_every=1)
    base.update(kw)
    return SweepConfig(**base)


@pytest.mark.parametrize("node", ["post", "sum"])
def test_sweep_prefix_reuse_equals_naive_path(model, data, node):
    fast = sweep(model, data, "3.1", [0, 5, 9], _config(node=node), progress=False)
    naive = sweep(model, data, "3.1", [0, 5, 9], _config(node=node, batch_conditions=False), progress=False)
    chunked = sweep(model, data, "3.1", [0, 5, 9], _config(node=node, batch_conditions=2), progress=False)
    assert len(fast.results) == 3 * (2 + 3 + 2)  # none, invariant, 3 random and 2 null sets at 3 scales
    assert fast.results.equals(naive.results)
    assert fast.results.equals(chunked.results)
    assert fast.draws.equals(naive.draws)
    assert torch.equal(fast.means, naive.means)


def test_sweep_cells_equal_an_independent_count(model, data):
    images, labels = data
    result = sweep(model, data, "2.1", [3, 4], _config(trials=2), progress=False)
    means = result.means
    table = result.results.set_index(["condition", "trial", "scale"])
    kept = result.draws[result.draws["kept"]]
    sets = {"none": [], "invariant": [3, 4]}
    sets.update({("random", int(r.trial)): [int(c) for c in r.channels.split()] for r in kept.itertuples()})
    for scale in (0.0, 0.2, 0.4):
        x = rsi.normalize(scale_crop(images, scale, INPUT_SIZE, "text"), model)
        for key, channels in sets.items():
            name, trial = (key, 0) if isinstance(key, str) else key
            logits = hook_ablate(model, x, "layer2.1", channels, means[channels]) if channels else model(x)
            correct = int((logits.argmax(1) == labels).sum())
            row = table.loc[(name, trial, scale)]
            assert row["correct"] == correct, (name, trial, scale)
            assert row["n_images"] == len(labels)
            assert row["accuracy"] == pytest.approx(correct / len(labels))


def test_sweep_rejects_bad_input(model, data):
    with pytest.raises(ValueError, match="valid blocks"):
        sweep(model, data, "7.7", [1], progress=False)
    with pytest.raises(IndexError, match="out of range"):
        sweep(model, data, "3.1", [40], progress=False)
    with pytest.raises(ValueError, match="at least one channel"):
        sweep(model, data, "3.1", [], progress=False)
    with pytest.raises(ValueError, match="non-passing"):
        sweep(model, data, "1.1", list(range(5)), progress=False)  # 8 channels: 3 left, 5 needed
    with pytest.raises(ValueError, match="node"):
        sweep(model, data, "3.1", [1], SweepConfig(node="in"), progress=False)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        sweep(model, data, "3.1", [1], SweepConfig(scales=(0.5, 1.2)), progress=False)
    with pytest.raises(ValueError, match="labels must lie"):
        sweep(model, (data[0], data[1] + 10), "3.1", [1], _config(trials=0), progress=False)


def test_sweep_always_has_the_no_scale_condition(model, data):
    result = sweep(model, data, "3.1", [2], _config(scales=(0.3,), trials=1), progress=False)
    assert sorted(set(result.results["scale"])) == [0.0, 0.3]
    assert list(result.summary["scale"]) == [0.0, 0.3]
