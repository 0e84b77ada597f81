"""The one place where images meant for people ([0, 1] RGB) become what a model takes.

The statistics come from the model's :class:`~rsi_plugin.core.modelinfo.ModelInfo` (its
``rsi_info``; ImageNet's for a plain torchvision model). ``ModelInfo`` and ``model_info`` live
in :mod:`rsi_plugin.core.modelinfo` (import them from there; older code that imports them from
here still works).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from rsi_plugin.core.modelinfo import IMAGENET_MEAN, IMAGENET_STD, ModelInfo, model_info
from rsi_plugin.errors import InputTypeError, RSIError, ShapeError

__all__ = ["normalize", "denormalize", "check_unit_range", "outside_unit_range", "RANGE_SLACK"]


RANGE_SLACK: float = 0.05
"""How far outside [0, 1] an image's values may lie and still count as a [0, 1] image
(rounding, a resize that overshoots a little). Images in 0-255, or already normalised
(values down to about -2), are far outside it."""


def outside_unit_range(images: torch.Tensor, slack: float = RANGE_SLACK) -> tuple[float, float] | None:
    """``(min, max)`` of ``images`` when they are clearly outside [0, 1] (by more than
    ``slack``, :data:`RANGE_SLACK` by default), else ``None``."""
    if images.numel() == 0 or images.device.type == "meta":
        return None
    low, high = float(images.detach().min()), float(images.detach().max())
    return (low, high) if low < -slack or high > 1 + slack else None


def check_unit_range(images: torch.Tensor) -> None:
    """Refuse ``images`` whose values are clearly outside [0, 1] (:func:`outside_unit_range`).

    Raises:
        RSIError: with the range found ("divide 0-255 images by 255").
    """
    span = outside_unit_range(images)
    if span is not None:
        raise RSIError(f"images must be in [0, 1] (RGB), but their values span [{span[0]:.4g}, {span[1]:.4g}]; "
                       "divide 0-255 images by 255, and normalise [0, 1] images only once")


def _stats(images: torch.Tensor, mean: Sequence[float] | None, std: Sequence[float] | None,
           model: nn.Module | None, caller: str = "normalize") -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(images, torch.Tensor):
        raise InputTypeError(f"images must be a torch.Tensor, got {type(images).__name__}")
    if images.dim() not in (3, 4) or images.shape[-3] != 3:
        raise ShapeError(f"images must be RGB, [3, H, W] or [N, 3, H, W]; got {tuple(images.shape)}")
    if not images.is_floating_point():
        raise InputTypeError(f"images must be floating point in [0, 1], got {images.dtype}")
    if model is not None:
        info = model_info(model)
        mean = info.mean if mean is None else mean
        std = info.std if std is None else std
    if mean is None or std is None:
        raise InputTypeError(
            f"{caller} needs the model (its statistics: {caller}(images, model)) or explicit mean= and std= "
            f"(ImageNet's: {caller}(images, mean=IMAGENET_MEAN, std=IMAGENET_STD), from rsi_plugin.core.images); "
            f"got {'only std=' if std is not None else 'only mean=' if mean is not None else 'neither'}")
    m = torch.as_tensor(mean, dtype=images.dtype, device=images.device).view(3, 1, 1)
    s = torch.as_tensor(std, dtype=images.dtype, device=images.device).view(3, 1, 1)
    return m, s


def normalize(images: torch.Tensor, model: nn.Module | None = None,
              mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> torch.Tensor:
    r"""Turn [0, 1] RGB images into model input: ``(images - mean) / std``.

    The statistics are the model's (``normalize(images, model)``: its ``rsi_info``, e.g. the
    bundled ``tiny``'s own, ImageNet's for a torchvision model), or given explicitly as in
    torchvision's ``Normalize(mean, std)``. There is no default: a model whose statistics
    are not ImageNet's would get silently wrong input. For ImageNet's, pass
    ``mean=IMAGENET_MEAN, std=IMAGENET_STD`` (:mod:`rsi_plugin.core.images`).

    Args:
        images (Tensor): ``[N, 3, H, W]`` or ``[3, H, W]``, floating point in [0, 1]
            (:data:`RANGE_SLACK` allowed for rounding).
        model (nn.Module, optional): take the statistics it carries (``rsi_info``).
        mean, std (sequence of 3 floats, optional): explicit statistics (both, or with
            ``model``: they override its own).

    Returns:
        Tensor of the same shape, differentiable in ``images``.

    Raises:
        InputTypeError (a TypeError): neither ``model`` nor both ``mean`` and ``std``; images
            not a floating-point tensor.
        ShapeError: not RGB ``[3, H, W]`` / ``[N, 3, H, W]``.
        RSIError: values clearly outside [0, 1] (0-255 images: divide by 255; images
            normalised already).
    """
    m, s = _stats(images, mean, std, model)
    check_unit_range(images)
    return (images - m) / s


def denormalize(images: torch.Tensor, model: nn.Module | None = None,
                mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> torch.Tensor:
    r"""Inverse of :func:`normalize`: model input back to [0, 1] RGB (not clamped).

    Args:
        images (Tensor): ``[N, 3, H, W]`` or ``[3, H, W]`` normalised images.
        model, mean, std: as in :func:`normalize` (the model or both statistics; no default).

    Returns:
        Tensor of the same shape.
    """
    m, s = _stats(images, mean, std, model, "denormalize")
    return images * s + m
