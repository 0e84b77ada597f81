r"""Seeds as a dimension of a scan: per-channel pass rates, robust sets, seed agreement,
a permutation null and an adaptive (sequential) seed rule.

A feature visualisation (FZ) starts from random noise, so one channel's verdict under the
paper's criteria can change with the FZ seed. :func:`rsi_plugin.criteria.channel_scan.scan` with
``ScanConfig(seeds=(0, 1, 2))`` renders every channel's FZs once per seed (cached per
seed: the seed is part of the FZ cache key) and returns one row per (source, block,
channel, seed). This module turns those rows into what a reader can trust.

**Per seed** every row has a ``verdict``: ``"pass"``, ``"fail"`` or ``"undetermined"``
(an FZ of In or Pre that is not ``"ok"``: it never counts as passing), from the FZ
validity statuses (``in_status`` / ``pre_status``,
:func:`rsi_plugin.criteria.equations.add_fz_verdict`); :func:`verdicts` reads it (or derives it from
the statuses and ``passes`` for a table without it).

**Per channel** (:func:`channel_table`, written as ``scan_channels.csv``), columns:

* the group keys ``source``, ``transform`` (when present), ``block``, ``channel``, and
  ``layer``, ``index`` (the integer parts of a block id ``"L.I"``);
* ``n_seeds`` (seeds evaluated for the channel), ``n_pass``, ``n_fail``,
  ``n_undetermined``; ``seeds`` and ``seeds_passing`` (space-separated seed lists);
* ``pass_rate = n_pass / n_seeds`` and its Wilson score interval ``pass_rate_low``,
  ``pass_rate_high`` (95 %, :func:`wilson_interval`);
* ``robust``: passes in at least ``ceil(share * n_seeds)`` seeds (``share`` 1 by default:
  every seed); ``any_seed``: passes in at least one seed;
* ``status``: ``"robust"``; ``"not robust"`` when even counting its undetermined seeds as
  passes it could not reach the robust count; ``"undetermined"`` otherwise (the seeds
  whose FZs were invalid decide it);
* ``adaptive_stop`` (when the scan used the adaptive rule): the rule gave it no seed after
  the first.

**Per block** (:func:`block_summary`, written as ``summary.csv``), columns: the group keys
(``source``, ``transform``, ``block``), ``channels``, ``passing`` (= ``robust``, the set
the ablation uses by default), ``share = passing / channels``, ``seeds`` (seeds in the
scan), ``robust``, ``any_seed``, ``undetermined``, ``not_robust``
(channel counts by the columns above), ``passing_mean``, ``passing_min``, ``passing_max``
(passing channels per seed), ``undetermined_mean`` (undetermined rows per seed),
``jaccard_mean``, ``jaccard_min``, ``jaccard_max`` (Jaccard index of the passing sets of
every pair of seeds; NaN for a pair where neither passes anything, and with one seed),
and the permutation null of the robust count: ``null_expected`` (its mean),
``null_low`` / ``null_high`` (2.5 and 97.5 percentiles) and ``null_p`` (the share of null
draws with a robust count >= the observed one, i.e. a one-sided p-value; NaN with one
seed); last ``layer``, ``index``. The null (:func:`permutation_null`) keeps each seed's number of passing channels
and shuffles, independently per seed, which channels they are; a robust count well above
``null_high`` means channels pass more consistently across seeds than chance.

**Adaptive seeds** (:func:`adaptive_stop`): with ``ScanConfig(adaptive=True)`` every
channel gets the first seed; a channel gets no further seed when its first-seed verdict is
far from both thresholds: it passes with ``eq1_rel >= eq1`` and ``eq2_margin >= eq2``, or
it fails with ``eq1_rel <= -eq1`` or ``eq2_margin <= -eq2`` (a criterion it fails by a
wide margin decides the verdict whatever the other does). ``eq1_rel`` is Eq. 1's margin
relative to the activations it compares, ``(Pre(S(x)) - ReLU(Pre(x))) / (|Pre(S(x))| +
|Pre(x)|)`` in [-1, 1]; ``eq2_margin`` is ``log t - |log ratio|`` (``-inf`` for a
ratio that is not positive). Undetermined channels always get more seeds. Defaults:
``eq1 = 0.25``, ``eq2 = 0.25`` (chosen before measuring; not tuned). Stopped channels count
with their first-seed verdict in every seed for the Jaccard and the null (their
``n_seeds`` stays 1, so their Wilson interval shows how little one seed says).
:func:`adaptive_error` measures the rule against a full run.

Channel selection for the ablation (:func:`select_channels`): ``"robust"``, ``"any"`` or
``"seed:K"`` (the passing channels of seed ``K``).
"""

