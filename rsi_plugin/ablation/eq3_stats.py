r"""Is the Eq. (3) effect real? Tests of the scaled ratios against the no-scale ratio and
against an independent null.

Two questions, per scale ``p``:

1. **Paired over random sets.** Each screened random set ``i`` gives a ratio at ``p`` and at
   no scale; :math:`d_i = r_i(p) - r_i(0)`. The paper's claim is :math:`d < 0` (the invariant
   set hurts more, relative to random sets, when the image is scaled). Tested one-sided by a
   paired sign-flip permutation test on the mean of :math:`d` (exact over all :math:`2^n`
   sign vectors up to :data:`EXACT_MAX` sets, seeded Monte Carlo above) and by the sign test
   (how many :math:`d_i < 0` among the non-zero ones, binomial with :math:`1/2`), with a
   percentile bootstrap confidence interval of the mean ratio and of the mean difference.
   These condition on the images and on the invariant set: they do not carry the invariant
   set's own sampling noise.
2. **Independent null.** The invariant set replaced by ``M`` random sets of the same size
   drawn from *all* channels of the block (``condition == "null_set"``; not
   ``"null"``, which CSV readers take for a missing value): each gives the same
   scale-specific deficit :math:`D(p) = \bar r(p) - \bar r(0)`, with the screened random
   sets as denominators (the unablated accuracy when none was kept). The invariant set's
   :math:`D(p)` is placed in that distribution: ``null_share`` is the share of null sets
   with a deficit at least as large (:math:`D_j \le D`) and ``p_null`` is
   :math:`(1 + \#\{D_j \le D\}) / (1 + M)`.

:func:`verdict` says in one sentence whether the deficit is distinguishable from the null
(``p_null`` below :data:`ALPHA` after a Bonferroni correction over the scaled conditions).

**Distinct sets.** Every test counts each distinct set once (:func:`distinct_sets`): when the
results carry a ``channels`` column (a sweep's do), a random or null trial whose set equals an
earlier trial's is dropped before anything is computed, and so is a null set equal to the
invariant set (the invariant set is never a member of its own null; null sets may overlap it
*partially*, as in the paper, whose null draws from all channels: under the null hypothesis the
invariant set is one of the :math:`\binom{C}{k}` sets of the block, so the others are its
reference distribution). A repeated set adds no evidence; counted twice it would shrink every
p-value. The sweep draws distinct sets in the first place
(:func:`rsi_plugin.ablation.screening.random_sets`), and takes *all* the possible null sets
when there are no more than asked: ``p_null`` is then the exact randomisation p-value
(``exact_null``), the invariant set's rank among every set of its size. The paired
permutation test is exact (``exact_permutation``) when it enumerates all :math:`2^n` sign
vectors (:math:`n \le` :data:`EXACT_MAX` distinct random sets).

**Power: the detectable deficit.** With ``M`` distinct null deficits and ``m`` scaled
conditions, a deficit ``D`` is detected when :math:`p_\text{null}\, m < \alpha`, with
:math:`p_\text{null} = (1 + \#\{D_j \le D\}) / (1 + M)` (the rule of :func:`verdict`). Let
``k`` be the largest count with :math:`(1 + k)\, m / (1 + M) < \alpha`; every ``D`` below
the ``(k+1)``-th smallest null deficit :math:`D_{(k+1)}` has at most ``k`` null deficits at
or below it and is detected, while :math:`D_{(k+1)}` itself is not. That order statistic is
``detectable_deficit`` :math:`D^*` (:func:`detectable_deficit`): the most extreme deficit the
run could still have missed, so "not distinguishable" means the invariant set's deficit is no
more negative than :math:`D^*`. ``detectable_effect`` is :math:`D^*` minus the null median
(the size of that effect beyond a typical random set). When even a deficit below every null
deficit is not detected (``min_p_null`` :math:`= 1 / (1 + M) \ge \alpha / m`, e.g. 15
distinct null sets at five scales: :math:`1/16 > 0.01`), nothing is detectable: ``detectable``
is False and :math:`D^*` is NaN. ``D*`` depends on the images (through the accuracies), the
screened random sets (the denominators) and the null; it is read off the null actually drawn,
not from a model of it.
"""

