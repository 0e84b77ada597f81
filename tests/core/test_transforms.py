"""Transforms: S doubles what sits at the centre, the §4 sweep crop sizes, batching, families."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import rsi_plugin as rsi
from rsi_plugin.core.transforms import (
    S, get_transform, hflip, rotate, scale, scale_crop, sweep_crop_size, transform_name,
)


def disc(size: int, radius: float, channels: int = 3) -> torch.Tensor:
    """A white disc of ``radius`` pixels centred on the image's geometric centre."""
    centre = (size - 1) / 2
    y, x = torch.meshgrid(torch.arange(size) - centre, torch.arange(size) - centre, indexing="ij")
    inside = ((x ** 2 + y ** 2).sqrt() <= radius).float()
    return inside.expand(1, channels, size, size).clone()


def measured_radius(image: torch.Tensor) -> float:
    """Radius of the disc whose area is the area above 0.5."""
    return math.sqrt(float((image[0, 0] > 0.5).sum()) / math.pi)


@pytest.mark.parametrize("radius", [4.0, 6.0, 10.0])
def test_s_doubles_a_centred_disc(radius):
    image = disc(64, radius)
    out = S(image)
    assert out.shape == image.shape
    assert measured_radius(out) == pytest.approx(2 * radius, abs=1.0)
    # still centred: the mass centre stays at the image centre
    mass = out[0, 0]
    ys, xs = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    assert float((mass * ys).sum() / mass.sum()) == pytest.approx(31.5, abs=0.6)
    assert float((mass * xs).sum() / mass.sum()) == pytest.approx(31.5, abs=0.6)


def test_s_is_a_centre_crop_of_half_and_bilinear_resize():
    x = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    # the paper: crop 112 of 224 at the centre, resize back to 224 bilinearly
    reference = F.interpolate(x[..., 56:168, 56:168], size=(224, 224), mode="bilinear", align_corners=False)
    torch.testing.assert_close(S(x), reference)


def test_s_commutes_with_normalisation():
    from rsi_plugin.core.modelinfo import IMAGENET_MEAN, IMAGENET_STD

    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))

    def normalize(images):
        return rsi.normalize(images, mean=IMAGENET_MEAN, std=IMAGENET_STD)

    torch.testing.assert_close(S(normalize(x)), normalize(S(x)), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(hflip(normalize(x)), normalize(hflip(x)))


def test_constant_image_is_fixed_by_scaling():
    x = torch.full((1, 3, 32, 32), 0.25)
    torch.testing.assert_close(S(x), x)
    torch.testing.assert_close(scale(x, 1.5), x)


def test_sweep_crop_sizes_text_and_code():
    assert sweep_crop_size(0.1) == 231  # 256 - floor(25.6)
    assert sweep_crop_size(0.5) == 128
    assert sweep_crop_size(0.0) == 256
    assert sweep_crop_size(0.1, variant="code") == 201  # int(224 * 0.9)
    assert sweep_crop_size(0.5, variant="code") == 112
    for p in (0.1, 0.2, 0.3, 0.4, 0.5):
        assert sweep_crop_size(p) == 256 - math.floor(256 * p)
        assert sweep_crop_size(p, variant="code") == int(224 * (1 - p))


@pytest.mark.parametrize("p,variant", [(0.1, "text"), (0.3, "text"), (0.1, "code"), (0.0, "text")])
def test_scale_crop_is_centre_crop_then_resize(p, variant):
    x = torch.rand(2, 3, 256, 256, generator=torch.Generator().manual_seed(2))
    crop = sweep_crop_size(p, 256, 224, variant)
    top = int(round((256 - crop) / 2))
    reference = F.interpolate(x[..., top:top + crop, top:top + crop], size=(224, 224),
                              mode="bilinear", align_corners=False)
    out = scale_crop(x, p, 224, variant)
    assert out.shape == (2, 3, 224, 224)
    torch.testing.assert_close(out, reference)


@pytest.mark.parametrize("transform", [S, hflip, lambda x: rotate(x, 30), lambda x: scale(x, 1.5),
                                       lambda x: scale_crop(x, 0.2, 48), get_transform("rotate:45")])
def test_batch_equals_items(transform):
    x = torch.rand(3, 3, 56, 56, generator=torch.Generator().manual_seed(3))
    batched = transform(x)
    single = torch.cat([transform(x[i:i + 1]) for i in range(3)])
    torch.testing.assert_close(batched, single)


def test_rotation_and_flip_families():
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(rotate(x, 90), torch.rot90(x, 1, dims=(-2, -1)))
    torch.testing.assert_close(rotate(x, 0), x)
    torch.testing.assert_close(hflip(x), x.flip(-1))
    torch.testing.assert_close(hflip(hflip(x)), x)


def test_get_transform_names_and_parameters():
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    assert get_transform("scale") is S
    torch.testing.assert_close(get_transform("rotate:45")(x), rotate(x, 45))
    torch.testing.assert_close(get_transform("scale:1.5")(x), scale(x, 1.5))
    assert transform_name(S) == "scale"
    assert transform_name(get_transform("rotate:45")) == "rotate:45"
    assert transform_name("hflip") == "hflip"
    fn = lambda images: images  # noqa: E731
    assert get_transform(fn) is fn


@pytest.mark.parametrize("bad", ["zoom", "rotate:abc", "scale:0", "hflip:2", "scale:nan"])
def test_get_transform_errors_list_valid_names(bad):
    with pytest.raises(ValueError, match="valid: .*'rotate:<degrees>'"):
        get_transform(bad)


def test_input_errors():
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        S(torch.rand(3, 8, 8))
    with pytest.raises(TypeError, match="floating"):
        S(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        sweep_crop_size(1.0)
    with pytest.raises(ValueError, match="variant"):
        sweep_crop_size(0.1, variant="paper")
    with pytest.raises(ValueError, match="factor"):
        scale(torch.rand(1, 3, 8, 8), 0)