from __future__ import annotations

import itertools
import math
import re
from typing import Sequence

import numpy as np
import pandas as pd

from rsi_plugin.errors import RSIError, UnknownNameError
from rsi_plugin.core.frames import truthy

__all__ = [
    "VERDICTS",
    "CHANNEL_SETS",
    "ADAPTIVE_EQ1",
    "ADAPTIVE_EQ2",
    "NULL_DRAWS",
    "verdicts",
    "block_parts",
    "wilson_interval",
    "robust_count",
    "channel_table",
    "pass_matrix",
    "pairwise_jaccard",
    "permutation_null",
    "block_summary",
    "eq1_relative",
    "adaptive_stop",
    "adaptive_error",
    "select_channels",
    "check_share",
]

#: verdicts of one channel in one seed
VERDICTS: tuple[str, ...] = ("pass", "fail", "undetermined")
#: default thresholds of the adaptive rule (see the module docstring)
ADAPTIVE_EQ1: float = 0.25
ADAPTIVE_EQ2: float = 0.25
#: draws of the permutation null
NULL_DRAWS: int = 2000
#: the ablation's channel sets (plus ``"seed:K"``)
CHANNEL_SETS: tuple[str, ...] = ("robust", "any")

_BLOCK = re.compile(r"^(\d+)\.(\d+)$")


def check_share(share: float) -> float:
    """Validate the robust share (the fraction of seeds a robust channel passes in).

    Raises:
        ValueError: unless ``0 < share <= 1``.
    """
    if isinstance(share, bool) or not isinstance(share, (int, float, np.floating)) or not 0 < float(share) <= 1:
        raise RSIError(f"robust share must be a number in (0, 1] (1: every seed), got {share!r}")
    return float(share)


def robust_count(n_seeds: int | np.ndarray, share: float = 1.0) -> np.ndarray:
    """Passing seeds a robust channel needs: ``ceil(share * n_seeds)`` (at least 1)."""
    share = check_share(share)
    need = np.ceil(np.asarray(n_seeds, dtype=float) * share - 1e-9)
    return np.maximum(need, 1).astype(int)


def verdicts(table: pd.DataFrame) -> pd.Series:
    r"""Each row's verdict, ``"pass"``, ``"fail"`` or ``"undetermined"``.

    Uses the table's ``verdict`` column when it has one (its ``"undetermined"`` rows; the
    others are ``"pass"`` / ``"fail"`` by ``passes``, which scan keeps equal). Otherwise:
    ``"undetermined"`` where ``in_status`` or ``pre_status`` is present and not ``"ok"``;
    else ``"pass"`` where ``passes`` holds and ``"fail"``.

    Args:
        table (DataFrame): scan rows with ``passes``.

    Returns:
        Series of str aligned with ``table``.

    Raises:
        ValueError: no ``verdict`` and no ``passes`` column, or an unknown verdict.
    """
    if "verdict" in table.columns:
        out = table["verdict"].astype(str)
        bad = sorted(set(out) - set(VERDICTS))
        if bad:
            raise UnknownNameError(f"unknown verdict(s) {bad}; valid: {', '.join(VERDICTS)}")
        if "passes" in table.columns:  # pass/fail follow ``passes`` (a table edited by hand stays consistent)
            passes = truthy(table["passes"]).to_numpy(dtype=bool)
            out = pd.Series(np.where(out == "undetermined", "undetermined", np.where(passes, "pass", "fail")),
                            index=table.index)
        return out
    if "passes" not in table.columns:
        raise RSIError("table has neither verdict nor passes: pass the output of rsi.scan")
    out = pd.Series(np.where(truthy(table["passes"]).to_numpy(dtype=bool), "pass", "fail"), index=table.index)
    invalid = pd.Series(False, index=table.index)
    for column in ("in_status", "pre_status"):
        if column in table.columns:
            status = table[column]
            invalid |= status.notna() & (status.astype(str) != "ok")
    out[invalid.to_numpy()] = "undetermined"
    return out


