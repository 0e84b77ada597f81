"""Issue 21 item 1: the ablation entry points evaluate a model in train mode as in eval mode,
give the caller's mode back and never change a BatchNorm buffer."""

from __future__ import annotations

import warnings

import pytest
import torch

import rsi_plugin as rsi
from rsi_plugin.ablation import SweepConfig, channel_means, sweep
from rsi_plugin.testing.models import random_data, small_resnet
from rsi_plugin.testing.state import assert_same_state, model_state


@pytest.fixture(scope="module")
def data():
    return random_data(12, seed=5)


def _pair():
    return small_resnet(), small_resnet().train()


def _same_call(call):
    eval_model, train_model = _pair()
    before = model_state(train_model)
    got = call(train_model)
    assert_same_state(before, model_state(train_model))
    assert train_model.training and all(m.training for m in train_model.modules())
    expected = call(eval_model)
    assert not eval_model.training
    return got, expected


def test_capture_in_train_mode_equals_eval(data):
    x = rsi.normalize(data[0], small_resnet())
    got, expected = _same_call(lambda m: rsi.capture(m, x, blocks=["2.1"], nodes=["post"]))
    assert torch.equal(got[("2.1", "post")], expected[("2.1", "post")])


def test_ablate_in_train_mode_equals_eval(data):
    x = rsi.normalize(data[0], small_resnet())
    got, expected = _same_call(lambda m: rsi.ablate(m, x, "2.1", [1, 2]))
    assert torch.equal(got, expected)


def test_channel_means_in_train_mode_equals_eval(data):
    got, expected = _same_call(lambda m: channel_means(m, data, "2.1"))
    assert torch.equal(got, expected)


def test_sweep_in_train_mode_equals_eval(data):
    config = SweepConfig(scales=(0.0, 0.3), trials=1, tolerance=1.0, null_sets=1, batch_size=6)
    got, expected = _same_call(lambda m: sweep(m, data, "2.1", [1, 2], config, progress=False))
    assert got.results.equals(expected.results)
    assert torch.equal(got.means, expected.means)


def test_block_nodes_in_own_trace_warns_once_in_train_mode(data):
    model = small_resnet().train()
    env = rsi.wrap(model)
    x = rsi.normalize(data[0][:2], model)
    with pytest.warns(UserWarning, match="train mode"):
        with env.trace(x):
            rsi.block_nodes(env, "2.1").post.save()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with env.trace(x):
            rsi.block_nodes(env, "2.1").post.save()
