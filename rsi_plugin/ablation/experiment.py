r"""The scale-robust ablation experiment of §4: a sweep over scales and ablation conditions.

For a block and its scale-invariant channels, :func:`sweep` measures top-1 accuracy at every
scale ``p`` (centre crop ``R - floor(R p)`` of the image resized to ``R``, bilinear to the input
size) under three kinds of condition:

* ``none``: no ablation;
* ``invariant``: the given channels mean-ablated at Post (``node="post"``, the paper's text) or
  at the pre-ReLU sum (``node="sum"``, the paper's code; ``variant="code"`` sets both the node
  and the crop, see :func:`rsi_plugin.paper.resolve`), each set to its centre-neuron mean
  over the data at ``p = 0`` (:func:`~rsi_plugin.ablation.means.channel_means`) at every position;
* ``random``: ``trials`` control sets of as many channels drawn from the non-passing ones and
  screened in the no-scale condition (:mod:`rsi_plugin.ablation.screening`); ``tolerance="auto"``
  relaxes the screening to the smallest tolerance that keeps ``trials`` sets within
  ``max_draws`` (recorded in ``eq3.csv``); when fewer are kept the sweep warns and says so;
* ``null_set``: ``null_sets`` unscreened random sets of as many channels drawn from *all* the
  block's channels, never the invariant set itself (sets overlapping it in part are allowed, as
  in the paper), the independent null of :mod:`rsi_plugin.ablation.eq3_stats`.

Distinct sets. Screened draws and null sets are distinct sets
(:func:`~rsi_plugin.ablation.screening.random_sets`); when a block has no more possible sets
than asked (``max_draws`` candidates, ``null_sets`` null sets) the sweep takes all of them, and
``eq3.csv`` says so (``possible_random``, ``exhaustive_random``, ``possible_null``,
``exact_null``, with ``distinct_random`` / ``distinct_null``, the sets the tests counted).
``results`` carry each cell's ``channels`` so the tests can count every set once. Folders
written before sets were drawn distinct (their ``sweep.json`` has no ``set_draws``) are refused
on resume rather than mixed: their null cells are keyed by trial only.

How it runs. The data is read in passes (``means``; one or more ``screen-k`` passes at
``p = 0``; ``main`` for the other scales). In a pass every batch is decoded once at the resize
size; for each scale it is cropped, normalised and sent through *one* nnsight trace that runs
the network up to the block once and the rest once on a stack of every condition's ablated
copy (:func:`~rsi_plugin.ablation.means.ablate_conditions`). ``batch_conditions=False`` runs
the naive reference instead, one full :func:`rsi_plugin.ablate` forward per condition; both
give the same counts.

Resume. With ``out_dir`` every finished cell is appended to ``ablation.csv`` when its pass
ends and every screened draw to ``draws.csv``; counts of the pass in progress are saved every
``checkpoint_every`` batches. A rerun with the same settings skips what is finished.

Many processes. Under ``torchrun`` (a process group initialised, e.g. by
:func:`rsi_plugin.core.distributed.init_from_env`) each process reads every ``world_size``-th batch,
counts are summed across processes and the main process writes the files; the result is the
table one process computes.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import torch
from torch import nn

from rsi_plugin.core.data import (
    SkippedFiles,
    ValidationLoader,
    check_labels,
    describe,
    validation_loader,
)
from rsi_plugin.core.distributed import all_reduce_sum, barrier, rank_and_world
from rsi_plugin.ablation.eq3 import CONDITIONS, RESULT_COLUMNS, eq3_summary
from rsi_plugin.core.evalmode import runs_in_eval_mode
from rsi_plugin.core.modelinfo import model_info
from rsi_plugin.ablation.means import (
    SWEEP_NODES,
    ablate_conditions,
    channel_means,
    model_device,
    prepare_batch,
)
from rsi_plugin.core.blocks import get_block, residual_blocks
from rsi_plugin.ablation.screening import (
    AUTO,
    Draw,
    auto_tolerance,
    draws_frame,
    possible_sets,
    random_sets,
    redecide,
    screen,
)
from rsi_plugin.ablation.store import CellKey, SweepStore, cell_key
from rsi_plugin.access.nnsight import ablate, channel_values
from rsi_plugin.errors import InputTypeError, RSIError
from rsi_plugin.paper import SWEEP_SCALES, Variant, check_variant
from rsi_plugin.paper import resolve as resolve_variant
from rsi_plugin.core.wrapped import unwrap

__all__ = ["SweepConfig", "SweepResult", "sweep", "PAPER_SCALES", "Condition"]

logger = logging.getLogger(__name__)

PAPER_SCALES: tuple[float, ...] = SWEEP_SCALES
"""The paper's scale fractions: no scale, then 10 % to 50 % in steps of 10 %
(:data:`rsi_plugin.paper.SWEEP_SCALES`)."""

#: the null sets are drawn with seed ``seed + NULL_SEED_OFFSET`` (a sequence apart from the screened draws)
NULL_SEED_OFFSET = 1_000_003

#: how random and null sets are drawn, recorded in ``sweep.json`` (``set_draws``) so that a folder
#: of an older sequence (sets could repeat, the null could hold the invariant set) is not resumed
SET_DRAWS = "distinct"


@dataclass(frozen=True)
class SweepConfig:
    r"""How the sweep is run.

    Attributes:
        scales (tuple of float): scale fractions ``p``; ``0`` (the no-scale condition) is
            always included, since screening and the no-scale ratio need it.
        trials (int): random control sets to keep (the paper: 10).
        seed (int): seed of the random draws.
        tolerance (float or "auto"): screening slack in accuracy (fraction): a random set
            is kept if its no-scale accuracy is ``<=`` the invariant set's plus
            ``tolerance``. 0 is the paper's rule (block 2.1), 0.01 its relaxation for block
            3.1. ``"auto"``: 0 when that keeps ``trials`` sets within ``max_draws``, else the
            smallest tolerance that does (:func:`rsi_plugin.ablation.screening.auto_tolerance`;
            every draw is then screened), recorded as ``tolerance`` in ``eq3.csv``.
        max_draws (int): bound on random sets drawn while screening.
        null_sets (int): random sets of the invariant set's size drawn from all channels
            (no screening) and swept at every scale: the independent null of
            :mod:`rsi_plugin.ablation.eq3_stats` (0: none).
        variant (str): ``"text"`` (default) or ``"code"``: the paper's text or its code
            (:func:`rsi_plugin.paper.resolve`); sets ``node`` and ``crop`` where they are
            ``None``.
        node (str, optional): ``"post"`` (the paper's text) or ``"sum"`` (the paper's
            code); ``None``: the variant's.
        crop (str, optional): crop of the sweep, ``"text"`` (``R - floor(R p)``) or
            ``"code"`` (``int(input_size (1 - p))``), see
            :func:`rsi_plugin.core.transforms.sweep_crop_size`; ``None``: the variant's.
            (Until the variant was one switch, ``variant`` set the crop alone; ``sweep.json``
            still records the crop under ``variant``, so older folders resume.)
        batch_conditions (bool or int): True: every condition of a scale in one stacked
            trace per batch (the prefix runs once); an int ``k``: stacks of at most ``k``
            conditions (bounds memory; the prefix runs once per stack); False: the naive
            reference, one full ``rsi.ablate`` forward per condition.
        screen_batch (int, optional): candidates screened per pass over the data
            (default ``trials``); it changes the speed, never which sets are kept.
        batch_size (int): images per batch when the data is not a ValidationLoader yet.
        workers (int): DataLoader workers, likewise.
        limit (int, optional): use only this many images (evenly spaced), likewise.
        checkpoint_every (int): save the counts of a pass in progress every this many batches
            (with an output folder).
    """

    scales: tuple[float, ...] = PAPER_SCALES
    trials: int = 10
    seed: int = 0
    tolerance: float | str = 0.0
    max_draws: int = 100
    null_sets: int = 200
    variant: Variant = "text"
    node: str | None = None
    crop: Variant | None = None
    batch_conditions: bool | int = True
    screen_batch: int | None = None
    batch_size: int = 64
    workers: int = 0
    limit: int | None = None
    checkpoint_every: int = 20

    def validated(self) -> "SweepConfig":
        """Deprecated spelling of :meth:`resolved` (one verb across the configs)."""
        import warnings

        warnings.warn("SweepConfig.validated() is deprecated: use SweepConfig.resolved()", DeprecationWarning, stacklevel=2)
        return self.resolved()

    def resolved(self) -> "SweepConfig":
        """A copy with ``scales`` sorted, deduplicated and holding 0, and ``node`` and
        ``crop`` taken from ``variant`` where they are ``None``.

        Raises:
            ValueError: a setting out of range, naming what is valid.
        """
        scales = tuple(sorted({round(float(p), 6) for p in self.scales} | {0.0}))
        bad = [p for p in scales if not 0.0 <= p < 1.0]
        if bad:
            raise RSIError(f"scales must lie in [0, 1), got {bad}")
        choices = resolve_variant(self.variant)
        node = self.node if self.node is not None else choices.sweep_node
        crop = check_variant(self.crop, "crop") if self.crop is not None else choices.crop
        if node not in SWEEP_NODES:
            raise RSIError(f"node must be one of {', '.join(SWEEP_NODES)}, got {node!r}")
        if isinstance(self.tolerance, str):
            if self.tolerance != AUTO:
                raise RSIError(f"tolerance must be a number >= 0 or {AUTO!r}, got {self.tolerance!r}")
        elif isinstance(self.tolerance, bool) or not isinstance(self.tolerance, (int, float)) or not (
                self.tolerance >= 0):
            raise RSIError(f"tolerance must be a number >= 0 or {AUTO!r}, got {self.tolerance!r}")
        for name in ("trials", "max_draws", "null_sets"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise RSIError(f"{name} must be an integer >= 0, got {value!r}")
        if self.checkpoint_every < 1:
            raise RSIError(f"checkpoint_every must be >= 1, got {self.checkpoint_every}")
        if not isinstance(self.batch_conditions, bool) and (
                not isinstance(self.batch_conditions, int) or self.batch_conditions < 1):
            raise RSIError(f"batch_conditions must be True, False or a positive integer, got {self.batch_conditions!r}")
        if self.screen_batch is not None and self.screen_batch < 1:
            raise RSIError(f"screen_batch must be a positive integer or None, got {self.screen_batch!r}")
        return replace(self, scales=scales, node=node, crop=crop)

    def manifest(self) -> dict[str, Any]:
        """The settings that change the results (not how fast they come), as validated; the
        crop is recorded as ``variant`` (its name before the variant was one switch), so a
        folder of an older run resumes; ``set_draws`` names the way random and null sets are
        drawn (:data:`SET_DRAWS`)."""
        cfg = self.resolved()
        keep = ("scales", "trials", "seed", "tolerance", "max_draws", "null_sets", "node")
        return {**{k: v for k, v in asdict(cfg).items() if k in keep}, "variant": cfg.crop, "set_draws": SET_DRAWS}


@dataclass(frozen=True)
class Condition:
    """One ablation condition of a sweep: ``name`` (``"none"``, ``"invariant"``,
    ``"random"``), its ``trial`` index and the ablated ``channels``."""

    name: str
    trial: int = 0
    channels: tuple[int, ...] = ()


@dataclass
class SweepResult:
    """What :func:`sweep` returns.

    Attributes:
        results (DataFrame): one row per (condition, trial, scale) cell, columns
            ``condition, trial, scale, accuracy, n_images, correct, channels`` (the ablated
            set, space-separated; ``""`` for ``none``).
        summary (DataFrame): Eq. (3) per scale (:func:`rsi_plugin.ablation.eq3.eq3_summary`).
        draws (DataFrame): every screened random set, kept or rejected.
        means (Tensor): ``[C]`` ablation value of every channel of the block.
        skipped (SkippedFiles): data items that could not be read.
        out_dir (Path or None): where the files were written.
        trials_asked (int): random sets asked for (``config.trials``).
        tolerance (float): the screening tolerance used (the resolved one for ``"auto"``;
            NaN when ``"auto"`` could not keep ``trials_asked`` sets).
        verdict (str): one sentence on whether the effect is distinguishable from the null
            (:func:`rsi_plugin.ablation.eq3_stats.verdict`).
        block (str): the block swept.
        channels (tuple of int): the scale-invariant set ablated.
    """

    results: pd.DataFrame
    summary: pd.DataFrame
    draws: pd.DataFrame
    means: torch.Tensor
    skipped: SkippedFiles = field(default_factory=SkippedFiles)
    out_dir: Path | None = None
    trials_asked: int = 0
    tolerance: float = 0.0
    verdict: str = ""
    block: str = ""
    channels: tuple[int, ...] = ()

    @property
    def kept(self) -> int:
        """Random sets kept by the screening."""
        return int(self.draws["kept"].sum()) if len(self.draws) else 0

    @property
    def starved(self) -> bool:
        """Whether the screening kept fewer random sets than asked."""
        return self.kept < self.trials_asked


@dataclass
class _Run:
    """Everything a pass needs."""

    model: nn.Module
    loader: ValidationLoader
    block: Any
    means: torch.Tensor | None
    config: SweepConfig
    store: SweepStore
    progress: bool
    num_classes: int
    trace_kwargs: dict[str, Any]
    device: torch.device = torch.device("cpu")


def _logits(run: _Run, x: torch.Tensor, conditions: list[Condition]) -> torch.Tensor:
    """``[n, B, classes]`` logits of the conditions on one model-ready batch."""
    cfg = run.config
    if cfg.batch_conditions is False:  # the naive reference: a full forward per condition
        out = []
        for c in conditions:
            values = run.means[list(c.channels)] if c.channels else 0.0
            out.append(ablate(run.model, x, run.block.name, list(c.channels), values, node=cfg.node,
                              **run.trace_kwargs))
        return torch.stack(out)
    stack = None if cfg.batch_conditions is True else int(cfg.batch_conditions)
    return ablate_conditions(run.model, x, run.block, [c.channels for c in conditions], run.means,
                             node=cfg.node, max_stack=stack, **run.trace_kwargs)


def _run_pass(run: _Run, pass_id: str, plan: dict[float, list[Condition]]) -> dict[CellKey, tuple[int, int]]:
    """One pass over this process's batches: counts of every planned cell, summed over
    processes. Saves and resumes its counts through the store."""
    keys = [cell_key(c.name, c.trial, p) for p, conds in plan.items() for c in conds]
    loader = run.loader
    signature = {"cells": [list(k) for k in keys], "channels": [list(c.channels) for cs in plan.values() for c in cs],
                 "batch_size": loader.batch_size, "num_batches": loader.num_batches,
                 "world_size": loader.world_size, "rank": loader.rank}
    correct = torch.zeros(len(keys), dtype=torch.int64)
    total = torch.zeros(len(keys), dtype=torch.int64)
    start = 0
    state = run.store.load_partial(pass_id, signature)
    if state is not None:
        start = int(state["next_batch"])
        correct += torch.tensor(state["correct"], dtype=torch.int64)
        total += torch.tensor(state["total"], dtype=torch.int64)
        loader.skipped.update(state.get("skipped", {}))
        logger.info("pass %s resumes at batch %d", pass_id, start)
    batches = loader.local_batches(start)
    per_batch = sum(len(c) for c in plan.values())
    from tqdm.auto import tqdm

    bar = tqdm(total=len(batches) * per_batch, desc=f"{pass_id} ({per_batch} cells)", unit="cond-batch",
               disable=not run.progress or loader.rank != 0, leave=False)
    since = 0
    try:
        for b, images, labels in loader.batches(start):
            if images.shape[0]:
                check_labels(labels, run.num_classes)
                images = images.to(run.device, non_blocking=True)  # once for every scale
                offset = 0
                for p, conditions in plan.items():
                    x = prepare_batch(images, run.model, p, run.config.crop, loader.input_size)
                    pred = _logits(run, x, conditions).argmax(-1).cpu()
                    hits = (pred == labels[None]).sum(1)
                    correct[offset:offset + len(conditions)] += hits
                    total[offset:offset + len(conditions)] += images.shape[0]
                    offset += len(conditions)
                    bar.set_postfix_str(f"scale {100 * p:g}%")
                    bar.update(len(conditions))
            else:
                bar.update(per_batch)
            since += 1
            if since >= run.config.checkpoint_every:
                since = 0
                run.store.save_partial(pass_id, signature, {
                    "next_batch": b + 1, "correct": correct.tolist(), "total": total.tolist(),
                    "skipped": loader.skipped.entries})
    finally:
        bar.close()
    summed = all_reduce_sum(torch.stack([correct, total]))
    return {k: (int(summed[0, i]), int(summed[1, i])) for i, k in enumerate(keys)}


def _finish_pass(run: _Run, pass_id: str, counts: dict[CellKey, tuple[int, int]]) -> None:
    run.store.add_cells(counts)
    barrier()  # the cells are on disk before any process forgets its checkpoint
    run.store.clear_partial(pass_id)


def _check_channels(channels: Sequence[int], num_channels: int, name: str) -> tuple[int, ...]:
    if isinstance(channels, torch.Tensor):
        channels = channels.tolist()
    if isinstance(channels, (str, bytes)) or not hasattr(channels, "__iter__"):
        raise InputTypeError(f"channels must be a sequence of channel indices, got {type(channels).__name__}")
    index, _ = channel_values(list(channels), 0.0, num_channels)
    if not len(index):
        raise RSIError(f"no channel given for block {name}: the invariant set must hold at least one channel")
    return tuple(sorted(index.tolist()))


def _gather_skipped(loader: ValidationLoader) -> SkippedFiles:
    rank, world = rank_and_world()
    merged = SkippedFiles()
    if world > 1:
        import torch.distributed as dist

        parts: list[Any] = [None] * world
        dist.all_gather_object(parts, loader.skipped.entries)
        for part in parts:
            merged.update(part)
    else:
        merged.update(loader.skipped)
    return merged


@runs_in_eval_mode
def sweep(
    model: nn.Module,
    data: Any,
    block: str,
    channels: Sequence[int],
    config: SweepConfig | None = None,
    out_dir: str | os.PathLike | None = None,
    progress: bool = True,
    **trace_kwargs: Any,
) -> SweepResult:
    r"""The §4 experiment: accuracy per scale with no ablation, the invariant set and
    screened random sets, and Eq. (3).

    Steps: the channel means over the data at ``p = 0``; screening of random sets in the
    no-scale condition (the invariant set's and the unablated no-scale accuracy are measured
    in the same pass); every other scale for every condition; the Eq. (3) summary.
    Finished work is kept in ``out_dir`` and skipped when the sweep is run again.

    Args:
        model (nn.Module): a model with residual blocks, carrying ``rsi_info`` (sizes and
            normalisation; ImageNet defaults otherwise). It is evaluated in eval mode whatever
            its mode (BatchNorm with its running statistics) and given back in its own mode,
            buffers unchanged.
        data: a :class:`~rsi_plugin.core.data.ValidationLoader` or anything
            :func:`~rsi_plugin.core.data.validation_loader` takes: an ImageNet-layout folder, a
            Dataset of ``(image, label)``, or tensors ``(images [N, 3, H, W] in [0, 1],
            labels [N])``. Images are resized to the model's resize size.
        block (str): block name, e.g. ``"3.1"``.
        channels (sequence of int): the scale-invariant channels (criteria-passing).
        config (SweepConfig, optional): settings; the paper's by default.
        out_dir (str or path, optional): folder for ``ablation.csv``, ``draws.csv``,
            ``means.csv``, ``eq3.csv``, ``sweep.json`` (and ``skipped.csv`` when files were
            skipped); a folder from an interrupted sweep with the same settings is resumed.
            The figures (``eq3.png``, ``accuracy.png``) are drawn by the layer above:
            :func:`rsi_plugin.outputs.plots.plot_sweep` (``rsi ablate`` and the demo call it).
        progress (bool): show tqdm bars (main process only).
        **trace_kwargs: passed to every ``model.trace``.

    Returns:
        :class:`SweepResult`.

    Raises:
        ValueError: unknown block, bad settings, too few non-passing channels to draw from,
            ``out_dir`` holding another sweep, no readable image, labels outside the
            model's classes.
        IndexError: a channel out of range.
    """
    config = (config or SweepConfig()).resolved()
    module = unwrap(model)
    target = get_block(residual_blocks(module), block)
    channels = _check_channels(channels, target.channels, target.name)
    pool = [c for c in range(target.channels) if c not in set(channels)]
    if config.trials and len(pool) < len(channels):
        raise RSIError(f"block {target.name} has {len(pool)} non-passing channels, fewer than the "
                         f"{len(channels)} needed for a random set of the same size")
    rank, world = rank_and_world()
    loader = data if isinstance(data, ValidationLoader) else validation_loader(
        data, module, batch_size=config.batch_size, workers=config.workers, limit=config.limit)
    if world > 1 and loader.world_size == 1:
        loader = loader.shard(rank, world)
    info = model_info(module)
    store = SweepStore(out_dir, writer=rank == 0, rank=rank)
    store.check_manifest({"block": target.name, "channels": list(channels), **config.manifest(),
                          "model": info.name, "weights": info.weights, **describe(loader)})
    barrier()
    run = _Run(module, loader, target, store.means, config, store, progress, info.num_classes, trace_kwargs,
               model_device(module))

    if run.means is None:
        logger.info("channel means of block %s (%s) over %d images", target.name, config.node, loader.num_images)
        run.means = channel_means(module, loader, target, node=config.node, variant=config.crop, **trace_kwargs)
        store.begin()  # the sweep's identity is written once work has begun (a failed start blocks nothing)
        store.save_means(run.means)
    if run.means.numel() != target.channels:
        raise RSIError(f"means.csv holds {run.means.numel()} channels, block {target.name} has {target.channels}")

    none, invariant = Condition("none"), Condition("invariant", 0, channels)
    base = [none, invariant]
    sets = random_sets(pool, len(channels), config.seed, config.max_draws) if config.trials else []
    auto = config.tolerance == AUTO
    nulls = [Condition("null_set", j, s) for j, s in enumerate(
        random_sets(range(target.channels), len(channels), config.seed + NULL_SEED_OFFSET, config.null_sets,
                    exclude=[channels]))]
    possible_null = possible_sets(target.channels, len(channels), 1)
    possible_random = possible_sets(len(pool), len(channels)) if len(pool) >= len(channels) else 0
    if config.null_sets and len(nulls) < config.null_sets:
        logger.info("block %s has %d possible null sets of %d channel(s) (the invariant set excluded): all are "
                    "used, %d asked; p_null is exact", target.name, possible_null, len(channels), config.null_sets)

    def evaluate(candidates: list[tuple[int, ...]]) -> list[tuple[int, int]]:
        done = store.done()
        todo = [c for c in base if cell_key(c.name, c.trial, 0.0) not in done]
        conds = todo + [Condition("candidate", i, tuple(s)) for i, s in enumerate(candidates)]
        pass_id = f"screen-{len(store.draws)}"
        counts = _run_pass(run, pass_id, {0.0: conds})
        _finish_pass(run, pass_id, {k: v for k, v in counts.items() if k[0] != "candidate"})
        return [counts[cell_key("candidate", i, 0.0)] for i in range(len(candidates))]

    def invariant_accuracy() -> float:
        k, n = store.done()[cell_key("invariant", 0, 0.0)]
        return k / n if n else float("nan")

    def on_decided(new: list[Draw]) -> None:
        if not auto:  # with "auto" the kept sets are known once every draw is screened
            store.add_cells({cell_key("random", d.trial, 0.0): (d.correct, d.n_images) for d in new if d.kept})
        store.add_draws(new)

    draws = screen(sets, evaluate, invariant_accuracy, config.trials, 0.0 if auto else float(config.tolerance),
                   chunk=config.screen_batch, done=store.draws, on_decided=on_decided)
    tolerance = 0.0 if auto else float(config.tolerance)
    if auto and config.trials:
        resolved = auto_tolerance(draws, config.trials)
        tolerance = float("nan") if resolved is None else resolved
        if resolved is not None and resolved > 0 and sum(d.kept for d in draws) < config.trials:
            draws = redecide(draws, resolved, config.trials)
            store.replace_draws(draws)
        logger.info("screening of block %s: tolerance auto -> %s", target.name,
                    "none keeps enough draws" if resolved is None else f"{resolved:.6g}")
        done = store.done()
        store.add_cells({cell_key("random", d.trial, 0.0): (d.correct, d.n_images) for d in draws
                         if d.kept and cell_key("random", d.trial, 0.0) not in done})
    kept = [d for d in draws if d.kept]
    if len(kept) < config.trials:
        logger.warning("screening of block %s kept %d of %d random sets after %d draws (max_draws=%d, "
                       "tolerance=%s); Eq. 3 rests on %d set(s). Raise max_draws (--max-draws) or use "
                       "tolerance='auto' (--screen-tolerance auto)",
                       target.name, len(kept), config.trials, len(draws), config.max_draws, config.tolerance,
                       len(kept))
    randoms = [Condition("random", d.trial, d.channels) for d in kept]

    done = store.done()
    plan = {p: [c for c in base + randoms + nulls if cell_key(c.name, c.trial, p) not in done] for p in config.scales}
    plan = {p: conds for p, conds in plan.items() if conds}
    if plan:
        counts = _run_pass(run, "main", plan)
        _finish_pass(run, "main", counts)

    results = _tidy(store.cells, config.scales, [none, invariant] + randoms + nulls)
    summary = eq3_summary(results, seed=config.seed, possible_null=possible_null)
    summary["trials_asked"] = config.trials
    summary["trials_kept"] = len(kept)
    summary["draws"] = len(draws)
    summary["tolerance"] = tolerance
    summary["tolerance_setting"] = str(config.tolerance)
    summary["possible_random"] = possible_random
    summary["exhaustive_random"] = bool(config.trials) and len(draws) >= possible_random
    from rsi_plugin.ablation.eq3_stats import verdict as _verdict

    sentence = _verdict(summary, target.name)
    draws_table = draws_frame(draws)
    skipped = _gather_skipped(loader)
    if store.writer and store.dir is not None:  # the figures are drawn by the caller (outputs.plots.plot_sweep)
        store.write_frame(store.files.eq3, summary)
        if skipped.count:
            store.write_frame(store.files.skipped, skipped.to_frame())
    if skipped.count:
        logger.warning("%s", skipped.summary())
    return SweepResult(results, summary, draws_table, run.means, skipped, store.dir, config.trials, tolerance,
                       sentence, target.name, tuple(int(c) for c in channels))


def _tidy(cells: pd.DataFrame, scales: Sequence[float], conditions: list[Condition]) -> pd.DataFrame:
    """The cells of this sweep, ordered by condition, trial, scale, with each cell's ablated
    ``channels`` (space-separated)."""
    wanted = {cell_key(c.name, c.trial, p) for c in conditions for p in scales}
    sets = {(c.name, int(c.trial)): " ".join(map(str, c.channels)) for c in conditions}
    keys = [cell_key(r.condition, r.trial, r.scale) for r in cells.itertuples()]
    frame = cells[[k in wanted for k in keys]].copy()
    frame["trial"] = frame["trial"].astype(int)
    frame["n_images"] = frame["n_images"].astype(int)
    frame["correct"] = frame["correct"].astype(int)
    frame["accuracy"] = frame["accuracy"].astype(float)
    order = {name: i for i, name in enumerate(CONDITIONS)}
    frame = frame.sort_values(["condition", "trial", "scale"], key=lambda s: s.map(order) if s.name == "condition" else s)
    frame["channels"] = [sets[(c, t)] for c, t in zip(frame["condition"], frame["trial"])]
    return frame.reset_index(drop=True)[[*RESULT_COLUMNS, "channels"]]