def block_parts(blocks: Sequence[str] | pd.Series) -> tuple[list, list]:
    """``layer`` and ``index`` of block ids ``"L.I"`` (``pd.NA`` for other names)."""
    layers, indices = [], []
    for name in blocks:
        match = _BLOCK.match(str(name))
        layers.append(int(match.group(1)) if match else pd.NA)
        indices.append(int(match.group(2)) if match else pd.NA)
    return layers, indices


def wilson_interval(k: int | np.ndarray, n: int | np.ndarray, z: float = 1.959964) -> tuple[np.ndarray, np.ndarray]:
    r"""Wilson score interval of a binomial proportion ``k / n``.

    .. math:: \frac{\hat p + z^2/2n \pm z\sqrt{\hat p(1-\hat p)/n + z^2/4n^2}}{1 + z^2/n}

    Args:
        k (int or array): successes.
        n (int or array): trials (NaN interval where ``n == 0``).
        z (float): the normal quantile (1.96: 95 %).

    Returns:
        (low, high) arrays.

    Raises:
        ValueError: ``k`` outside ``0..n``.
    """
    k = np.asarray(k, dtype=float)
    n = np.asarray(n, dtype=float)
    if np.any((k < 0) | (k > n)):
        raise RSIError("wilson_interval needs 0 <= k <= n")
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / n
        denom = 1 + z * z / n
        centre = (p + z * z / (2 * n)) / denom
        half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
        low, high = np.clip(centre - half, 0, 1), np.clip(centre + half, 0, 1)
    return np.where(n > 0, low, np.nan), np.where(n > 0, high, np.nan)


def _keys(table: pd.DataFrame) -> list[str]:
    return [c for c in ("source", "transform") if c in table.columns] + ["block"]


def _seed_column(table: pd.DataFrame) -> pd.Series:
    if "seed" in table.columns:
        return table["seed"].astype(int)
    return pd.Series(0, index=table.index)


