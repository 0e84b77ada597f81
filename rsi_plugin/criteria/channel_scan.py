r"""The paper's §3 scan: every channel of the chosen blocks through the scale-invariance criteria.

For each block, the centre-neuron feature visualisations (FZs) of In and Pre come from
:func:`rsi_plugin.featureviz.optimize.render` (cached on disk and resumable when ``cache_dir`` is
set: a rerun recomputes no FZ), are normalised with :func:`rsi_plugin.normalize` and fed
to :class:`rsi_plugin.criteria.captum.ScaleInvariance`. With ``source="natural"`` each channel's
top-k activating images of a dataset stand in for the FZs (:mod:`rsi_plugin.criteria.natural`);
``source="both"`` reports both, one row per (source, block, channel).

The defaults follow the paper's text: nodes as §2.1 defines them, ``S`` of §3, the
tolerance 3/2, Pre read before the in-place sum. ``variant="code"`` takes the paper's code's
choices instead (:func:`rsi_plugin.paper.resolve`): Post and In at the pre-ReLU sum
(``node_variant``), Pre FZs rendered at Lucent's aliased reading of bn2, which is Post
(``paper_compat``), and the script's jitter schedule; each switch can also be set alone.

**Seeds.** ``ScanConfig(seeds=(0, 1, 2))`` renders every channel's FZs once per seed (the
seed is part of the FZ cache key, so each seed is cached and resumed on its own) and
returns one row per (source, block, channel, seed) with a ``seed`` column and a
``verdict`` (``"pass"``, ``"fail"``, ``"undetermined"``; ``passes`` is False unless the
verdict is ``"pass"``). Natural-image rows do not depend on the FZ seed: they are computed
once and carry the first seed. ``adaptive=True`` gives the seeds after the first only to
channels whose first verdict is near a threshold (:func:`rsi_plugin.criteria.seeds.adaptive_stop`;
stopped rows carry ``adaptive_stop`` True). Per-channel pass rates, the robust set, seed
Jaccard and the permutation null are in :mod:`rsi_plugin.criteria.seeds`.

**Several processes** (``torchrun --nproc_per_node K -m rsi_plugin.cli scan ...``, or any
caller that has initialised a ``torch.distributed`` process group): the FZs are rendered in
units (block, node, seed, a chunk of ``unit_channels`` channels) that the ranks share through
the cache (``cache_dir`` is then required); every rank then computes the same rows, and
``on_seed`` runs on rank 0 only. The rows, records and files equal a one-process run's at
the same torch thread count (:mod:`rsi_plugin.criteria.shards`).

**Files** (:func:`write_scan`, written atomically; the CLI rewrites them after each seed,
so a killed multi-seed run keeps its finished seeds and a rerun renders only missing FZs).
A scan written into a folder that already holds one is **merged by block**, as
``DataFrame.update`` keeps what it is not given: the rows of the blocks scanned again are
replaced (all of them: a rescan with other ``channels`` keeps only the new ones), the rows
of the other blocks are kept, and every derived table is recomputed from the merged rows.
Merging needs the same settings (``scan_settings.json``, :data:`SCAN_SETTING_KEYS`); a
scan with other settings that would leave rows of the old one is refused (an
:class:`~rsi_plugin.errors.ConfigError` naming the settings that differ), never mixed and never
silently dropped; ``write_scan(..., existing="replace")`` replaces the folder's tables instead:

* ``scan.csv`` (and ``scan.parquet`` with pyarrow): the rows of :func:`scan`, ending with
  ``verdict``, ``seed``, ``layer`` and ``index`` (the integer parts of the block id). Block
  ids are strings (``"3.10"`` is not ``"3.1"``): read the file with :func:`read_table`
  (or ``pd.read_csv(path, dtype={"block": str})``).
* ``scan_channels.csv``: one row per (source, transform, block, channel):
  :func:`rsi_plugin.criteria.seeds.channel_table` (``n_seeds, n_pass, n_fail, n_undetermined,
  seeds, seeds_passing, pass_rate, pass_rate_low, pass_rate_high, robust, any_seed,
  status``, and ``adaptive_stop`` for an adaptive scan).
* ``summary.csv``: one row per (source, transform, block):
  :func:`rsi_plugin.criteria.seeds.block_summary` (``channels, seeds, passing`` (= the robust
  count), ``share, robust, any_seed, undetermined, not_robust, passing_mean/min/max,
  undetermined_mean, jaccard_mean/min/max, null_expected, null_low, null_high,
  null_p``).
* ``paper_comparison.csv`` for resnet18 (:func:`rsi_plugin.criteria.paper_comparison.compare_to_paper`).
* ``scan_settings.json``: the settings the rows were computed with (``attrs["settings"]`` of
  :func:`scan`'s table).
* with controls (``ScanConfig(controls=("random-init:2",))``, :mod:`rsi_plugin.criteria.controls`):
  ``scan_controls.csv``, the untrained copies' rows (``control``, ``control_seed``, then the
  columns of ``scan.csv``); after their existing columns ``summary.csv`` gets the comparison
  with the copies (``controls, control_names, control_counts, control_mean, control_max,
  control_determined, control_passing, control_p, control_rank_p, control_verdict``) and
  ``scan_channels.csv`` gets ``controls_passing`` and ``passes_in_control``.

**Controls.** :func:`scan` with ``controls`` returns the trained model's rows exactly as
without them and carries the copies' rows in its ``attrs``
(:func:`rsi_plugin.criteria.controls.control_rows`); :func:`scan_controls` runs the copies
alone. Each copy runs this same scan (FZ settings, seeds, adaptive rule, cache, and ``S``
about the trained model's receptive-field centres).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Literal, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from rsi_plugin.core.channels import check_channels
from rsi_plugin.core.distributed import all_gather_object, barrier, broadcast_object, is_main, rank_and_world
from rsi_plugin.criteria.captum import ScaleInvariance
from rsi_plugin.criteria.controls import (
    CONTROL_SEED,
    Control,
    attach_control_rows,
    compare_to_controls,
    control_rows,
    mark_control_channels,
    parse_controls,
    plan_controls,
)
from rsi_plugin.criteria.equations import (
    TOLERANCE,
    add_fz_verdict,
    check_tolerance,
)
from rsi_plugin.core.evalmode import runs_in_eval_mode
from rsi_plugin.featureviz.optimize import FeatureVizConfig
from rsi_plugin.criteria.geometry import ZOOM_CENTERS, receptive_field_center, zoom_transform
from rsi_plugin.core.images import normalize
from rsi_plugin.core.modelinfo import model_info
from rsi_plugin.core.tensors import model_device
from rsi_plugin.criteria.natural import TopKImages, natural_images, top_k_images
from rsi_plugin.core.blocks import ResidualBlock, get_block, resolve_blocks
from rsi_plugin.core.runfolder import SCAN_TABLES, ScanFiles
from rsi_plugin.criteria.shards import (
    ROLES,
    RunProgress,
    Unit,
    chunks,
    join_results,
    plan_units,
    record_paths,
    render_share,
    render_unit,
    unit_size,
)
from rsi_plugin.criteria.seeds import ADAPTIVE_EQ1, ADAPTIVE_EQ2, adaptive_stop, block_parts, check_share, verdicts
from rsi_plugin.core.transforms import get_transform, transform_name
from rsi_plugin.errors import ConfigError, InputTypeError, RSIError, UnknownNameError
from rsi_plugin.paper import Variant, check_variant
from rsi_plugin.paper import resolve as resolve_variant
from rsi_plugin.core.wrapped import unwrap

__all__ = ["ScanConfig", "SOURCES", "scan", "scan_controls", "natural_data", "write_scan", "read_table", "SCAN_FILES",
           "SCAN_SETTING_KEYS", "scan_settings", "check_scan_folder"]

logger = logging.getLogger(__name__)

SOURCES: tuple[str, ...] = ("fz", "natural", "both")
#: the tables :func:`write_scan` writes (block ids in them are strings)
SCAN_FILES: tuple[str, ...] = SCAN_TABLES
NATURAL_REDUCE: tuple[str, ...] = ("top1", "mean")
#: what a scan's rows depend on (:func:`scan_settings`); scans merge into one folder only when
#: these are equal. Not among them: ``channels`` (a subset), the cache, ``force``, batch sizes,
#: ``unit_channels``.
SCAN_SETTING_KEYS: tuple[str, ...] = (
    "model", "weights", "variant", "node_variant", "source", "transform", "tolerance", "zoom_center", "seeds",
    "robust_share", "adaptive", "adaptive_eq1", "adaptive_eq2", "controls", "control_seed", "control_seeds",
    "top_k", "natural_reduce", "natural_samples", "seed", "featureviz")
#: FeatureVizConfig fields that do not change an FZ (the seed is in ``seeds``)
_FZ_NOT_SETTINGS = ("seed", "channels_per_batch")


@dataclass(frozen=True)
class ScanConfig:
    r"""How :func:`scan` runs. Defaults are the paper's text.

    Attributes:
        featureviz (FeatureVizConfig): how FZs are rendered (steps, image size, jitter,
            seed, ``paper_compat``...); the paper's settings by default.
        variant (str, optional): ``"text"`` or ``"code"``, the paper's text or its code
            (:func:`rsi_plugin.paper.resolve`): sets ``node_variant`` and the FZs'
            ``featureviz.variant`` (jitter schedule, ``paper_compat``) where they are not
            given. ``None`` (default): ``featureviz.variant`` (``"text"`` unless set).
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
        node_variant (str, optional): ``"text"`` or ``"code"`` (see
            :func:`rsi_plugin.criteria.equations.node_sites`); ``None``: the variant's.
        paper_compat (bool, optional): render Pre FZs as Lucent did in the paper (its
            reading of bn2 is Post, see :mod:`rsi_plugin.featureviz.optimize`). Sets
            ``featureviz.paper_compat`` (``True`` if either is); ``None``: the variant's.
        channels (sequence of int, optional): analyse only these channels of every block
            (a quick look); all by default.
        cache_dir (path, optional): FZ cache; ``None``: FZs are not cached.
        force (bool): recompute cached FZs.
        batch_size (int, optional): images per forward pass of the criteria and the
            natural-image search.
        seed (int): seed of the generated natural dataset.
        zoom_center (str): where a ``"scale"`` transform zooms: ``"rf"`` (default) about the
            receptive-field centre of the block's centre neuron, measured once per block
            (:func:`rsi_plugin.criteria.geometry.receptive_field_center`); ``"image"``: about the
            image centre, as the paper's ``S``. Recorded per row as ``zoom_center``.
        seeds (sequence of int, optional): FZ seeds; every channel's FZs are rendered and
            judged once per seed. ``None``: ``(featureviz.seed,)``.
        robust_share (float): a channel is ``robust`` when it passes in at least
            ``ceil(robust_share * seeds)`` of its seeds; 1 (default): every seed.
        adaptive (bool): after the first seed, render further seeds only for channels
            whose verdict is near a threshold (:func:`rsi_plugin.criteria.seeds.adaptive_stop`).
        adaptive_eq1 (float): the rule's threshold on Eq. 1's relative margin (0, 1].
        adaptive_eq2 (float): the rule's threshold on Eq. 2's log margin (> 0).
        controls (sequence of str): untrained copies of the model to scan the same way
            (:mod:`rsi_plugin.criteria.controls`): ``"random-init:K"`` (K copies
            re-initialised as the constructor does), ``"cascade:B"`` / ``"cascade:B:K"``
            (randomised from the top down to block ``B``). Empty (default): none.
        control_seed (int): seed of the first control copy; copy ``k`` (over all specs, in
            order) is initialised with ``control_seed + k``.
        control_seeds (int, optional): render the copies with the first ``control_seeds`` of
            ``seeds`` only (a cheaper control); the comparison then judges the trained model on
            those seeds too (:func:`rsi_plugin.criteria.controls.compare_to_controls`), so both
            sides meet the same rule. ``None`` (default): every seed.
        unit_channels (int, optional): channels per FZ unit, the piece of work a process of a
            sharded scan takes (:mod:`rsi_plugin.criteria.shards`); every scan renders in these
            units, so one process and K give the same bytes. ``None`` (default):
            :data:`~rsi_plugin.criteria.shards.UNIT_BATCHES` × ``featureviz.channels_per_batch``.
            Like ``channels_per_batch`` it changes an FZ only in the last bits (~1e-4) and is not
            among the scan's settings.
    """

    featureviz: FeatureVizConfig = field(default_factory=FeatureVizConfig)
    transform: str | Callable[[torch.Tensor], torch.Tensor] = "scale"
    tolerance: float = TOLERANCE
    source: Literal["fz", "natural", "both"] = "fz"
    top_k: int = 9
    natural_reduce: Literal["top1", "mean"] = "top1"
    natural_samples: int = 1000
    variant: Variant | None = None
    node_variant: Variant | None = None
    paper_compat: bool | None = None
    channels: Sequence[int] | None = None
    cache_dir: str | Path | None = None
    force: bool = False
    batch_size: int | None = 64
    seed: int = 0
    zoom_center: Literal["rf", "image"] = "rf"
    seeds: Sequence[int] | None = None
    robust_share: float = 1.0
    adaptive: bool = False
    adaptive_eq1: float = ADAPTIVE_EQ1
    adaptive_eq2: float = ADAPTIVE_EQ2
    controls: Sequence[str] = ()
    control_seed: int = CONTROL_SEED
    control_seeds: int | None = None
    unit_channels: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.featureviz, FeatureVizConfig):
            raise InputTypeError(f"featureviz must be a FeatureVizConfig, got {type(self.featureviz).__name__}")
        get_transform(self.transform)
        check_tolerance(self.tolerance)
        if self.source not in SOURCES:
            raise UnknownNameError(f"unknown source {self.source!r}; valid: {', '.join(SOURCES)}")
        if self.natural_reduce not in NATURAL_REDUCE:
            raise UnknownNameError(f"unknown natural_reduce {self.natural_reduce!r}; valid: {', '.join(NATURAL_REDUCE)}")
        if self.zoom_center not in ZOOM_CENTERS:
            raise UnknownNameError(f"unknown zoom_center {self.zoom_center!r}; valid: {', '.join(ZOOM_CENTERS)}")
        if self.variant is not None:
            check_variant(self.variant)
        if self.node_variant is not None:
            check_variant(self.node_variant, "node_variant")
        if self.paper_compat is not None and not isinstance(self.paper_compat, (bool, np.bool_)):
            raise InputTypeError(f"paper_compat must be True, False or None, got {self.paper_compat!r}")
        for name, low in (("top_k", 1), ("natural_samples", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")
        unit_size(self.featureviz, self.unit_channels)
        if self.batch_size is not None and (not isinstance(self.batch_size, int) or self.batch_size < 1):
            raise ConfigError(f"batch_size must be a positive integer or None, got {self.batch_size!r}")
        if self.channels is not None:
            object.__setattr__(self, "channels", tuple(check_channels(self.channels)))
        seeds = (self.featureviz.seed,) if self.seeds is None else self.seeds
        if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Iterable):
            raise InputTypeError(f"seeds must be a sequence of integers, got {seeds!r}")
        seeds = tuple(seeds)
        if not seeds:
            raise ConfigError("seeds is empty; give at least one seed, e.g. seeds=(0, 1, 2)")
        for value in seeds:
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise ConfigError(f"seeds must be integers >= 0, got {value!r} in {seeds!r}")
        if len(set(seeds)) != len(seeds):
            raise ConfigError(f"seeds has duplicates: {seeds!r}")
        object.__setattr__(self, "seeds", tuple(int(v) for v in seeds))
        check_share(self.robust_share)
        if not 0 < self.adaptive_eq1 <= 1:
            raise ConfigError(f"adaptive_eq1 must be in (0, 1], got {self.adaptive_eq1!r}")
        if not self.adaptive_eq2 > 0:
            raise ConfigError(f"adaptive_eq2 must be > 0, got {self.adaptive_eq2!r}")
        object.__setattr__(self, "controls", tuple(str(spec) for spec in parse_controls(self.controls)))
        plan_controls(self.controls, self.control_seed)  # checks the seed
        if self.control_seeds is not None and (isinstance(self.control_seeds, bool) or not isinstance(
                self.control_seeds, (int, np.integer)) or not 1 <= self.control_seeds <= len(self.seeds)):
            raise ConfigError(f"control_seeds must be None or an integer from 1 to the number of seeds "
                              f"({len(self.seeds)}), got {self.control_seeds!r}")

    @property
    def is_resolved(self) -> bool:
        """Every text/code switch is settled (:meth:`resolved` returns the config itself)."""
        fz = self.featureviz
        return (self.variant is not None and self.node_variant is not None and self.paper_compat is not None
                and fz.variant == self.variant and fz.jitter_schedule is not None
                and fz.paper_compat is not None and fz.paper_compat == self.paper_compat)

    def resolved(self) -> "ScanConfig":
        """This config with every text/code switch settled, once (``__post_init__`` only
        validates; :func:`scan` calls this first and passes the result down): ``variant``
        (from ``featureviz.variant`` when ``None``) also set on ``featureviz``; an explicit
        ``paper_compat`` on either level holds for both (True if either is); then
        ``node_variant`` and the FZs' ``jitter_schedule`` and ``paper_compat`` from the variant
        (:func:`rsi_plugin.paper.resolve`) where they are ``None``. A resolved config is
        returned as it is."""
        if self.is_resolved:
            return self
        variant = self.variant if self.variant is not None else self.featureviz.variant
        featureviz = self.featureviz
        given = [v for v in (self.paper_compat, featureviz.paper_compat) if v is not None]
        if given:
            featureviz = dataclasses.replace(featureviz, paper_compat=bool(any(given)))
        choices = resolve_variant(variant)
        schedule = featureviz.jitter_schedule if featureviz.jitter_schedule is not None else choices.jitter_schedule
        compat = featureviz.paper_compat if featureviz.paper_compat is not None else choices.fz_paper_compat
        featureviz = dataclasses.replace(featureviz, variant=variant, jitter_schedule=schedule,
                                         paper_compat=bool(compat))
        return dataclasses.replace(
            self, variant=variant, featureviz=featureviz, paper_compat=featureviz.paper_compat,
            node_variant=self.node_variant if self.node_variant is not None else choices.node_variant)


def natural_data(model: nn.Module, n: int = 1000, seed: int = 0) -> torch.Tensor:
    r"""The default natural images of the bundled ``"tiny"`` model: ``n`` procedural
    shapes images, normalised for the model (:func:`rsi_plugin.criteria.natural.natural_images`
    with ``data=None``).

    Args:
        model (nn.Module): the ``"tiny"`` model (its ``rsi_info`` gives size and statistics).
        n (int): number of images.
        seed (int): seed of the images.

    Returns:
        Tensor ``[n, 3, S, S]``, model-ready.

    Raises:
        ValueError: for a model that is not the bundled ``"tiny"``.
    """
    return natural_images(model, None, n, seed)


def _channels(block: ResidualBlock, wanted: Sequence[int] | None) -> list[int]:
    return check_channels(wanted, block.channels, where=f"block {block.name}")


def _zooms_about_rf(config: ScanConfig) -> bool:
    family = config.transform.partition(":")[0] if isinstance(config.transform, str) else ""
    return config.zoom_center == "rf" and family == "scale"


def _block_transform(model: nn.Module, block: ResidualBlock, config: ScanConfig,
                     center: tuple[float, float] | None = None) -> tuple[Any, str]:
    """The transform of Eq. (1) for a block (``S`` about the zoom centre) and how it is recorded;
    ``center``: the receptive-field centre to use instead of measuring it on ``model``."""
    if not _zooms_about_rf(config):
        return config.transform, "image"
    value = config.transform.partition(":")[2]
    if center is None:
        center = receptive_field_center(model, block, "pre", image_size=config.featureviz.image_size)
    return zoom_transform(float(value) if value else 2.0, center, config.transform), f"{center[0]:.2f},{center[1]:.2f}"


@dataclass(frozen=True)
class BlockPlan:
    """What a scan settles once per block, for every seed: the block, its criteria (with the
    node sites of the config's ``node_variant``), the transform of Eq. (1) (``S`` about the
    zoom centre) and how the centre is recorded.

    Attributes:
        block (ResidualBlock): the block.
        criteria (ScaleInvariance): Eq. (1) and (2) of the block (``criteria.sites``: the nodes).
        transform: the transform of Eq. (1).
        zoom (str): ``"image"`` or the receptive-field centre ``"y,x"``.
    """

    block: ResidualBlock
    criteria: ScaleInvariance
    transform: Any
    zoom: str

    @property
    def sites(self) -> dict[str, tuple[str, str]]:
        """The node sites (:func:`rsi_plugin.criteria.equations.node_sites`)."""
        return self.criteria.sites


def plan_block(model: nn.Module, block: ResidualBlock, config: ScanConfig,
               center: tuple[float, float] | None = None) -> BlockPlan:
    """The :class:`BlockPlan` of a block under a resolved config (``center``: the zoom centre to
    use instead of measuring it on ``model``, as the control copies do)."""
    transform, zoom = _block_transform(model, block, config, center)
    return BlockPlan(block, ScaleInvariance(model, block, node_variant=config.node_variant), transform, zoom)


def _fz_table(model: nn.Module, plan: BlockPlan, channels: list[int], config: ScanConfig,
              progress: bool, seed: int | None = None,
              tracker: RunProgress | None = None, force: bool | None = None,
              rendered: set[tuple[str, str, int]] | None = None) -> pd.DataFrame:
    """The FZ rows of a block for one seed, rendered unit by unit (:mod:`rsi_plugin.criteria.shards`);
    ``rendered``: (block, role, channel) rendered by the other ranks in this run; ``force``:
    ``config.force`` unless given (False once the sharded pass has rendered everything)."""
    block = plan.block
    device = model_device(model)
    seed = config.featureviz.seed if seed is None else seed
    size = unit_size(config.featureviz, config.unit_channels)
    force = config.force if force is None else force
    renders = {}
    for role in ROLES:
        parts = [render_unit(model, block, Unit(block.name, role, seed, tuple(part)), config.featureviz,
                             config.node_variant, config.cache_dir, force,
                             progress=progress and tracker is None,
                             callback=None if tracker is None else tracker.callback)
                 for part in chunks(channels, size)]
        if tracker is not None:
            tracker.poll()
        renders[role] = join_results(parts)
    x_in = normalize(renders["in"].images.to(device), model)
    x_pre = normalize(renders["pre"].images.to(device), model)
    zoom = plan.zoom
    result = plan.criteria.evaluate((x_in, x_pre), channels=channels, transform=plan.transform,
                                    tolerance=config.tolerance, batch_size=config.batch_size)
    table = add_fz_verdict(result.table(), renders["in"].status, renders["pre"].status)
    table["in_steps_used"] = renders["in"].steps_used
    table["pre_steps_used"] = renders["pre"].steps_used
    table["zoom_center"] = zoom
    table.insert(0, "source", "fz")
    table["in_fz_act"] = renders["in"].activations.numpy()
    table["pre_fz_act"] = renders["pre"].activations.numpy()
    table["in_fz_path"] = [str(p) if p is not None else None for p in renders["in"].paths]
    table["pre_fz_path"] = [str(p) if p is not None else None for p in renders["pre"].paths]
    here = set(renders["in"].computed) | set(renders["pre"].computed)
    others = {c for b, _, c in (rendered or ()) if b == block.name}
    table["fz_computed"] = [c in here or c in others for c in channels]
    if tracker is not None:
        tracker.add_steps(int(table["in_steps_used"].sum() + table["pre_steps_used"].sum()))
    return table


def _natural_table(model: nn.Module, plan: BlockPlan, channels: list[int], top: TopKImages,
                   config: ScanConfig, chunk: int = 32) -> pd.DataFrame:
    sites = plan.sites
    device = model_device(model)
    k = 1 if config.natural_reduce == "top1" else top.k
    si, transform, zoom = plan.criteria, plan.transform, plan.zoom
    parts = []
    for start in range(0, len(channels), chunk):
        some = channels[start:start + chunk]
        x_in = top.images(sites["in"], some, k).to(device)
        x_pre = top.images(sites["pre"], some, k).to(device)
        result = si.evaluate((x_in, x_pre), channels=some, transform=transform, tolerance=config.tolerance,
                             batch_size=config.batch_size)
        parts.append(result.table())
    table = pd.concat(parts, ignore_index=True)
    table["zoom_center"] = zoom
    table.insert(0, "source", "natural")
    index = torch.tensor(channels)
    table["in_top_act"] = top.values[sites["in"]][index, :k].mean(1).numpy()
    table["pre_top_act"] = top.values[sites["pre"]][index, :k].mean(1).numpy()
    table["in_top_index"] = top.indices[sites["in"]][index, 0].numpy()
    table["pre_top_index"] = top.indices[sites["pre"]][index, 0].numpy()
    return table


def _with_verdicts(table: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Add (when the criteria did not) ``verdict``, then ``seed``, ``layer``, ``index`` at the
    end; ``passes`` holds only for a ``"pass"`` verdict."""
    if "verdict" not in table.columns:
        table["verdict"] = verdicts(table)
    table["passes"] = table["passes"].astype(bool) & (table["verdict"] == "pass")
    table["seed"] = seed
    layer, index = block_parts(table["block"])
    table["layer"] = pd.array(layer, dtype="Int64")
    table["index"] = pd.array(index, dtype="Int64")
    return table


