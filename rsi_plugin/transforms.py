"""Image transforms of the paper: ``S(x)`` of §3, the §4 sweep crop, and other families.

Every function here is tensor in, tensor out, batched (``[N, C, H, W]``) and pure: it
works on [0, 1] images and on normalised ones alike, because a centre crop and a bilinear
resize act on each channel separately and so commute with the per-channel normalisation
``(x - mean) / std``.
"""

from __future__ import annotations

import math
from typing import Callable, Literal

import torch
import torchvision.transforms.v2.functional as TF

Transform = Callable[[torch.Tensor], torch.Tensor]

__all__ = [
    "S",
    "scale",
    "scale_crop",
    "sweep_crop_size",
    "rotate",
    "hflip",
    "get_transform",
    "TRANSFORM_FAMILIES",
]


def _check_images(images: torch.Tensor) -> None:
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a torch.Tensor [N, C, H, W], got {type(images).__name__}")
    if images.dim() != 4:
        raise ValueError(f"images must have shape [N, C, H, W], got {tuple(images.shape)}")
    if not images.is_floating_point():
        raise TypeError(f"images must be a floating-point tensor, got {images.dtype}")


def _resize(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return TF.resize(images, list(size), interpolation=TF.InterpolationMode.BILINEAR, antialias=False)


def scale(images: torch.Tensor, factor: float = 2.0) -> torch.Tensor:
    r"""Zoom in by ``factor``: centre-crop ``1 / factor`` of each side, resize back.

    Args:
        images (Tensor): ``[N, C, H, W]`` floating-point images.
        factor (float): zoom factor, > 1 enlarges what is at the centre. Default 2.

    Returns:
        Tensor ``[N, C, H, W]``, the same size as ``images``.
    """
    _check_images(images)
    if factor <= 0:
        raise ValueError(f"factor must be > 0, got {factor}")
    h, w = images.shape[-2:]
    crop = (max(1, int(round(h / factor))), max(1, int(round(w / factor))))
    return _resize(TF.center_crop(images, list(crop)), (h, w))


def S(images: torch.Tensor) -> torch.Tensor:
    r"""The paper's scale transformation ``S(X)`` (§3): centre-crop to half the spatial
    size (112 of 224), then bilinear resize back to the full size.

    Args:
        images (Tensor): ``[N, C, H, W]`` images (raw [0, 1] or normalised; see module doc).

    Returns:
        Tensor ``[N, C, H, W]``.
    """
    return scale(images, 2.0)


def sweep_crop_size(p: float, resize_size: int = 256, output_size: int = 224,
                    variant: Literal["text", "code"] = "text") -> int:
    r"""Side of the centre crop of the §4 sweep at scale percentage ``p``.

    Args:
        p (float): scale fraction in [0, 1), e.g. 0.1 for 10 %.
        resize_size (int): side the image was resized to first (256 in the paper).
        output_size (int): the model's input side (224 in the paper).
        variant (str): ``"text"`` — the paper's text, ``resize_size - floor(resize_size * p)``
            (10 % of 256 crops 231 pixels); ``"code"`` — the paper's code,
            ``int(output_size * (1 - p))``.

    Returns:
        int, the crop side in pixels.
    """
    if not 0.0 <= p < 1.0:
        raise ValueError(f"scale fraction p must be in [0, 1), got {p}")
    if variant == "text":
        return resize_size - math.floor(resize_size * p)
    if variant == "code":
        return int(output_size * (1 - p))
    raise ValueError(f"unknown variant {variant!r}; valid: 'text', 'code'")


def scale_crop(images: torch.Tensor, p: float, output_size: int = 224,
               variant: Literal["text", "code"] = "text") -> torch.Tensor:
    r"""The §4 sweep transform on images already resized to the sweep's ``resize_size``
    (256 for ImageNet): centre-crop :func:`sweep_crop_size` pixels, bilinear resize to
    ``output_size``.

    At ``p = 0`` with the text variant the whole resized image is squashed to
    ``output_size`` (crop 256, resize 224), as the paper's text describes.

    Args:
        images (Tensor): ``[N, C, R, R]``, R the resize size (the short side after Resize(R)).
        p (float): scale fraction in [0, 1).
        output_size (int): side of the result.
        variant (str): ``"text"`` (default) or ``"code"``; see :func:`sweep_crop_size`.

    Returns:
        Tensor ``[N, C, output_size, output_size]``.
    """
    _check_images(images)
    resize_size = min(images.shape[-2:])
    crop = sweep_crop_size(p, resize_size, output_size, variant)
    return _resize(TF.center_crop(images, [crop, crop]), (output_size, output_size))


def rotate(images: torch.Tensor, degrees: float = 90.0) -> torch.Tensor:
    r"""Rotate about the centre by ``degrees`` (counter-clockwise), bilinear, zero fill.

    Args:
        images (Tensor): ``[N, C, H, W]``.
        degrees (float): angle in degrees.

    Returns:
        Tensor ``[N, C, H, W]``.
    """
    _check_images(images)
    return TF.rotate(images, degrees, interpolation=TF.InterpolationMode.BILINEAR)


def hflip(images: torch.Tensor) -> torch.Tensor:
    r"""Mirror left-right.

    Args:
        images (Tensor): ``[N, C, H, W]``.

    Returns:
        Tensor ``[N, C, H, W]``.
    """
    _check_images(images)
    return images.flip(-1)


TRANSFORM_FAMILIES: dict[str, Transform] = {"scale": S, "rotate": rotate, "hflip": hflip}


def get_transform(name_or_fn: str | Transform) -> Transform:
    """Resolve a transform family name (``"scale"``, ``"rotate"``, ``"hflip"``) or pass a
    callable through.

    Raises:
        ValueError: for an unknown name, listing the valid ones.
    """
    if callable(name_or_fn):
        return name_or_fn
    try:
        return TRANSFORM_FAMILIES[name_or_fn]
    except KeyError:
        raise ValueError(
            f"unknown transform {name_or_fn!r}; valid: {sorted(TRANSFORM_FAMILIES)} or a callable"
        ) from None
