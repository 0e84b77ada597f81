r"""The paper's Fig. 1 for a scan: a grid PNG per passing channel, computed then drawn, resumable.

:func:`channel_grids` composes :mod:`rsi_plugin.criteria.fig1_data` (the FZs and top-k natural
images of each channel) and :mod:`rsi_plugin.outputs.grids` (the drawing), writes each PNG
atomically and skips the channels whose PNG exists, so an interrupted run resumes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from torch import nn

from rsi_plugin.core.runfolder import grid_filename
from rsi_plugin.criteria.fig1_data import (
    Data,
    check_blocks,
    check_top_k,
    grid_images_by_block,
    passing_channels,
    table_node_variant,
)
from rsi_plugin.featureviz.optimize import FeatureVizConfig
from rsi_plugin.outputs.grids import GridLayout, save_channel_grids

__all__ = ["channel_grids"]

logger = logging.getLogger(__name__)


def channel_grids(
    model: nn.Module,
    table: pd.DataFrame,
    out_dir: str | os.PathLike,
    fz_config: FeatureVizConfig | None = None,
    cache_dir: str | os.PathLike | None = None,
    data: Data | None = None,
    top_k: int = 9,
    blocks: Sequence[str] | None = None,
    max_per_block: int | None = None,
    node_variant: str | None = None,
    layout: GridLayout | None = None,
    batch_size: int | None = 64,
    progress: bool = True,
) -> list[Path]:
    r"""A Fig.-1 grid PNG for every passing channel of a scan table (resumable).

    The channels are those of :func:`~rsi_plugin.criteria.fig1_data.passing_channels`. A channel whose
    ``out_dir/grid_<block>_<channel>.png`` exists is skipped; when every PNG exists,
    nothing is computed (the model and ``data`` are not used). Otherwise the natural
    images of all blocks come from one pass over ``data``, the FZs of each block from
    :func:`~rsi_plugin.featureviz.optimize.render` (all its missing channels at once), and each
    block's PNGs are written as soon as the block is done.

    Args:
        model (nn.Module): the scanned model, in eval mode.
        table (DataFrame): the scan table (:func:`rsi_plugin.scan`, or ``scan.csv`` read
            with ``dtype={"block": str}``).
        out_dir (str or path): folder of the PNGs (e.g. ``RUN/figures``).
        fz_config (FeatureVizConfig, optional): the scan's FZ settings.
        cache_dir (path, optional): the scan's FZ cache (``RUN/scan/fz``).
        data (Tensor or iterable, optional): model-ready natural images, as in
            :func:`~rsi_plugin.criteria.fig1_data.channel_grid_images` (read at most once).
        top_k (int): natural images per channel and node.
        blocks (list of str, optional): only these blocks.
        max_per_block (int, optional): at most this many (the lowest) channels per block.
        node_variant (str, optional): ``"text"`` or ``"code"``; default: the table's
            ``node_variant`` column (or ``attrs``), else ``"text"``.
        layout (GridLayout, optional): geometry of the PNGs.
        batch_size (int, optional): images per forward pass of the natural-image search.
        progress (bool): tqdm bars.

    Returns:
        list of the grid PNG of every selected channel (existing or new), block by block.

    Raises:
        ValueError: a missing column, an unknown block, bad settings. IndexError: a
            channel out of the block's range.
    """
    check_top_k(top_k)
    check_blocks(model, blocks)
    plan = passing_channels(table, blocks, max_per_block)
    out = Path(out_dir)
    paths = {b: [out / grid_filename(b, c) for c in cs] for b, cs in plan.items()}
    todo = {b: [c for c, p in zip(cs, paths[b]) if not p.exists()] for b, cs in plan.items()}
    todo = {b: cs for b, cs in todo.items() if cs}
    everything = [p for b in plan for p in paths[b]]
    done = len(everything) - sum(len(cs) for cs in todo.values())
    logger.info("Fig. 1 grids: %d channel(s) in %d block(s), %d already drawn, %d to draw", len(everything),
                len(plan), done, len(everything) - done)
    if not todo:
        return everything
    variant = node_variant if node_variant is not None else table_node_variant(table)
    for block, grids in grid_images_by_block(model, todo, fz_config, cache_dir, data, top_k, variant, batch_size,
                                             progress):
        save_channel_grids(grids, block, out, layout)
        logger.info("block %s: wrote %d grid(s) to %s", block, len(grids), out)
    return everything
