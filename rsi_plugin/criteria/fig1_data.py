r"""The content of the paper's Fig. 1 grids: FZs and top-k natural images per channel.

A grid shows one channel ``c`` of a block in a 3x3 layout, as Fig. 1 of the paper does:

============== ========================== ========================== ==========================
row \ column   In                         Pre                        Post
============== ========================== ========================== ==========================
neuron FZ      FZ of In's centre neuron   FZ of Pre's centre neuron  FZ of Post's centre neuron
channel FZ     FZ of the whole channel    FZ of the whole channel    FZ of the whole channel
natural        top-9 images (3x3 mosaic)  top-9 images               top-9 images
============== ========================== ========================== ==========================

This module computes that content; :mod:`rsi_plugin.outputs.grids` draws it and
:func:`rsi_plugin.apps.fig1.channel_grids` does both for a scan table, resumably.
The FZs come from :func:`rsi_plugin.featureviz.optimize.render` with the scan's
:class:`~rsi_plugin.featureviz.optimize.FeatureVizConfig` (``objective="neuron"`` for row 1, so In and
Pre are the scan's own cached FZs; ``objective="channel"`` for row 2), batched over every
channel of a block at once. The natural images are each channel's top-k images at the centre
neuron (:func:`rsi_plugin.criteria.natural.top_k_images`), found in one pass over the data for every
block and node.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import pandas as pd
import torch
from torch import Tensor, nn

from rsi_plugin.core.blocks import ResidualBlock, get_block, residual_blocks
from rsi_plugin.core.channels import check_channels
from rsi_plugin.core.images import denormalize
from rsi_plugin.criteria.equations import node_sites
from rsi_plugin.criteria.natural import TopKImages, natural_images, top_k_images
from rsi_plugin.core.frames import truthy
from rsi_plugin.featureviz.optimize import FeatureVizConfig, render
from rsi_plugin.errors import InputTypeError, RSIError, UnknownNameError
from rsi_plugin.paper import check_variant
from rsi_plugin.core.wrapped import unwrap

__all__ = ["ROWS", "COLUMNS", "channel_grid_images", "grid_images_by_block", "passing_channels", "table_node_variant",
           "check_blocks", "check_top_k"]

#: the grid's rows: centre-neuron FZ, whole-channel FZ, top-k natural images (keys of a grid dict)
ROWS: tuple[str, ...] = ("neuron", "channel", "natural")
#: the grid's columns: the block's In, Pre and Post (keys of each row)
COLUMNS: tuple[str, ...] = ("in", "pre", "post")

Data = Tensor | Iterable[Any]


def _unwrap(model: nn.Module) -> nn.Module:
    """The torch module of a model or an nnsight wrapper of one."""
    module = unwrap(model)
    if not isinstance(module, nn.Module):
        raise InputTypeError(f"model must be a torch.nn.Module or nnsight.NNsight, got {type(model).__name__}")
    return module


def check_top_k(top_k: int) -> None:
    """Raise ValueError unless ``top_k`` is an integer >= 1."""
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise RSIError(f"top_k must be an integer >= 1, got {top_k!r}")


def check_blocks(model: nn.Module, blocks: Sequence[str] | None) -> None:
    """Raise TypeError unless ``model`` is a torch module (or an nnsight wrapper of one) with
    residual blocks, and ValueError naming the valid blocks unless every name in ``blocks`` is
    one of them (``None``: all blocks)."""
    known = residual_blocks(_unwrap(model))
    for name in blocks or ():
        get_block(known, str(name))


def _default_data(model: nn.Module, data: Data | None) -> Data:
    """The images searched for the top-k row: ``data``, or the ones ``rsi scan`` searches
    (:func:`rsi_plugin.criteria.natural.natural_images`; a folder path is read as it does)."""
    return natural_images(model, data)


def _sites(model: nn.Module, blocks: Sequence[ResidualBlock], node_variant: str) -> dict[str, dict[str, tuple[str, str]]]:
    check_variant(node_variant, "node_variant")
    return {b.name: node_sites(model, b, node_variant) for b in blocks}


def _top_images(model: nn.Module, data: Data, sites: Mapping[str, Mapping[str, tuple[str, str]]], top_k: int,
                batch_size: int | None, progress: bool) -> TopKImages:
    keys = list(dict.fromkeys(site for per_block in sites.values() for site in per_block.values()))
    return top_k_images(model, data, keys, k=top_k, batch_size=batch_size, progress=progress)


def _grid_images(model: nn.Module, block: ResidualBlock, channels: list[int], fz_config: FeatureVizConfig,
                 cache_dir: str | os.PathLike | None, top: TopKImages, sites: Mapping[str, tuple[str, str]],
                 progress: bool) -> dict[int, dict[str, Any]]:
    """The grid content of some channels of one block (``top`` already searched)."""
    out: dict[int, dict[str, Any]] = {
        c: {"neuron": {}, "channel": {}, "natural": {}, "activations": {"neuron": {}, "channel": {}, "natural": {}},
            "status": {"neuron": {}, "channel": {}},
            "sites": dict(sites), "block": block.name, "channel_index": c} for c in channels}
    for objective in ("neuron", "channel"):
        config = dataclasses.replace(fz_config, objective=objective)
        for role in COLUMNS:
            where, node = sites[role]
            result = render(model, where, node, channels=channels, config=config, cache_dir=cache_dir,
                            progress=progress)
            for i, c in enumerate(channels):
                out[c][objective][role] = result.images[i].detach().float().cpu()
                out[c]["activations"][objective][role] = float(result.activations[i])
                out[c]["status"][objective][role] = result.status[i] if result.status else "ok"
    for role in COLUMNS:
        key = sites[role]
        images = top.images(key, channels, top.k)  # [K, k, 3, H, W], model-ready
        shown = denormalize(images.flatten(0, 1).float(), model).clamp(0, 1).view(images.shape)
        values = top.values[key][torch.tensor(channels, dtype=torch.long), :top.k]
        for i, c in enumerate(channels):
            out[c]["natural"][role] = shown[i]
            out[c]["activations"]["natural"][role] = values[i].clone()
    return out


def channel_grid_images(
    model: nn.Module,
    block: str | ResidualBlock,
    channels: Sequence[int] | Tensor,
    fz_config: FeatureVizConfig | None = None,
    cache_dir: str | os.PathLike | None = None,
    data: Data | None = None,
    top_k: int = 9,
    node_variant: str = "text",
    batch_size: int | None = 64,
    progress: bool = True,
) -> dict[int, dict[str, Any]]:
    r"""The content of the paper's Fig. 1 grid for some channels of one block.

    Each FZ row is rendered by :func:`~rsi_plugin.featureviz.optimize.render` for all ``channels`` at
    once (``fz_config.channels_per_batch`` per optimisation batch). Row 1 uses ``fz_config``
    with ``objective="neuron"``: pass the scan's config and ``cache_dir`` and In and Pre come
    from the scan's cache. Row 2 uses ``objective="channel"``. Row 3 is one
    :func:`~rsi_plugin.criteria.natural.top_k_images` pass over ``data`` for In, Pre and Post.

    Args:
        model (nn.Module): a model with residual blocks, in eval mode.
        block (str or ResidualBlock): the block, e.g. ``"2.1"``.
        channels (sequence of int): channels of the block.
        fz_config (FeatureVizConfig, optional): the scan's FZ settings (the paper's by
            default); its ``objective`` is replaced per row.
        cache_dir (path, optional): the FZ cache (the scan's ``OUT/fz``); ``None``: no cache.
        data (Tensor or iterable, optional): model-ready (normalised) images ``[N, 3, H, W]``
            or an iterable of such batches or ``(images, labels)`` batches, at least
            ``top_k`` images; for the bundled ``"tiny"`` model the generated shapes
            (:func:`rsi_plugin.criteria.natural.natural_images`) when not given.
        top_k (int): natural images per channel and node (the paper shows 9).
        node_variant (str): where In, Pre and Post are read, ``"text"`` (the paper's
            definitions) or ``"code"`` (its code's; see :func:`rsi_plugin.criteria.equations.node_sites`).
            Use the scan's, so In and Pre hit its cache.
        batch_size (int, optional): images per forward pass of the natural-image search.
        progress (bool): tqdm bars.

    Returns:
        dict ``channel -> grid``, in the order of ``channels``. A grid is a dict with
        ``"neuron"`` and ``"channel"``: ``{"in"|"pre"|"post": Tensor [3, H, W]}`` in [0, 1];
        ``"natural"``: ``{"in"|"pre"|"post": Tensor [top_k, 3, h, w]}`` in [0, 1], highest
        activation first; ``"activations"``: the achieved objective of each FZ (float) and
        the top-k centre-neuron activations (Tensor ``[top_k]``), keyed like the images;
        ``"status"``: each FZ's status (``"ok"``, ``"dead"``, ``"flat"``, ``"unconverged"``;
        drawn as a red outline and label when not ``"ok"``), keyed like the FZ images;
        ``"sites"``: ``{"in"|"pre"|"post": (block, node)}`` where each column was read;
        ``"block"`` and ``"channel_index"``.

    Raises:
        ValueError: unknown block or node variant, bad config, ``top_k < 1``, too few
            images, no data for a model other than ``"tiny"``. IndexError: channel out of
            range. TypeError: non-integer channels.
    """
    target = get_block(residual_blocks(_unwrap(model)), block)
    [(_, grids)] = grid_images_by_block(model, {target.name: channels}, fz_config, cache_dir, data, top_k,
                                        node_variant, batch_size, progress)
    return grids


def grid_images_by_block(
    model: nn.Module,
    channels: Mapping[str, Sequence[int]],
    fz_config: FeatureVizConfig | None = None,
    cache_dir: str | os.PathLike | None = None,
    data: Data | None = None,
    top_k: int = 9,
    node_variant: str = "text",
    batch_size: int | None = 64,
    progress: bool = True,
) -> Iterator[tuple[str, dict[int, dict[str, Any]]]]:
    r"""The Fig.-1 grid content of several blocks, one block at a time.

    Everything is checked before any work; the natural images of every block come from one
    pass over ``data``, then each block's FZs are rendered (all its channels at once) and
    the block is yielded, so a caller can save it before the next block starts.

    Args:
        model (nn.Module): a model with residual blocks, in eval mode.
        channels (dict): block name -> channels of that block.
        fz_config, cache_dir, data, top_k, node_variant, batch_size, progress: as in
            :func:`channel_grid_images`.

    Yields:
        ``(block, {channel: grid})`` in the order of ``channels``; a grid is as
        :func:`channel_grid_images` returns it.

    Raises:
        As :func:`channel_grid_images`.
    """
    module = _unwrap(model)
    known = residual_blocks(module)
    targets = [get_block(known, str(name)) for name in channels]
    chosen = {t.name: check_channels(channels[name], t.channels, where=f"block {t.name}")
              for t, name in zip(targets, channels)}
    check_top_k(top_k)
    config = fz_config if fz_config is not None else FeatureVizConfig()
    if not isinstance(config, FeatureVizConfig):
        raise InputTypeError(f"fz_config must be a FeatureVizConfig, got {type(config).__name__}")
    sites = _sites(module, targets, node_variant)
    top = _top_images(module, _default_data(module, data), sites, top_k, batch_size, progress)
    for target in targets:
        yield target.name, _grid_images(module, target, chosen[target.name], config, cache_dir, top,
                                        sites[target.name], progress)


def passing_channels(table: pd.DataFrame, blocks: Sequence[str] | None = None,
                     max_per_block: int | None = None) -> dict[str, list[int]]:
    r"""The passing channels of a scan table, per block: rows with ``passes`` true (and
    ``source == "fz"`` when the table has a ``source`` column), channels ascending.

    Args:
        table (DataFrame): a scan table (``block``, ``channel``, ``passes``).
        blocks (list of str, optional): only these blocks.
        max_per_block (int, optional): the first (lowest) this many channels of each block.

    Returns:
        dict ``block -> [channels]``, blocks in the table's order; blocks without a passing
        channel are left out.

    Raises:
        ValueError: a missing column, ``max_per_block < 1``.
    """
    if not isinstance(table, pd.DataFrame):
        raise InputTypeError(f"table must be a pandas DataFrame (a scan table), got {type(table).__name__}")
    missing = [c for c in ("block", "channel", "passes") if c not in table.columns]
    if missing:
        raise RSIError(f"table lacks column(s) {missing}; it needs block, channel and passes (a scan table)")
    if max_per_block is not None and (isinstance(max_per_block, bool) or not isinstance(max_per_block, int)
                                      or max_per_block < 1):
        raise RSIError(f"max_per_block must be a positive integer or None, got {max_per_block!r}")
    rows = table[truthy(table["passes"])]
    if "source" in rows.columns:
        rows = rows[rows["source"].astype(str) == "fz"]
    names = rows["block"].astype(str)
    if blocks is not None:
        rows = rows[names.isin([str(b) for b in blocks])]
        names = rows["block"].astype(str)
    out: dict[str, list[int]] = {}
    for name in dict.fromkeys(names):
        channels = sorted({int(c) for c in rows.loc[names == name, "channel"]})
        out[name] = channels[:max_per_block] if max_per_block is not None else channels
    return out


def table_node_variant(table: pd.DataFrame) -> str:
    """The node variant a scan table was made with: its ``node_variant`` column (one value),
    else ``table.attrs["node_variant"]``, else ``"text"``.

    Raises:
        ValueError: the table mixes node variants.
    """
    if "node_variant" in table.columns:
        found = sorted(set(table["node_variant"].dropna().astype(str)))
        if len(found) > 1:
            raise RSIError(f"the table mixes node variants {found}; pass node_variant=")
        if found:
            return found[0]
    return str(table.attrs.get("node_variant", "text"))