def channel_table(table: pd.DataFrame, share: float = 1.0) -> pd.DataFrame:
    r"""Per channel: pass rate over seeds, its Wilson interval, ``robust`` and ``status``.

    Args:
        table (DataFrame): scan rows (one per seed; a table without ``seed`` is one seed).
        share (float): a robust channel passes in at least ``ceil(share * n_seeds)`` seeds
            (1: every seed).

    Returns:
        DataFrame, one row per (source, transform, block, channel); columns in the module
        docstring.
    """
    share = check_share(share)
    keys = _keys(table) + ["channel"]
    frame = table.assign(_verdict=verdicts(table), _seed=_seed_column(table))
    rows = []
    for group, part in frame.groupby(keys, sort=False):
        row = dict(zip(keys, group if isinstance(group, tuple) else (group,)))
        verdict = part["_verdict"]
        passing = part.loc[verdict == "pass", "_seed"].tolist()
        row.update({
            "n_seeds": len(part),
            "n_pass": int((verdict == "pass").sum()),
            "n_fail": int((verdict == "fail").sum()),
            "n_undetermined": int((verdict == "undetermined").sum()),
            "seeds": " ".join(str(s) for s in part["_seed"].tolist()),
            "seeds_passing": " ".join(str(s) for s in passing),
        })
        if "adaptive_stop" in part.columns:
            row["adaptive_stop"] = bool(truthy(part["adaptive_stop"]).any())
        rows.append(row)
    columns = keys + ["n_seeds", "n_pass", "n_fail", "n_undetermined", "seeds", "seeds_passing"]
    out = pd.DataFrame(rows, columns=columns + (["adaptive_stop"] if "adaptive_stop" in frame.columns else []))
    layer, index = block_parts(out["block"])
    out.insert(out.columns.get_loc("channel") + 1, "layer", pd.array(layer, dtype="Int64"))
    out.insert(out.columns.get_loc("layer") + 1, "index", pd.array(index, dtype="Int64"))
    n, k, u = out["n_seeds"].to_numpy(), out["n_pass"].to_numpy(), out["n_undetermined"].to_numpy()
    need = robust_count(n, share) if len(out) else np.zeros(0, dtype=int)
    low, high = wilson_interval(k, n)
    out["pass_rate"] = k / np.maximum(n, 1)
    out["pass_rate_low"], out["pass_rate_high"] = low, high
    out["robust"] = k >= need
    out["any_seed"] = k >= 1
    out["status"] = np.where(out["robust"], "robust", np.where(k + u < need, "not robust", "undetermined"))
    return out


def pass_matrix(part: pd.DataFrame, seeds: Sequence[int] | None = None) -> tuple[list[int], list[int], np.ndarray]:
    r"""The pass/not-pass matrix of one block: channels x seeds.

    A channel without a row for a seed (the adaptive rule stopped it) takes the verdict of
    its first seed there.

    Args:
        part (DataFrame): the rows of one block (and source, transform).
        seeds (sequence of int, optional): the columns; the seeds of ``part`` by default.

    Returns:
        (channels, seeds, bool array ``[channels, seeds]``).
    """
    frame = part.assign(_pass=verdicts(part) == "pass", _seed=_seed_column(part))
    seeds = sorted(set(frame["_seed"])) if seeds is None else list(seeds)
    channels = list(dict.fromkeys(int(c) for c in frame["channel"]))
    matrix = np.zeros((len(channels), len(seeds)), dtype=bool)
    at = {s: j for j, s in enumerate(seeds)}
    row = {c: i for i, c in enumerate(channels)}
    first: dict[int, bool] = {}
    filled = np.zeros_like(matrix)
    for channel, seed, passed in zip(frame["channel"].astype(int), frame["_seed"], frame["_pass"]):
        first.setdefault(channel, bool(passed))
        if seed in at:
            matrix[row[channel], at[seed]] = bool(passed)
            filled[row[channel], at[seed]] = True
    for channel, i in row.items():
        matrix[i, ~filled[i]] = first[channel]
    return channels, seeds, matrix


def pairwise_jaccard(matrix: np.ndarray) -> np.ndarray:
    """Jaccard index of the passing sets of every pair of seeds (columns of ``matrix``).

    Returns:
        array, one value per pair (``i < j``); NaN where neither seed passes anything.
    """
    values = []
    for i, j in itertools.combinations(range(matrix.shape[1]), 2):
        union = int((matrix[:, i] | matrix[:, j]).sum())
        values.append(int((matrix[:, i] & matrix[:, j]).sum()) / union if union else float("nan"))
    return np.asarray(values, dtype=float)


