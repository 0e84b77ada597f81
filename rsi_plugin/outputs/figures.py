r"""The paper's Fig. 1 grids, one per scale-invariant channel, and the per-block summary chart.

A grid shows one channel ``c`` of a block in a 3x3 layout, as Fig. 1 of the paper does:

============== ========================== ========================== ==========================
row \ column   In                         Pre                        Post
============== ========================== ========================== ==========================
neuron FZ      FZ of In's centre neuron   FZ of Pre's centre neuron  FZ of Post's centre neuron
channel FZ     FZ of the whole channel    FZ of the whole channel    FZ of the whole channel
natural        top-9 images (3x3 mosaic)  top-9 images               top-9 images
============== ========================== ========================== ==========================

The FZs come from :func:`rsi_plugin.featureviz.optimize.render` with the scan's
:class:`~rsi_plugin.featureviz.optimize.FeatureVizConfig` (``objective="neuron"`` for row 1, so In and
Pre are the scan's own cached FZs; ``objective="channel"`` for row 2), batched over every
channel of a block at once. The natural images are each channel's top-k images at the centre
neuron (:func:`rsi_plugin.criteria.natural.top_k_images`), found in one pass over the data for every
block and node.

:func:`channel_grids` draws a grid for every passing channel of a scan table, writes each PNG
atomically and skips the channels whose PNG exists, so an interrupted run resumes.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from rsi_plugin.core.atomic import atomic_write
from rsi_plugin.criteria.equations import NODE_VARIANTS, node_sites
from rsi_plugin.featureviz.optimize import FeatureVizConfig, check_channels, render
from rsi_plugin.core.images import denormalize, model_info
from rsi_plugin.criteria.natural import TopKImages, top_k_images
from rsi_plugin.core.blocks import ResidualBlock, get_block, residual_blocks
from rsi_plugin.errors import ConfigError, InputTypeError, OutOfRangeError, RSIError, ShapeError, UnknownNameError

__all__ = [
    "GridLayout",
    "ROWS",
    "COLUMNS",
    "grid_filename",
    "channel_grid_images",
    "save_channel_grids",
    "channel_grids",
    "passing_channels",
    "plot_summary",
]

logger = logging.getLogger(__name__)

#: the grid's rows: centre-neuron FZ, whole-channel FZ, top-k natural images
ROWS: tuple[str, ...] = ("neuron", "channel", "natural")
#: the grid's columns: the block's In, Pre and Post
COLUMNS: tuple[str, ...] = ("in", "pre", "post")
#: outline and label colour of an FZ panel whose status is not ``"ok"`` (dead, flat, unconverged)
STATUS_COLOR: tuple[int, int, int] = (220, 0, 0)
ROW_LABELS: dict[str, str] = {"neuron": "neuron FZ", "channel": "channel FZ", "natural": "top-{k} natural"}
COLUMN_LABELS: dict[str, str] = {"in": "In", "pre": "Pre", "post": "Post"}

Data = Tensor | Iterable[Any]


# --------------------------------------------------------------------------- layout


@dataclass(frozen=True)
class GridLayout:
    r"""Geometry of a grid PNG, in pixels.

    The canvas is ``pad + label + 3 cells (gap between) + pad`` wide and
    ``pad + title + header + 3 cells (gap between) + pad`` high; :meth:`box` gives a cell.

    Attributes:
        cell (int, optional): side of a panel; ``None``: the image size, doubled (or more)
            until it is at least 128.
        gap (int): space between panels.
        pad (int): outer margin.
        title (int): height of the title band ("block 2.1 · channel 15").
        header (int): height of the column labels (In, Pre, Post).
        label (int): width of the row labels.
        mosaic_gap (int): space between the natural images of a mosaic.
        font_size (int): size of the labels.
    """

    cell: int | None = None
    gap: int = 6
    pad: int = 8
    title: int = 24
    header: int = 20
    label: int = 92
    mosaic_gap: int = 2
    font_size: int = 13

    def __post_init__(self) -> None:
        for name in ("gap", "pad", "title", "header", "label", "mosaic_gap"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"{name} must be an integer >= 0, got {value!r}")
        if self.cell is not None and (isinstance(self.cell, bool) or not isinstance(self.cell, int) or self.cell < 16):
            raise ConfigError(f"cell must be an integer >= 16 or None, got {self.cell!r}")
        if isinstance(self.font_size, bool) or not isinstance(self.font_size, int) or self.font_size < 6:
            raise ConfigError(f"font_size must be an integer >= 6, got {self.font_size!r}")

    def resolved(self, image_size: int) -> GridLayout:
        """This layout with ``cell`` filled in for images of side ``image_size``."""
        if self.cell is not None:
            return self
        return dataclasses.replace(self, cell=int(image_size) * max(1, math.ceil(128 / int(image_size))))

    def _cell(self) -> int:
        if self.cell is None:
            raise RSIError("resolve the layout first (GridLayout.resolved)")
        return int(self.cell)

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` of the canvas."""
        cell = self._cell()
        return (2 * self.pad + self.label + 3 * cell + 2 * self.gap,
                2 * self.pad + self.title + self.header + 3 * cell + 2 * self.gap)

    def box(self, row: int, column: int) -> tuple[int, int, int, int]:
        """``(left, top, right, bottom)`` of the panel in ``row`` (0: neuron FZ, 1: channel
        FZ, 2: natural) and ``column`` (0: In, 1: Pre, 2: Post); right and bottom exclusive."""
        if not (0 <= row < 3 and 0 <= column < 3):
            raise OutOfRangeError(f"row and column must be in 0..2, got ({row}, {column})")
        cell = self._cell()
        left = self.pad + self.label + column * (cell + self.gap)
        top = self.pad + self.title + self.header + row * (cell + self.gap)
        return left, top, left + cell, top + cell

    def tiles(self, k: int) -> tuple[int, int]:
        """``(per_row, side)`` of a mosaic of ``k`` natural images in one panel."""
        per_row = max(1, math.ceil(math.sqrt(k)))
        side = (self._cell() - (per_row - 1) * self.mosaic_gap) // per_row
        return per_row, max(1, side)