def _log_block(part: pd.DataFrame, block: str, seed: int) -> None:
    passing = int((part["verdict"] == "pass").sum())
    undetermined = int((part["verdict"] == "undetermined").sum())
    logger.info("block %s (%s, seed %d): %d of %d channels pass (%.1f%%), %d undetermined", block,
                part["source"].iloc[0], seed, passing, len(part), 100.0 * passing / len(part), undetermined)


@runs_in_eval_mode
def scan(
    model: nn.Module,
    blocks: str | Sequence[str] | None = "all",
    config: ScanConfig | None = None,
    data: torch.Tensor | Iterable[Any] | None = None,
    progress: bool = True,
    on_seed: Callable[[int, pd.DataFrame], None] | None = None,
) -> pd.DataFrame:
    r"""The scale-invariance criteria for every channel of the chosen blocks (the paper's §3),
    once per FZ seed.

    Args:
        model (nn.Module): a model with residual blocks. It runs in eval mode (BatchNorm
            with its running statistics, which stay unchanged); a model in train mode is
            put back in train mode afterwards.
        blocks (str or list of str): block names (``"2.1"``) or ``"all"``.
        config (ScanConfig, optional): the paper's settings by default (one seed).
        data (Tensor, iterable or path, optional): for ``source="natural"``/``"both"``:
            model-ready images ``[N, 3, H, W]``, an iterable of ``(images, labels)``
            batches (normalised), or an ImageNet-layout folder
            (:func:`rsi_plugin.criteria.natural.natural_images`: centre crop, normalised);
            for the ``"tiny"`` model its generated set when not given.
        progress (bool): one bar for the whole run (:class:`~rsi_plugin.criteria.shards.RunProgress`:
            FZ records done of those planned, seeds and control copies included, with an ETA
            and the channel-steps); only on rank 0 under a process group.
        on_seed (callable, optional): ``on_seed(seed, rows_so_far)`` after each seed (the
            CLI writes its files there, so a killed run keeps its finished seeds); under a
            process group only on rank 0, the process that writes.

    Returns:
        DataFrame, one row per (source, seed, block, channel): ``source`` then the
        columns of :meth:`~rsi_plugin.criteria.captum.CriteriaResult.table` (``block, channel, pre_in, pre_scaled,
        post_in, post_pre, ratio, eq1, eq2, passes, ...``); for FZ rows ``in_fz_act, pre_fz_act``
        (the activations the FZs achieved, as the renderer measured them),
        ``in_fz_path, pre_fz_path`` (the cached PNGs, ``None`` without a cache) and
        ``fz_computed`` (whether this run rendered the channel's FZs, in any process of a
        sharded run), ``in_status``,
        ``pre_status``, ``post_status``, ``verdict`` (``"undetermined"`` when an FZ is not
        ``"ok"``; then ``passes`` is False; see :func:`rsi_plugin.criteria.equations.add_fz_verdict`),
        ``in_steps_used``, ``pre_steps_used``; for every row ``zoom_center``; for natural rows
        ``in_top_act, pre_top_act`` (the top activations, averaged over the images used)
        and ``in_top_index, pre_top_index`` (the data position of the top image) and
        ``verdict`` (``"pass"`` or ``"fail"`` as ``passes``); then for every row ``seed``,
        ``layer``, ``index`` (the integer parts of the block id ``"L.I"``) and, with ``adaptive=True``, ``adaptive_stop`` (the channel got no
        seed after the first).
        ``attrs`` holds ``model``, ``weights``, ``variant``, ``node_variant``, ``transform``,
        ``seeds``, ``robust_share``, ``adaptive``. Per-channel and per-block summaries:
        :func:`rsi_plugin.criteria.seeds.channel_table` and :func:`rsi_plugin.criteria.seeds.block_summary`.

        With ``config.controls`` the rows are still the trained model's only (the same as
        without controls); after them the same scan runs on each untrained copy
        (:func:`scan_controls`), whose rows the table carries in its ``attrs``:
        :func:`rsi_plugin.criteria.controls.control_rows` reads them back, and
        ``attrs["controls"]`` describes the copies. :func:`write_scan` writes them and the
        comparison (:func:`rsi_plugin.criteria.controls.compare_to_controls`).

    Raises:
        ValueError: unknown block (also a cascade control's block); ``source="natural"``
            without data for a model other than ``"tiny"``. IndexError: a channel of
            ``config.channels`` out of range.
    """
    config = (config or ScanConfig()).resolved()
    module = unwrap(model)
    chosen = resolve_blocks(module, blocks)
    controls = _check_controls(module, config, data)
    settings = scan_settings(module, config)

    def seed_done(seed: int, rows: pd.DataFrame) -> None:  # the settings of the whole scan, controls included
        rows.attrs["settings"] = settings
        on_seed(seed, rows)

    main = is_main()  # under torchrun: rank 0 alone shows the bar and writes (on_seed)
    progress = progress and main
    with _run_progress(module, chosen, config, controls, progress) as tracker:
        table = _scan(module, chosen, dataclasses.replace(config, controls=()), data, progress,
                      None if on_seed is None or not main else seed_done, tracker=tracker)
        if controls:
            attach_control_rows(table, _scan_controls(module, chosen, config, controls, data, progress, tracker))
    table.attrs["settings"] = settings
    return table


