r"""What a scan (``rsi scan --estimate``) or a demo (``rsi demo --estimate``) will cost on this
machine, before it starts: FZ channel-steps, wall time and disk, per block, with the assumptions.

**Calibration.** For each scanned block and node (In and Pre, where :func:`~rsi_plugin.criteria.equations.node_sites`
reads them) the real FZ engine (:func:`rsi_plugin.featureviz.optimize.visualize`) runs a few
optimisation steps at the real image size, at two batch widths: the running batch the scan
uses (``min(channels_per_batch, channels)`` rows) and one row. Each width is timed at 1 and at
``1 + k`` steps (early stopping off), so the set-up and the final image cancel:
``c(w) = (t(1 + k) - t(1)) / k`` seconds per batch step. A batch step of ``w`` rows then costs
``a + b w`` (the line through the two widths): ``a`` the fixed part (hooks, Python, the image
parameterisation's small kernels), ``b`` the part per row.

**Work.** The scan renders, per block, node, seed and model (the trained one, then each
control copy on the first ``control_seeds`` seeds), every channel's FZ that is not in the cache
yet (records are counted by file, never read for images, never written). Each FZ runs
until its plateau: its steps are drawn, stratified, from the steps the FZs of this block and
node took in the cache (``steps_used`` of the records found for this model, block and node),
else from :data:`REFERENCE_STEPS` (the bundled models at the demo's settings), else from
the pooled ``tiny`` reference, capped at ``steps``; without early stopping every FZ takes
``steps``. The running batch (:func:`rsi_plugin.featureviz.optimize.visualize`'s continuous
batching, rows joining at plateau-window boundaries) is simulated with those steps, which gives
the batch steps ``B`` and the channel-steps ``S``; the node's time is ``a B + b S``. With the
adaptive rule, the seeds after the first render :data:`ADAPTIVE_KEPT_SHARE` of the channels.

**Disk.** Per FZ, its record (``torch.save`` of a record of that image size and history
length, measured) and its PNG (taken at its uncompressed 8-bit size, 3 bytes a pixel: an FZ is
noise-like, measured 10.9 of 12.3 KB at 64 px).
"""

from __future__ import annotations

import dataclasses
import io
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn


__all__ = ["ScanEstimate", "DemoEstimate", "estimate_scan", "estimate_demo", "format_estimate", "format_duration",
           "steps_reference", "REFERENCE_STEPS", "REFERENCE_RUN", "ADAPTIVE_KEPT_SHARE", "DEMO_OTHER_STAGES_S",
           "CALIBRATION_STEPS", "CALIBRATION_REPEATS"]

logger = logging.getLogger(__name__)

#: timed optimisation steps per block, node and batch width (after an untimed first call)
CALIBRATION_STEPS: int = 4
#: timed calls per calibration case (the fastest counts)
CALIBRATION_REPEATS: int = 3
#: when a first call of the calibration takes longer than this (seconds), one timed call per case
SLOW_CALL_S: float = 5.0

#: where :data:`REFERENCE_STEPS`, :data:`ADAPTIVE_KEPT_SHARE` and :data:`DEMO_OTHER_STAGES_S` come from
REFERENCE_RUN: str = (
    "the default `rsi demo` of 2026-12-03 on the 2-core CPU machine (tiny, blocks 1.1 2.0 2.1 3.1, cap 2560 "
    "steps with early stopping, 3 adaptive seeds, 2 random-init copies on the first seed, the planted control; "
    "torch 2.14.1, 2 threads; 11 min 38 s wall time idle)")

