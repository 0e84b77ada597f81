r"""Where a block's centre neuron looks: its receptive-field centre, and ``S`` zoomed about it.

The criteria read every node at the centre neuron ``(h // 2, w // 2)`` of its map. On an
even-sized map that neuron is not at the image centre: on the bundled 64-px model's 2x2
layer-4 maps, neuron ``(1, 1)`` looks at ``(38.3, 38.3)``, not at ``31.5``. The paper's ``S``
zooms about the image centre, so for such a neuron it moves what the neuron sees off its
centre as well as enlarging it. :func:`receptive_field_center` measures the centre as the
gradient centroid, :func:`zoom_about` is ``S`` about a given point; with the image centre
it is exactly :func:`rsi_plugin.core.transforms.scale`.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from rsi_plugin.access.hooks import NodeProbe  # the node reader, one layer below criteria
from rsi_plugin.core.blocks import ResidualBlock
from rsi_plugin.core.evalmode import eval_mode
from rsi_plugin.core.modelinfo import model_info
from rsi_plugin.core.tensors import model_device
from rsi_plugin.core.wrapped import unwrap
from rsi_plugin.errors import InputTypeError, RSIError

__all__ = ["receptive_field_center", "zoom_about", "zoom_transform", "ZOOM_CENTERS"]

#: where ``S`` zooms: ``"rf"`` (the centre neuron's receptive-field centre) or ``"image"`` (the paper's)
ZOOM_CENTERS: tuple[str, ...] = ("rf", "image")


def receptive_field_center(model: nn.Module, block: str | ResidualBlock, node: str = "pre",
                           samples: int = 16, seed: int = 0, image_size: int | None = None) -> tuple[float, float]:
    r"""The receptive-field centre of a node's centre neuron, as the gradient centroid.

    The gradient of the centre neuron, summed over the node's channels, with respect to
    the input is taken on ``samples`` standard-normal (model-ready) images; its absolute
    value, summed over colours and images, weighs the pixel coordinates.

    Args:
        model (nn.Module): a model with residual blocks (eval mode is used; restored).
        block (str or ResidualBlock): the block, e.g. ``"4.0"``.
        node (str): ``"in"``, ``"pre"``, ``"sum"`` or ``"post"``.
        samples (int): random images.
        seed (int): their seed.
        image_size (int, optional): the image side; the model's input size by default.

    Returns:
        ``(y, x)`` in pixel coordinates (pixel centres at integers; the image centre of a
        64-px image is ``(31.5, 31.5)``).
    """
    module = unwrap(model, check=True)
    size = int(image_size or model_info(module).input_size)
    g = torch.Generator().manual_seed(int(seed))
    x = torch.randn(int(samples), 3, size, size, generator=g).to(model_device(module)).requires_grad_(True)
    with eval_mode(module), NodeProbe(module, block, node) as probe, torch.enable_grad():
        act = probe(x)
        # autograd.grad: only the input's gradient, no parameter's .grad is touched
        (grad,) = torch.autograd.grad(act[:, :, act.shape[2] // 2, act.shape[3] // 2].sum(), x)
    weight = grad.detach().abs().sum(dim=(0, 1)).double().cpu()  # [H, W]
    total = float(weight.sum())
    if not total > 0:
        raise RuntimeError(f"the centre neuron of block {block} {node} has no gradient on random images")
    ys = torch.arange(size, dtype=torch.float64)
    return float((weight.sum(1) * ys).sum() / total), float((weight.sum(0) * ys).sum() / total)


def zoom_about(images: torch.Tensor, factor: float, center: tuple[float, float]) -> torch.Tensor:
    r"""Zoom in by ``factor`` about ``center``: output pixel ``u`` shows input point
    ``center + (u - (side - 1) / 2) / factor`` (bilinear; outside the image: the border).

    About the image centre this is :func:`rsi_plugin.core.transforms.scale` (a centre crop of
    ``1 / factor`` resized back) up to the crop's border pixels.

    Args:
        images (Tensor): ``[N, C, H, W]`` floating point.
        factor (float): > 0.
        center (tuple): ``(y, x)`` in pixel coordinates.

    Returns:
        Tensor ``[N, C, H, W]``.
    """
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or not images.is_floating_point():
        raise InputTypeError("images must be a floating-point Tensor [N, C, H, W]")
    if not (math.isfinite(factor) and factor > 0):
        raise RSIError(f"factor must be a finite number > 0, got {factor!r}")
    n, _, h, w = images.shape
    cy, cx = (float(v) for v in center)
    ys = cy + (torch.arange(h, dtype=torch.float64) - (h - 1) / 2) / factor
    xs = cx + (torch.arange(w, dtype=torch.float64) - (w - 1) / 2) / factor
    # normalised for align_corners=False: pixel i is at (2 i + 1) / side - 1
    gy = ((2 * ys + 1) / h - 1).view(h, 1).expand(h, w)
    gx = ((2 * xs + 1) / w - 1).view(1, w).expand(h, w)
    grid = torch.stack([gx, gy], dim=-1).to(images.dtype).to(images.device).expand(n, h, w, 2)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def zoom_transform(factor: float, center: tuple[float, float], name: str = "scale") -> Callable[[torch.Tensor], torch.Tensor]:
    """``S`` about ``center`` as a transform for :class:`rsi_plugin.ScaleInvariance`, named
    ``name`` (tables record :func:`rsi_plugin.core.transforms.transform_name` of it) and
    carrying ``center``."""

    def transform(images: torch.Tensor) -> torch.Tensor:
        return zoom_about(images, factor, center)

    transform.__name__ = transform.__qualname__ = name
    transform.center = (float(center[0]), float(center[1]))  # type: ignore[attr-defined]
    transform.factor = float(factor)  # type: ignore[attr-defined]
    return transform