from __future__ import annotations

import itertools
import logging
import math
import warnings
from typing import Any, Sequence

import numpy as np
import pandas as pd

from rsi_plugin.errors import RSIError

logger = logging.getLogger(__name__)

__all__ = ["sign_test", "permutation_test", "bootstrap_ci", "ratio_tests", "null_deficits", "verdict",
           "distinct_sets", "detectable_deficit", "ALPHA", "EXACT_MAX", "TEST_COLUMNS"]

#: significance level of :func:`verdict` (family-wise, Bonferroni over the scaled conditions)
ALPHA = 0.05
#: the permutation test enumerates all sign vectors up to this many sets
EXACT_MAX = 16
#: resamples of the Monte Carlo permutation test and of the bootstrap
RESAMPLES = 10000
#: confidence level of the bootstrap intervals
LEVEL = 0.95

TEST_COLUMNS: tuple[str, ...] = (
    "n_images", "ratio_ci_low", "ratio_ci_high", "diff_mean", "diff_ci_low", "diff_ci_high",
    "p_permutation", "p_sign", "deficit", "n_null", "null_deficit_median", "null_share", "p_null",
    "distinct_random", "distinct_null", "possible_null", "exact_null", "exact_permutation", "alpha_scale",
    "min_p_null", "detectable", "detectable_deficit", "detectable_effect",
)
r"""Columns :func:`ratio_tests` adds to the Eq. 3 summary. The last ten (issue 20):
``distinct_random`` / ``distinct_null`` (distinct random / null sets the tests counted),
``possible_null`` (how many null sets the block has, NaN when not given), ``exact_null`` (the
null holds every one of them), ``exact_permutation`` (all sign vectors enumerated),
``alpha_scale`` (:math:`\alpha / m`), ``min_p_null`` (:math:`1 / (1 + M)`, the smallest
``p_null`` the null allows), ``detectable`` (some deficit could reach ``alpha_scale``),
``detectable_deficit`` (:math:`D^*`, see the module docstring) and ``detectable_effect``
(:math:`D^*` minus the null median)."""

#: the condition names whose trials are sets of channels, deduplicated by :func:`distinct_sets`
SET_CONDITIONS: tuple[str, ...] = ("random", "null_set")


def _finite(values: Sequence[float]) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    return array[np.isfinite(array)]


def sign_test(differences: Sequence[float]) -> float:
    r"""One-sided sign test of ``differences < 0``.

    Args:
        differences (sequence of float): paired differences; zeros and non-finite values
            are dropped.

    Returns:
        float: :math:`P(X \ge k)` for :math:`X \sim \mathrm{Bin}(n, 1/2)`, ``k`` the number of
        negative differences among the ``n`` non-zero ones; 1.0 when ``n = 0``.
    """
    d = _finite(differences)
    d = d[d != 0]
    n, k = len(d), int((d < 0).sum())
    if n == 0:
        return 1.0
    return float(sum(math.comb(n, j) for j in range(k, n + 1)) / 2 ** n)


