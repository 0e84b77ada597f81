"""The whole paper on one model, offline: scan every block, draw the Fig.-1 grids, run the
scale-ablation sweep on the blocks with the most passing channels, write the report.

Every stage keeps what it computed in the run folder (the feature-visualisation cache, the
scan table, the grid PNGs, the sweep cells), so an interrupted or repeated run only does
what is missing.
"""

from __future__ import annotations

import json
import logging
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import torch

from rsi_plugin.apps.timing import write_json
from rsi_plugin.core.runfolder import RunLayout
from rsi_plugin.errors import RSIError
from rsi_plugin.paper import FZ_STEPS, SWEEP_SCALES, Variant, check_variant

__all__ = ["DemoConfig", "run_demo", "channel_set_sizes", "pick_ablation_blocks", "TINY_DEFAULT_BLOCKS",
           "smoke_channels", "step_cap_warning", "SMOKE_CHANNELS", "SMOKE_NOTE"]

logger = logging.getLogger(__name__)

#: the blocks ``rsi demo`` scans by default on the bundled ``tiny`` model: the four blocks in
#: which the paper reports scale-invariant channels (1.1, 2.0, 2.1, 3.1; 144 of tiny's 480
#: channels). With the controls (two untrained copies scanned the same way, the planted model)
#: this took 12-20 minutes on 2 CPU cores (the machine's speed varied; see the README);
#: layers 1-3 with the controls took about 25 minutes at the faster speed.
#: ``rsi demo --blocks 1.0 1.1 2.0 2.1 3.0 3.1`` or ``--blocks all`` for more
TINY_DEFAULT_BLOCKS: tuple[str, ...] = ("1.1", "2.0", "2.1", "3.1")
#: channels per block a smoke run forces through the grids and the sweep (:func:`smoke_channels`)
SMOKE_CHANNELS = 2
#: what ``settings.json`` says of a smoke run (``smoke: true``, ``smoke_note``)
SMOKE_NOTE = ("smoke run (rsi demo --quick): not a result. FZs capped at a few steps, few images and trials; "
              "where no channel is in the ablated set, the grids and the ablation sweep take forced channels "
              "(smoke_channels) so that every stage runs")