def permutation_null(matrix: np.ndarray, share: float = 1.0, draws: int = NULL_DRAWS,
                     seed: int = 0) -> np.ndarray:
    r"""Robust counts under the permutation null: each seed's passing channels shuffled
    across channels independently (seed labels permuted per channel).

    The null keeps every seed's number of passing channels; under it a channel is in the
    robust set by chance. With ``share = 1`` its mean is ``C * prod_s (k_s / C)``.

    Args:
        matrix (bool array): ``[channels, seeds]``, as :func:`pass_matrix` gives.
        share (float): the robust share.
        draws (int): permutations.
        seed (int): seed of the permutations (the result is reproducible).

    Returns:
        int array ``[draws]``: the robust count of each permutation.
    """
    if draws < 1:
        raise RSIError(f"draws must be >= 1, got {draws}")
    channels, n_seeds = matrix.shape
    need = int(robust_count(n_seeds, share))
    if channels == 0:
        return np.zeros(draws, dtype=int)
    rng = np.random.default_rng(seed)
    keys = rng.random((draws, channels, n_seeds))
    order = keys.argsort(axis=1)  # an independent permutation of the channels per draw and seed
    shuffled = np.take_along_axis(np.broadcast_to(matrix, (draws, channels, n_seeds)), order, axis=1)
    return (shuffled.sum(axis=2) >= need).sum(axis=1)


def block_summary(table: pd.DataFrame, share: float = 1.0, draws: int = NULL_DRAWS, seed: int = 0) -> pd.DataFrame:
    r"""Per block: robust / any-seed / undetermined counts, seed Jaccard and the permutation null.

    Args:
        table (DataFrame): scan rows (one per seed).
        share (float): the robust share (see :func:`channel_table`).
        draws (int): permutations of the null.
        seed (int): seed of the permutations.

    Returns:
        DataFrame, one row per (source, transform, block); columns in the module docstring.
    """
    keys = _keys(table)
    channels = channel_table(table, share)
    frame = table.assign(_verdict=verdicts(table), _seed=_seed_column(table))
    rows = []
    for group, part in frame.groupby(keys, sort=False):
        group = group if isinstance(group, tuple) else (group,)
        row = dict(zip(keys, group))
        mask = np.ones(len(channels), dtype=bool)
        for key, value in row.items():
            mask &= (channels[key] == value).to_numpy()
        per_channel = channels[mask]
        _, seeds, matrix = pass_matrix(part)
        per_seed = part.groupby("_seed")["_verdict"]
        passing_per_seed = per_seed.apply(lambda v: int((v == "pass").sum()))
        undetermined_per_seed = per_seed.apply(lambda v: int((v == "undetermined").sum()))
        robust = int(per_channel["robust"].sum())
        row.update({
            "channels": len(per_channel),
            "seeds": len(seeds),
            "passing": robust,
            "share": robust / len(per_channel) if len(per_channel) else float("nan"),
            "robust": robust,
            "any_seed": int(per_channel["any_seed"].sum()),
            "undetermined": int((per_channel["status"] == "undetermined").sum()),
            "not_robust": int((per_channel["status"] == "not robust").sum()),
            "passing_mean": float(passing_per_seed.mean()),
            "passing_min": int(passing_per_seed.min()),
            "passing_max": int(passing_per_seed.max()),
            "undetermined_mean": float(undetermined_per_seed.mean()),
        })
        jaccard = pairwise_jaccard(matrix)
        finite = jaccard[~np.isnan(jaccard)]
        row.update({
            "jaccard_mean": float(finite.mean()) if len(finite) else float("nan"),
            "jaccard_min": float(finite.min()) if len(finite) else float("nan"),
            "jaccard_max": float(finite.max()) if len(finite) else float("nan"),
        })
        if len(seeds) >= 2:
            null = permutation_null(matrix, share, draws, seed)
            row.update({
                "null_expected": float(null.mean()),
                "null_low": float(np.percentile(null, 2.5)),
                "null_high": float(np.percentile(null, 97.5)),
                "null_p": float((null >= robust).mean()),
            })
        else:
            row.update({"null_expected": float("nan"), "null_low": float("nan"), "null_high": float("nan"),
                        "null_p": float("nan")})
        rows.append(row)
    columns = keys + ["channels", "passing", "share", "seeds", "robust", "any_seed", "undetermined", "not_robust",
                      "passing_mean", "passing_min", "passing_max", "undetermined_mean", "jaccard_mean",
                      "jaccard_min", "jaccard_max", "null_expected", "null_low", "null_high", "null_p"]
    out = pd.DataFrame(rows, columns=columns)
    layer, index = block_parts(out["block"])
    out["layer"] = pd.array(layer, dtype="Int64")
    out["index"] = pd.array(index, dtype="Int64")
    return out


