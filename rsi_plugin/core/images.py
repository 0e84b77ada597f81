"""The one place where images meant for people ([0, 1] RGB) become what a model takes.

A model loaded by :func:`rsi_plugin.load_model` carries a :class:`ModelInfo` as the
attribute ``rsi_info``: its input size, the size images are resized to before the centre
crop (256 for ImageNet), and its normalisation statistics. A plain torchvision model
without it is treated as an ImageNet model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

__all__ = ["ModelInfo", "IMAGENET_MEAN", "IMAGENET_STD", "model_info", "normalize", "denormalize"]

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ModelInfo:
    """What a model expects of its input.

    Attributes:
        name (str): model name, e.g. ``"resnet18"`` or ``"tiny"``.
        weights (str): where the weights came from (``"random@<seed>"``, an enum name, a path).
        input_size (int): side of the square input (224 for ImageNet models).
        resize_size (int): side images are resized to before the centre crop (256).
        mean (tuple): per-channel mean of the normalisation.
        std (tuple): per-channel standard deviation of the normalisation.
        num_classes (int): number of output classes.
    """

    name: str = "unknown"
    weights: str = "unknown"
    input_size: int = 224
    resize_size: int = 256
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    num_classes: int = 1000


def model_info(model: nn.Module) -> ModelInfo:
    """The :class:`ModelInfo` a model carries, or ImageNet defaults when it has none."""
    info = getattr(model, "rsi_info", None)
    if isinstance(info, ModelInfo):
        return info
    fc = getattr(model, "fc", None)
    num_classes = fc.out_features if isinstance(fc, nn.Linear) else 1000
    return ModelInfo(num_classes=num_classes)


def _stats(images: torch.Tensor, mean: Sequence[float] | None, std: Sequence[float] | None,
           model: nn.Module | None) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}")
    if images.dim() not in (3, 4) or images.shape[-3] != 3:
        raise ValueError(f"images must be RGB, [3, H, W] or [N, 3, H, W]; got {tuple(images.shape)}")
    if not images.is_floating_point():
        raise TypeError(f"images must be floating point in [0, 1], got {images.dtype}")
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