@dataclass
class DemoConfig:
    r"""Settings of :func:`run_demo`.

    Attributes:
        out (str): the run folder.
        model (str): model name for :func:`rsi_plugin.load_model` (``"tiny"``: bundled).
        weights (str, optional): weights for it (``None``: the bundled / random init).
        data (str, optional): an ImageNet-layout folder for the sweep and the natural images;
            ``None`` for ``tiny``: the generated shapes.
        blocks (list of str, "all" or None): blocks to scan; ``None`` (default): for ``tiny``
            :data:`TINY_DEFAULT_BLOCKS` (the paper's four blocks: 12-20 minutes on 2 CPU cores with the controls), for
            other models ``"all"``.
        steps (int): cap on the feature-visualisation steps; each FZ stops at its plateau
            (:class:`~rsi_plugin.featureviz.optimize.FeatureVizConfig`); one that has not plateaued by
            the cap is ``unconverged`` and its channel undetermined. Default 2560, the paper's
            (fixed) count, as a cap: on the bundled model every FZ of layers 1-3 plateaus before
            it, most by ~600 steps, and converged verdicts let the adaptive rule skip later
            seeds (a 512 cap left most layer-3 FZs unconverged and cost more).
        seeds (int or sequence of int): FZ seeds: a count ``N`` (``seed .. seed + N - 1``) or the
            seeds themselves (as ``rsi scan --seeds``, :func:`demo_seeds`); every number of the scan comes per
            seed, the ablation takes the channels that pass in every seed (``robust``).
        adaptive (bool): after the first seed, render further seeds only for channels whose
            verdict is near a threshold (:func:`rsi_plugin.criteria.seeds.adaptive_stop`).
        channel_set (str): the channels ablated: ``"robust"``, ``"any"`` or ``"seed:K"``
            (:func:`rsi_plugin.criteria.seeds.select_channels`).
        trials (int): random control sets per ablated block (the paper: 10).
        tolerance (float or "auto"): screening slack of the random sets (0: the paper's
            rule; ``"auto"``, the default: 0 when that keeps ``trials`` sets, else the smallest
            tolerance that does, reported; see :class:`~rsi_plugin.ablation.experiment.SweepConfig`).
        null_sets (int): random same-size sets from all channels swept as the Eq. 3 null
            (:class:`~rsi_plugin.ablation.experiment.SweepConfig`).
        ablation_blocks (int or list of str): how many of the blocks with the most passing
            channels to ablate (the paper: 2), or their names.
        samples (int): generated evaluation images for the sweep (``tiny``).
        natural_samples (int): generated images searched for the top-9 natural images.
        scales (tuple of float): scale fractions of the sweep (the paper's,
            :data:`rsi_plugin.paper.SWEEP_SCALES`).
        variant (str): ``"text"`` (default) or ``"code"``: the paper's text or its code
            for every stage (nodes, FZ jitter and Pre reading, ablated node, crop; see
            :func:`rsi_plugin.paper.resolve`).
        grids_per_block (int): at most this many Fig.-1 grids per block.
        seed (int): seed of the feature visualisations, random draws and generated data.
        quick (bool): a smoke run (:meth:`quick_run`): few steps, images and trials, and
            every stage runs: when no channel is in the ``channel_set`` of any block (at 8
            steps every FZ is unconverged, so every verdict undetermined), the Fig.-1 grids and
            the ablation sweep take :data:`SMOKE_CHANNELS` forced channels per block
            (:func:`smoke_channels`, recorded as ``smoke_channels``). ``settings.json`` then
            holds ``smoke: true`` and ``smoke_note``: its numbers are no result.
        controls (int): untrained copies of the model scanned exactly as the model is (the
            model-randomisation control, :mod:`rsi_plugin.criteria.controls`; ``0``: none). The
            method card's "trained vs untrained" check rests on them.
        control_seeds (int, optional): FZ seeds the copies are rendered with (the first ones);
            the comparison judges the trained model on the same seeds. Default 1 (the first
            seed): the copies cost one seed each instead of the adaptive three (the demo's
            time budget); ``None``: every seed.
        planted (bool): also run the planted positive control (:mod:`rsi_plugin.apps.planted`):
            the same scan on ``load_model("planted")`` and its untrained copies, and its Eq. 3
            positive control. The method card's "planted recovery" check rests on it. Its FZs are
            capped at the paper's 2,560 steps whatever ``steps`` is (they plateau by ~200), so
            ``--quick`` checks the instrument for real.
        device (str): where the model runs (``"cpu"``, ``"cuda"``), as ``load_model(device=)``.
    """

    out: str = "rsi-demo"
    model: str = "tiny"
    weights: str | None = None
    data: str | None = None
    blocks: Sequence[str] | str | None = None
    steps: int = FZ_STEPS
    seeds: int | Sequence[int] = 3
    adaptive: bool = True
    channel_set: str = "robust"
    trials: int = 10
    tolerance: float | str = "auto"
    null_sets: int = 200
    ablation_blocks: int | Sequence[str] = 2
    samples: int = 1000
    natural_samples: int = 1000
    scales: tuple[float, ...] = SWEEP_SCALES
    grids_per_block: int = 12
    seed: int = 0
    quick: bool = False
    variant: Variant = "text"
    controls: int = 2
    control_seeds: int | None = 1
    planted: bool = True
    device: str = "cpu"
    timings: dict[str, float] = field(default_factory=dict, repr=False)
    started: str = field(default="", repr=False)

    @classmethod
    def quick_run(cls, out: str, **overrides: Any) -> "DemoConfig":
        """The smoke-run settings (``quick=True``): every stage on every block, fast; no result."""
        settings = dict(out=out, blocks="all", steps=8, seeds=2, trials=2, samples=200, natural_samples=200,
                        null_sets=20, scales=(0.0, 0.2, 0.4), grids_per_block=2, quick=True, controls=1)
        settings.update(overrides)
        return cls(**settings)

    def validated(self) -> "DemoConfig":
        """Deprecated spelling of :meth:`resolved` (one verb across the configs)."""
        import warnings

        warnings.warn("DemoConfig.validated() is deprecated: use DemoConfig.resolved()", DeprecationWarning, stacklevel=2)
        return self.resolved()

    def resolved(self) -> "DemoConfig":
        if not isinstance(self.seeds, int) or isinstance(self.seeds, bool):
            seeds = list(self.seeds) if isinstance(self.seeds, Sequence) and not isinstance(self.seeds, str) else None
            if (not seeds or any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in seeds)
                    or len(set(seeds)) != len(seeds)):
                raise RSIError(f"seeds must be a positive integer (a count) or distinct seeds >= 0, got {self.seeds!r}")
        for name in ("steps", "seeds", "samples", "natural_samples", "grids_per_block"):
            if name == "seeds" and not isinstance(self.seeds, int):
                continue
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise RSIError(f"{name} must be a positive integer, got {value!r}")
        for name in ("trials", "controls"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise RSIError(f"{name} must be an integer >= 0, got {value!r}")
        check_variant(self.variant)
        if self.model != "tiny" and self.data is None:
            raise RSIError(f"model {self.model!r} needs data=: an ImageNet-layout validation folder "
                             "(only the bundled 'tiny' model has generated data)")
        if self.blocks is None:
            self.blocks = list(TINY_DEFAULT_BLOCKS) if self.model == "tiny" else "all"
        return self


def channel_set_sizes(table: pd.DataFrame, blocks: Sequence[str], channel_set: str) -> pd.DataFrame:
    """How many channels of each block the ablation would take (``channel_set`` of the scan).

    Args:
        table (DataFrame): ``scan.csv`` rows, one per (block, channel, seed).
        blocks (list of str): the scanned blocks, in order.
        channel_set (str): ``robust``, ``any`` or ``seed:K``
            (:func:`rsi_plugin.criteria.seeds.select_channels`).

    Returns:
        DataFrame with columns ``block, passing`` (the size of the channel set), one row per block.
    """
    from rsi_plugin.criteria.seeds import select_channels

    blocks = [str(b) for b in blocks]
    return pd.DataFrame({"block": blocks,
                         "passing": [len(select_channels(table, b, channel_set)) for b in blocks]})


def pick_ablation_blocks(summary: pd.DataFrame, how: int | Sequence[str], channels_of: dict[str, int]) -> list[str]:
    """The blocks to ablate: the ``how`` blocks with the most channels in the ablated set (ties:
    the earlier block), among those where a random set of the same size can be drawn from the
    other channels; or the names given.

    Args:
        summary (DataFrame): ``block, passing`` per block, ``passing`` the size of the channel
            set the ablation takes (:func:`channel_set_sizes`).
        how (int or list of str): a count or block names.
        channels_of (dict): block -> number of channels.

    Returns:
        list of block names.
    """
    if not isinstance(how, int):
        return [str(b) for b in how]
    usable = summary[(summary["passing"] > 0) & (summary["passing"] * 2 <= summary["block"].map(channels_of))]
    ranked = usable.assign(order=range(len(usable))).sort_values(["passing", "order"], ascending=[False, True])
    return [str(b) for b in ranked["block"].head(how)]


def smoke_channels(table: pd.DataFrame, block: str, seed: int, k: int = SMOKE_CHANNELS) -> list[int]:
    """The channels a smoke run forces through the grids and the sweep: of the ``seed`` rows
    of ``block``, those meeting Eq. 1 and Eq. 2 as measured (``eq1``, ``eq2``, whatever the FZ
    status) first, then by Eq. 2's margin, then the lower channel; at most ``k``, and at
    most half the block's scanned channels (a random set of the same size must remain).

    Args:
        table (DataFrame): scan rows (``block, channel, seed, eq1, eq2``, optional ``eq2_margin``).
        block (str): the block.
        seed (int): the seed whose rows rank.
        k (int): how many.

    Returns:
        list of channel indices (empty when the block has no row of that seed).
    """
    rows = table[table["block"].astype(str) == str(block)]
    if "seed" in rows.columns:
        rows = rows[rows["seed"] == seed]
    if "source" in rows.columns:
        rows = rows[rows["source"] == "fz"] if (rows["source"] == "fz").any() else rows
    if rows.empty:
        return []
    ranked = rows.assign(
        _both=(rows["eq1"].astype(bool) & rows["eq2"].astype(bool)).astype(int),
        _margin=pd.to_numeric(rows["eq2_margin"], errors="coerce").fillna(-float("inf"))
        if "eq2_margin" in rows.columns else 0.0,
    ).sort_values(["_both", "_margin", "channel"], ascending=[False, False, True], kind="stable")
    count = min(int(k), rows["channel"].nunique() // 2)
    return [int(c) for c in ranked["channel"].drop_duplicates().head(count)]


def step_cap_warning(table: pd.DataFrame, steps: int) -> str | None:
    """A warning when the FZ step cap is below the plateau the model needs: more than half of
    the feature visualisations (In and Pre of every FZ row) ended ``unconverged``
    (:func:`rsi_plugin.featureviz.optimize.fz_status`: the objective had not plateaued at the
    cap), which makes their channels undetermined; ``None`` otherwise.

    Args:
        table (DataFrame): scan rows with ``in_status`` and ``pre_status`` (FZ rows).
        steps (int): the cap the scan ran with.

    Returns:
        the message, or ``None``.
    """
    rows = table[table["source"] == "fz"] if "source" in table.columns else table
    columns = [c for c in ("in_status", "pre_status") if c in rows.columns]
    if rows.empty or not columns:
        return None
    statuses = pd.concat([rows[c].astype(str) for c in columns], ignore_index=True)
    capped = int((statuses == "unconverged").sum())
    if capped * 2 <= len(statuses):
        return None
    return (f"{capped} of {len(statuses)} feature visualisations ended unconverged at the {int(steps)}-step cap "
            f"(their objective was still rising): the cap is below the plateau this model needs, so their channels "
            f"are undetermined; raise it (the default {FZ_STEPS} is the paper's step count, and each FZ stops at "
            f"its plateau)")


def _stage(config: DemoConfig, name: str, start: float) -> None:
    config.timings[name] = round(time.perf_counter() - start, 2)
    logger.info("demo stage %s: %.1f s", name, config.timings[name])


def _settings(config: DemoConfig, model, extra: dict[str, Any]) -> dict[str, Any]:
    """settings.json: this run's settings and wall times, and the wall times of every earlier
    run in the same folder (``runs``), so a rerun that reuses the caches keeps the record of
    the run that computed them."""
    import nnsight

    info = model.rsi_info
    path = RunLayout(config.out).settings
    earlier = []
    if path.is_file():
        try:
            previous = json.loads(path.read_text())
            earlier = [r for r in previous.get("runs", []) if r.get("started") != config.started]
        except (ValueError, AttributeError):
            logger.warning("ignoring an unreadable %s", path)
    return {
        **{k: v for k, v in asdict(config).items() if k not in ("timings", "started")},
        "model_weights": info.weights, "input_size": info.input_size, "resize_size": info.resize_size,
        "wall_time_s": dict(config.timings), "torch": torch.__version__, "nnsight": nnsight.__version__,
        "threads": torch.get_num_threads(), "python": platform.python_version(), **extra,
        "runs": earlier + [{"started": config.started, "wall_time_s": dict(config.timings)}],
    }


def _sweep_data(config: DemoConfig, model):
    """The sweep's data: the folder, else the model's generated sweep set (as ``rsi ablate``)."""
    if config.data is not None:
        return config.data
    from rsi_plugin.zoo.data import default_data

    return default_data(model, "sweep", config.samples, config.seed)


def _natural_images(config: DemoConfig, model):
    """The images searched for the grids' top-9 row: the ones ``rsi scan`` searches
    (:func:`rsi_plugin.criteria.natural.natural_images`)."""
    from rsi_plugin.criteria.natural import natural_images

    return natural_images(model, config.data, config.natural_samples, config.seed, limit=config.natural_samples)


def _grid_rows(table: pd.DataFrame, config: DemoConfig,
               selected: dict[str, list[int]] | None = None) -> pd.DataFrame:
    """The rows the Fig.-1 grids draw: the first seed's rows (whose FZs the grids show),
    ``passes`` set to membership of the demo's channel set (or of ``selected``, block ->
    channels), so a grid is drawn for every channel the ablation takes."""
    from rsi_plugin.criteria.seeds import select_channels

    rows = table[table["seed"] == config.seed].copy() if "seed" in table.columns else table.copy()
    if selected is None:
        selected = {b: select_channels(table, b, config.channel_set) for b in rows["block"].astype(str).unique()}
    chosen = {(str(b), int(c)) for b, channels in selected.items() for c in channels}
    rows["passes"] = [(str(b), int(c)) in chosen for b, c in zip(rows["block"], rows["channel"])]
    return rows


def demo_seeds(config: DemoConfig) -> tuple[int, ...]:
    """The FZ seeds of a run: ``seeds`` as a count -> ``seed .. seed + seeds - 1``; as a
    sequence -> those seeds (as ``rsi scan --seeds``)."""
    if isinstance(config.seeds, int):
        return tuple(range(config.seed, config.seed + config.seeds))
    return tuple(int(s) for s in config.seeds)


def run_demo(config: DemoConfig, progress: bool = True) -> dict[str, Any]:
    r"""Scan, grids, ablation sweeps and report, resumable, in ``config.out``.

    Args:
        config (DemoConfig): the settings.
        progress (bool): tqdm bars.

    Returns:
        dict with ``out`` (Path), ``summary`` (DataFrame, per block), ``eq3`` (dict block ->
        DataFrame), ``report`` (Path; None on the ranks other than 0), ``settings`` (dict, as
        in ``settings.json``).

    Under ``torchrun`` (a process group) every process runs this: the FZ work of the scans and
    the ablation sweeps' images are shared among them, and rank 0 alone writes the tables,
    draws the grids and plots and writes the report; the others wait for it at the end.
    """
    from rsi_plugin.featureviz.optimize import FeatureVizConfig
    from rsi_plugin.apps.fig1 import channel_grids
    from rsi_plugin.core.models import load_model
    from rsi_plugin.core.blocks import residual_blocks
    from rsi_plugin.outputs.plots import plot_sweep
    from rsi_plugin.outputs.report import write_report
    from rsi_plugin.outputs.summary import summarize_run, write_summary
    from rsi_plugin.ablation.experiment import SweepConfig, sweep
    from rsi_plugin.criteria.channel_scan import ScanConfig, check_scan_folder, scan, write_scan
    from rsi_plugin.criteria.seeds import select_channels
    from rsi_plugin.criteria.sensitivity import write_sensitivity
    from rsi_plugin.apps.planted import PlantedControlConfig, run_planted_control
    from rsi_plugin.core.distributed import barrier, is_main

    config = config.resolved()
    config.started = time.strftime("%Y-%m-%dT%H:%M:%S")
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    run = RunLayout(out)
    begin = time.perf_counter()
    model = load_model(config.model, weights=config.weights, seed=config.seed, device=config.device)
    fz_config = FeatureVizConfig(steps=config.steps, seed=config.seed, variant=config.variant)
    cache = run.scan.fz_cache

    start = time.perf_counter()
    seeds = demo_seeds(config)
    controls = (f"random-init:{config.controls}",) if config.controls else ()
    scan_config = ScanConfig(featureviz=fz_config, variant=config.variant, cache_dir=str(cache), seed=config.seed,
                             seeds=seeds, adaptive=config.adaptive, controls=controls,
                             control_seeds=None if config.control_seeds is None else min(config.control_seeds, len(seeds)))
    check_scan_folder(run.scan.dir, model, config.blocks, scan_config)  # other settings: refused before any work
    main = is_main()  # under torchrun the FZ work and the sweeps are shared; rank 0 alone writes and draws
    table = scan(model, config.blocks, scan_config, progress=progress)
    if main:
        write_scan(table, run.scan.dir)
    barrier()
    summary = pd.read_csv(run.scan.summary, dtype={"block": str})
    capped = step_cap_warning(table, config.steps)
    if capped:
        logger.warning("%s", capped)
    _stage(config, "scan", start)

    start = time.perf_counter()
    if main:
        write_sensitivity(model, table, scan_config, run.scan.dir)  # from the cache: no FZ is rendered again
    _stage(config, "sensitivity", start)

    if config.planted:
        start = time.perf_counter()
        run_planted_control(run.planted.dir, PlantedControlConfig(
            seeds=seeds, controls=config.controls, steps=FZ_STEPS, samples=config.samples, trials=config.trials,
            null_sets=config.null_sets, scales=tuple(config.scales), tolerance=config.tolerance, seed=config.seed),
            progress=progress)
        _stage(config, "planted", start)

    scanned = list(dict.fromkeys(table["block"].astype(str)))
    selected = {b: select_channels(table, b, config.channel_set) for b in scanned}
    forced = None
    if config.quick and not any(selected.values()):  # a smoke run still runs every stage
        forced = selected = {b: smoke_channels(table, b, config.seed) for b in scanned}
        logger.warning("smoke run: no channel is in the %r set at the %d-step cap; the grids and the ablation take "
                       "forced channels (%s), not a result", config.channel_set, config.steps,
                       "; ".join(f"{b}: {' '.join(map(str, c))}" for b, c in forced.items()))

    start = time.perf_counter()
    if main:  # a few Post FZs and pictures: one process
        natural = _natural_images(config, model)
        channel_grids(model, _grid_rows(table, config, selected), run.figures, fz_config, cache, natural,
                      max_per_block=config.grids_per_block, progress=progress)
    _stage(config, "figures", start)

    start = time.perf_counter()
    channels_of = {b.name: b.channels for b in residual_blocks(model)}
    sizes = pd.DataFrame({"block": scanned, "passing": [len(selected[b]) for b in scanned]})
    chosen = pick_ablation_blocks(sizes, config.ablation_blocks, channels_of)
    sweep_config = SweepConfig(scales=tuple(config.scales), trials=config.trials, seed=config.seed,
                               tolerance=config.tolerance, null_sets=config.null_sets, variant=config.variant)
    data = _sweep_data(config, model)
    eq3 = {}
    for block in chosen:
        channels = selected[block] if block in selected else select_channels(table, block, config.channel_set)
        result = sweep(model, data, block, channels, sweep_config, out_dir=run.sweep(block).dir, progress=progress)
        if main:
            plot_sweep(result)  # eq3.png (Fig. 2) and accuracy.png beside eq3.csv
        eq3[block] = result.summary
    if not chosen:
        logger.warning("no block has channels in the %r set (and enough others for a random set): no ablation sweep",
                       config.channel_set)
    _stage(config, "ablation", start)

    start = time.perf_counter()
    config.timings["total_before_report"] = round(time.perf_counter() - begin, 2)
    extra = {"ablation_blocks_chosen": chosen, "smoke": bool(config.quick),
             "smoke_note": SMOKE_NOTE if config.quick else None, "smoke_channels": forced,
             "step_cap_warning": capped}
    settings = _settings(config, model, extra)
    report = None
    if main:
        write_json(run.settings, settings)
        report = write_report(out)
        write_summary(summarize_run(out), run.results_summary)
    _stage(config, "report", start)
    settings = _settings(config, model, extra)
    settings["wall_time_s"]["total"] = round(time.perf_counter() - begin, 2)
    if main:
        write_json(run.settings, settings)
    barrier()  # every process returns once the run folder is whole
    return {"out": out, "summary": summary, "eq3": eq3, "report": report, "settings": settings}