def permutation_test(differences: Sequence[float], resamples: int = RESAMPLES, seed: int = 0) -> float:
    r"""One-sided paired sign-flip permutation test of ``mean(differences) < 0``.

    Under the null each difference is as likely to have either sign. The p-value is the
    share of sign vectors whose mean is at most the observed mean: exact over all
    :math:`2^n` vectors for :math:`n \le` :data:`EXACT_MAX`, else
    :math:`(1 + \#) / (1 + \text{resamples})` over seeded random vectors.

    Args:
        differences (sequence of float): paired differences (non-finite dropped).
        resamples (int): random sign vectors above :data:`EXACT_MAX`.
        seed (int): seed of those vectors.

    Returns:
        float in (0, 1]; 1.0 with no difference.
    """
    d = _finite(differences)
    n = len(d)
    if n == 0:
        return 1.0
    observed = d.mean()
    tolerance = 1e-12 * max(1.0, float(np.abs(d).max()))
    if n <= EXACT_MAX:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=n)))
        means = (signs * d).mean(1)
        return float((means <= observed + tolerance).sum() / len(means))
    rng = np.random.default_rng(seed)
    signs = rng.choice((1.0, -1.0), size=(resamples, n))
    means = (signs * d).mean(1)
    return float((1 + (means <= observed + tolerance).sum()) / (1 + resamples))


def bootstrap_ci(values: Sequence[float], level: float = LEVEL, resamples: int = RESAMPLES,
                 seed: int = 0) -> tuple[float, float]:
    r"""Percentile bootstrap confidence interval of the mean.

    Args:
        values (sequence of float): the sample (non-finite dropped).
        level (float): confidence level in (0, 1).
        resamples (int): bootstrap resamples.
        seed (int): seed of the resampling.

    Returns:
        ``(low, high)``; ``(nan, nan)`` with fewer than two values.

    Raises:
        ValueError: ``level`` outside (0, 1).
    """
    if not 0.0 < level < 1.0:
        raise RSIError(f"level must lie in (0, 1), got {level!r}")
    x = _finite(values)
    if len(x) < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(resamples, len(x)))].mean(1)
    tail = (1.0 - level) / 2
    return float(np.quantile(means, tail)), float(np.quantile(means, 1.0 - tail))


def _set_key(value: Any) -> tuple[int, ...] | None:
    """A set of channels as a sorted tuple, from ``"3 1"``, ``(3, 1)`` or a list; None when
    missing."""
    if value is None or (isinstance(value, (float, np.floating)) and math.isnan(value)):
        return None
    if isinstance(value, str):
        parts = value.replace(",", " ").split()
    elif isinstance(value, (int, float, np.integer, np.floating)):  # one channel, as a CSV reader parses it
        parts = [value]
    else:
        parts = list(value)
    return tuple(sorted(int(c) for c in parts))


def distinct_sets(results: pd.DataFrame) -> pd.DataFrame:
    r"""The results with every set counted once.

    With a ``channels`` column (space-separated channel indices, or sequences; a sweep's
    :attr:`~rsi_plugin.ablation.experiment.SweepResult.results` has one): for the conditions
    :data:`SET_CONDITIONS` (``random``, ``null_set``) a trial whose set equals that of a trial
    with a lower number in the same condition is dropped, all its scales with it; and a null
    set equal to the invariant set is dropped (the invariant set is not a member of its own
    null). Without a ``channels`` column the frame comes back unchanged: its trials are taken
    to be distinct sets (nothing can tell otherwise).

    Args:
        results (DataFrame): a tidy sweep table (``condition``, ``trial``, ``scale``, ... and
            optionally ``channels``).

    Returns:
        DataFrame: the rows kept, in their order (a copy).
    """
    if "channels" not in results.columns or not len(results):
        return results.copy()
    keys = [_set_key(v) for v in results["channels"]]
    conditions = results["condition"].astype(str).to_numpy()
    trials = results["trial"].astype(int).to_numpy()
    invariant = {k for k, c in zip(keys, conditions) if c == "invariant" and k is not None}
    keep = np.ones(len(results), dtype=bool)
    for condition in SET_CONDITIONS:
        first: dict[tuple[int, ...], int] = {}
        for i in np.argsort(trials, kind="stable"):
            if conditions[i] != condition or keys[i] is None:
                continue
            owner = first.setdefault(keys[i], int(trials[i]))
            if owner != trials[i] or (condition == "null_set" and keys[i] in invariant):
                keep[i] = False
    dropped = results.loc[~keep]
    if len(dropped):
        counts = dropped.drop_duplicates(["condition", "trial"])["condition"].value_counts().to_dict()
        logger.info("counting each set once: dropped repeated or invariant trial(s) %s", counts)
    return results.loc[keep].copy()


