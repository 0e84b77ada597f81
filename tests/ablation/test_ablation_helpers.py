"""Checks of the shared test models (:mod:`rsi_plugin.testing.models`)."""

from __future__ import annotations

import torch

from rsi_plugin.testing.models import INPUT_SIZE, random_data, small_resnet  # noqa: F401
from rsi_plugin.core.blocks import residual_blocks  # noqa: F401

def test_small_resnet_is_seeded_and_has_resnet18_blocks():
    a, b, c = small_resnet(seed=0), small_resnet(seed=0), small_resnet(seed=1)
    assert [blk.name for blk in residual_blocks(a)] == ["1.0", "1.1", "2.0", "2.1", "3.0", "3.1", "4.0", "4.1"]
    x = torch.randn(4, 3, INPUT_SIZE, INPUT_SIZE)
    with torch.no_grad():
        assert torch.equal(a(x), b(x))
        assert not torch.equal(a(x), c(x))


def test_small_resnet_predictions_vary_across_images():
    model = small_resnet()
    images, _ = random_data(64)
    with torch.no_grad():
        pred = model(images).argmax(1)
    assert len(set(pred.tolist())) >= 2