def scan_settings(model: nn.Module, config: ScanConfig) -> dict[str, Any]:
    r"""What a scan's rows depend on, as JSON values (:data:`SCAN_SETTING_KEYS`): the model and
    its weights and the resolved config, ``featureviz`` as a dict without its seed and batch
    size; the natural-image settings only for ``source`` ``"natural"``/``"both"``, the adaptive
    thresholds only with ``adaptive``, the control seeds only with controls.

    Args:
        model (nn.Module): the scanned model.
        config (ScanConfig): its config.

    Returns:
        dict; :func:`scan` puts it in ``attrs["settings"]`` and :func:`write_scan` writes it
        to ``scan_settings.json``.
    """
    import json

    config = config.resolved()
    info = model_info(model)
    featureviz = {k: v for k, v in dataclasses.asdict(config.featureviz).items() if k not in _FZ_NOT_SETTINGS}
    values: dict[str, Any] = {
        "model": info.name, "weights": str(info.weights), "variant": config.variant,
        "node_variant": config.node_variant, "source": config.source, "transform": transform_name(config.transform),
        "tolerance": float(config.tolerance), "zoom_center": config.zoom_center, "seeds": list(config.seeds),
        "robust_share": float(config.robust_share), "adaptive": bool(config.adaptive),
        "controls": list(config.controls), "featureviz": featureviz}
    if config.adaptive:
        values.update(adaptive_eq1=float(config.adaptive_eq1), adaptive_eq2=float(config.adaptive_eq2))
    if config.controls:
        values.update(control_seed=int(config.control_seed), control_seeds=config.control_seeds)
    if config.source != "fz":
        values.update(top_k=config.top_k, natural_reduce=config.natural_reduce,
                      natural_samples=config.natural_samples, seed=config.seed)
    ordered = {k: values[k] for k in SCAN_SETTING_KEYS if k in values}
    return json.loads(json.dumps(ordered, default=str))  # tuples as lists: equal to what the file reads back


