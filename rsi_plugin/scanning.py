r"""The paper's §3 scan: every channel of the chosen blocks through the scale-invariance criteria.

For each block, the centre-neuron feature visualisations (FZs) of In and Pre come from
:func:`rsi_plugin.featureviz.render` (cached on disk and resumable when ``cache_dir`` is
set: a rerun recomputes no FZ), are normalised with :func:`rsi_plugin.normalize` and fed
to :class:`rsi_plugin.criteria.ScaleInvariance`. With ``source="natural"`` each channel's
top-k activating images of a dataset stand in for the FZs (:mod:`rsi_plugin.natural`);
``source="both"`` reports both, one row per (source, block, channel).

The defaults follow the paper's text: nodes as §2.1 defines them, ``S`` of §3, the
tolerance 3/2, Pre read before the in-place sum. The paper's code's choices are options:
``node_variant="code"`` (Post and In at the pre-ReLU sum) and ``paper_compat=True`` (Pre
FZs rendered at Lucent's aliased reading of bn2, which is Post).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Literal, Sequence

import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from .channels import check_channels
from .criteria import (
    NODE_VARIANTS,
    TOLERANCE,
    ScaleInvariance,
    add_fz_verdict,
    check_tolerance,
    node_sites,
)
from .evalmode import runs_in_eval_mode
from .featureviz import FeatureVizConfig, render
from .geometry import ZOOM_CENTERS, receptive_field_center, zoom_transform
from .images import model_info, normalize
from .natural import TopKImages, top_k_images
from .nodes import ResidualBlock, resolve_blocks
from .transforms import get_transform, transform_name

__all__ = ["ScanConfig", "SOURCES", "scan", "natural_data"]

logger = logging.getLogger(__name__)

SOURCES: tuple[str, ...] = ("fz", "natural", "both")
NATURAL_REDUCE: tuple[str, ...] = ("top1", "mean")


@dataclass(frozen=True)
class ScanConfig:
    r"""How :func:`scan` runs. Defaults are the paper's text.

    Attributes:
        featureviz (FeatureVizConfig): how FZs are rendered (steps, image size, jitter,
            seed, ``paper_compat``...); the paper's settings by default.
        transform (str or callable): the transform of Eq. (1): ``"scale"`` (the paper's
            ``S``), ``"rotate"``, ``"hflip"``, ``"rotate:45"``, ``"scale:1.5"`` or a function.
        tolerance (float): ``t`` of Eq. (2), > 1 (the paper's 3/2).
        source (str): ``"fz"`` (the paper), ``"natural"`` (top-k dataset images) or
            ``"both"``.
        top_k (int): natural images searched per channel (Fig. 1 shows 9).
        natural_reduce (str): ``"top1"``: each channel's top image drives the criteria;
            ``"mean"``: the activations are averaged over its top-k images (as the paper's
            code does with natural images).
        natural_samples (int): size of the generated dataset used when ``data`` is not
            given to :func:`scan` (bundled ``"tiny"`` model only).
        node_variant (str): ``"text"`` or ``"code"`` (see :func:`rsi_plugin.criteria.node_sites`).
        paper_compat (bool): render Pre FZs as Lucent did in the paper (its reading of bn2
            is Post, see :mod:`rsi_plugin.featureviz`). Sets ``featureviz.paper_compat``;
            ``True`` if either is.
        channels (sequence of int, optional): analyse only these channels of every block
            (a quick look); all by default.
        cache_dir (path, optional): FZ cache; ``None``: FZs are not cached.
        force (bool): recompute cached FZs.
        batch_size (int, optional): images per forward pass of the criteria and the
            natural-image search.
        seed (int): seed of the generated natural dataset.
        zoom_center (str): where a ``"scale"`` transform zooms: ``"rf"`` (default) about the
            receptive-field centre of the block's centre neuron, measured once per block
            (:func:`rsi_plugin.geometry.receptive_field_center`); ``"image"``: about the
            image centre, as the paper's ``S``. Recorded per row as ``zoom_center``.
    """

    featureviz: FeatureVizConfig = field(default_factory=FeatureVizConfig)
    transform: str | Callable[[torch.Tensor], torch.Tensor] = "scale"
    tolerance: float = TOLERANCE
    source: Literal["fz", "natural", "both"] = "fz"
    top_k: int = 9
    natural_reduce: Literal["top1", "mean"] = "top1"
    natural_samples: int = 1000
    node_variant: Literal["text", "code"] = "text"
    paper_compat: bool = False
    channels: Sequence[int] | None = None
    cache_dir: str | Path | None = None
    force: bool = False
    batch_size: int | None = 64
    seed: int = 0
    zoom_center: Literal["rf", "image"] = "rf"

    def __post_init__(self) -> None:
        if not isinstance(self.featureviz, FeatureVizConfig):
            raise TypeError(f"featureviz must be a FeatureVizConfig, got {type(self.featureviz).__name__}")
        get_transform(self.transform)
        check_tolerance(self.tolerance)
        if self.source not in SOURCES:
            raise ValueError(f"unknown source {self.source!r}; valid: {', '.join(SOURCES)}")
        if self.natural_reduce not in NATURAL_REDUCE:
            raise ValueError(f"unknown natural_reduce {self.natural_reduce!r}; valid: {', '.join(NATURAL_REDUCE)}")
        if self.zoom_center not in ZOOM_CENTERS:
            raise ValueError(f"unknown zoom_center {self.zoom_center!r}; valid: {', '.join(ZOOM_CENTERS)}")
        if self.node_variant not in NODE_VARIANTS:
            raise ValueError(f"unknown node_variant {self.node_variant!r}; valid: {', '.join(NODE_VARIANTS)}")
        for name, low in (("top_k", 1), ("natural_samples", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if self.batch_size is not None and (not isinstance(self.batch_size, int) or self.batch_size < 1):
            raise ValueError(f"batch_size must be a positive integer or None, got {self.batch_size!r}")
        if self.channels is not None:
            object.__setattr__(self, "channels", tuple(check_channels(self.channels)))
        compat = bool(self.paper_compat or self.featureviz.paper_compat)
        object.__setattr__(self, "paper_compat", compat)
        if compat != self.featureviz.paper_compat:
            object.__setattr__(self, "featureviz", dataclasses.replace(self.featureviz, paper_compat=compat))


def natural_data(model: nn.Module, n: int = 1000, seed: int = 0) -> torch.Tensor:
    r"""The default natural images of the bundled ``"tiny"`` model: ``n`` procedural
    shapes images (:func:`rsi_plugin.zoo.generate`), normalised for the model.

    Args:
        model (nn.Module): the ``"tiny"`` model (its ``rsi_info`` gives size and statistics).
        n (int): number of images.
        seed (int): seed of the images.

    Returns:
        Tensor ``[n, 3, S, S]``, model-ready.

    Raises:
        ValueError: for a model that is not the bundled ``"tiny"``.
    """
    info = model_info(model)
    if info.name != "tiny":
        raise ValueError(f"no bundled dataset for model {info.name!r}: pass data= (normalised images, or a "
                         "DataLoader of (images, labels), e.g. an ImageNet validation folder)")
    from .zoo import generate

    images, _ = generate(n, seed, size=info.input_size)
    return normalize(images, model)


def _device(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    return torch.device("cpu")


def _channels(block: ResidualBlock, wanted: Sequence[int] | None) -> list[int]:
    return check_channels(wanted, block.channels, where=f"block {block.name}")


def _block_transform(model: nn.Module, block: ResidualBlock, config: ScanConfig) -> tuple[Any, str]:
    """The transform of Eq. (1) for a block (``S`` about the zoom centre) and how it is recorded."""
    family, _, value = config.transform.partition(":") if isinstance(config.transform, str) else ("", "", "")
    if config.zoom_center != "rf" or family != "scale":
        return config.transform, "image"
    center = receptive_field_center(model, block, "pre", image_size=config.featureviz.image_size)
    return zoom_transform(float(value) if value else 2.0, center, config.transform), f"{center[0]:.2f},{center[1]:.2f}"


def _fz_table(model: nn.Module, block: ResidualBlock, channels: list[int], config: ScanConfig,
              progress: bool) -> pd.DataFrame:
    sites = node_sites(model, block, config.node_variant)
    device = _device(model)
    renders = {}
    for role in ("in", "pre"):
        where, node = sites[role]
        renders[role] = render(model, where, node, channels=channels, config=config.featureviz,
                               cache_dir=config.cache_dir, force=config.force, progress=progress)
    x_in = normalize(renders["in"].images.to(device), model)
    x_pre = normalize(renders["pre"].images.to(device), model)
    si = ScaleInvariance(model, block, node_variant=config.node_variant)
    transform, zoom = _block_transform(model, block, config)
    si.attribute((x_in, x_pre), channels=channels, transform=transform, tolerance=config.tolerance,
                 batch_size=config.batch_size)
    table = add_fz_verdict(si.table(), renders["in"].status, renders["pre"].status)
    table["in_steps_used"] = renders["in"].steps_used
    table["pre_steps_used"] = renders["pre"].steps_used
    table["zoom_center"] = zoom
    table.insert(0, "source", "fz")
    table["in_fz_act"] = renders["in"].activations.numpy()
    table["pre_fz_act"] = renders["pre"].activations.numpy()
    table["in_fz_path"] = [str(p) if p is not None else None for p in renders["in"].paths]
    table["pre_fz_path"] = [str(p) if p is not None else None for p in renders["pre"].paths]
    table["fz_computed"] = [c in set(renders["in"].computed) or c in set(renders["pre"].computed) for c in channels]
    return table


def _natural_table(model: nn.Module, block: ResidualBlock, channels: list[int], top: TopKImages,
                   config: ScanConfig, chunk: int = 32) -> pd.DataFrame:
    sites = node_sites(model, block, config.node_variant)
    device = _device(model)
    k = 1 if config.natural_reduce == "top1" else top.k
    si = ScaleInvariance(model, block, node_variant=config.node_variant)
    transform, zoom = _block_transform(model, block, config)
    parts = []
    for start in range(0, len(channels), chunk):
        some = channels[start:start + chunk]
        x_in = top.images(sites["in"], some, k).to(device)
        x_pre = top.images(sites["pre"], some, k).to(device)
        si.attribute((x_in, x_pre), channels=some, transform=transform, tolerance=config.tolerance,
                     batch_size=config.batch_size)
        parts.append(si.table())
    table = pd.concat(parts, ignore_index=True)
    table["zoom_center"] = zoom
    table.insert(0, "source", "natural")
    index = torch.tensor(channels)
    table["in_top_act"] = top.values[sites["in"]][index, :k].mean(1).numpy()
    table["pre_top_act"] = top.values[sites["pre"]][index, :k].mean(1).numpy()
    table["in_top_index"] = top.indices[sites["in"]][index, 0].numpy()
    table["pre_top_index"] = top.indices[sites["pre"]][index, 0].numpy()
    return table


@runs_in_eval_mode
def scan(
    model: nn.Module,
    blocks: str | Sequence[str] | None = "all",
    config: ScanConfig | None = None,
    data: torch.Tensor | Iterable[Any] | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    r"""The scale-invariance criteria for every channel of the chosen blocks (the paper's §3).

    Args:
        model (nn.Module): a model with residual blocks. It runs in eval mode (BatchNorm
            with its running statistics, which stay unchanged); a model in train mode is
            put back in train mode afterwards.
        blocks (str or list of str): block names (``"2.1"``) or ``"all"``.
        config (ScanConfig, optional): the paper's settings by default.
        data (Tensor or iterable, optional): for ``source="natural"``/``"both"``:
            model-ready images ``[N, 3, H, W]`` or an iterable of ``(images, labels)``
            batches (normalised); for the ``"tiny"`` model :func:`natural_data` is used
            when not given.
        progress (bool): tqdm bars.

    Returns:
        DataFrame, one row per (source, block, channel): ``source`` then the columns of
        :meth:`ScaleInvariance.table` (``block, channel, pre_in, pre_scaled, post_in,
        post_pre, ratio, eq1, eq2, passes, ...``); for FZ rows ``in_fz_act, pre_fz_act``
        (the activations the FZs achieved, as the renderer measured them),
        ``in_fz_path, pre_fz_path`` (the cached PNGs, ``None`` without a cache) and
        ``fz_computed`` (whether this call rendered the channel's FZs), ``in_status``,
        ``pre_status``, ``post_status``, ``verdict`` (``"undetermined"`` when an FZ is not
        ``"ok"``; then ``passes`` is False; see :func:`rsi_plugin.criteria.add_fz_verdict`),
        ``in_steps_used``, ``pre_steps_used``; for every row ``zoom_center``; for natural rows
        ``in_top_act, pre_top_act`` (the top activations, averaged over the images used)
        and ``in_top_index, pre_top_index`` (the data position of the top image).
        ``attrs`` holds ``model``, ``weights``, ``node_variant``, ``transform``. The
        per-block summary (count and share of passing channels) is
        :func:`rsi_plugin.criteria.summarize` of it; it is also logged.

    Raises:
        ValueError: unknown block; ``source="natural"`` without data for a model other
            than ``"tiny"``. IndexError: a channel of ``config.channels`` out of range.
    """
    config = config or ScanConfig()
    module = getattr(model, "_module", model)
    chosen = resolve_blocks(module, blocks)
    plan = {b.name: _channels(b, config.channels) for b in chosen}
    tables = []
    top = None
    if config.source in ("natural", "both"):
        if data is None:
            data = natural_data(module, config.natural_samples, config.seed)
        keys = [site for b in chosen for role, site in node_sites(module, b, config.node_variant).items()
                if role in ("in", "pre")]
        top = top_k_images(module, data, keys, k=config.top_k, batch_size=config.batch_size, progress=progress)
    for block in tqdm(chosen, disable=not progress or len(chosen) < 2, desc="scan", unit="block"):
        channels = plan[block.name]
        if config.source in ("fz", "both"):
            tables.append(_fz_table(module, block, channels, config, progress))
        if top is not None:
            tables.append(_natural_table(module, block, channels, top, config))
        for part in tables[-2 if config.source == "both" else -1:]:
            passing = int(part["passes"].sum())
            logger.info("block %s (%s): %d of %d channels pass (%.1f%%)", block.name, part["source"].iloc[0],
                        passing, len(part), 100.0 * passing / len(part))
    table = pd.concat(tables, ignore_index=True)
    info = model_info(module)
    table.attrs.update({"model": info.name, "weights": info.weights, "node_variant": config.node_variant,
                        "transform": transform_name(config.transform)})
    return table



def write_scan(table: pd.DataFrame, out_dir: str | Path) -> list[Path]:
    r"""Write a scan's files atomically: ``scan.csv`` (and ``scan.parquet`` when pyarrow is
    installed), ``summary.csv`` (:func:`~rsi_plugin.criteria.summarize`) and, for resnet18,
    ``paper_comparison.csv`` (:func:`~rsi_plugin.paper.compare_to_paper`).

    Args:
        table (DataFrame): what :func:`scan` returned.
        out_dir (str or Path): the folder (created).

    Returns:
        list of the paths written.
    """
    import importlib.util

    from .atomic import atomic_write, atomic_write_csv
    from .criteria import summarize
    from .paper import compare_to_paper

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    def atomic(frame: pd.DataFrame, name: str, parquet: bool = False) -> Path:
        if parquet:
            return atomic_write(out / name, lambda tmp: frame.to_parquet(tmp, index=False))
        return atomic_write_csv(out / name, frame)

    written = [atomic(table, "scan.csv")]
    if importlib.util.find_spec("pyarrow") is not None:
        written.append(atomic(table, "scan.parquet", parquet=True))
    written.append(atomic(summarize(table), "summary.csv"))
    if table.attrs.get("model") == "resnet18":
        written.append(atomic(compare_to_paper(table), "paper_comparison.csv"))
    return written
