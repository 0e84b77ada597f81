r"""Drawing the paper's Fig. 1 grids: one PNG per channel, In/Pre/Post by FZ rows and top-k images.

The content (a grid dict per channel, laid out as the table of
:mod:`rsi_plugin.criteria.fig1_data` shows: rows neuron FZ, channel FZ, top-k natural images;
columns In, Pre, Post) comes from :func:`rsi_plugin.criteria.fig1_data.channel_grid_images`;
this module only draws it.

:func:`save_channel_grids` writes each PNG atomically as ``grid_<block>_<channel>.png``
(:func:`rsi_plugin.core.runfolder.grid_filename`). Pillow is imported on first use.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from rsi_plugin.core.atomic import atomic_write
from rsi_plugin.core.runfolder import grid_filename
from rsi_plugin.errors import ConfigError, InputTypeError, OutOfRangeError, RSIError, ShapeError

__all__ = ["GridLayout", "ROWS", "COLUMNS", "STATUS_COLOR", "save_channel_grids"]

#: the grid's rows, top to bottom: centre-neuron FZ, whole-channel FZ, top-k natural images
#: (the keys of a grid dict; :data:`rsi_plugin.criteria.fig1_data.ROWS`)
ROWS: tuple[str, ...] = ("neuron", "channel", "natural")
#: the grid's columns, left to right: the block's In, Pre and Post (the keys of each row;
#: :data:`rsi_plugin.criteria.fig1_data.COLUMNS`)
COLUMNS: tuple[str, ...] = ("in", "pre", "post")
#: outline and label colour of an FZ panel whose status is not ``"ok"`` (dead, flat, unconverged)
STATUS_COLOR: tuple[int, int, int] = (220, 0, 0)
ROW_LABELS: dict[str, str] = {"neuron": "neuron FZ", "channel": "channel FZ", "natural": "top-{k} natural"}
COLUMN_LABELS: dict[str, str] = {"in": "In", "pre": "Pre", "post": "Post"}


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
        images_by_channel (dict): ``channel -> grid`` as :func:`~rsi_plugin.criteria.fig1_data.channel_grid_images` returns.
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
