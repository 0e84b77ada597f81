"""What ``rsi.normalize`` and ``ScaleInvariance`` accept (issue 21 item 6): the statistics
are the model's (or given explicitly, as torchvision's ``Normalize(mean, std)``), never a
silent ImageNet default; images outside [0, 1] (0-255, already normalised) and images too
small for the block and S are refused with a message that says what is valid."""

from __future__ import annotations

import pytest
import torch

import rsi_plugin as rsi
from rsi_plugin.core.modelinfo import IMAGENET_MEAN, IMAGENET_STD
from rsi_plugin.errors import InputTypeError, RSIError, ShapeError


@pytest.fixture(scope="module")
def tiny():
    return rsi.load_model("tiny")


def _x(n=2, size=32, seed=0):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("fn", [rsi.normalize, rsi.denormalize], ids=["normalize", "denormalize"])
def test_statistics_are_the_models_or_explicit_never_a_silent_default(tiny, fn):
    x = _x()
    with pytest.raises(InputTypeError, match=r"needs the model .* or explicit mean= and std=") as caught:
        fn(x)
    assert "IMAGENET_MEAN" in str(caught.value)
    with pytest.raises(InputTypeError, match="mean= and std="):
        fn(x, mean=IMAGENET_MEAN)
    explicit = fn(x, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    m = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    s = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    torch.testing.assert_close(explicit, (x - m) / s if fn is rsi.normalize else x * s + m)
    info = rsi.core.images.model_info(tiny)
    assert tuple(info.mean) != tuple(IMAGENET_MEAN)  # tiny's own statistics: what normalize(x, tiny) uses
    torch.testing.assert_close(rsi.normalize(x, tiny),
                               (x - torch.tensor(info.mean).view(3, 1, 1)) / torch.tensor(info.std).view(3, 1, 1))


@pytest.mark.parametrize("bad", ["x255", "negative", "normalised"])
def test_normalize_refuses_images_outside_0_1(tiny, bad):
    x = _x()
    images = {"x255": x * 255, "negative": x - 0.5, "normalised": rsi.normalize(x, tiny)}[bad]
    with pytest.raises(RSIError, match=r"images must be in \[0, 1\].*divide .*by 255"):
        rsi.normalize(images, tiny)
    # float rounding at the edges is fine
    edge = x.clone()
    edge[0, 0, 0, 0], edge[0, 0, 0, 1] = 1 + 1e-4, -1e-4
    rsi.normalize(edge, tiny)


def test_scale_invariance_refuses_input_that_was_not_0_1_before_normalising(tiny):
    si = rsi.ScaleInvariance(tiny, "2.1")
    x = _x(n=2, size=64)
    good = rsi.normalize(x, tiny)
    si.attribute((good, good), channels=[0, 1])  # accepted
    info = rsi.core.images.model_info(tiny)
    m = torch.tensor(info.mean).view(3, 1, 1)
    s = torch.tensor(info.std).view(3, 1, 1)
    for name, bad in (("0-255 images normalised", (x * 255 - m) / s), ("0-255 images", x * 255),
                      ("normalised twice", (good - m) / s)):
        with pytest.raises(RSIError, match=r"\[0, 1\].*divide .*by 255"):
            si.attribute((bad, good), channels=[0, 1])
        with pytest.raises(RSIError, match=r"\[0, 1\]"):
            si.evaluate((good, bad), channels=[0, 1])


@pytest.mark.parametrize("size", [1, 4])
def test_scale_invariance_refuses_images_too_small_for_the_block(tiny, size):
    si = rsi.ScaleInvariance(tiny, "2.1")
    x = rsi.normalize(_x(n=2, size=size), tiny)
    with pytest.raises(ShapeError, match=r"at least (\d+)x\1 pixels") as caught:
        si.attribute((x, x), channels=[0, 1])
    assert f"{size}x{size}" in str(caught.value)