#: deciles (0 %, 10 %, ..., 100 %) of the steps each FZ took to its plateau in :data:`REFERENCE_RUN`,
#: per model (``"/untrained"``: its random-init copies), block and node, pooled over the seeds
#: (``in_steps_used`` / ``pre_steps_used`` of ``scan/scan.csv``, ``scan/scan_controls.csv``,
#: ``planted/planted_scan.csv``, ``planted/planted_controls.csv``; :func:`steps_reference`
#: recomputes them from a run folder). ``("*", "*")``: all blocks and nodes pooled.
REFERENCE_STEPS: dict[str, dict[tuple[str, str], tuple[int, ...]]] = {
    "tiny": {
        ("1.1", "in"): (192, 256, 320, 384, 384, 384, 384, 448, 448, 512, 576),
        ("1.1", "pre"): (384, 384, 448, 448, 512, 512, 576, 640, 640, 640, 704),
        ("2.0", "in"): (256, 384, 384, 448, 448, 448, 512, 576, 640, 640, 704),
        ("2.0", "pre"): (384, 448, 448, 512, 512, 512, 576, 576, 640, 640, 704),
        ("2.1", "in"): (256, 320, 320, 384, 384, 384, 448, 512, 512, 576, 704),
        ("2.1", "pre"): (448, 512, 512, 576, 576, 576, 640, 640, 704, 768, 960),
        ("3.1", "in"): (320, 448, 448, 512, 576, 576, 576, 640, 704, 768, 960),
        ("3.1", "pre"): (320, 384, 384, 448, 448, 512, 512, 576, 576, 640, 896),
        ("*", "*"): (192, 384, 384, 448, 512, 512, 576, 576, 640, 704, 960),
    },
    "tiny/untrained": {
        ("1.1", "in"): (256, 256, 256, 320, 384, 384, 384, 448, 512, 512, 640),
        ("1.1", "pre"): (256, 320, 384, 448, 448, 448, 512, 512, 512, 640, 704),
        ("2.0", "in"): (256, 320, 384, 448, 448, 448, 512, 512, 640, 704, 768),
        ("2.0", "pre"): (384, 448, 448, 512, 512, 576, 576, 640, 704, 768, 768),
        ("2.1", "in"): (256, 320, 448, 448, 512, 512, 576, 576, 576, 640, 768),
        ("2.1", "pre"): (384, 448, 512, 512, 576, 576, 640, 640, 704, 768, 832),
        ("3.1", "in"): (320, 448, 448, 512, 576, 576, 576, 640, 704, 704, 896),
        ("3.1", "pre"): (320, 448, 512, 576, 576, 576, 640, 704, 704, 768, 832),
        ("*", "*"): (256, 384, 448, 512, 512, 576, 576, 640, 704, 768, 896),
    },
    "planted": {
        ("1.0", "in"): (64, 96, 96, 96, 96, 96, 96, 128, 128, 128, 192),
        ("1.0", "pre"): (64, 96, 96, 96, 96, 128, 128, 128, 128, 128, 192),
        ("*", "*"): (64, 96, 96, 96, 96, 96, 128, 128, 128, 128, 192),
    },
    "planted/untrained": {
        ("1.0", "in"): (96, 96, 96, 128, 128, 128, 160, 160, 160, 192, 384),
        ("1.0", "pre"): (96, 128, 160, 160, 192, 192, 192, 224, 224, 256, 320),
        ("*", "*"): (96, 96, 128, 128, 160, 160, 192, 192, 224, 224, 384),
    },
}

#: the share of a block's channels the adaptive rule (:func:`rsi_plugin.criteria.seeds.adaptive_stop`)
#: sent to the seeds after the first in :data:`REFERENCE_RUN`: 20 of 144 (1.1: 2/16, 2.0: 1/32,
#: 2.1: 4/32, 3.1: 13/64)
ADAPTIVE_KEPT_SHARE: float = 20 / 144

#: seconds of the demo's stages other than the FZ scans, as measured in :data:`REFERENCE_RUN`
#: (``settings.json`` wall times; the planted sweep from its files' times in the rerun; start-up:
#: the wall time less the stages)
DEMO_OTHER_STAGES_S: dict[str, float] = {"start-up (imports, model)": 8.4, "sensitivity": 2.2,
                                         "planted Eq. 3 sweep": 4.3, "figures": 8.1,
                                         "ablation sweeps": 22.8, "report": 0.3}

_DECILES = np.linspace(0.0, 1.0, 11)


# --------------------------------------------------------------------------- results

@dataclass
class ScanEstimate:
    r"""What :func:`estimate_scan` expects a scan to cost.

    Attributes:
        model (str): the model's name.
        blocks (DataFrame): one row per block: ``block, channels, nodes, seeds`` (the trained
            model's), ``copies`` (control copies scanning the block), ``copy_seeds``, ``fz``
            (FZs the scan needs, every model and seed), ``cached`` (of them already in the
            cache), ``channels_per_batch``, ``steps_per_fz`` (expected, over the FZs to
            render), ``channel_steps``, ``ms_per_channel_step`` (measured at the full batch),
            ``seconds``, ``disk_bytes``.
        nodes (DataFrame): the same per (model, block, node, seed), with ``steps_from``
            (``"cache"``, ``"reference"``, ``"pooled reference"``, ``"cap"``) and the calibration
            (``step_s_full``, ``step_s_one``: seconds per batch step at the full width and at one row).
        assumptions (list of str): what the numbers rest on.
        calibration_s (float): seconds the calibration took.
        load (float, optional): the 1-minute load average when the calibration ended.
    """

    model: str
    blocks: pd.DataFrame
    nodes: pd.DataFrame
    assumptions: list[str] = field(default_factory=list)
    calibration_s: float = 0.0
    load: float | None = None

    @property
    def channel_steps(self) -> int:
        return int(self.blocks["channel_steps"].sum()) if len(self.blocks) else 0

    @property
    def seconds(self) -> float:
        return float(self.blocks["seconds"].sum()) if len(self.blocks) else 0.0

    @property
    def disk_bytes(self) -> int:
        return int(self.blocks["disk_bytes"].sum()) if len(self.blocks) else 0

    @property
    def fz(self) -> int:
        return int(self.blocks["fz"].sum() - self.blocks["cached"].sum()) if len(self.blocks) else 0


