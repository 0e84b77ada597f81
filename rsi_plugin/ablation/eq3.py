r"""Eq. (3) of the paper, from a tidy table of sweep cells (its figures: :mod:`rsi_plugin.outputs.plots`).

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
invariant set's place among ``null_set`` sets (random same-size sets from all channels), each
distinct set counted once, with the deficit below which the null would have detected one (``detectable_deficit``).
A sweep adds ``trials_asked``, ``trials_kept``, ``draws``, ``tolerance``, ``tolerance_setting``,
``possible_random`` and ``exhaustive_random`` (the screening saw every possible random set).

Everything here takes and returns ``pandas`` frames.
"""

from __future__ import annotations

import math

import pandas as pd

from rsi_plugin.errors import InputTypeError, RSIError

__all__ = ["CONDITIONS", "RESULT_COLUMNS", "eq3_summary", "check_results"]

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


def check_results(results: pd.DataFrame) -> None:
    """Raise a clear error unless ``results`` is a tidy results table (:data:`RESULT_COLUMNS`)."""
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


def eq3_summary(results: pd.DataFrame, no_scale: float = 0.0, tests: bool = True, seed: int = 0,
                alpha: float | None = None, possible_null: int | None = None) -> pd.DataFrame:
    r"""Eq. (3) per scale from a results table, each distinct set counted once.

    Args:
        results (DataFrame): one row per cell with columns ``condition`` (``"none"``,
            ``"invariant"``, ``"random"``, ``"null_set"``), ``trial``, ``scale``,
            ``accuracy`` and optionally ``channels`` (then a random or null trial repeating
            an earlier trial's set is left out, and so is a null set equal to the invariant
            set: :func:`rsi_plugin.ablation.eq3_stats.distinct_sets`).
        no_scale (float): the scale of the no-scale condition. Default 0.
        tests (bool): append the tests of :func:`rsi_plugin.ablation.eq3_stats.ratio_tests`.
        seed (int): seed of the tests' resampling.
        alpha (float, optional): family-wise level of the detectable deficit
            (:data:`rsi_plugin.ablation.eq3_stats.ALPHA` by default).
        possible_null (int, optional): null sets the block has (for ``exact_null``).

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
    from rsi_plugin.ablation.eq3_stats import ALPHA, distinct_sets, ratio_tests

    check_results(results)
    frame = distinct_sets(results)
    frame = frame.assign(scale=frame["scale"].astype(float).round(6))
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
        summary = summary.merge(ratio_tests(frame, no_scale, seed=seed, alpha=ALPHA if alpha is None else alpha,
                                            possible_null=possible_null), on="scale", how="left")
    return summary
