r"""Eq. (3) of the paper and its figures, from a tidy table of sweep cells.

For every scale ``p`` and random trial ``i`` the ratio of accuracies

.. math::
    r_i(p) = \frac{\mathrm{acc}_{\mathrm{invariant}}(p)}{\mathrm{acc}_{\mathrm{random}, i}(p)}

is averaged over the ``N`` trials, :math:`\bar r(p) = \frac1N \sum_i r_i(p)`, with its standard
error :math:`\mathrm{sd}(r(p)) / \sqrt N` (sample standard deviation, ``ddof = 1``; NaN for a
single trial or an infinite ratio). The no-scale ratio :math:`\bar r(0)` is the paper's blue line in Fig. 2: under
the null hypothesis the scaled ratios equal it; the paper's finding is that they lie below.
A random trial with accuracy 0 gives an infinite ratio.

Everything here takes and returns ``pandas`` frames; the plots draw on a matplotlib
``Figure`` with the Agg canvas (no pyplot, no global backend switch).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pandas as pd

from .atomic import atomic_write

__all__ = ["CONDITIONS", "RESULT_COLUMNS", "eq3_summary", "plot_eq3", "plot_accuracy"]

CONDITIONS: tuple[str, ...] = ("none", "invariant", "random")
"""Conditions of the sweep: no ablation, the scale-invariant set, random control sets."""

RESULT_COLUMNS: tuple[str, ...] = ("condition", "trial", "scale", "accuracy", "n_images", "correct")
"""Columns of the tidy results table, one row per (condition, trial, scale) cell."""

SUMMARY_COLUMNS: tuple[str, ...] = (
    "scale", "ratio_mean", "ratio_se", "n_trials", "no_scale_ratio", "ratio_minus_no_scale",
    "acc_none", "acc_invariant", "acc_random_mean", "acc_random_se",
)


def _check(results: pd.DataFrame) -> None:
    if not isinstance(results, pd.DataFrame):
        raise TypeError(f"results must be a pandas DataFrame, got {type(results).__name__}")
    missing = [c for c in ("condition", "trial", "scale", "accuracy") if c not in results.columns]
    if missing:
        raise ValueError(f"results lacks column(s) {missing}; expected {', '.join(RESULT_COLUMNS)}")


def _se(values: pd.Series) -> float:
    values = values.dropna()
    if len(values) < 2 or values.isin([math.inf, -math.inf]).any():
        return float("nan")
    return float(values.std(ddof=1) / math.sqrt(len(values)))


def eq3_summary(results: pd.DataFrame, no_scale: float = 0.0) -> pd.DataFrame:
    r"""Eq. (3) per scale from a results table.

    Args:
        results (DataFrame): one row per cell with columns ``condition`` (``"none"``,
            ``"invariant"``, ``"random"``), ``trial``, ``scale``, ``accuracy``.
        no_scale (float): the scale of the no-scale condition. Default 0.

    Returns:
        DataFrame, one row per scale (ascending) with columns ``scale``, ``ratio_mean``
        (Eq. 3), ``ratio_se`` (its standard error), ``n_trials``, ``no_scale_ratio`` (the
        ratio at ``no_scale``, on every row), ``ratio_minus_no_scale``, ``acc_none``,
        ``acc_invariant``, ``acc_random_mean``, ``acc_random_se``.

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
            raise ValueError(f"more than one {name!r} row at a scale: {sorted(part.loc[part['scale'].duplicated(), 'scale'])}")
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
    return summary[list(SUMMARY_COLUMNS)]


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


def plot_eq3(summary: pd.DataFrame, path: str | os.PathLike, title: str | None = None,
             no_scale: float = 0.0) -> Path:
    r"""The paper's Fig. 2: Eq. (3) per scaled condition (bars, standard-error whiskers)
    against the no-scale ratio (blue line).

    Args:
        summary (DataFrame): from :func:`eq3_summary`.
        path (str or path): image file to write (PNG by default; the suffix picks the format).
        title (str, optional): figure title.
        no_scale (float): scale of the no-scale condition, drawn as the line.

    Returns:
        Path of the written file.
    """
    if not isinstance(summary, pd.DataFrame) or "ratio_mean" not in summary.columns:
        raise ValueError("summary must be the DataFrame eq3_summary returns")
    figure = _figure()
    axes = figure.add_subplot()
    scaled = summary[summary["scale"] != round(float(no_scale), 6)]
    positions = range(len(scaled))
    infinite = scaled["ratio_mean"].isin([math.inf, -math.inf]).to_numpy()
    heights = scaled["ratio_mean"].mask(infinite)  # a random trial at accuracy 0: no bar, marked
    errors = scaled["ratio_se"].mask(infinite | scaled["ratio_se"].isna().to_numpy(), 0.0)
    axes.bar(positions, heights.fillna(0.0), color="0.7", edgecolor="0.3", yerr=errors, ecolor="black", capsize=4)
    for position in [p for p, inf in zip(positions, infinite) if inf]:
        axes.annotate("inf", (position, 0), xytext=(0, 4), textcoords="offset points", ha="center", fontsize=8)
    base = summary["no_scale_ratio"].iloc[0] if len(summary) else float("nan")
    if math.isfinite(base):
        axes.axhline(base, color="tab:blue", linewidth=2, label=f"no scale ({base:.3f})")
        axes.legend(loc="lower right", fontsize=8)
    axes.set_xticks(list(positions), [_percent(s) for s in scaled["scale"]])
    axes.set_xlabel("scale transformation")
    axes.set_ylabel(r"mean acc$_{si}$ / acc$_{rand}$ (Eq. 3)")
    finite = pd.concat([scaled["ratio_mean"], pd.Series([base])]).replace([math.inf, -math.inf], float("nan")).dropna()
    if len(finite):
        low, high = float(finite.min()), float(finite.max())
        pad = max(0.02, 0.25 * (high - low))
        axes.set_ylim(max(0.0, low - pad), high + pad)
    if title:
        axes.set_title(title)
    return _save(figure, path)


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