def eq1_relative(table: pd.DataFrame) -> pd.Series:
    r"""Eq. 1's margin relative to the activations it compares, in [-1, 1]:
    ``(Pre(S(x)) - ReLU(Pre(x))) / (|Pre(S(x))| + |Pre(x)|)`` (0 where both are 0).

    The denominator holds ``|Pre(x)|``, not its ReLU, so that a Pre that moves from a
    negative value to just above 0 is not called far from the threshold."""
    scaled = pd.to_numeric(table["pre_scaled"], errors="coerce")
    pre = pd.to_numeric(table["pre_in"], errors="coerce")
    denom = scaled.abs() + pre.abs()
    return ((scaled - pre.clip(lower=0)) / denom.where(denom > 0)).fillna(0.0)


def adaptive_stop(table: pd.DataFrame, eq1: float = ADAPTIVE_EQ1, eq2: float = ADAPTIVE_EQ2) -> pd.Series:
    r"""The adaptive rule: which channels need no seed after this one.

    A row stops when its verdict is ``"pass"`` with ``eq1_rel >= eq1`` and
    ``eq2_margin >= eq2``, or ``"fail"`` with ``eq1_rel <= -eq1`` or ``eq2_margin <= -eq2``.
    Undetermined rows never stop.

    Args:
        table (DataFrame): the rows of the first seed (``pre_in``, ``pre_scaled``,
            ``eq2_margin`` and ``passes`` or ``verdict``).
        eq1 (float): threshold on :func:`eq1_relative` (in (0, 1]).
        eq2 (float): threshold on ``eq2_margin`` (log units, > 0).

    Returns:
        bool Series aligned with ``table``.

    Raises:
        ValueError: thresholds out of range or missing columns.
    """
    if not 0 < eq1 <= 1:
        raise RSIError(f"adaptive eq1 threshold must be in (0, 1], got {eq1!r}")
    if not eq2 > 0:
        raise RSIError(f"adaptive eq2 threshold must be > 0, got {eq2!r}")
    missing = [c for c in ("pre_in", "pre_scaled", "eq2_margin") if c not in table.columns]
    if missing:
        raise RSIError(f"table lacks column(s) {missing} needed by the adaptive rule")
    verdict = verdicts(table)
    rel = eq1_relative(table)
    margin2 = pd.to_numeric(table["eq2_margin"], errors="coerce").fillna(-np.inf)
    clear_pass = (verdict == "pass") & (rel >= eq1) & (margin2 >= eq2)
    clear_fail = (verdict == "fail") & ((rel <= -eq1) | (margin2 <= -eq2))
    return (clear_pass | clear_fail).astype(bool)