@dataclass
class DemoEstimate:
    r"""What :func:`estimate_demo` expects ``rsi demo`` to cost.

    Attributes:
        scan (ScanEstimate): the scan stage (the model and its untrained copies).
        planted (ScanEstimate, optional): the planted control's scan (``None`` without it).
        other_stages (dict): stage -> seconds allowed (:data:`DEMO_OTHER_STAGES_S`), empty
            where not estimated.
        assumptions (list of str): the demo's own assumptions (the scans carry theirs).
    """

    scan: ScanEstimate
    planted: ScanEstimate | None = None
    other_stages: dict[str, float] = field(default_factory=dict)
    assumptions: list[str] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return self.scan.seconds + (self.planted.seconds if self.planted else 0.0) + sum(self.other_stages.values())

    @property
    def channel_steps(self) -> int:
        return self.scan.channel_steps + (self.planted.channel_steps if self.planted else 0)

    @property
    def disk_bytes(self) -> int:
        return self.scan.disk_bytes + (self.planted.disk_bytes if self.planted else 0)


# --------------------------------------------------------------------------- pieces

def steps_reference(run_dir: str | Path) -> dict[str, dict[tuple[str, str], tuple[int, ...]]]:
    r"""The deciles of :data:`REFERENCE_STEPS`, recomputed from a finished ``rsi demo`` folder.

    Args:
        run_dir (str or path): the run folder (``scan/scan.csv`` and, when there,
            ``scan/scan_controls.csv``, ``planted/planted_scan.csv``, ``planted/planted_controls.csv``).

    Returns:
        dict as :data:`REFERENCE_STEPS`, keyed by the scanned model's name (``"planted"`` for
        the planted control) and ``"<name>/untrained"`` for the copies.
    """
    from rsi_plugin.core.runfolder import RunLayout

    run = RunLayout(run_dir)
    name = "tiny"
    settings = run.settings
    if settings.is_file():
        import json

        name = str(json.loads(settings.read_text()).get("model", name))
    tables = {name: run.scan.table, f"{name}/untrained": run.scan.controls,
              "planted": run.planted.scan, "planted/untrained": run.planted.controls}
    out: dict[str, dict[tuple[str, str], tuple[int, ...]]] = {}
    for key, path in tables.items():
        if not Path(path).is_file():
            continue
        table = pd.read_csv(path, dtype={"block": str})
        if "source" in table.columns:
            table = table[table["source"] == "fz"]
        entry: dict[tuple[str, str], tuple[int, ...]] = {}
        pooled = []
        for block, part in table.groupby("block", sort=False):
            for node in ("in", "pre"):
                values = part[f"{node}_steps_used"].dropna().astype(int).to_numpy()
                pooled.append(values)
                entry[(str(block), node)] = _deciles(values)
        if pooled:
            entry[("*", "*")] = _deciles(np.concatenate(pooled))
            out[key] = entry
    return out


def _deciles(values: np.ndarray) -> tuple[int, ...]:
    return tuple(int(v) for v in np.quantile(values, _DECILES, method="inverted_cdf"))


def _draw(deciles: Sequence[float], n: int) -> list[int]:
    """``n`` values spread over a distribution given by its deciles (stratified: the
    ``(i + 0.5) / n`` quantiles), in a fixed shuffled order (channel order is unrelated to steps)."""
    if n <= 0:
        return []
    q = (np.arange(n) + 0.5) / n
    values = np.interp(q, _DECILES, np.asarray(deciles, dtype=float))
    order = np.random.default_rng(0).permutation(n)
    return [max(1, int(round(v))) for v in values[order]]