def detectable_deficit(null: Sequence[float], alpha: float = ALPHA, scales: int = 1) -> float:
    r"""The most extreme scale-specific deficit the null could still have missed (:math:`D^*`).

    A deficit ``D`` is detected when :math:`p_\text{null} \cdot \text{scales} < \alpha`,
    :math:`p_\text{null} = (1 + \#\{D_j \le D\}) / (1 + M)` (:func:`ratio_tests`,
    :func:`verdict`). Every ``D`` below the returned value is detected; the value itself is
    not (see the module docstring).

    Args:
        null (sequence of float): the null sets' deficits at one scale (non-finite dropped;
            one value per distinct set).
        alpha (float): family-wise level.
        scales (int): scaled conditions (the Bonferroni factor).

    Returns:
        float: the ``(k+1)``-th smallest null deficit, ``k`` the largest count with
        :math:`(1 + k)\, \text{scales} / (1 + M) < \alpha`; NaN when no count qualifies
        (the null is too small for any deficit to be detected, or empty); ``inf`` when
        even ``k = M`` qualifies (only for ``alpha > scales``).

    Raises:
        RSIError: ``alpha`` not positive or ``scales`` below 1.
    """
    if not alpha > 0 or int(scales) < 1:
        raise RSIError(f"alpha must be > 0 and scales >= 1, got alpha={alpha!r}, scales={scales!r}")
    values = np.sort(_finite(null))
    m = len(values)
    if not m:
        return float("nan")
    counts = np.arange(m + 1)
    passing = counts[(1 + counts) / (1 + m) * int(scales) < alpha]  # the arithmetic of verdict
    if not len(passing):
        return float("nan")
    k = int(passing.max())
    return float("inf") if k >= m else float(values[k])


def _accuracy(frame: pd.DataFrame, condition: str) -> pd.DataFrame:
    """``trial x scale`` accuracies of one condition."""
    part = frame[frame["condition"] == condition]
    return part.pivot_table(index="trial", columns="scale", values="accuracy", aggfunc="first")


def _deficits(numerator: pd.DataFrame, denominator: pd.DataFrame, no_scale: float) -> pd.DataFrame:
    r"""``D(p) = mean_i num(p) / den_i(p) - mean_i num(0) / den_i(0)`` for every row of
    ``numerator`` (``rows x scales``); ``den`` is ``sets x scales``."""
    scales = [s for s in numerator.columns if s in denominator.columns]
    out = {}
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a scale with no finite ratio: NaN
        for s in scales:
            den = denominator[s].to_numpy(dtype=float)
            ratio = numerator[s].to_numpy(dtype=float)[:, None] / den[None, :]
            ratio[~np.isfinite(ratio)] = np.nan
            out[s] = np.nanmean(ratio, 1) if ratio.shape[1] else np.full(len(numerator), np.nan)
    means = pd.DataFrame(out, index=numerator.index)
    if no_scale not in means.columns:
        return means * np.nan
    return means.sub(means[no_scale], axis=0)


def null_deficits(results: pd.DataFrame, no_scale: float = 0.0) -> tuple[pd.Series, pd.DataFrame]:
    r"""The scale-specific deficits of the invariant set and of the null sets.

    Args:
        results (DataFrame): the tidy sweep table (conditions ``none``, ``invariant``,
            ``random`` and ``null_set``).
        no_scale (float): the no-scale condition.

    Returns:
        ``(invariant, null)``: a Series over scales and a ``null sets x scales`` frame of
        :math:`D(p)`, the denominators being the screened random sets (the unablated
        accuracy when none was kept); each distinct set once (:func:`distinct_sets`).
    """
    frame = distinct_sets(results)
    frame = frame.assign(scale=frame["scale"].astype(float).round(6))
    denominator = _accuracy(frame, "random")
    if denominator.empty:
        denominator = _accuracy(frame, "none")
    invariant = _deficits(_accuracy(frame, "invariant"), denominator, round(no_scale, 6))
    null = _deficits(_accuracy(frame, "null_set"), denominator, round(no_scale, 6))
    series = invariant.iloc[0] if len(invariant) else pd.Series(dtype=float)
    return series, null


