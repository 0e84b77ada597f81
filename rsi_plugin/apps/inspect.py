"""A table of a model's residual blocks: node paths, shapes and the ``Post == activation(In + Pre)`` check."""

from __future__ import annotations

import pandas as pd
import torch
from torch import nn

from rsi_plugin.access.nnsight import capture
from rsi_plugin.core.blocks import residual_blocks
from rsi_plugin.core.modelinfo import model_info
from rsi_plugin.core.wrapped import unwrap

__all__ = ["block_table", "IDENTITY_COLUMN"]

#: the column holding the check ``Post == activation(In + Pre)``
IDENTITY_COLUMN = "post_eq_activation_in_plus_pre"


def _site_text(site) -> str:
    return f"{site.path or '<model>'}.{site.attr}"


def block_table(model: nn.Module, images: torch.Tensor | None = None, seed: int = 0, atol: float = 1e-5) -> pd.DataFrame:
    r"""One row per residual block: where its nodes live, their sizes, and whether
    ``Post == activation(In + Pre)`` holds on ``images``, with the activation of the block's
    spec (ReLU for a ResNet block, the identity for a ConvNeXt block).

    Args:
        model (nn.Module): a model with residual blocks.
        images (Tensor, optional): model input ``[N, 3, H, W]``; by default two seeded
            Gaussian images at the model's input size.
        seed (int): seed of the default images.
        atol (float): tolerance of the check.

    Returns:
        DataFrame with columns ``block, kind, in_path, pre_path, post_path, activation,
        channels, height, width, max_abs_error, post_eq_activation_in_plus_pre``
        (:data:`IDENTITY_COLUMN`).
    """
    module = unwrap(model, check=True)
    blocks = residual_blocks(module)
    if images is None:
        size = model_info(module).input_size
        generator = torch.Generator().manual_seed(seed)
        device = next(module.parameters()).device
        images = torch.randn(2, 3, size, size, generator=generator).to(device)
    acts = capture(model, images, nodes=("in", "pre", "post"), center=False)
    rows = []
    for block in blocks:
        i, p, o = (acts[(block.name, n)] for n in ("in", "pre", "post"))
        error = (o - block.activate(i + p)).abs().max().item()
        rows.append({
            "block": block.name,
            "kind": block.kind,
            "in_path": _site_text(block.site("in")),
            "pre_path": block.pre_path,
            "post_path": _site_text(block.site("post")),
            "activation": block.activation,
            "channels": block.channels,
            "height": o.shape[2],
            "width": o.shape[3],
            "max_abs_error": error,
            IDENTITY_COLUMN: error <= atol,
        })
    return pd.DataFrame(rows)