def _check_controls(module: nn.Module, config: ScanConfig, data: Any) -> list[Control]:
    """The planned control copies, checked before any work: cascade blocks exist, and data
    that the copies can read again."""
    from rsi_plugin.core.randomize import randomized_modules

    controls = plan_controls(config.controls, config.control_seed)
    for control in controls:
        if control.cascade_to is not None:
            randomized_modules(module, control.cascade_to)  # an unknown block lists the valid ones
    one_pass = hasattr(data, "__next__")  # an iterator: the trained scan would use it up
    if controls and config.source != "fz" and one_pass:
        raise InputTypeError("the control copies search the same natural images again: pass a tensor, a folder "
                             "or a re-iterable (a DataLoader), not a one-pass iterator")
    return controls


def _check_sharded(config: ScanConfig, world: int) -> None:
    """What a scan shared among ``world`` processes needs: one cache, one thread count."""
    if config.cache_dir is None:
        raise ConfigError(f"a scan run by {world} processes (torchrun) shares its FZs through the cache: set "
                          f"ScanConfig(cache_dir=...) to a folder every process can write (rsi scan uses OUT/fz)")
    threads = all_gather_object(int(torch.get_num_threads()))
    if len(set(threads)) > 1:
        raise ConfigError(f"the processes of a sharded scan run with different torch thread counts {threads} (per "
                          f"rank), which are part of the FZ cache key: give every process the same --threads")