def _batch_steps(steps: Sequence[int], width: int, window: int) -> int:
    r"""Batch steps of the running batch (:func:`rsi_plugin.featureviz.optimize._optimize_stream`):
    at most ``width`` rows, a waiting FZ joins at a multiple of ``window`` (every step with
    ``window`` 0), a row leaves after its steps.

    Args:
        steps (sequence of int): each FZ's steps, in the order they wait.
        width (int): the batch width.
        window (int): the plateau window (0: rows join at any step).

    Returns:
        int: the steps the batch runs (the channel-steps are ``sum(steps)``).
    """
    waiting = [int(s) for s in steps]
    active: list[int] = []
    step = batch = 0
    while waiting or active:
        if waiting and len(active) < width and (window == 0 or step % window == 0):
            room = width - len(active)
            active += waiting[:room]
            del waiting[:room]
        if not active:
            step += window - step % window
            continue
        advance = min(active)
        if waiting and window:
            advance = min(advance, window - step % window)
        step += advance
        batch += advance
        active = [a - advance for a in active if a > advance]
    return batch


def _calibrate(model: nn.Module, cases: Sequence[tuple[str, str, list[int]]], config, k: int, repeats: int,
               progress: bool) -> dict[tuple[str, str, int], float]:
    """Seconds per batch step of each ``(block, node, channels)``: ``(t(1 + k) - t(1)) / k``, each
    ``t`` the fastest of ``repeats`` calls of :func:`~rsi_plugin.featureviz.optimize.visualize`
    after an untimed one, all cases interleaved (:func:`rsi_plugin.apps.timing.time_cases`), so
    that the set-up and the final image cancel. The fastest call: other work on the machine only
    ever adds time (with 2 threads on 2 busy cores a step was 20x slower than idle here, and the
    median of 3 calls swung 20x between blocks); the estimate is what this machine does unloaded."""
    from rsi_plugin.apps.timing import time_cases
    from rsi_plugin.core.tensors import model_device
    from rsi_plugin.featureviz.optimize import visualize

    def call(block: str, node: str, channels: list[int], steps: int):
        cfg = dataclasses.replace(config, steps=steps, early_stop=False, channels_per_batch=len(channels))
        return lambda: visualize(model, block, node, channels, cfg)

    calls = {}
    for block, node, channels in cases:
        for steps in (1, 1 + k):
            calls[(block, node, len(channels), steps)] = call(block, node, channels, steps)
    named = {f"{key}": fn for key, fn in calls.items()}
    warm = time_cases(named, repeats=1, warmup=0, device=model_device(model))  # the untimed first calls
    if max(r.times[0] for r in warm.values()) > SLOW_CALL_S:  # a big model: one timed call each keeps it short
        repeats = 1
    times = time_cases(named, repeats=repeats, warmup=0, device=model_device(model), progress=progress)
    out = {}
    for block, node, channels in cases:
        one = min(times[f"{(block, node, len(channels), 1)}"].times)
        more = min(times[f"{(block, node, len(channels), 1 + k)}"].times)
        per_step = (more - one) / k
        out[(block, node, len(channels))] = per_step if per_step > 0 else more / (1 + k)  # noise: the plain mean
    return out


def _record_bytes(image_size: int, history: int) -> int:
    """Bytes of one FZ record (``torch.save`` of a record as :func:`rsi_plugin.featureviz.optimize.render`
    writes it, with :func:`rsi_plugin.featureviz.cache.write_record`'s added keys)."""
    record = {"image": torch.zeros(3, image_size, image_size), "activation": 0.0,
              "history": torch.zeros(max(1, int(history))), "status": "ok", "steps_used": int(history),
              "block": "0.0", "node": "pre", "channel": 0, "config_hash": "0" * 16, "fingerprint": "0" * 32,
              "png_sha256": "0" * 64, "checksum": "0" * 32}
    buffer = io.BytesIO()
    torch.save(record, buffer)
    return len(buffer.getvalue())


def _png_bytes(image_size: int) -> int:
    """An FZ's PNG at its uncompressed 8-bit size (3 bytes a pixel, a filter byte a row, ~70 of headers)."""
    return 3 * image_size * image_size + image_size + 70


def _cached_records(cache_dir: str | Path | None, fingerprint: str | None, block: str, node: str, chash: str,
                    channels: Sequence[int]) -> list[Path]:
    from rsi_plugin.featureviz.cache import record_path

    if cache_dir is None or fingerprint is None:
        return []
    paths = [record_path(cache_dir, fingerprint, block, node, chash, c) for c in channels]
    return [p for p in paths if p.is_file()]


