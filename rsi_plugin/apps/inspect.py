"""A table of a model's residual blocks: node paths, shapes and the ``Post == relu(In + Pre)`` check."""

from __future__ import annotations

import pandas as pd
import torch
from torch import nn

from rsi_plugin.core.images import model_info
from rsi_plugin.core.blocks import residual_blocks
from rsi_plugin.access.nnsight import capture

__all__ = ["block_table"]


def block_table(model: nn.Module, images: torch.Tensor | None = None, seed: int = 0, atol: float = 1e-5) -> pd.DataFrame:
    r"""One row per residual block: where its nodes live, their sizes, and whether
    ``Post == relu(In + Pre)`` holds on ``images``.

    Args:
        model (nn.Module): a model with residual blocks.
        images (Tensor, optional): model input ``[N, 3, H, W]``; by default two seeded
            Gaussian images at the model's input size.
        seed (int): seed of the default images.
        atol (float): tolerance of the check.

    Returns:
        DataFrame with columns ``block, kind, in_path, pre_path, post_path, channels,
        height, width, max_abs_error, post_eq_relu_in_plus_pre``.
    """
    blocks = residual_blocks(model)
    if images is None:
        size = model_info(model).input_size
        generator = torch.Generator().manual_seed(seed)
        device = next(model.parameters()).device
        images = torch.randn(2, 3, size, size, generator=generator).to(device)
    acts = capture(model, images, nodes=("in", "pre", "post"), center=False)
    rows = []
    for block in blocks:
        i, p, o = (acts[(block.name, n)] for n in ("in", "pre", "post"))
        error = (o - torch.relu(i + p)).abs().max().item()
        site_in = block.site("in")
        rows.append({
            "block": block.name,
            "kind": block.kind,
            "in_path": f"{site_in.path or '<model>'}.{site_in.attr}",
            "pre_path": block.pre_path,
            "post_path": block.path,
            "channels": block.channels,
            "height": o.shape[2],
            "width": o.shape[3],
            "max_abs_error": error,
            "post_eq_relu_in_plus_pre": error <= atol,
        })
    return pd.DataFrame(rows)