def _scan(module: nn.Module, chosen: list[ResidualBlock], config: ScanConfig, data: Any, progress: bool,
          on_seed: Callable[[int, pd.DataFrame], None] | None,
          centers: dict[str, tuple[float, float]] | None = None,
          tracker: RunProgress | None = None) -> pd.DataFrame:
    """:func:`scan` of one model (no controls); ``centers``: the zoom centre of each block
    to use instead of measuring it on ``module``; ``tracker``: the whole run's bar (then no
    other bar). Under a process group of several processes each seed's FZ units are first
    rendered by their ranks into the cache (:mod:`rsi_plugin.criteria.shards`)."""
    centers = centers or {}
    block_plans = {b.name: plan_block(module, b, config, centers.get(b.name)) for b in chosen}  # once per block
    channels_of = {b.name: _channels(b, config.channels) for b in chosen}
    by_name = {b.name: b for b in chosen}
    fz = config.source in ("fz", "both")
    rank, world = rank_and_world()
    sharded = fz and world > 1
    if sharded:
        _check_sharded(config, world)
    size = unit_size(config.featureviz, config.unit_channels)
    bars = progress and tracker is None
    tables: list[pd.DataFrame] = []
    top = None
    if config.source in ("natural", "both"):
        data = natural_images(module, data, config.natural_samples, config.seed, config.batch_size or 64)
        keys = [site for b in chosen for role, site in block_plans[b.name].sites.items() if role in ("in", "pre")]
        top = top_k_images(module, data, keys, k=config.top_k, batch_size=config.batch_size, progress=bars)
    remaining = dict(channels_of)
    seeds = config.seeds
    for number, seed in enumerate(tqdm(seeds, disable=not bars or len(seeds) < 2, desc="seeds", unit="seed")):
        units = plan_units({name: wanted for name, wanted in remaining.items() if wanted}, seed, size) if fz else []
        if tracker is not None and fz:
            paths = None
            if config.cache_dir is not None and not config.force:
                paths = record_paths(module, by_name, units, config.featureviz, config.node_variant, config.cache_dir)
            tracker.start_phase(sum(len(u.channels) for u in units), paths)
        rendered = None
        if sharded:  # this rank's units into the cache, then every rank reads them all
            mine = render_share(module, by_name, units, config.featureviz, config.node_variant, config.cache_dir,
                                rank, world, force=config.force,
                                callback=None if tracker is None else tracker.callback)
            barrier()
            rendered = set().union(*all_gather_object(mine))
        for block in tqdm(chosen, disable=not bars or len(chosen) < 2, desc=f"scan (seed {seed})",
                          unit="block"):
            if fz and remaining[block.name]:
                part = _with_verdicts(_fz_table(module, block_plans[block.name], remaining[block.name], config, bars,
                                                seed, tracker=tracker,
                                                force=False if sharded else None, rendered=rendered), seed)
                if config.adaptive:
                    if number == 0:
                        stop = adaptive_stop(part, config.adaptive_eq1, config.adaptive_eq2)
                        part["adaptive_stop"] = stop.to_numpy()
                        remaining[block.name] = [c for c, s in zip(part["channel"], stop) if not s]
                        logger.info("block %s: the adaptive rule stops %d of %d channels after seed %d",
                                    block.name, int(stop.sum()), len(part), seed)
                    else:
                        part["adaptive_stop"] = False
                tables.append(part)
                _log_block(part, block.name, seed)
            if top is not None and number == 0:
                part = _with_verdicts(_natural_table(module, block_plans[block.name], channels_of[block.name], top, config),
                                      seed)
                tables.append(part)
                _log_block(part, block.name, seed)
        if sharded and config.adaptive and number == 0:  # one plan for every rank: rank 0's
            remaining = broadcast_object(remaining)
        if tracker is not None and fz:
            tracker.end_phase()
            if config.adaptive and number == 0:
                stopped = sum(len(channels_of[name]) - len(remaining[name]) for name in channels_of)
                tracker.shrink(stopped * len(ROLES) * (len(seeds) - 1))
        if on_seed is not None:
            on_seed(seed, _finish(tables, module, config))
    return _finish(tables, module, config)