def _steps_of(paths: Sequence[Path], limit: int = 64) -> list[int]:
    """``steps_used`` of up to ``limit`` records (read only; an unreadable one is skipped)."""
    found = []
    for path in list(paths)[:limit]:
        try:
            record = torch.load(path, map_location="cpu", weights_only=True)
            found.append(int(record["steps_used"]))
        except Exception:  # noqa: BLE001 - a damaged record tells nothing; the scan recomputes it
            continue
    return found


def _reference(name: str, untrained: bool, block: str, node: str) -> tuple[tuple[int, ...], str]:
    """The reference deciles for a model's block and node, and where they came from."""
    key = f"{name}/untrained" if untrained else name
    table = REFERENCE_STEPS.get(key)
    if table is not None and (block, node) in table:
        return table[(block, node)], "reference"
    if table is not None:
        return table[("*", "*")], f"reference ({key}, all blocks)"
    return REFERENCE_STEPS["tiny"][("*", "*")], "reference (tiny, all blocks)"


def _load() -> float | None:
    """The 1-minute load average, when the OS tells it."""
    import os

    try:
        return float(os.getloadavg()[0])
    except (AttributeError, OSError):
        return None


def _load_note(load: float | None) -> list[str]:
    """A line on the machine's load at the calibration (a warning when it is busy)."""
    import os

    if load is None:
        return []
    cores = os.cpu_count() or 1
    line = f"load average at the calibration: {load:.2f} on {cores} cores"
    if load > 0.5 * cores:
        line += " (busy: other work competes for the cores, so the run will likely take longer than this)"
    return [line]


def format_duration(seconds: float) -> str:
    """``h:mm:ss``."""
    total = int(round(max(0.0, float(seconds))))
    return f"{total // 3600}:{total % 3600 // 60:02d}:{total % 60:02d}"


