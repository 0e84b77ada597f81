"""The one place where images meant for people ([0, 1] RGB) become what a model takes.

The statistics come from the model's :class:`~rsi_plugin.core.modelinfo.ModelInfo` (its
``rsi_info``; ImageNet's for a plain torchvision model). ``ModelInfo`` and ``model_info`` live
in :mod:`rsi_plugin.core.modelinfo` and stay importable from here.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from rsi_plugin.core.modelinfo import IMAGENET_MEAN, IMAGENET_STD, ModelInfo, model_info
from rsi_plugin.errors import InputTypeError, ShapeError

__all__ = ["ModelInfo", "IMAGENET_MEAN", "IMAGENET_STD", "model_info", "normalize", "denormalize"]


def _stats(images: torch.Tensor, mean: Sequence[float] | None, std: Sequence[float] | None,
           model: nn.Module | None) -> tuple[torch.Tensor, torch.Tensor]:
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
    mean = IMAGENET_MEAN if mean is None else mean
    std = IMAGENET_STD if std is None else std
    m = torch.as_tensor(mean, dtype=images.dtype, device=images.device).view(3, 1, 1)
    s = torch.as_tensor(std, dtype=images.dtype, device=images.device).view(3, 1, 1)
    return m, s


def normalize(images: torch.Tensor, model: nn.Module | None = None,
              mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> torch.Tensor:
    r"""Turn [0, 1] RGB images into model input: ``(images - mean) / std``.

    Args:
        images (Tensor): ``[N, 3, H, W]`` or ``[3, H, W]``, floating point in [0, 1].
        model (nn.Module, optional): take the statistics it carries (``rsi_info``).
        mean, std (sequence of 3 floats, optional): explicit statistics; ImageNet's by default.

    Returns:
        Tensor of the same shape, differentiable in ``images``.
    """
    m, s = _stats(images, mean, std, model)
    return (images - m) / s


def denormalize(images: torch.Tensor, model: nn.Module | None = None,
                mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> torch.Tensor:
    r"""Inverse of :func:`normalize`: model input back to [0, 1] RGB (not clamped).

    Args:
        images (Tensor): ``[N, 3, H, W]`` or ``[3, H, W]`` normalised images.
        model, mean, std: as in :func:`normalize`.

    Returns:
        Tensor of the same shape.
    """
    m, s = _stats(images, mean, std, model)
    return images * s + m