def _planned_records(module: nn.Module, chosen: list[ResidualBlock], config: ScanConfig,
                     controls: Sequence[Control]) -> int:
    """The FZ records a scan plans (an upper bound with ``adaptive``), control copies included."""
    if config.source not in ("fz", "both"):
        return 0
    per_seed = {b.name: len(_channels(b, config.channels)) * len(ROLES) for b in chosen}
    total = sum(per_seed.values()) * len(config.seeds)
    copy_seeds = len(config.seeds) if config.control_seeds is None else int(config.control_seeds)
    for control in controls:
        lowest = -1 if control.cascade_to is None else get_block(module, control.cascade_to).index
        total += sum(per_seed[b.name] for b in chosen if b.index >= lowest) * copy_seeds
    return total


def _scan_controls(module: nn.Module, chosen: list[ResidualBlock], config: ScanConfig, controls: list[Control],
                   data: Any, progress: bool, tracker: RunProgress | None = None) -> pd.DataFrame:
    """The scan of every control copy: the trained model's zoom centres, the same config."""
    from rsi_plugin.core.randomize import init_rule

    same = dataclasses.replace(config, controls=())
    if config.control_seeds is not None:
        same = dataclasses.replace(same, seeds=config.seeds[:config.control_seeds])
    centers = {}
    if _zooms_about_rf(same):  # S about the trained model's centres: the copies see the same transform
        centers = {b.name: receptive_field_center(module, b, "pre", image_size=same.featureviz.image_size)
                   for b in chosen}
    parts, described = [], []
    rule = init_rule(module)
    for control in controls:
        blocks = chosen
        if control.cascade_to is not None:
            lowest = get_block(module, control.cascade_to).index
            blocks = [b for b in chosen if b.index >= lowest]
        copy = control.build(module)
        described.append({**control.as_dict(), "weights": copy.rsi_info.weights, "init": rule,
                          "blocks": [b.name for b in blocks]})
        if not blocks:
            logger.warning("control %s: no scanned block is at or above block %s; nothing to scan",
                           control.name, control.cascade_to)
            continue
        logger.info("control %s (%s): scanning blocks %s", control.name, copy.rsi_info.weights,
                    " ".join(b.name for b in blocks))
        rows = _scan(copy, [get_block(copy, b.name) for b in blocks], same, data, progress, None, centers, tracker)
        rows.insert(0, "control", control.name)
        rows.insert(1, "control_seed", control.seed)
        parts.append(rows)
        del copy
    table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["control", "control_seed"])
    info = model_info(module)
    table.attrs.update({"model": info.name, "weights": info.weights, "controls": described,
                        "seeds": list(same.seeds), "robust_share": config.robust_share})
    return table


