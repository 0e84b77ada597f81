r"""Eq. (3) of the paper and its figures, from a tidy table of sweep cells.

For every scale ``p`` and random trial ``i`` the ratio of accuracies

.. math::
    r_i(p) = \frac{\mathrm{acc}_{\mathrm{invariant}}(p)}{\mathrm{acc}_{\mathrm{random}, i}(p)}

is averaged over the ``N`` trials, :math:`\bar r(p) = \frac1N \sum_i r_i(p)`, with its standard
error :math:`\mathrm{sd}(r(p)) / \sqrt N` (sample standard deviation, ``ddof = 1``; NaN for a
single trial or an infinite ratio). The no-scale ratio :math:`\bar r(0)` is the paper's blue line in Fig. 2: under
the null hypothesis the scaled ratios equal it; the paper's finding is that they lie below.
A random trial with accuracy 0 gives an infinite ratio.

With ``tests=True`` (default) the summary also carries the tests of
:mod:`rsi_plugin.ablation.eq3_stats`: a bootstrap interval of the mean ratio, the paired permutation
and sign tests of the scaled ratios against the no-scale ratio across random sets, and the
invariant set's place among ``null_set`` sets (random same-size sets from all channels). A sweep
adds ``trials_asked``, ``tolerance`` and ``starved`` (fewer sets kept than asked).

Everything here takes and returns ``pandas`` frames; the plots draw on a matplotlib
``Figure`` with the Agg canvas (no pyplot, no global backend switch).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pandas as pd

from rsi_plugin.core.atomic import atomic_write
from rsi_plugin.errors import InputTypeError, RSIError

__all__ = ["CONDITIONS", "RESULT_COLUMNS", "eq3_summary", "eq3_figure", "plot_eq3", "plot_accuracy"]

CONDITIONS: tuple[str, ...] = ("none", "invariant", "random", "null_set")
"""Conditions of the sweep: no ablation, the scale-invariant set, screened random control
sets, and unscreened random same-size sets from all channels (the independent null)."""

RESULT_COLUMNS: tuple[str, ...] = ("condition", "trial", "scale", "accuracy", "n_images", "correct")
"""Columns of the tidy results table, one row per (condition, trial, scale) cell."""

SUMMARY_COLUMNS: tuple[str, ...] = (
    "scale", "ratio_mean", "ratio_se", "n_trials", "no_scale_ratio", "ratio_minus_no_scale",
    "acc_none", "acc_invariant", "acc_random_mean", "acc_random_se",
)
"""Columns of :func:`eq3_summary` without tests (the tests append
:data:`rsi_plugin.ablation.eq3_stats.TEST_COLUMNS`)."""


def _check(results: pd.DataFrame) -> None:
    if not isinstance(results, pd.DataFrame):
        raise InputTypeError(f"results must be a pandas DataFrame, got {type(results).__name__}")
    missing = [c for c in ("condition", "trial", "scale", "accuracy") if c not in results.columns]
    if missing:
        raise RSIError(f"results lacks column(s) {missing}; expected {', '.join(RESULT_COLUMNS)}")


def _se(values: pd.Series) -> float:
    values = values.dropna()
    if len(values) < 2 or values.isin([math.inf, -math.inf]).any():
        return float("nan")
    return float(values.std(ddof=1) / math.sqrt(len(values)))


def eq3_summary(results: pd.DataFrame, no_scale: float = 0.0, tests: bool = True, seed: int = 0) -> pd.DataFrame:
    r"""Eq. (3) per scale from a results table.

    Args:
        results (DataFrame): one row per cell with columns ``condition`` (``"none"``,
            ``"invariant"``, ``"random"``), ``trial``, ``scale``, ``accuracy``.
        no_scale (float): the scale of the no-scale condition. Default 0.
        tests (bool): append the tests of :func:`rsi_plugin.ablation.eq3_stats.ratio_tests`.
        seed (int): seed of the tests' resampling.

    Returns:
        DataFrame, one row per scale (ascending) with columns ``scale``, ``ratio_mean``
        (Eq. 3), ``ratio_se`` (its standard error), ``n_trials``, ``no_scale_ratio`` (the
        ratio at ``no_scale``, on every row), ``ratio_minus_no_scale``, ``acc_none``,
        ``acc_invariant``, ``acc_random_mean``, ``acc_random_se`` and, with ``tests``,
        :data:`rsi_plugin.ablation.eq3_stats.TEST_COLUMNS`.

    Raises:
        TypeError: not a DataFrame. ValueError: missing columns, or more than one
        invariant (or none) row at a scale.
    """
    _check(results)
    frame = results.assign(scale=results["scale"].astype(float).round(6))
    inv = frame[frame["condition"] == "invariant"]
    none = frame[frame["condition"] == "none"]
    for name, part in (("invariant", inv), ("none", none)):
        if part["scale"].duplicated().any():
            raise RSIError(f"more than one {name!r} row at a scale: {sorted(part.loc[part['scale'].duplicated(), 'scale'])}")
    inv_acc = inv.set_index("scale")["accuracy"]
    none_acc = none.set_index("scale")["accuracy"]
    rand = frame[frame["condition"] == "random"]
    rows = []
    for scale in sorted(set(frame["scale"])):
        r = rand[rand["scale"] == scale]
        acc_inv = float(inv_acc.get(scale, float("nan")))
        ratios = pd.Series([acc_inv / a if a else (math.inf if acc_inv else float("nan")) for a in r["accuracy"]],
                           dtype=float)
        rows.append({
            "scale": scale,
            "ratio_mean": float(ratios.mean()) if len(ratios) else float("nan"),
            "ratio_se": _se(ratios),
            "n_trials": int(len(ratios)),
            "acc_none": float(none_acc.get(scale, float("nan"))),
            "acc_invariant": acc_inv,
            "acc_random_mean": float(r["accuracy"].mean()) if len(r) else float("nan"),
            "acc_random_se": _se(r["accuracy"]),
        })
    summary = pd.DataFrame(rows, columns=[c for c in SUMMARY_COLUMNS if c not in ("no_scale_ratio", "ratio_minus_no_scale")])
    base = summary.loc[summary["scale"] == round(float(no_scale), 6), "ratio_mean"]
    no_scale_ratio = float(base.iloc[0]) if len(base) else float("nan")
    summary["no_scale_ratio"] = no_scale_ratio
    summary["ratio_minus_no_scale"] = summary["ratio_mean"] - no_scale_ratio
    summary = summary[list(SUMMARY_COLUMNS)]
    if tests:
        from rsi_plugin.ablation.eq3_stats import ratio_tests

        summary = summary.merge(ratio_tests(frame, no_scale, seed=seed), on="scale", how="left")
    return summary


def _figure(width: float = 5.0, height: float = 3.6):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure, path: str | os.PathLike) -> Path:
    path = Path(path)
    return atomic_write(path, lambda tmp: figure.savefig(tmp, dpi=150, format=path.suffix.lstrip(".") or "png"))


def _percent(scale: float) -> str:
    return f"{100 * scale:g}%"


def eq3_figure(summary: pd.DataFrame, title: str | None = None, no_scale: float = 0.0):
    r"""The paper's Fig. 2 as a matplotlib ``Figure`` (see :func:`plot_eq3`).

    Standard-error whiskers are drawn only at scales whose mean rests on at least two
    random sets with a finite standard error; a figure without any says so in a note
    (``"no error bars: N random set(s)"``) instead of drawing zero-length caps.

    Args:
        summary (DataFrame): from :func:`eq3_summary`.
        title (str, optional): figure title.
        no_scale (float): scale of the no-scale condition, drawn as the line.

    Returns:
        matplotlib ``Figure`` (Agg canvas).

    Raises:
        ValueError: ``summary`` is not an Eq. 3 summary.
    """
    if not isinstance(summary, pd.DataFrame) or "ratio_mean" not in summary.columns:
        raise RSIError("summary must be the DataFrame eq3_summary returns")
    figure = _figure()
    axes = figure.add_subplot()
    scaled = summary[summary["scale"] != round(float(no_scale), 6)]
    positions = list(range(len(scaled)))
    infinite = scaled["ratio_mean"].isin([math.inf, -math.inf]).to_numpy()
    heights = scaled["ratio_mean"].mask(infinite)  # a random trial at accuracy 0: no bar, marked
    trials = scaled["n_trials"] if "n_trials" in scaled.columns else pd.Series(0, index=scaled.index)
    with_error = (~infinite) & scaled["ratio_se"].notna().to_numpy() & (trials.to_numpy() >= 2)
    axes.bar(positions, heights.fillna(0.0), color="0.7", edgecolor="0.3")
    if with_error.any():
        axes.errorbar([p for p, e in zip(positions, with_error) if e], heights[with_error],
                      yerr=scaled["ratio_se"][with_error], fmt="none", ecolor="black", capsize=4)
    else:
        most = int(trials.max()) if len(trials) else 0
        axes.text(0.02, 0.98, f"no error bars: {most} random set(s)", transform=axes.transAxes,
                  ha="left", va="top", fontsize=8, color="tab:red")
    for position in [p for p, inf in zip(positions, infinite) if inf]:
        axes.annotate("inf", (position, 0), xytext=(0, 4), textcoords="offset points", ha="center", fontsize=8)
    base = summary["no_scale_ratio"].iloc[0] if len(summary) else float("nan")
    if math.isfinite(base):
        axes.axhline(base, color="tab:blue", linewidth=2, label=f"no scale ({base:.3f})")
        axes.legend(loc="lower right", fontsize=8)
    axes.set_xticks(positions, [_percent(s) for s in scaled["scale"]])
    axes.set_xlabel("scale transformation")
    axes.set_ylabel(r"mean acc$_{si}$ / acc$_{rand}$ (Eq. 3)")
    finite = pd.concat([scaled["ratio_mean"], pd.Series([base])]).replace([math.inf, -math.inf], float("nan")).dropna()
    if len(finite):
        low, high = float(finite.min()), float(finite.max())
        pad = max(0.02, 0.25 * (high - low))
        axes.set_ylim(max(0.0, low - pad), high + pad)
    if title:
        axes.set_title(title)
    return figure


def plot_eq3(summary: pd.DataFrame, path: str | os.PathLike, title: str | None = None,
             no_scale: float = 0.0) -> Path:
    r"""The paper's Fig. 2: Eq. (3) per scaled condition (bars, standard-error whiskers
    where at least two random sets exist) against the no-scale ratio (blue line).

    Args:
        summary (DataFrame): from :func:`eq3_summary`.
        path (str or path): image file to write (PNG by default; the suffix picks the format).
        title (str, optional): figure title.
        no_scale (float): scale of the no-scale condition, drawn as the line.

    Returns:
        Path of the written file.
    """
    return _save(eq3_figure(summary, title, no_scale), path)


def plot_accuracy(results: pd.DataFrame, path: str | os.PathLike, title: str | None = None) -> Path:
    r"""Accuracy against scale for each condition: no ablation, the invariant set, every
    random trial (thin) and the random mean.

    Args:
        results (DataFrame): the tidy results table.
        path (str or path): image file to write.
        title (str, optional): figure title.

    Returns:
        Path of the written file.
    """
    _check(results)
    figure = _figure()
    axes = figure.add_subplot()
    rand = results[results["condition"] == "random"]
    for i, (_, trial) in enumerate(rand.groupby("trial")):
        trial = trial.sort_values("scale")
        axes.plot(100 * trial["scale"], trial["accuracy"], color="0.75", linewidth=0.8,
                  label="random trials" if i == 0 else None)
    if len(rand):
        mean = rand.groupby("scale")["accuracy"].mean()
        axes.plot(100 * mean.index, mean.values, color="tab:blue", marker="o", label="random (mean)")
    styles = {"none": ("black", "no ablation"), "invariant": ("tab:red", "scale-invariant set")}
    for condition, (colour, label) in styles.items():
        part = results[results["condition"] == condition].sort_values("scale")
        if len(part):
            axes.plot(100 * part["scale"], part["accuracy"], color=colour, marker="o", label=label)
    axes.set_xlabel("scale transformation (%)")
    axes.set_ylabel("top-1 accuracy")
    axes.legend(fontsize=8)
    if title:
        axes.set_title(title)
    return _save(figure, path)