def ratio_tests(results: pd.DataFrame, no_scale: float = 0.0, seed: int = 0, alpha: float = ALPHA,
                possible_null: int | None = None) -> pd.DataFrame:
    r"""The tests of Eq. 3 per scale (columns :data:`TEST_COLUMNS` plus ``scale``), each
    distinct set counted once (:func:`distinct_sets`).

    Args:
        results (DataFrame): the tidy sweep table (``condition, trial, scale, accuracy``
            and, when present, ``n_images`` and ``channels``).
        no_scale (float): the no-scale condition.
        seed (int): seed of the bootstrap and Monte Carlo resampling.
        alpha (float): family-wise level of the detectable deficit (Bonferroni over the
            scaled conditions of ``results``, as :func:`verdict`).
        possible_null (int, optional): how many null sets the block has (every set of the
            invariant set's size but the invariant set itself); with it ``exact_null`` says
            whether the null holds all of them.

    Returns:
        DataFrame, one row per scale: ``n_images`` (largest per cell), the bootstrap
        interval of the mean ratio, the mean paired difference to the no-scale ratio with
        its interval, ``p_permutation`` and ``p_sign`` (one-sided, scaled ratio below the
        no-scale one), the invariant set's ``deficit`` :math:`D(p)`, ``n_null`` null sets,
        their median deficit, ``null_share`` and ``p_null`` (NaN without null sets, and at
        the no-scale condition where every deficit is 0), then ``distinct_random``,
        ``distinct_null``, ``possible_null``, ``exact_null``, ``exact_permutation``,
        ``alpha_scale``, ``min_p_null``, ``detectable``, ``detectable_deficit`` and
        ``detectable_effect`` (:data:`TEST_COLUMNS`; the power columns NaN/False at the
        no-scale condition).
    """
    if not alpha > 0:
        raise RSIError(f"alpha must be > 0, got {alpha!r}")
    frame = distinct_sets(results)
    frame = frame.assign(scale=frame["scale"].astype(float).round(6))
    base = round(float(no_scale), 6)
    random = _accuracy(frame, "random")
    inv = _accuracy(frame, "invariant")
    deficit, null = null_deficits(frame, base)
    all_scales = sorted(set(frame["scale"]))
    m = max(1, sum(s != base for s in all_scales))
    distinct_random = int(frame.loc[frame["condition"] == "random", "trial"].nunique())
    distinct_null = int(frame.loc[frame["condition"] == "null_set", "trial"].nunique())
    rows = []
    for scale in all_scales:
        cells = frame[frame["scale"] == scale]
        n_images = int(cells["n_images"].max()) if "n_images" in cells.columns and len(cells) else -1
        row: dict[str, Any] = {"scale": scale, "n_images": n_images}
        ratios = pd.Series(dtype=float)
        diffs = pd.Series(dtype=float)
        if len(inv) and scale in inv.columns and scale in random.columns:
            with np.errstate(divide="ignore", invalid="ignore"):
                ratios = (float(inv[scale].iloc[0]) / random[scale]).replace([np.inf, -np.inf], np.nan)
                if base in random.columns and base in inv.columns:
                    diffs = ratios - (float(inv[base].iloc[0]) / random[base]).replace([np.inf, -np.inf], np.nan)
        row["ratio_ci_low"], row["ratio_ci_high"] = bootstrap_ci(ratios, seed=seed)
        scaled = scale != base
        n_diffs = len(diffs.dropna())
        row["diff_mean"] = float(diffs.mean()) if n_diffs else float("nan")
        row["diff_ci_low"], row["diff_ci_high"] = bootstrap_ci(diffs, seed=seed) if scaled else (float("nan"),) * 2
        row["p_permutation"] = permutation_test(diffs, seed=seed) if scaled and n_diffs else float("nan")
        row["p_sign"] = sign_test(diffs) if scaled and n_diffs else float("nan")
        d = float(deficit.get(scale, float("nan")))
        row["deficit"] = d
        values = null[scale].dropna().to_numpy() if scale in null.columns else np.array([])
        row["n_null"] = int(len(values))
        median = float(np.median(values)) if len(values) else float("nan")
        row["null_deficit_median"] = median
        if scaled and len(values) and math.isfinite(d):
            at_least = int((values <= d + 1e-12).sum())
            row["null_share"] = at_least / len(values)
            row["p_null"] = (1 + at_least) / (1 + len(values))
        else:
            row["null_share"] = row["p_null"] = float("nan")
        row["distinct_random"] = distinct_random
        row["distinct_null"] = distinct_null
        row["possible_null"] = float("nan") if possible_null is None else int(possible_null)
        row["exact_null"] = bool(possible_null is not None and len(values) and len(values) == int(possible_null))
        row["exact_permutation"] = bool(scaled and 0 < n_diffs <= EXACT_MAX)
        row["alpha_scale"] = alpha / m
        if scaled and len(values):
            row["min_p_null"] = 1.0 / (1 + len(values))
            star = detectable_deficit(values, alpha, m)
            row["detectable"] = bool(not math.isnan(star))
            row["detectable_deficit"] = star
            row["detectable_effect"] = star - median
        else:
            row["min_p_null"] = row["detectable_deficit"] = row["detectable_effect"] = float("nan")
            row["detectable"] = False
        rows.append(row)
    return pd.DataFrame(rows, columns=["scale", *TEST_COLUMNS])