def grid_filename(block: str, channel: int) -> str:
    """Name of a channel's grid PNG: ``grid_<block>_<channel>.png``."""
    return f"grid_{block}_{int(channel)}.png"


# --------------------------------------------------------------------------- computing


def _unwrap(model: nn.Module) -> nn.Module:
    module = getattr(model, "_module", model)
    if not isinstance(module, nn.Module):
        raise InputTypeError(f"model must be a torch.nn.Module or nnsight.NNsight, got {type(model).__name__}")
    return module


def _check_top_k(top_k: int) -> None:
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise RSIError(f"top_k must be an integer >= 1, got {top_k!r}")


def _default_data(model: nn.Module, data: Data | None) -> Data:
    if data is not None:
        return data
    if model_info(model).name != "tiny":
        raise RSIError(f"no bundled dataset for model {model_info(model).name!r}: pass data= (model-ready "
                         "images [N, 3, H, W], or batches of them, e.g. of an ImageNet validation folder)")
    from rsi_plugin.criteria.channel_scan import natural_data

    return natural_data(model)


def _sites(model: nn.Module, blocks: Sequence[ResidualBlock], node_variant: str) -> dict[str, dict[str, tuple[str, str]]]:
    if node_variant not in NODE_VARIANTS:
        raise UnknownNameError(f"unknown node_variant {node_variant!r}; valid: {', '.join(NODE_VARIANTS)}")
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
            (:func:`rsi_plugin.criteria.channel_scan.natural_data`) when not given.
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
    module = _unwrap(model)
    target = get_block(residual_blocks(module), block)
    chosen = check_channels(channels, target)
    _check_top_k(top_k)
    config = fz_config if fz_config is not None else FeatureVizConfig()
    if not isinstance(config, FeatureVizConfig):
        raise InputTypeError(f"fz_config must be a FeatureVizConfig, got {type(config).__name__}")
    sites = _sites(module, [target], node_variant)
    top = _top_images(module, _default_data(module, data), sites, top_k, batch_size, progress)
    return _grid_images(module, target, chosen, config, cache_dir, top, sites[target.name], progress)


