"""Image transforms of the paper: ``S(x)`` of §3, the §4 sweep crop, and other families.

Every function here is tensor in, tensor out, batched (``[N, C, H, W]``) and pure. The
crops, resizes and the flip work on [0, 1] images and on normalised ones alike: they act on
each channel separately with weights that sum to one, so they commute with the per-channel
normalisation ``(x - mean) / std`` (the paper's code applies ``S`` to normalised tensors).
:func:`rotate` does not quite: it fills the corners with 0, which is black for [0, 1]
images and the dataset mean colour for normalised ones.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torchvision.transforms.v2.functional as TF

from rsi_plugin.errors import InputTypeError, RSIError, ShapeError, UnknownNameError
from rsi_plugin.paper import Variant, check_variant

Transform = Callable[[torch.Tensor], torch.Tensor]

__all__ = [
    "S",
    "scale",
    "scale_crop",
    "sweep_crop_size",
    "rotate",
    "hflip",
    "get_transform",
    "transform_name",
    "TRANSFORM_FAMILIES",
]


def _check_images(images: torch.Tensor) -> None:
    if not isinstance(images, torch.Tensor):
        raise InputTypeError(f"images must be a torch.Tensor [N, C, H, W], got {type(images).__name__}")
    if images.dim() != 4:
        raise ShapeError(f"images must have shape [N, C, H, W], got {tuple(images.shape)}")
    if not images.is_floating_point():
        raise InputTypeError(f"images must be a floating-point tensor, got {images.dtype}")


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
        raise RSIError(f"factor must be > 0, got {factor}")
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
                    variant: Variant = "text") -> int:
    r"""Side of the centre crop of the §4 sweep at scale percentage ``p``.

    Args:
        p (float): scale fraction in [0, 1), e.g. 0.1 for 10 %.
        resize_size (int): side the image was resized to first (256 in the paper).
        output_size (int): the model's input side (224 in the paper).
        variant (str): ``"text"`` — the paper's text, ``resize_size - floor(resize_size * p)``
            (10 % of 256 crops 231 pixels); ``"code"`` — the paper's code,
            ``int(output_size * (1 - p))`` (the ``crop`` of :func:`rsi_plugin.paper.resolve`).

    Returns:
        int, the crop side in pixels.
    """
    if not 0.0 <= p < 1.0:
        raise RSIError(f"scale fraction p must be in [0, 1), got {p}")
    if check_variant(variant) == "text":
        return resize_size - math.floor(resize_size * p)
    return int(output_size * (1 - p))


def scale_crop(images: torch.Tensor, p: float, output_size: int = 224,
               variant: Variant = "text") -> torch.Tensor:
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

# families that take one numeric parameter, written "name:value" ("rotate:45", "scale:1.5")
_PARAMETRIC: dict[str, Callable[[torch.Tensor, float], torch.Tensor]] = {"scale": scale, "rotate": rotate}


def get_transform(name_or_fn: str | Transform) -> Transform:
    """Resolve a transform family name or pass a callable through.

    Names: ``"scale"`` (:func:`S`, a 2x zoom), ``"rotate"`` (90 degrees), ``"hflip"``, or a
    family with its parameter after a colon: ``"scale:1.5"`` (zoom factor),
    ``"rotate:45"`` (degrees). The returned callable carries the spec it was made from
    as ``__name__`` (see :func:`transform_name`).

    Raises:
        ValueError: for an unknown name or a bad parameter, listing the valid ones.
    """
    if callable(name_or_fn):
        return name_or_fn
    if not isinstance(name_or_fn, str):
        raise InputTypeError(f"transform must be a name or a callable, got {type(name_or_fn).__name__}")
    valid = f"valid: {sorted(TRANSFORM_FAMILIES)}, 'scale:<factor>', 'rotate:<degrees>', or a callable"
    if name_or_fn in TRANSFORM_FAMILIES:
        return TRANSFORM_FAMILIES[name_or_fn]
    family, sep, value = name_or_fn.partition(":")
    if not sep or family not in _PARAMETRIC:
        raise UnknownNameError(f"unknown transform {name_or_fn!r}; {valid}")
    try:
        parameter = float(value)
    except ValueError:
        raise RSIError(f"transform {name_or_fn!r}: {value!r} is not a number; {valid}") from None
    if not math.isfinite(parameter) or (family == "scale" and parameter <= 0):
        raise RSIError(f"transform {name_or_fn!r}: the parameter must be finite"
                         f"{' and > 0' if family == 'scale' else ''}; {valid}")
    fn = _PARAMETRIC[family]

    def transform(images: torch.Tensor) -> torch.Tensor:
        return fn(images, parameter)

    transform.__name__ = transform.__qualname__ = name_or_fn
    transform.__doc__ = f"{family} with parameter {parameter:g} (from get_transform({name_or_fn!r}))."
    return transform


def transform_name(name_or_fn: str | Transform) -> str:
    """A short name for a transform, as tables record it: the family name for the
    registered families (:func:`S` is ``"scale"``), the spec for ``"rotate:45"``-style
    names, else the callable's ``__name__``."""
    if isinstance(name_or_fn, str):
        return name_or_fn
    for name, fn in TRANSFORM_FAMILIES.items():
        if fn is name_or_fn:
            return name
    return getattr(name_or_fn, "__name__", type(name_or_fn).__name__)
