r"""The planted positive control of a run: can the instrument see a known answer?

The same scan that a run makes of its model (feature visualisations, Eq. 1 and Eq. 2, the
same seeds, untrained copies through :mod:`rsi_plugin.criteria.controls`) is made of
``load_model("planted")`` (:mod:`rsi_plugin.zoo.planted`), whose block
:data:`~rsi_plugin.zoo.planted.PLANTED_BLOCK` has scale-invariant channels by construction
(:data:`~rsi_plugin.zoo.planted.PLANTED_CHANNELS`) and others that fail by construction. Then the
Eq. 3 sweep ablates the planted channels of its classifier, whose accuracy on zoomed images
depends on them: a known scale-specific deficit the test must detect.

Measured per (channel, seed) row, an undetermined row counting as a miss:

* ``recall``: the share of the planted channels' rows that pass;
* ``false_positive_rate``: the share of the other channels' rows that pass;
* ``control_passing``: planted channels robust (passing in every seed) in some untrained copy,
  and ``control_planted_p``: the one-sided exact test that the planted channels are robust more
  often in the planted model than in its copies (each channel counted once per model; an index
  that a random copy passes by chance, at its base rate ``control_base_rate``, is not the
  planted property);
* ``eq3_detected``: the Eq. 3 deficit is distinguishable from the null at some scale
  (:func:`rsi_plugin.ablation.eq3_stats.verdict`'s rule: ``p_null`` times the number of scaled
  conditions below :data:`~rsi_plugin.ablation.eq3_stats.ALPHA`).

:func:`run_planted_control` writes them to ``RUN/planted/planted.json`` with the tables beside
it (:class:`rsi_plugin.core.runfolder.PlantedFiles`); the results summary reads that file and the
method card marks "planted recovery" from it.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from rsi_plugin.core.atomic import atomic_write_text
from rsi_plugin.core.runfolder import PlantedFiles
from rsi_plugin.errors import RSIError
from rsi_plugin.paper import SWEEP_SCALES

__all__ = ["PlantedControlConfig", "run_planted_control", "recovery", "eq3_detected"]

logger = logging.getLogger(__name__)


@dataclass
class PlantedControlConfig:
    r"""Settings of :func:`run_planted_control`.

    Attributes:
        seeds (sequence of int): FZ seeds (a run passes its own).
        controls (int): untrained copies of the planted model scanned the same way.
        steps (int): cap on the FZ steps (each FZ stops at its plateau).
        strength (float): the planted classifier's dependence on the planted channels
            (:func:`rsi_plugin.zoo.planted.build_planted`; 1: the default construction).
        samples (int): images of :func:`rsi_plugin.zoo.planted.planted_data` for the sweep.
        trials (int): screened random control sets; ``null_sets``: random same-size sets of the null.
        scales (tuple of float): the sweep's scales.
        tolerance (float or "auto"): screening slack (as the run's).
        seed (int): seed of the data and of the random sets.
        eq3 (bool): run the Eq. 3 positive control.
    """

    seeds: Sequence[int] = (0, 1, 2)
    controls: int = 2
    steps: int = 2560
    strength: float = 1.0
    samples: int = 1000
    trials: int = 10
    null_sets: int = 200
    scales: tuple[float, ...] = SWEEP_SCALES
    tolerance: float | str = "auto"
    seed: int = 0
    eq3: bool = True


def recovery(table: pd.DataFrame, planted: Sequence[int], block: str) -> dict[str, Any]:
    r"""Recall and false-positive rate of a scan of the planted model.

    Args:
        table (DataFrame): scan rows (``block``, ``channel``, ``passes``, ``verdict``, ``seed``).
        planted (sequence of int): the planted channels.
        block (str): the planted block.

    Returns:
        dict: ``recall``, ``false_positive_rate`` (per (channel, seed) row; undetermined rows
        count as not passing), ``planted_rows``, ``other_rows``, ``undetermined``, ``per_seed``
        (seed -> passing channels), ``missed`` and ``false_positives`` (sorted channel lists).

    Raises:
        RSIError: the table has no row of ``block``.
    """
    part = table[table["block"].astype(str) == str(block)]
    if not len(part):
        raise RSIError(f"the planted scan has no row of block {block!r}")
    passes = part["passes"].astype(bool)
    is_planted = part["channel"].isin(list(planted))
    seeds = part["seed"] if "seed" in part.columns else pd.Series(0, index=part.index)
    return {
        "recall": float(passes[is_planted].mean()),
        "false_positive_rate": float(passes[~is_planted].mean()) if (~is_planted).any() else 0.0,
        "planted_rows": int(is_planted.sum()), "other_rows": int((~is_planted).sum()),
        "undetermined": int((part["verdict"].astype(str) == "undetermined").sum()) if "verdict" in part else 0,
        "per_seed": {str(s): sorted(int(c) for c in part.loc[passes & (seeds == s), "channel"])
                     for s in sorted(seeds.unique())},
        "missed": sorted({int(c) for c in part.loc[is_planted & ~passes, "channel"]}),
        "false_positives": sorted({int(c) for c in part.loc[~is_planted & passes, "channel"]}),
    }


def eq3_detected(eq3: pd.DataFrame, no_scale: float = 0.0) -> bool:
    """Whether an Eq. 3 table's deficit is distinguishable from its null at some scale, by
    the rule of :func:`rsi_plugin.ablation.eq3_stats.verdict` (Bonferroni over the scaled conditions)."""
    from rsi_plugin.ablation.eq3_stats import ALPHA

    scaled = eq3[eq3["scale"].round(6) != round(no_scale, 6)]
    if not len(scaled) or "p_null" not in scaled.columns:
        return False
    p = scaled["p_null"].astype(float).dropna()
    return bool(len(p) and (p * len(scaled)).min() < ALPHA)


def _against_copies(table: pd.DataFrame, copies: pd.DataFrame | None, planted: Sequence[int]) -> dict[str, Any]:
    r"""The planted channels in the planted model against the same channels in its untrained copies.

    Each channel counts once per model (``robust``: passes in every seed it was rendered in,
    :func:`rsi_plugin.criteria.seeds.channel_table`): ``control_passing`` is the number of
    planted channels robust in some copy, ``control_planted_p`` the one-sided Fisher exact
    p-value of "the planted channels are robust more often in the planted model than in its
    copies" (:func:`rsi_plugin.criteria.controls.fisher_greater`), ``control_base_rate`` the
    copies' robust share over all their channels (what an index hits by chance).
    """
    from rsi_plugin.criteria.controls import fisher_greater
    from rsi_plugin.criteria.seeds import channel_table

    if copies is None or not len(copies):
        return {"control_passing": None, "controls": [], "control_planted_p": None, "control_base_rate": None}
    mine = channel_table(table)
    mine = mine[mine["channel"].isin(list(planted))]
    theirs = pd.concat([channel_table(part.drop(columns=["control"])).assign(control=name)
                        for name, part in copies.groupby("control", sort=True)], ignore_index=True)
    theirs_planted = theirs[theirs["channel"].isin(list(planted))]
    a, n1 = int(mine["robust"].sum()), len(mine)
    b, n2 = int(theirs_planted["robust"].sum()), len(theirs_planted)
    return {"controls": sorted(str(c) for c in copies["control"].unique()),
            "control_passing": int(theirs_planted.loc[theirs_planted["robust"].astype(bool), "channel"].nunique()),
            "control_planted_robust": b, "control_planted_rows": n2,
            "control_planted_p": fisher_greater(a, n1, b, n2) if n1 and n2 else None,
            "control_base_rate": float(theirs["robust"].astype(bool).mean())}


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    from rsi_plugin.core.distributed import is_main

    if is_main():  # under torchrun: rank 0 writes
        atomic_write_text(path, frame.to_csv(index=False))


def run_planted_control(out_dir: str | os.PathLike, config: PlantedControlConfig | None = None,
                        progress: bool = True) -> dict[str, Any]:
    r"""Scan the planted model (and its untrained copies) and run its Eq. 3 positive control.

    FZs are cached under ``out_dir/fz`` (a rerun renders nothing again).

    Args:
        out_dir (str or path): the folder (``RunLayout(run).planted.dir``).
        config (PlantedControlConfig, optional): the settings.
        progress (bool): tqdm bars.

    Returns:
        dict, as written to ``planted.json``: ``block``, ``planted``, ``seeds``, the
        :func:`recovery` numbers, ``control_passing``, ``controls``, ``eq3_detected`` (None when
        not run), ``eq3_verdict``, ``settings``.
    """
    from rsi_plugin.ablation.eq3_stats import verdict
    from rsi_plugin.ablation.experiment import SweepConfig, sweep
    from rsi_plugin.criteria.channel_scan import ScanConfig, scan
    from rsi_plugin.criteria.controls import control_rows
    from rsi_plugin.core.distributed import is_main
    from rsi_plugin.featureviz.optimize import FeatureVizConfig
    from rsi_plugin.zoo.planted import PLANTED_BLOCK, PLANTED_CHANNELS, PLANTED_FZ, build_planted, planted_data

    config = config or PlantedControlConfig()
    files = PlantedFiles(Path(out_dir))
    files.dir.mkdir(parents=True, exist_ok=True)
    model = build_planted(strength=config.strength)
    seeds = tuple(int(s) for s in config.seeds)
    controls = (f"random-init:{config.controls}",) if config.controls else ()
    scan_config = ScanConfig(featureviz=FeatureVizConfig(**PLANTED_FZ, steps=config.steps, seed=seeds[0]), seeds=seeds,
                             cache_dir=str(files.fz_cache), controls=controls)
    table = scan(model, [PLANTED_BLOCK], scan_config, progress=progress)
    _write_csv(table, files.scan)
    result: dict[str, Any] = {"block": PLANTED_BLOCK, "planted": list(PLANTED_CHANNELS), "seeds": list(seeds),
                              **recovery(table, PLANTED_CHANNELS, PLANTED_BLOCK)}
    copies = control_rows(table)
    result.update(_against_copies(table, copies, PLANTED_CHANNELS))
    if copies is not None and len(copies):
        _write_csv(copies, files.controls)
    result["eq3_detected"] = result["eq3_verdict"] = None
    if config.eq3:
        data = planted_data(config.samples, seed=config.seed)
        sweep_config = SweepConfig(scales=tuple(config.scales), trials=config.trials, seed=config.seed,
                                   tolerance=config.tolerance, null_sets=config.null_sets)
        swept = sweep(model, data, PLANTED_BLOCK, list(PLANTED_CHANNELS), sweep_config, progress=progress)
        _write_csv(swept.summary, files.eq3)
        result["eq3_detected"] = eq3_detected(swept.summary)
        result["eq3_verdict"] = verdict(swept.summary, PLANTED_BLOCK)
    result["settings"] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(config).items()}
    result["settings"]["seeds"] = list(seeds)
    if is_main():
        atomic_write_text(files.summary, json.dumps(result, indent=2, sort_keys=True, default=str) + "\n")
    logger.info("planted control: recall %.2f, false positives %.3f, %s planted channel(s) pass in an untrained copy, "
                "Eq. 3 %s", result["recall"], result["false_positive_rate"], result["control_passing"],
                {True: "detected", False: "missed", None: "not run"}[result["eq3_detected"]])
    return result