@runs_in_eval_mode
def scan_controls(
    model: nn.Module,
    blocks: str | Sequence[str] | None = "all",
    config: ScanConfig | None = None,
    data: torch.Tensor | Iterable[Any] | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    r"""The scan of the untrained copies of ``model`` that ``config.controls`` names
    (:mod:`rsi_plugin.criteria.controls`), without the trained model's own scan.

    Each copy (:func:`rsi_plugin.core.randomize.randomized_copy`, seed ``control_seed + k``)
    runs exactly :func:`scan` with the same config: FZ settings, seeds, adaptive rule,
    cache (the copy's fingerprint keeps its FZs apart) and zoom centre (``S`` about the
    receptive-field centres measured on the trained model, so the transform is the same). A
    cascade copy scans only the chosen blocks at or above its block.

    Args:
        model (nn.Module): the trained model (unchanged).
        blocks (str or list of str): as :func:`scan`.
        config (ScanConfig): with ``controls`` (e.g. ``controls=("random-init:2",)``).
        data: natural images, as :func:`scan` (not a one-pass iterator).
        progress (bool): tqdm bars.

    Returns:
        DataFrame, the long table of the copies: ``control`` (``"random-init@1000"``),
        ``control_seed``, then the columns of :func:`scan`. ``attrs["controls"]``: per copy
        ``name, kind, seed, cascade_to, weights, init, blocks``.

    Raises:
        ConfigError: ``config.controls`` is empty. ValueError: as :func:`scan`.
    """
    config = (config or ScanConfig()).resolved()
    if not config.controls:
        raise ConfigError("config.controls is empty; give e.g. ScanConfig(controls=('random-init:2',)) "
                          "or ('cascade:2.1',)")
    module = unwrap(model)
    chosen = resolve_blocks(module, blocks)
    controls = _check_controls(module, config, data)
    progress = progress and is_main()
    with _run_progress(module, chosen, config, controls, progress, trained=False) as tracker:
        return _scan_controls(module, chosen, config, controls, data, progress, tracker)


class _NoProgress:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc) -> None:
        return None


def _run_progress(module: nn.Module, chosen: list[ResidualBlock], config: ScanConfig, controls: Sequence[Control],
                  progress: bool, trained: bool = True) -> Any:
    """The whole run's bar (a context manager giving a :class:`RunProgress`, or ``None`` when
    there is no bar or no FZ to render)."""
    total = _planned_records(module, chosen, config, controls)
    if trained is False:
        total -= _planned_records(module, chosen, config, ())
    if not progress or total <= 0:
        return _NoProgress()
    return RunProgress(total)


def _finish(tables: list[pd.DataFrame], module: nn.Module, config: ScanConfig) -> pd.DataFrame:
    table = pd.concat(tables, ignore_index=True)
    if "adaptive_stop" in table.columns:
        table["adaptive_stop"] = table["adaptive_stop"].fillna(False).astype(bool)
    info = model_info(module)
    table.attrs.update({"model": info.name, "weights": info.weights, "variant": config.variant,
                        "node_variant": config.node_variant,
                        "transform": transform_name(config.transform), "seeds": list(config.seeds),
                        "robust_share": config.robust_share, "adaptive": config.adaptive})
    return table


def read_table(path: str | Path) -> pd.DataFrame:
    r"""Read one of the scan's CSV tables (:data:`SCAN_FILES`) with block ids as strings.

    Args:
        path (str or Path): ``scan.csv``, ``scan_channels.csv``, ``summary.csv`` or
            ``paper_comparison.csv``.

    Returns:
        DataFrame; ``block`` is str (``"3.10"`` stays ``"3.10"``).
    """
    return pd.read_csv(path, dtype={"block": str})


WRITE_MODES: tuple[str, ...] = ("merge", "replace")


def write_scan(table: pd.DataFrame, out_dir: str | Path, share: float | None = None,
               controls: pd.DataFrame | None = None, existing: str = "merge") -> list[Path]:
    r"""Write a scan's files atomically (see the module docstring): ``scan.csv`` (and
    ``scan.parquet`` when pyarrow is installed), ``scan_channels.csv``, ``summary.csv``,
    ``scan_settings.json`` and, for resnet18, ``paper_comparison.csv``.

    With control rows (``controls``, or those ``table`` carries from a scan with
    ``ScanConfig(controls=...)``) also ``scan_controls.csv`` (the copies' rows), and after
    the existing columns ``summary.csv`` gets the comparison's ``control_*`` columns
    (:func:`rsi_plugin.criteria.controls.compare_to_controls`) and ``scan_channels.csv``
    ``controls_passing`` and ``passes_in_control``
    (:func:`rsi_plugin.criteria.controls.mark_control_channels`).

    **A folder that already holds a scan** (``existing="merge"``, the default): the rows of
    the blocks in ``table`` replace that folder's rows of those blocks, the rows of its other
    blocks are kept (``scan.csv`` and ``scan_controls.csv``), and ``scan_channels.csv``,
    ``summary.csv`` and ``paper_comparison.csv`` are recomputed from the merged rows, so
    ``rsi scan --blocks 1.0`` then ``rsi scan --blocks 1.1`` into one ``--out`` holds both
    blocks. Kept rows must come from the same settings (``scan_settings.json`` against
    ``table.attrs["settings"]``, :func:`scan_settings`); otherwise nothing is written.
    ``existing="replace"``: the folder's tables become ``table``'s alone.

    Args:
        table (DataFrame): what :func:`scan` returned.
        out_dir (str or Path): the folder (created).
        share (float, optional): the robust share; ``table.attrs["robust_share"]`` or 1.
        controls (DataFrame, optional): the control copies' rows (:func:`scan_controls`);
            default: :func:`rsi_plugin.criteria.controls.control_rows` of ``table``.
        existing (str): ``"merge"`` (default) or ``"replace"``: what happens to the rows of
            other blocks that the folder holds.

    Returns:
        list of the paths written.

    Raises:
        ConfigError: the folder holds rows of other blocks scanned with other settings (the
            message names each setting that differs), or records no settings to compare.
    """
    import importlib.util

    from rsi_plugin.core.atomic import atomic_write, atomic_write_csv, atomic_write_json
    from rsi_plugin.criteria.paper_comparison import compare_to_paper
    from rsi_plugin.criteria.seeds import block_summary, channel_table

    if existing not in WRITE_MODES:
        raise UnknownNameError(f"unknown existing={existing!r}; valid: {', '.join(WRITE_MODES)}")
    files = ScanFiles(Path(out_dir))
    files.dir.mkdir(parents=True, exist_ok=True)
    share = float(table.attrs.get("robust_share", 1.0)) if share is None else share
    if controls is None:
        controls = control_rows(table)
    settings = table.attrs.get("settings")
    if existing == "merge":
        table, controls = _merge_existing(files, table, controls, settings)

    written = [atomic_write_csv(files.table, table)]
    if importlib.util.find_spec("pyarrow") is not None:
        written.append(atomic_write(files.parquet, lambda tmp: table.to_parquet(tmp, index=False)))
    channels = channel_table(table, share)
    summary = block_summary(table, share)
    if controls is not None:
        channels = mark_control_channels(channels, controls, share)
        # the trained side as compared (on the copies' seeds: ScanConfig.control_seeds), named so
        # that it cannot be read as the robust count over every seed
        comparison = compare_to_controls(table, controls, share).rename(
            columns={"trained": "control_trained", "determined": "control_trained_determined"})
        if "seed" in controls.columns:
            comparison["control_compared_seeds"] = " ".join(str(int(v)) for v in sorted(controls["seed"].unique()))
        keys = [k for k in ("source", "transform", "block") if k in summary.columns]
        added = [c for c in comparison.columns if c.startswith("control")]
        summary = summary.merge(comparison[keys + added], on=keys, how="left", validate="one_to_one")
    written.append(atomic_write_csv(files.channels, channels))
    written.append(atomic_write_csv(files.summary, summary))
    if controls is not None:
        written.append(atomic_write_csv(files.controls, controls))
    elif files.controls.exists():  # left by an earlier scan with controls: it would not match these tables
        files.controls.unlink()
        logger.info("removed %s (an earlier scan's control rows; this scan has none)", files.controls)
    if settings is not None:
        written.append(atomic_write_json(files.settings, settings))
    elif files.settings.exists():  # an earlier scan's settings: they would not describe these rows
        files.settings.unlink()
    if table.attrs.get("model") == "resnet18":
        written.append(atomic_write_csv(files.comparison, compare_to_paper(table, share=share)))
    return written


