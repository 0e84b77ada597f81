"""One channel validator for the whole library: every function taking ``channels`` rejects
non-integers, out-of-range and repeated channels with the same typed errors, and accepts
the same integer forms (int, NumPy integers, integer tensors and arrays)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from rsi_plugin.testing.models import INPUT_SIZE, small_resnet

import rsi_plugin as rsi
from rsi_plugin.core.channels import check_channels
from rsi_plugin.criteria.captum import ScaleInvariance
from rsi_plugin.featureviz.optimize import FeatureVizConfig

BLOCK = "3.1"  # 32 channels in the width-8 model


@pytest.fixture(scope="module")
def model():
    return small_resnet()


@pytest.fixture(scope="module")
def x():
    return torch.randn(2, 3, INPUT_SIZE, INPUT_SIZE, generator=torch.Generator().manual_seed(0))


def _ablate(model, x, channels):
    return rsi.ablate(model, x, BLOCK, channels, 0.0)


def _attribute(model, x, channels):
    k = len(channels) if hasattr(channels, "__len__") and not isinstance(channels, str) else 1
    images = torch.randn(k, 3, INPUT_SIZE, INPUT_SIZE)
    return ScaleInvariance(model, BLOCK).attribute((images, images), channels=channels)


def _visualize(model, x, channels):
    return rsi.visualize(model, BLOCK, "pre", channels, FeatureVizConfig(steps=1, image_size=32, jitter=0))


def _scan(model, x, channels):
    config = rsi.ScanConfig(channels=channels, featureviz=FeatureVizConfig(steps=1, image_size=32, jitter=0))
    return rsi.scan(model, [BLOCK], config, progress=False)


def _node_gradient(model, x, channels):
    k = len(channels) if hasattr(channels, "__len__") and not isinstance(channels, str) else 1
    return rsi.node_gradient(model, torch.randn(k, 3, INPUT_SIZE, INPUT_SIZE), BLOCK, "pre", channels)


def _ablated_forward(model, x, channels):
    from rsi_plugin.ablation.attacks import ablated_forward

    return ablated_forward(model, BLOCK, channels, 0.0)(x)


def _top_k(model, x, channels):
    from rsi_plugin.criteria.natural import top_k_images

    top = top_k_images(model, [x], [(BLOCK, "pre")], k=1, progress=False)
    return top.images((BLOCK, "pre"), channels)


CALLS = {"ablate": _ablate, "ScaleInvariance.attribute": _attribute, "visualize": _visualize, "scan": _scan,
         "node_gradient": _node_gradient, "ablated_forward": _ablated_forward, "TopKImages.images": _top_k}

BAD = [
    ("12", TypeError),                       # was channels 1 and 2
    ([1.5], TypeError),                      # was channel 1
    ([2.0], TypeError),
    ([True, 3], TypeError),
    (torch.tensor([1.0, 2.0]), TypeError),
    (np.array([1.0]), TypeError),
    ([None], TypeError),
    ([32], IndexError),
    ([-1], IndexError),
    ([4, 4], ValueError),
]


# node_gradient scores one channel per image, so a channel may repeat there (tested below)
CASES = [pytest.param(call, bad, error, id=f"{call}-{bad!r}") for call in CALLS for bad, error in BAD
         if not (call == "node_gradient" and error is ValueError)]


@pytest.mark.parametrize("call, bad, error", CASES)
def test_every_entry_point_rejects_the_same_bad_channels(model, x, call, bad, error):
    with pytest.raises(error):
        CALLS[call](model, x, bad)


def test_scan_config_rejects_non_integers_before_any_model():
    for bad in ("12", [1.7], [True], [1, 1]):
        with pytest.raises((TypeError, ValueError)):
            rsi.ScanConfig(channels=bad)
    assert rsi.ScanConfig(channels=np.array([3, 1])).channels == (3, 1)


def test_integer_forms_are_accepted_and_equal(model, x):
    reference = rsi.ablate(model, x, BLOCK, [1, 5], 0.0)
    for form in ([np.int64(1), 5], np.array([1, 5]), torch.tensor([1, 5]), (1, torch.tensor(5))):
        assert torch.equal(rsi.ablate(model, x, BLOCK, form, 0.0), reference)


def test_node_gradient_allows_a_channel_per_image_to_repeat(model):
    images = torch.randn(2, 3, INPUT_SIZE, INPUT_SIZE, generator=torch.Generator().manual_seed(1))
    value, grad = rsi.node_gradient(model, images, BLOCK, "pre", [4, 4])
    assert value.shape == (2,) and grad.shape == images.shape


def test_validator_messages_name_what_is_valid():
    with pytest.raises(IndexError, match=r"0\.\.31"):
        check_channels([40], 32, where="block 3.1")
    with pytest.raises(TypeError, match="integers"):
        check_channels([1.5], 32)
    with pytest.raises(ValueError, match="duplicates"):
        check_channels([2, 2], 32)
    with pytest.raises(ValueError, match="empty"):
        check_channels([], 32)
    assert check_channels([], 32, allow_empty=True) == []
    assert check_channels(None, 3) == [0, 1, 2]
    assert check_channels(7, 32) == [7]


def test_lucent_objectives_take_one_channel_through_the_same_validator(model):
    from rsi_plugin.featureviz import lucent as lucent

    for bad, error in ((1.5, TypeError), (True, TypeError), ("3", TypeError), ([3], TypeError), (32, IndexError),
                       (-1, IndexError)):
        with pytest.raises(error):
            lucent.neuron(model, BLOCK, "pre", bad)
    objective = lucent.channel(model, BLOCK, "pre", np.int64(3))  # NumPy integers are integers
    objective.remove()
