r"""The run's charts, drawn from tables (nothing here computes a result).

==========================  =====================================================================
:func:`plot_eq3`            the paper's Fig. 2: Eq. 3 per scale against the no-scale ratio
:func:`eq3_figure`          the same as a matplotlib ``Figure``
:func:`plot_accuracy`       accuracy against scale per sweep condition
:func:`plot_summary`        the share of passing channels per block (§3)
:func:`plot_sweep`          a finished sweep's two figures into its folder (eq3.png, accuracy.png)
:func:`plot_bench`          ``rsi bench``: overhead against batch size, one line per case
:func:`bench_figure`        the same as a matplotlib ``Figure``
==========================  =====================================================================

The tables come from :func:`rsi_plugin.ablation.eq3.eq3_summary`, a sweep's ``ablation.csv``
and :func:`rsi_plugin.criteria.equations.summarize`. Every chart draws on a matplotlib
``Figure`` with the Agg canvas (no pyplot, no global backend switch; matplotlib is imported
on first use) and is written atomically.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import pandas as pd

from rsi_plugin.core.atomic import atomic_write
from rsi_plugin.errors import InputTypeError, RSIError

__all__ = ["eq3_figure", "plot_eq3", "plot_accuracy", "plot_summary", "plot_sweep", "plot_bench", "bench_figure"]


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


NULL_BAND = (0.05, 0.95)
"""Quantiles of the null sets' deficits drawn as the band of :func:`eq3_figure`'s second panel."""


def eq3_figure(summary: pd.DataFrame, title: str | None = None, no_scale: float = 0.0,
               results: pd.DataFrame | None = None):
    r"""The paper's Fig. 2 as a matplotlib ``Figure`` (see :func:`plot_eq3`).

    The first axes (``figure.axes[0]``): Eq. 3 per scaled condition as bars on a y-axis
    that starts at 0 (a ratio near 1 must not look like a collapse because the axis was cut),
    each bar labelled with its value to 3 decimals, and the no-scale ratio as a line.
    Standard-error whiskers are drawn only at scales whose mean rests on at least two
    random sets with a finite standard error; a figure without any says so in a note
    (``"no error bars: N random set(s)"``) instead of drawing zero-length caps.

    With ``results`` holding null sets (``condition == "null_set"``), a second axes shows
    what the verdict rests on (:func:`rsi_plugin.ablation.eq3_stats.null_deficits`): per
    scale the invariant set's scale-specific deficit :math:`D(p) = \bar r(p) - \bar r(0)`
    (red dot) beside the null sets' deficits, as the band of their :data:`NULL_BAND`
    quantiles (5-95 %) with their median, on an axis through 0.

    Args:
        summary (DataFrame): from :func:`~rsi_plugin.ablation.eq3.eq3_summary`.
        title (str, optional): figure title.
        no_scale (float): scale of the no-scale condition, drawn as the line.
        results (DataFrame, optional): the sweep's tidy cells (``ablation.csv``), for the
            null panel.

    Returns:
        matplotlib ``Figure`` (Agg canvas).

    Raises:
        ValueError: ``summary`` is not an Eq. 3 summary.
    """
    if not isinstance(summary, pd.DataFrame) or "ratio_mean" not in summary.columns:
        raise RSIError("summary must be the DataFrame eq3_summary returns")
    null_panel = results is not None and "condition" in results.columns and bool(
        (results["condition"].astype(str) == "null_set").any())
    figure = _figure(9.5 if null_panel else 5.0, 3.6)
    axes = figure.add_subplot(1, 2, 1) if null_panel else figure.add_subplot()
    scaled = summary[summary["scale"] != round(float(no_scale), 6)]
    positions = list(range(len(scaled)))
    infinite = scaled["ratio_mean"].isin([math.inf, -math.inf]).to_numpy()
    heights = scaled["ratio_mean"].mask(infinite)  # a random trial at accuracy 0: no bar, marked
    trials = scaled["n_trials"] if "n_trials" in scaled.columns else pd.Series(0, index=scaled.index)
    with_error = (~infinite) & scaled["ratio_se"].notna().to_numpy() & (trials.to_numpy() >= 2)
    bars = axes.bar(positions, heights.fillna(0.0), color="0.7", edgecolor="0.3")
    axes.bar_label(bars, [f"{h:.3f}" if math.isfinite(h) else "" for h in heights.fillna(math.nan)],
                   fontsize=7, padding=2 if not with_error.any() else 8)
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
    finite = pd.concat([scaled["ratio_mean"] + scaled["ratio_se"].fillna(0.0), pd.Series([base])]
                       ).replace([math.inf, -math.inf], float("nan")).dropna()
    axes.set_ylim(0.0, 1.15 * float(finite.max()) if len(finite) and finite.max() > 0 else 1.0)
    if null_panel:
        _null_panel(figure.add_subplot(1, 2, 2), results, list(scaled["scale"]), no_scale)
    if title:
        if null_panel:
            figure.suptitle(title)
        else:
            axes.set_title(title)
    return figure


def _null_panel(axes, results: pd.DataFrame, scales: list, no_scale: float) -> None:
    """The second axes of :func:`eq3_figure`: D(p) of the invariant set against the null sets'."""
    from rsi_plugin.ablation.eq3_stats import null_deficits

    invariant, null = null_deficits(results, no_scale)
    positions = list(range(len(scales)))
    values = [0.0]
    low_q, high_q = NULL_BAND
    n = len(null)
    for i, scale in zip(positions, scales):
        key = round(float(scale), 6)
        column = null[key].dropna() if key in null.columns else pd.Series(dtype=float)
        if len(column):
            low, high, median = (float(column.quantile(q)) for q in (low_q, high_q, 0.5))
            axes.bar(i, max(high - low, 1e-9), bottom=low, width=0.5, color="0.85", edgecolor="0.5",
                     label=f"null: {100 * low_q:g}–{100 * high_q:g} % of {n} random same-size sets" if i == 0 else None)
            axes.plot([i - 0.25, i + 0.25], [median, median], color="0.2", linewidth=1.5,
                      label="null median" if i == 0 else None)
            values += [low, high]
        d = float(invariant.get(key, math.nan))
        if math.isfinite(d):
            axes.plot(i, d, "o", color="tab:red", markersize=7, label="invariant set" if i == 0 else None)
            values.append(d)
    axes.axhline(0.0, color="0.3", linewidth=0.8)
    low, high = min(values), max(values)
    pad = max(1e-3, 0.15 * (high - low))
    axes.set_ylim(low - pad, high + pad)
    axes.set_xticks(positions, [_percent(s) for s in scales])
    axes.set_xlabel("scale transformation")
    axes.set_ylabel(r"deficit D(p) = ratio(p) $-$ ratio(0)")
    axes.set_title("what the verdict tests: D(p) against the null", fontsize=9)
    axes.legend(fontsize=7, loc="best")