def _flat(settings: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def check_scan_folder(out_dir: str | Path, model: nn.Module, blocks: str | Sequence[str] | None,
                      config: ScanConfig | None = None) -> None:
    r"""Check, before any work, that a scan of ``blocks`` with ``config`` can be written into
    ``out_dir`` by :func:`write_scan` (merged): the folder holds no scan, or only rows of
    these blocks, or rows of other blocks scanned with the same settings.

    Args:
        out_dir (str or Path): the scan folder.
        model (nn.Module): the model to scan.
        blocks (str or list of str): as :func:`scan`.
        config (ScanConfig, optional): as :func:`scan`.

    Raises:
        ConfigError: as :func:`write_scan` would (the settings that differ, named).
    """
    config = (config or ScanConfig()).resolved()
    module = unwrap(model)
    scanned = {b.name for b in resolve_blocks(module, blocks)}
    _kept_rows(ScanFiles(Path(out_dir)), scanned, scan_settings(module, config))


def _kept_rows(files: ScanFiles, scanned: set[str], settings: dict[str, Any] | None) -> pd.DataFrame | None:
    """The folder's rows of blocks other than ``scanned`` (``None`` when there are none),
    checked to come from ``settings``."""
    import json

    if not files.table.is_file():
        return None
    old = read_table(files.table)
    if "block" not in old.columns:
        return None
    kept = old[~old["block"].astype(str).isin(scanned)]
    if kept.empty:
        return None
    names = " ".join(dict.fromkeys(kept["block"].astype(str)))
    how = (f"rescan those blocks with these settings too, write to another folder (--out), or "
           f"delete {files.table.name} there (write_scan(..., existing='replace') replaces it)")
    recorded = None
    if files.settings.is_file():
        try:
            recorded = json.loads(files.settings.read_text())
        except (OSError, ValueError):
            recorded = None
    if recorded is None or settings is None:
        which = f"{files.settings} is missing or unreadable" if recorded is None else \
            "the new table records none (it does not come from scan())"
        raise ConfigError(f"{files.dir} already holds a scan of blocks {names}, and its settings cannot be "
                          f"compared ({which}): merging might mix settings; {how}")
    mine, theirs = _flat(json.loads(json.dumps(settings, default=str))), _flat(recorded)
    differ = [key for key in dict.fromkeys([*theirs, *mine]) if theirs.get(key) != mine.get(key)]
    if differ:
        listed = "; ".join(f"{key}: {theirs.get(key)!r} there, {mine.get(key)!r} here" for key in differ)
        raise ConfigError(f"{files.dir} already holds a scan of blocks {names} with other settings ({listed}): "
                          f"its rows would be mixed with these; {how}")
    return kept


def _merge_existing(files: ScanFiles, table: pd.DataFrame, controls: pd.DataFrame | None,
                    settings: dict[str, Any] | None) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """``table`` (and ``controls``) with the folder's rows of the other blocks added; a
    :class:`ConfigError` when those rows come from other (or unrecorded) settings."""
    scanned = set(table["block"].astype(str))
    kept = _kept_rows(files, scanned, settings)
    if kept is None:
        return table, controls
    names = " ".join(dict.fromkeys(kept["block"].astype(str)))
    logger.info("%s: keeping the rows of blocks %s, replacing those of %s", files.dir, names,
                " ".join(sorted(scanned)))
    merged = _in_block_order(pd.concat([kept, table], ignore_index=True))
    merged.attrs.update(table.attrs)
    if files.controls.is_file():
        old_controls = read_table(files.controls)
        kept_controls = old_controls[~old_controls["block"].astype(str).isin(scanned)]
        if not kept_controls.empty:
            parts = [kept_controls] + ([controls] if controls is not None and len(controls) else [])
            described = controls.attrs.get("controls") if controls is not None else None
            controls = _in_block_order(pd.concat(parts, ignore_index=True))
            if described is not None:
                controls.attrs["controls"] = described
    return merged, controls


def _in_block_order(table: pd.DataFrame) -> pd.DataFrame:
    """Rows sorted by block (layer, then index; stable, so the order within a block stays)."""
    if not {"layer", "index"} <= set(table.columns):
        return table
    order = table[["layer", "index"]].apply(pd.to_numeric, errors="coerce")
    ranks = order.assign(_row=range(len(table))).sort_values(["layer", "index", "_row"], kind="stable").index
    return table.loc[ranks].reset_index(drop=True)