def _num(value: float) -> str:
    return f"{value:.3g}"


def _power_text(scaled: pd.DataFrame, alpha: float, m: int) -> str:
    """The clause of :func:`verdict` on what the run could have detected ('' when the summary
    predates the power columns or holds them for another ``alpha``)."""
    if "detectable_deficit" not in scaled.columns or not len(scaled):
        return ""
    if "alpha_scale" in scaled.columns and not np.allclose(scaled["alpha_scale"].astype(float), alpha / m):
        return ""
    star = scaled["detectable_deficit"].astype(float)
    has_null = scaled["n_null"].astype(float) > 0
    seen = scaled[star.notna() & has_null]
    blind = scaled[star.isna() & has_null]
    parts = []
    if len(seen):
        listed = ", ".join(f"{_num(float(r.detectable_deficit))} at {_scales([r.scale])}" for r in seen.itertuples())
        effects = seen["detectable_effect"].astype(float)
        span = (_num(float(effects.min())) if np.isclose(effects.min(), effects.max())
                else f"{_num(float(effects.min()))} to {_num(float(effects.max()))}")
        parts.append(f"power: the run would have detected any scale-specific deficit D(p) below {listed} "
                     f"({span} relative to the null median; p_null < {alpha:g}/{m}), so the invariant set has no "
                     "scale-specific deficit larger (more negative) than that")
    if len(blind):
        n = int(blind["n_null"].max())
        where = "" if not len(seen) else f" at {_scales(blind['scale'])}"
        parts.append(f"the null has too few distinct sets to detect any effect at this alpha{where}: {n} distinct "
                     f"null sets give p_null >= 1/{n + 1} = {_num(1 / (n + 1))}, not below {alpha:g}/{m} = "
                     f"{_num(alpha / m)}")
    return "; ".join(parts)