def _bytes(n: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


# --------------------------------------------------------------------------- estimate

def estimate_scan(model: nn.Module, blocks: str | Sequence[str] | None = "all", config: Any = None,
                  calibration_steps: int = CALIBRATION_STEPS, progress: bool = False,
                  calibration_repeats: int = CALIBRATION_REPEATS) -> ScanEstimate:
    r"""Expected FZ channel-steps, wall time and disk of :func:`rsi_plugin.criteria.channel_scan.scan`
    with these arguments, on this machine (see the module docstring). Renders a few FZ steps per
    block and node to time them; writes nothing.

    Args:
        model (nn.Module): the model to scan.
        blocks (str or list of str): as :func:`~rsi_plugin.criteria.channel_scan.scan`.
        config (ScanConfig, optional): the scan's settings (its ``cache_dir`` is looked at for
            FZs already rendered and the steps they took).
        calibration_steps (int): timed steps per block, node and batch width (>= 1).
        progress (bool): a tqdm bar over the calibration.
        calibration_repeats (int): timed calls per case (the fastest counts).

    Returns:
        :class:`ScanEstimate`.

    Raises:
        UnknownNameError: an unknown block (the valid ones listed). ConfigError:
            ``calibration_steps`` below 1, or a natural-image scan (no FZ to estimate).
    """
    from rsi_plugin.core.blocks import resolve_blocks
    from rsi_plugin.core.channels import check_channels
    from rsi_plugin.core.modelinfo import model_info
    from rsi_plugin.core.wrapped import unwrap
    from rsi_plugin.criteria.channel_scan import ScanConfig
    from rsi_plugin.criteria.controls import plan_controls
    from rsi_plugin.criteria.equations import node_sites
    from rsi_plugin.errors import ConfigError
    from rsi_plugin.featureviz.cache import config_hash, model_fingerprint
    from rsi_plugin.featureviz.optimize import plateau_window

    if isinstance(calibration_steps, bool) or not isinstance(calibration_steps, int) or calibration_steps < 1:
        raise ConfigError(f"calibration_steps must be an integer >= 1, got {calibration_steps!r}")
    config = (config or ScanConfig()).resolved()
    if config.source == "natural":
        raise ConfigError("a natural-image scan (source 'natural') renders no feature visualisation: "
                          "there is nothing to estimate; the estimate covers source 'fz' and 'both'")
    module = unwrap(model)
    chosen = resolve_blocks(module, blocks)
    controls = plan_controls(config.controls, config.control_seed)
    name = model_info(module).name
    fz = config.featureviz
    cap = int(fz.steps)
    width_cap = int(fz.channels_per_batch)
    cache_dir = config.cache_dir if config.cache_dir is not None and Path(config.cache_dir).is_dir() else None
    seeds = list(config.seeds)
    control_seeds = seeds[:config.control_seeds] if config.control_seeds is not None else seeds
    share = ADAPTIVE_KEPT_SHARE if config.adaptive else 1.0

    # the models the scan renders: the trained one on every block, each copy on its blocks
    models: list[tuple[str, nn.Module | None, list[str], list[int]]] = [("trained", module, [b.name for b in chosen],
                                                                         seeds)]
    for control in controls:
        names = [b.name for b in chosen if control.cascade_to is None or b.index >= _block_index(module, control.cascade_to)]
        copy = control.build(module) if cache_dir is not None else None  # its fingerprint finds its cache
        models.append((control.name, copy, names, control_seeds))

    started = time.perf_counter()
    sites_of = {b.name: node_sites(module, b, config.node_variant) for b in chosen}
    wanted = {b.name: check_channels(config.channels, b.channels, where=f"block {b.name}") for b in chosen}
    cases: dict[tuple[str, str, int], list[int]] = {}
    for b in chosen:
        for role in ("in", "pre"):
            where, node = sites_of[b.name][role]
            channels = list(wanted[b.name])[:min(width_cap, len(wanted[b.name]))]
            cases[(where, node, len(channels))] = channels
            cases[(where, node, 1)] = channels[:1]
    measured = _calibrate(module, [(w, n, c) for (w, n, _), c in cases.items()], fz, calibration_steps,
                          calibration_repeats, progress)
    timing = {(w, n, width): (measured[(w, n, width)], measured[(w, n, 1)], width)
              for (w, n, width) in cases}
    calibration_s = time.perf_counter() - started

    fingerprints: dict[str, str | None] = {}
    rows = []
    for label, copy, names, its_seeds in models:
        target = module if label == "trained" else copy
        if cache_dir is not None and target is not None:
            fingerprints[label] = model_fingerprint(target)
        for block in names:
            channels = list(wanted[block])
            for role in ("in", "pre"):
                where, node = sites_of[block][role]
                full, one, width = timing[(where, node, min(width_cap, len(channels)))]
                per_row = (full - one) / (width - 1) if width > 1 else full
                per_row = max(per_row, 0.0)
                fixed = max(full - per_row * width, 0.0)
                hashes = {s: config_hash(dataclasses.replace(fz, seed=s).resolved(module, where, node).cache_key())
                          for s in its_seeds}
                cached_paths = {s: _cached_records(cache_dir, fingerprints.get(label), where, node, hashes[s], channels)
                                for s in its_seeds}
                known = _steps_of([p for s in its_seeds for p in cached_paths[s]])
                if not fz.early_stop:
                    deciles, source = (cap,) * 11, "cap"
                elif known:
                    deciles, source = _deciles(np.asarray(known)), "cache"
                else:
                    deciles, source = _reference(name, label != "trained", block, role)
                window = plateau_window(cap, fz.plateau_window) if fz.early_stop else 0
                resolved = fz.resolved(module, where, node)
                for number, seed in enumerate(its_seeds):
                    needed = len(channels) if number == 0 else int(math.ceil(share * len(channels)))
                    cached = 0 if config.force else min(len(cached_paths[seed]), needed)
                    todo = needed - cached
                    steps = [min(s, cap) for s in _draw(deciles, todo)]
                    batch = _batch_steps(steps, width, window) if steps else 0
                    channel_steps = int(sum(steps))
                    rows.append({
                        "model": label, "block": block, "node": role, "where": f"{where} {node}", "seed": seed,
                        "channels": len(channels), "fz": needed, "cached": cached, "to_render": todo,
                        "channels_per_batch": width, "steps_from": source, "batch_steps": batch,
                        "channel_steps": channel_steps, "step_s_full": full, "step_s_one": one,
                        "seconds": fixed * batch + per_row * channel_steps,
                        "disk_bytes": todo * (_record_bytes(int(resolved.image_size),
                                                            channel_steps / todo if todo else 0)
                                              + _png_bytes(int(resolved.image_size)))})
    nodes = pd.DataFrame(rows)
    per_block = []
    for block in [b.name for b in chosen]:
        part = nodes[nodes["block"] == block]
        trained = part[part["model"] == "trained"]
        copies = part[part["model"] != "trained"]
        todo = int(part["to_render"].sum())
        width = int(trained["channels_per_batch"].iloc[0])
        full = float(trained["step_s_full"].mean())
        per_block.append({
            "block": block, "channels": int(trained["channels"].iloc[0]), "nodes": 2, "seeds": len(seeds),
            "copies": int(copies["model"].nunique()), "copy_seeds": len(control_seeds) if len(copies) else 0,
            "fz": int(part["fz"].sum()), "cached": int(part["cached"].sum()), "channels_per_batch": width,
            "steps_per_fz": float(part["channel_steps"].sum() / todo) if todo else 0.0,
            "channel_steps": int(part["channel_steps"].sum()),
            "ms_per_channel_step": 1000.0 * full / width,
            "seconds": float(part["seconds"].sum()), "disk_bytes": int(part["disk_bytes"].sum())})
    assumptions = _assumptions(name, config, nodes, share, cap, calibration_steps, cache_dir)
    return ScanEstimate(model=name, blocks=pd.DataFrame(per_block), nodes=nodes, assumptions=assumptions,
                        calibration_s=calibration_s, load=_load())


def _block_index(module: nn.Module, block: str) -> int:
    from rsi_plugin.core.blocks import get_block

    return get_block(module, block).index


def _assumptions(name: str, config, nodes: pd.DataFrame, share: float, cap: int, k: int,
                 cache_dir: str | Path | None) -> list[str]:
    fz = config.featureviz
    text = [f"time per batch step measured here, now: the real FZ engine, {k} steps per block and node at the "
            f"real image size, at the full running batch and at one row (the fastest of up to {CALIBRATION_REPEATS} calls, "
            f"interleaved); a step of w rows costs a + b*w (torch threads {torch.get_num_threads()}): the machine "
            f"without other work; other processes on its cores make the run slower, by far more than their share "
            f"when torch uses every core"]
    sources = set(nodes["steps_from"]) if len(nodes) else set()
    if not fz.early_stop:
        text.append(f"every FZ runs the {cap}-step cap (early stopping off)")
    else:
        text.append(f"each FZ stops at its plateau, capped at {cap} steps; steps per FZ from: "
                    + ", ".join(sorted(sources)))
        if any(s.startswith("reference") for s in sources):
            text.append(f"reference steps: {REFERENCE_RUN}; "
                        + ("other models are taken to need as many steps as tiny (not scaled)"
                           if not any(name == key.split('/')[0] for key in REFERENCE_STEPS) else
                           "blocks outside the reference take the model's pooled reference"))
        if name != "planted" and (fz.plateau_window != 64 or float(fz.lr) != 0.05):
            text.append("the reference was measured with lr 0.05 and a 64-step plateau window; these settings "
                        "differ, so its steps may not hold")
    if config.adaptive and len(config.seeds) > 1:
        text.append(f"adaptive: the seeds after the first render {share:.1%} of each block's channels, the share "
                    f"the rule kept in the reference run (20 of 144); --no-adaptive renders every channel")
    if config.controls:
        text.append(f"controls {' '.join(config.controls)}: each copy is scanned like the model"
                    f"{'' if config.control_seeds is None else f' on its first {config.control_seeds} seed(s)'}, "
                    f"at the trained model's measured speed")
    text.append("cached FZs (records found in " + (str(cache_dir) if cache_dir is not None else "no cache folder yet")
                + ") cost nothing; the drain of the running batch at each node's end is simulated")
    text.append("disk: per FZ its record (torch.save, measured) and its PNG at 3 bytes a pixel; tables and the "
                "criteria's forward passes are not counted")
    if config.force:
        text.append("--force: FZs in the cache are rendered again")
    if config.source == "both":
        text.append("source both: the natural-image search is not counted")
    return text


def estimate_demo(config: Any, calibration_steps: int = CALIBRATION_STEPS, progress: bool = False) -> DemoEstimate:
    r"""Expected cost of :func:`rsi_plugin.apps.demo.run_demo` with ``config``: its scan (the
    model and its untrained copies, :func:`estimate_scan`), the planted control's scan, and an
    allowance for the other stages (:data:`DEMO_OTHER_STAGES_S`, measured for ``tiny`` at the
    defaults). Writes nothing.

    Args:
        config (DemoConfig): the demo's settings.
        calibration_steps (int): as :func:`estimate_scan`.
        progress (bool): a bar over the calibration.

    Returns:
        :class:`DemoEstimate`.
    """
    from rsi_plugin.apps.demo import demo_seeds
    from rsi_plugin.core.models import load_model
    from rsi_plugin.core.runfolder import RunLayout
    from rsi_plugin.criteria.channel_scan import ScanConfig
    from rsi_plugin.featureviz.optimize import FeatureVizConfig
    from rsi_plugin.paper import FZ_STEPS

    config = config.resolved()
    run = RunLayout(config.out)
    model = load_model(config.model, weights=config.weights, seed=config.seed, device=config.device)
    seeds = demo_seeds(config)
    controls = (f"random-init:{config.controls}",) if config.controls else ()
    scan_config = ScanConfig(featureviz=FeatureVizConfig(steps=config.steps, seed=config.seed, variant=config.variant),
                             variant=config.variant, cache_dir=str(run.scan.fz_cache), seed=config.seed, seeds=seeds,
                             adaptive=config.adaptive, controls=controls,
                             control_seeds=None if config.control_seeds is None else min(config.control_seeds,
                                                                                          len(seeds)))
    scanned = estimate_scan(model, config.blocks, scan_config, calibration_steps, progress)
    planted = None
    if config.planted:
        from rsi_plugin.zoo.planted import PLANTED_BLOCK, PLANTED_FZ, build_planted

        planted_config = ScanConfig(featureviz=FeatureVizConfig(**PLANTED_FZ, steps=FZ_STEPS, seed=seeds[0]),
                                    seeds=seeds, cache_dir=str(run.planted.fz_cache), controls=controls)
        planted = estimate_scan(build_planted(), [PLANTED_BLOCK], planted_config, calibration_steps, progress)
    assumptions = []
    other: dict[str, float] = {}
    if config.model == "tiny":
        other = {k: v for k, v in DEMO_OTHER_STAGES_S.items() if config.planted or not k.startswith("planted")}
        assumptions.append(f"the stages other than the FZ scans take what they took in {REFERENCE_RUN}: "
                           + ", ".join(f"{k} {v:g} s" for k, v in other.items())
                           + " (the sweep time depends on how many blocks have channels to ablate: one there)"
                           + ("; --quick runs them smaller, so this overestimates" if config.quick else ""))
    else:
        assumptions.append("the stages other than the FZ scans (sensitivity, figures, ablation sweeps on the "
                           "data, report) are not estimated for models other than tiny")
    return DemoEstimate(scan=scanned, planted=planted, other_stages=other, assumptions=assumptions)


# --------------------------------------------------------------------------- text

def _table_text(estimate: ScanEstimate) -> str:
    table = estimate.blocks.copy()
    table["steps_per_fz"] = table["steps_per_fz"].map(lambda v: f"{v:.0f}")
    table["ms_per_channel_step"] = table["ms_per_channel_step"].map(lambda v: f"{v:.2f}")
    table["wall"] = table["seconds"].map(format_duration)
    table["disk"] = table["disk_bytes"].map(_bytes)
    shown = ["block", "channels", "nodes", "seeds", "copies", "copy_seeds", "fz", "cached", "channels_per_batch",
             "steps_per_fz", "channel_steps", "ms_per_channel_step", "wall", "disk"]
    with pd.option_context("display.width", 250):
        return table[shown].to_string(index=False)


def _totals(label: str, estimate: ScanEstimate) -> str:
    return (f"{label}: {estimate.fz} FZs to render, {estimate.channel_steps:,} channel-steps, wall time "
            f"{format_duration(estimate.seconds)}, disk {_bytes(estimate.disk_bytes)} "
            f"(calibration took {estimate.calibration_s:.1f} s)")


def format_estimate(estimate: ScanEstimate | DemoEstimate) -> str:
    """The estimate as text: per block, the totals (wall time as ``h:mm:ss``) and the assumptions."""
    lines: list[str] = []
    if isinstance(estimate, ScanEstimate):
        lines += [f"estimated cost of the scan of {estimate.model}, per block:", _table_text(estimate),
                  _totals("total", estimate), *_load_note(estimate.load), "assumptions:"]
        lines += [f"  - {a}" for a in estimate.assumptions]
        return "\n".join(lines)
    lines += [f"estimated cost of rsi demo: the scan of {estimate.scan.model} (with its untrained copies), per block:",
              _table_text(estimate.scan), _totals("scan", estimate.scan)]
    if estimate.planted is not None:
        lines += ["the planted control's scan:", _table_text(estimate.planted), _totals("planted scan", estimate.planted)]
    if estimate.other_stages:
        lines.append("other stages: " + ", ".join(f"{k} {format_duration(v)}" for k, v in estimate.other_stages.items()))
    lines.append(f"total: {estimate.channel_steps:,} channel-steps, wall time {format_duration(estimate.seconds)}, "
                 f"disk {_bytes(estimate.disk_bytes)}")
    lines += _load_note(estimate.scan.load)
    lines.append("assumptions:")
    seen = [*estimate.assumptions, *estimate.scan.assumptions]
    seen += [f"planted control: {a}" for a in (estimate.planted.assumptions if estimate.planted else [])
             if a not in seen and not a.startswith("time per batch step")]
    lines += [f"  - {a}" for a in seen]
    return "\n".join(lines)