# --------------------------------------------------------------------------- drawing


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def _to_pil(image: Tensor, side: int):
    from PIL import Image

    if not isinstance(image, Tensor) or image.dim() != 3 or image.shape[0] != 3:
        shape = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
        raise ShapeError(f"an image must be a Tensor [3, H, W] in [0, 1], got {shape}")
    array = (image.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    picture = Image.fromarray(np.ascontiguousarray(array), mode="RGB")
    if picture.size != (side, side):
        smaller = side < max(picture.size)
        picture = picture.resize((side, side), Image.Resampling.LANCZOS if smaller else Image.Resampling.NEAREST)
    return picture


def _text(draw, xy: tuple[float, float], text: str, font, anchor: str = "la") -> None:
    draw.text(xy, text, fill=(20, 20, 20), font=font, anchor=anchor)


def _draw_grid(grid: Mapping[str, Any], block: str, channel: int, layout: GridLayout):
    from PIL import Image, ImageDraw

    canvas = Image.new("RGB", layout.size, (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    font = _font(layout.font_size)
    title_font = _font(layout.font_size + 2)
    cell = int(layout.cell)
    _text(draw, (layout.pad + layout.label, layout.pad + layout.title / 2), f"block {block} · channel {channel}",
          title_font, anchor="lm")
    sites = grid.get("sites") or {}
    default = {role: (block, role) for role in COLUMNS}
    for j, role in enumerate(COLUMNS):
        left, top, right, _ = layout.box(0, j)
        label = COLUMN_LABELS[role]
        if role in sites and tuple(sites[role]) != default[role]:
            label += f" ({sites[role][0]} {sites[role][1]})"
        _text(draw, ((left + right) / 2, top - layout.header / 2), label, font, anchor="mm")
    natural = grid.get("natural") or {}
    k = next((len(v) for v in natural.values() if isinstance(v, Tensor)), 9)
    for i, row in enumerate(ROWS):
        left, top, _, bottom = layout.box(i, 0)
        _text(draw, (layout.pad, (top + bottom) / 2), ROW_LABELS[row].format(k=k), font, anchor="lm")
        panels = grid.get(row) or {}
        for j, role in enumerate(COLUMNS):
            box = layout.box(i, j)
            value = panels.get(role)
            if value is None:
                draw.rectangle((box[0], box[1], box[2] - 1, box[3] - 1), outline=(200, 200, 200))
                _text(draw, ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2), "n/a", font, anchor="mm")
            elif row == "natural":
                if not isinstance(value, Tensor) or value.dim() != 4:
                    raise ShapeError(f"natural images of channel {channel} ({role}) must be a Tensor [k, 3, H, W], "
                                     f"got {tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__}")
                per_row, side = layout.tiles(len(value))
                for n, image in enumerate(value):
                    x = box[0] + (n % per_row) * (side + layout.mosaic_gap)
                    y = box[1] + (n // per_row) * (side + layout.mosaic_gap)
                    canvas.paste(_to_pil(image, side), (x, y))
            else:
                canvas.paste(_to_pil(value, cell), (box[0], box[1]))
                status = ((grid.get("status") or {}).get(row) or {}).get(role, "ok")
                if status != "ok":  # an invalid FZ is shown as such, not silently
                    draw.rectangle((box[0], box[1], box[2] - 1, box[3] - 1), outline=STATUS_COLOR, width=3)
                    draw.text((box[0] + 5, box[1] + 4), status, fill=STATUS_COLOR, font=font, anchor="la")
    return canvas


def _image_side(grids: Mapping[int, Mapping[str, Any]]) -> int:
    for grid in grids.values():
        for row in ("neuron", "channel", "natural"):
            for value in (grid.get(row) or {}).values():
                if isinstance(value, Tensor):
                    return int(value.shape[-1])
    return 128


def _atomic_png(picture, path: Path) -> Path:
    return atomic_write(path, lambda tmp: picture.save(tmp, format="PNG"))


def save_channel_grids(images_by_channel: Mapping[int, Mapping[str, Any]], block: str, out_dir: str | os.PathLike,
                       layout: GridLayout | None = None) -> list[Path]:
    r"""One Fig.-1-style PNG per channel: ``out_dir/grid_<block>_<channel>.png``.

    Columns In, Pre, Post; rows neuron FZ, channel FZ, a mosaic of the top natural images
    (3x3 for 9), with the column and row labels and the title "block B · channel c". A row
    or panel missing from a grid is drawn as an empty "n/a" panel. Each file is written to a
    temporary name and moved into place.

    Args:
        images_by_channel (dict): ``channel -> grid`` as :func:`channel_grid_images` returns.
        block (str): the block's name, e.g. ``"2.1"``.
        out_dir (str or path): the folder (created).
        layout (GridLayout, optional): geometry; the default doubles 64 px images.

    Returns:
        list of the written paths, in the order of ``images_by_channel``.

    Raises:
        TypeError: ``images_by_channel`` is not a mapping. ValueError: a grid without any
            row, an image that is not ``[3, H, W]`` (``[k, 3, H, W]`` for natural images).
    """
    if not isinstance(images_by_channel, Mapping):
        raise InputTypeError(f"images_by_channel must be a dict channel -> grid, got {type(images_by_channel).__name__}")
    layout = (layout or GridLayout()).resolved(_image_side(images_by_channel))
    out = Path(out_dir)
    written = []
    for channel, grid in images_by_channel.items():
        if not isinstance(grid, Mapping) or not any(grid.get(row) for row in ROWS):
            raise RSIError(f"the grid of channel {channel} holds none of the rows {', '.join(ROWS)}")
        picture = _draw_grid(grid, str(block), int(channel), layout)
        written.append(_atomic_png(picture, out / grid_filename(str(block), int(channel))))
    return written


# --------------------------------------------------------------------------- from a scan table


def _truthy(values: pd.Series) -> pd.Series:
    if values.dtype == bool:
        return values
    return values.map(lambda v: str(v).strip().lower() in ("true", "1", "yes") if isinstance(v, str) else bool(v))


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
    rows = table[_truthy(table["passes"])]
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


def _table_node_variant(table: pd.DataFrame) -> str:
    if "node_variant" in table.columns:
        found = sorted(set(table["node_variant"].dropna().astype(str)))
        if len(found) > 1:
            raise RSIError(f"the table mixes node variants {found}; pass node_variant=")
        if found:
            return found[0]
    return str(table.attrs.get("node_variant", "text"))


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

    The channels are those of :func:`passing_channels`. A channel whose
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
            :func:`channel_grid_images` (read at most once).
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
    _check_top_k(top_k)
    module = _unwrap(model)
    known = residual_blocks(module)
    if blocks is not None:
        for name in blocks:
            get_block(known, str(name))
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
    config = fz_config if fz_config is not None else FeatureVizConfig()
    if not isinstance(config, FeatureVizConfig):
        raise InputTypeError(f"fz_config must be a FeatureVizConfig, got {type(config).__name__}")
    targets = [get_block(known, b) for b in todo]
    for target in targets:
        check_channels(todo[target.name], target)
    variant = node_variant if node_variant is not None else _table_node_variant(table)
    sites = _sites(module, targets, variant)
    top = _top_images(module, _default_data(module, data), sites, top_k, batch_size, progress)
    for target in targets:
        grids = _grid_images(module, target, todo[target.name], config, cache_dir, top, sites[target.name], progress)
        save_channel_grids(grids, target.name, out, layout)
        logger.info("block %s: wrote %d grid(s) to %s", target.name, len(grids), out)
    return everything


# --------------------------------------------------------------------------- summary chart


def plot_summary(summary: pd.DataFrame, path: str | os.PathLike, title: str | None = None) -> Path:
    r"""Bar chart of the share of passing channels per block (the numbers of the paper's §3),
    each bar labelled ``passing/channels``. Several sources or transforms in ``summary``
    give grouped bars with a legend.

    Args:
        summary (DataFrame): :func:`rsi_plugin.criteria.equations.summarize` of a scan (``block``,
            ``channels``, ``passing``; ``share`` is computed when missing).
        path (str or path): image file to write (PNG unless the suffix says otherwise),
            atomically.
        title (str, optional): figure title.

    Returns:
        Path of the written file.

    Raises:
        TypeError: not a DataFrame. ValueError: missing columns or no rows.
    """
    if not isinstance(summary, pd.DataFrame):
        raise InputTypeError(f"summary must be a pandas DataFrame, got {type(summary).__name__}")
    missing = [c for c in ("block", "channels", "passing") if c not in summary.columns]
    if missing:
        raise RSIError(f"summary lacks column(s) {missing}; it needs block, channels, passing "
                         "(rsi_plugin.criteria.equations.summarize of a scan)")
    if summary.empty:
        raise RSIError("summary has no rows")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    frame = summary.copy()
    frame["block"] = frame["block"].astype(str)
    if "share" not in frame.columns:
        frame["share"] = frame["passing"] / frame["channels"].where(frame["channels"] > 0)
    keys = [c for c in ("source", "transform") if c in frame.columns and frame[c].nunique() > 1]
    groups = list(frame.groupby(keys, sort=False)) if keys else [((), frame)]
    blocks = list(dict.fromkeys(frame["block"]))
    figure = Figure(figsize=(max(4.0, 0.9 * len(blocks) * max(1, len(groups)) + 1.5), 3.4), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    width = 0.8 / len(groups)
    top = 0.0
    for g, (key, part) in enumerate(groups):
        part = part.set_index("block")
        xs = [blocks.index(b) - 0.4 + width * (g + 0.5) for b in part.index]
        shares = (100 * part["share"].astype(float)).fillna(0.0)
        label = " / ".join(str(k) for k in (key if isinstance(key, tuple) else (key,))) if keys else None
        bars = axes.bar(xs, shares, width=width * 0.9, color=f"C{g}" if keys else "0.55", edgecolor="0.25",
                        label=label)
        texts = [f"{int(p)}/{int(c)}" for p, c in zip(part["passing"], part["channels"])]
        axes.bar_label(bars, texts, fontsize=8, padding=2)
        top = max(top, float(shares.max()))
    axes.set_xticks(range(len(blocks)), blocks)
    axes.set_xlabel("block")
    axes.set_ylabel("channels passing Eq. 1 and 2 (%)")
    axes.set_ylim(0, max(5.0, top * 1.2 + 2))
    if keys:
        axes.legend(fontsize=8)
    if title:
        axes.set_title(title)
    path = Path(path)
    atomic_write(path, lambda tmp: figure.savefig(tmp, dpi=120, format=path.suffix.lstrip(".") or "png"))
    return path