def _scales(values) -> str:
    return ", ".join(f"{100 * float(s):g} %" for s in values)


def verdict(summary: pd.DataFrame, block: str | None = None, no_scale: float = 0.0, alpha: float = ALPHA) -> str:
    r"""One sentence: is the block's scale-specific deficit distinguishable from the null?

    Distinguishable at a scale when its ``p_null`` times the number of scaled conditions
    (Bonferroni) is below ``alpha``; the paired test over random sets is quoted beside it.
    When it is not, the sentence says what the run could have detected: the detectable
    deficit :math:`D^*` per scale ("the run would have detected any scale-specific deficit
    D(p) below ...") or, when ``min_p_null`` is not below ``alpha / m``, that "the null has
    too few distinct sets to detect any effect at this alpha" (summaries written before the
    power columns, or computed at another ``alpha``, leave that clause out). Without null
    sets the sentence rests on the paired permutation test, likewise corrected.

    Args:
        summary (DataFrame): an Eq. 3 summary holding :data:`TEST_COLUMNS`
            (:func:`rsi_plugin.ablation.eq3.eq3_summary`).
        block (str, optional): the block's name, to start the sentence.
        no_scale (float): the no-scale condition.
        alpha (float): family-wise level.

    Returns:
        str.
    """
    who = f"Block {block}" if block else "The block"
    if summary is None or not len(summary) or "p_null" not in summary.columns:
        return f"{who}: no test of Eq. 3 is available (the sweep's eq3.csv predates the tests or is missing)."
    scaled = summary[summary["scale"].astype(float).round(6) != round(no_scale, 6)]
    m = max(1, len(scaled))
    kept = int(summary["n_trials"].max()) if "n_trials" in summary.columns and len(summary) else 0
    n_null = int(scaled["n_null"].max()) if len(scaled) else 0
    paired = scaled["p_permutation"].astype(float)
    paired_text = (f"paired test over the screened random sets: smallest p = {paired.min():.3g}"
                   if paired.notna().any() else "no paired test: no screened random set")
    if n_null:
        p = scaled["p_null"].astype(float)
        hits = scaled.loc[p * m < alpha, "scale"]
        best = scaled.loc[p.idxmin()] if p.notna().any() else None
        exact = "exact_null" in scaled.columns and scaled["exact_null"].astype(str).isin(["True", "true", "1"]).all()
        null_text = f"{n_null} distinct random same-size sets" + (" (all there are: exact)" if exact else "")
        if len(hits):
            worst = float(p[p * m < alpha].max())
            return (f"{who}: the scale-specific deficit is distinguishable from the null at {_scales(hits)} "
                    f"(p_null <= {worst:.3g} against {null_text}, below {alpha:g} after "
                    f"Bonferroni over {m} scales; {paired_text}; {kept} screened random sets).")
        where = (f"smallest p_null = {best['p_null']:.3g} at {_scales([best['scale']])}" if best is not None
                 else "no finite deficit")
        power = _power_text(scaled, alpha, m)
        return (f"{who}: the scale-specific deficit is not distinguishable from the null at any scale "
                f"({where} over {null_text}, Bonferroni over {m} scales; {paired_text}; "
                f"{kept} screened random sets)" + (f"; {power}." if power else "."))
    if kept < 2:
        return (f"{who}: undetermined: {kept} screened random set(s) and no null sets, too few to test the "
                "scale-specific deficit.")
    hits = scaled.loc[paired * m < alpha, "scale"]
    if len(hits):
        return (f"{who}: the scaled ratios lie below the no-scale ratio at {_scales(hits)} (paired test over {kept} "
                f"random sets, Bonferroni over {m} scales; no independent null was drawn).")
    return (f"{who}: the scaled ratios are not distinguishable from the no-scale ratio at any scale ({paired_text}, "
            f"Bonferroni over {m} scales; {kept} random sets; no independent null was drawn).")