def adaptive_error(full: pd.DataFrame, eq1: float = ADAPTIVE_EQ1, eq2: float = ADAPTIVE_EQ2) -> dict[str, float]:
    r"""How the adaptive rule does against a full run (every channel, every seed).

    The rule is applied to each channel's first seed; a stopped channel is an error when
    some other seed of the full run passes where its first seed did not, or does not pass
    where its first seed did (so its robust or any-seed membership would differ). A stopped
    fail that is undetermined in another seed changes neither and is counted only in
    ``verdict_changes``.

    Args:
        full (DataFrame): a scan with every seed for every channel.
        eq1, eq2 (float): the rule's thresholds.

    Returns:
        dict: ``channels``, ``stopped``, ``errors``, ``error_rate`` (errors / stopped, NaN
        if none stopped), ``verdict_changes`` (stopped channels with any other verdict in
        another seed), ``renders_full`` and ``renders_adaptive`` (channel-seeds, each
        two FZs), ``saved`` (the share of channel-seeds the rule skips).
    """
    keys = _keys(full) + ["channel"]
    frame = full.assign(_verdict=verdicts(full), _seed=_seed_column(full))
    first_seed = frame["_seed"].min()
    first = frame[frame["_seed"] == first_seed]
    stop = adaptive_stop(first, eq1, eq2)
    stopped = first[stop.to_numpy()]
    merged = frame.merge(stopped[keys + ["_verdict"]].rename(columns={"_verdict": "_first"}), on=keys)
    flipped = merged[(merged["_verdict"] == "pass") != (merged["_first"] == "pass")].drop_duplicates(keys)
    changed = merged[merged["_verdict"] != merged["_first"]].drop_duplicates(keys)
    n_seeds = frame.groupby(keys)["_seed"].nunique().rename("_n").reset_index()
    renders_full = int(n_seeds["_n"].sum())
    renders_adaptive = renders_full - int((stopped[keys].merge(n_seeds, on=keys)["_n"] - 1).sum())
    return {
        "channels": int(len(first)),
        "stopped": int(len(stopped)),
        "errors": int(len(flipped)),
        "error_rate": len(flipped) / len(stopped) if len(stopped) else float("nan"),
        "verdict_changes": int(len(changed)),
        "renders_full": renders_full,
        "renders_adaptive": renders_adaptive,
        "saved": 1 - renders_adaptive / renders_full if renders_full else float("nan"),
    }


def select_channels(table: pd.DataFrame, block: str, channel_set: str = "robust", share: float = 1.0) -> list[int]:
    r"""The channels of a block a scan found, as the ablation takes them.

    Args:
        table (DataFrame): ``scan.csv`` rows (one per seed) of one source, or a
            ``scan_channels.csv`` table (its ``robust`` column is used as it is).
        block (str): the block id (compared as a string: ``"3.10"`` is not ``"3.1"``).
        channel_set (str): ``"robust"`` (passes in every seed, or the share given),
            ``"any"`` (passes in at least one seed) or ``"seed:K"`` (passes in seed ``K``).
        share (float): the robust share for ``"robust"`` from per-seed rows.

    Returns:
        sorted list of channels (empty when none passes).

    Raises:
        ValueError: an unknown channel set, or a seed the table does not hold.
    """
    rows = table[table["block"].astype(str) == str(block)]
    if channel_set in CHANNEL_SETS:
        if "n_pass" in rows.columns and "robust" in rows.columns:  # already per channel
            column = "robust" if channel_set == "robust" else "any_seed"
            return sorted({int(c) for c in rows.loc[truthy(rows[column]), "channel"]})
        per_channel = channel_table(rows, share) if len(rows) else pd.DataFrame(columns=["channel", "robust",
                                                                                         "any_seed"])
        column = "robust" if channel_set == "robust" else "any_seed"
        return sorted({int(c) for c in per_channel.loc[per_channel[column].astype(bool), "channel"]})
    match = re.fullmatch(r"seed:(\d+)", str(channel_set))
    if not match:
        raise UnknownNameError(f"unknown channel set {channel_set!r}; valid: robust, any, seed:K (K a seed of the scan)")
    if "n_pass" in rows.columns:
        raise RSIError("seed:K needs the per-seed rows of scan.csv, not scan_channels.csv")
    seed = int(match.group(1))
    seeds = sorted(set(_seed_column(table)))
    if seed not in seeds:
        raise RSIError(f"seed {seed} is not in the scan; its seeds: {', '.join(map(str, seeds))}")
    rows = rows[_seed_column(rows) == seed]
    return sorted({int(c) for c in rows.loc[(verdicts(rows) == "pass").to_numpy(), "channel"]})