def plot_eq3(summary: pd.DataFrame, path: str | os.PathLike, title: str | None = None,
             no_scale: float = 0.0, results: pd.DataFrame | None = None) -> Path:
    r"""The paper's Fig. 2: Eq. (3) per scaled condition (bars from 0, standard-error whiskers
    where at least two random sets exist) against the no-scale ratio (blue line) and, given
    the sweep's cells with null sets, the invariant set's deficit beside the null's 5-95 %
    band (:func:`eq3_figure`).

    Args:
        summary (DataFrame): from :func:`~rsi_plugin.ablation.eq3.eq3_summary`.
        path (str or path): image file to write (PNG by default; the suffix picks the format).
        title (str, optional): figure title.
        no_scale (float): scale of the no-scale condition, drawn as the line.
        results (DataFrame, optional): the sweep's tidy cells (``ablation.csv``), for the
            null panel.

    Returns:
        Path of the written file.
    """
    return _save(eq3_figure(summary, title, no_scale, results), path)


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
    from rsi_plugin.ablation.eq3 import check_results

    check_results(results)
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


def plot_sweep(result: Any) -> tuple[Path, Path]:
    r"""Draw a finished sweep's Fig. 2 (``eq3.png``, with the null panel) and ``accuracy.png``
    into its folder, beside the ``eq3.csv`` :func:`rsi_plugin.ablation.experiment.sweep` wrote.

    Args:
        result (SweepResult): what ``sweep(..., out_dir=...)`` returned.

    Returns:
        ``(eq3.png, accuracy.png)`` paths.

    Raises:
        RSIError: a result without a folder (a sweep run without ``out_dir``).
    """
    from rsi_plugin.core.runfolder import SweepFiles

    if result.out_dir is None:
        raise RSIError("this sweep was run without out_dir: there is no folder to draw its figures into; "
                       "run sweep(..., out_dir=...) or call plot_eq3 / plot_accuracy with paths")
    files = SweepFiles(result.out_dir)
    n = len(result.channels)
    title = f"block {result.block}, {n} channel{'' if n == 1 else 's'}, {result.kept} of {result.trials_asked} random sets"
    return (plot_eq3(result.summary, files.eq3_plot, title=title, results=result.results),
            plot_accuracy(result.results, files.accuracy_plot, title=title))


#: line markers of :func:`plot_bench`, one per case (with a colour from ``tab20``)
MARKERS: tuple[str, ...] = ("o", "s", "^", "v", "D", "P", "X", "*", "<", ">", "h", "p", "d", "8", "H")


def bench_figure(frame):
    """Overhead vs batch size, one line per case, as a matplotlib figure.

    Every case gets its own colour (``tab20``) and marker, and the overhead axis is
    logarithmic so that a slow case (``remote_local``, tens of times a plain forward) does not
    flatten the others near 1.

    Args:
        frame (DataFrame): as returned by :func:`rsi_plugin.apps.bench.bench`.

    Returns:
        matplotlib ``Figure`` (the caller closes it).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    cases = list(dict.fromkeys(frame["case"]))
    colours = plt.get_cmap("tab20").colors
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for i, case in enumerate(cases):
        rows = frame[frame["case"] == case]
        ax.plot(rows["batch"], rows["overhead"], marker=MARKERS[i % len(MARKERS)],
                color=colours[(2 * i) % 20 + (2 * i) // 20 % 2], label=case)
    ax.axhline(1.0, color="black", lw=0.8, ls="--")
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(set(frame["batch"])))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
    ax.set_xlabel("batch size")
    ax.set_ylabel("time / plain forward (log)")
    env = frame.attrs.get("environment", {})
    ax.set_title(f"rsi bench: {env.get('model', '')} on {env.get('device', '')} ({env.get('threads', '?')} threads)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig


def plot_bench(frame, path: str | os.PathLike) -> Path:
    """Write :func:`bench_figure` as a PNG; returns its path."""
    import matplotlib.pyplot as plt

    fig = bench_figure(frame)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    finally:
        plt.close(fig)
    return path
