r"""Random control sets and the paper's screening rule (§4).

The control condition ablates ``K`` channels drawn at random from the channels that do
*not* pass the criteria, ``K`` being the size of the scale-invariant set. To separate "these
channels build scale invariance" from "these channels are simply useful", the paper keeps a
random set only if, *in the no-scale condition* (``p = 0``), ablating it damages accuracy at
least as much as ablating the invariant set::

    keep  <=>  acc_random(p=0) <= acc_invariant(p=0) + tolerance

``tolerance = 0`` is the rule used for block 2.1; the paper relaxed it for 3.1 so that the
random ablation's accuracy "can be no more than 1% greater" (``tolerance = 0.01``, accuracy
as a fraction). Draws are made one after another from a seeded generator; each is kept or
rejected in that order until ``trials`` sets are kept or ``max_draws`` sets have been drawn.
Every draw up to the last one needed is recorded, kept or not; how many candidates are
evaluated per pass over the data does not change which are kept.

Starvation. With tolerance 0 the rule can reject almost every draw (on the bundled model 99
of 100 at block 4.0), and Eq. 3 then rests on fewer sets than asked. ``tolerance="auto"``
(:func:`auto_tolerance`) screens with tolerance 0 first and, when fewer than ``trials`` sets
pass within ``max_draws``, uses the smallest tolerance that keeps ``trials`` of the draws
evaluated (all ``max_draws`` of them by then); the tolerance used is recorded and reported.

Distinct sets. :func:`random_sets` never returns a set twice: a repeated set is the same
evidence counted again, and a test that treats repeats as independent sets understates its
p-value (issue 20: at a block of 16 channels with an invariant set of one, 10 screened draws
held 5 distinct channels). When ``max_draws`` is at least the number of possible sets
(:func:`possible_sets`), the draws are *all* of them, in a seeded order; the screening then
sees every candidate the pool has. The same function draws the null sets of
:mod:`rsi_plugin.ablation.eq3_stats` (with ``exclude``: never the invariant set itself).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass
from typing import Callable, Iterable, Sequence

import torch

from rsi_plugin.errors import RSIError

__all__ = ["Draw", "random_sets", "possible_sets", "keeps", "decide", "screen", "draws_frame", "auto_tolerance", "redecide",
           "AUTO"]

#: the value of ``tolerance`` that asks for :func:`auto_tolerance`
AUTO = "auto"

#: slack on the accuracy comparison, so that ``0.3 <= 0.29 + 0.01`` holds in floating point
_EPS = 1e-9


@dataclass(frozen=True)
class Draw:
    """One screened random set.

    Attributes:
        draw (int): position in the seeded sequence of draws (0, 1, ...).
        channels (tuple of int): the set, sorted.
        correct (int): correct predictions with the set ablated, no scale transform.
        n_images (int): images evaluated.
        accuracy (float): ``correct / n_images``.
        invariant_accuracy (float): the invariant set's no-scale accuracy it was compared to.
        kept (bool): whether it passed the screening.
        trial (int): its trial index when kept, else -1.
    """

    draw: int
    channels: tuple[int, ...]
    correct: int
    n_images: int
    accuracy: float
    invariant_accuracy: float
    kept: bool
    trial: int


def possible_sets(pool_size: int, size: int, excluded: int = 0) -> int:
    r"""How many distinct sets of ``size`` channels a pool of ``pool_size`` holds, less
    ``excluded`` of them: :math:`\binom{\text{pool\_size}}{\text{size}} - \text{excluded}`.

    Args:
        pool_size (int): channels in the pool.
        size (int): channels per set.
        excluded (int): sets of the pool that may not be drawn (e.g. 1: the invariant set
            among the null sets).

    Returns:
        int >= 0 (0 when ``size`` exceeds the pool).
    """
    if size < 0 or pool_size < 0:
        raise RSIError(f"pool_size and size must be >= 0, got {pool_size} and {size}")
    return max(0, math.comb(pool_size, size) - int(excluded))


def random_sets(pool: Sequence[int], size: int, seed: int, count: int,
                exclude: Iterable[Sequence[int]] = ()) -> list[tuple[int, ...]]:
    r"""The first ``count`` distinct random sets of ``size`` channels from ``pool``, seeded.

    The sequence is a function of ``(pool, size, seed, exclude)`` alone, so it is
    prefix-stable: the first ``m`` sets do not depend on ``count``. It holds no set twice and
    no set of ``exclude``:

    * while fewer than half of the allowed sets (:func:`possible_sets`) have been drawn, draw
      ``i`` is ``size`` distinct channels, uniform without replacement, from a
      ``torch.Generator`` seeded with ``seed`` (``torch.randperm`` of the pool), sorted; a
      draw equal to an earlier set or to an excluded one is skipped (the generator moves on).
      This is the sequence of earlier versions up to their first repeat;
    * from then on the sets not drawn yet, enumerated (``itertools.combinations`` of the
      sorted pool), follow in an order shuffled by the same generator, so the sequence ends
      after exactly every allowed set, without a long rejection tail.

    When ``count`` is at least the number of allowed sets, the result is therefore *every*
    allowed set (each once, in a seeded order), and a test over it is exact rather than
    sampled.

    Args:
        pool (sequence of int): channels to draw from (distinct).
        size (int): channels per set.
        seed (int): seed of the generator.
        count (int): number of sets asked; fewer come back when the pool has fewer.
        exclude (iterable of sets): sets never returned (order of their channels free), e.g.
            the invariant set among its own null sets.

    Returns:
        list of ``min(count, possible)`` distinct sorted tuples of int.

    Raises:
        RSIError (a ValueError): ``size`` larger than the pool, or negative; a channel
        repeated in the pool.
    """
    pool = [int(c) for c in pool]
    if size < 0 or size > len(pool):
        raise RSIError(f"cannot draw {size} channels from a pool of {len(pool)} non-passing channels")
    if len(set(pool)) != len(pool):
        raise RSIError(f"the pool repeats channel(s) {sorted({c for c in pool if pool.count(c) > 1})}; "
                       "give each channel once")
    members = set(pool)
    banned = {tuple(sorted(int(c) for c in s)) for s in exclude}
    banned = {s for s in banned if len(s) == size and set(s) <= members}
    allowed = possible_sets(len(pool), size, len(banned))
    wanted = min(int(count), allowed)
    generator = torch.Generator().manual_seed(int(seed))
    seen: set[tuple[int, ...]] = set()
    sets: list[tuple[int, ...]] = []
    while len(sets) < wanted:
        if 2 * len(sets) >= allowed:  # the rest, enumerated, in a seeded order
            rest = [s for s in itertools.combinations(sorted(pool), size) if s not in seen and s not in banned]
            order = torch.randperm(len(rest), generator=generator).tolist()
            sets.extend(rest[j] for j in order[:wanted - len(sets)])
            break
        pick = torch.randperm(len(pool), generator=generator)[:size].tolist()
        drawn = tuple(sorted(pool[j] for j in pick))
        if drawn in seen or drawn in banned:
            continue
        seen.add(drawn)
        sets.append(drawn)
    return sets


def keeps(random_accuracy: float, invariant_accuracy: float, tolerance: float = 0.0) -> bool:
    """The screening rule: keep a random set iff its no-scale accuracy is at most the
    invariant set's no-scale accuracy plus ``tolerance`` (it does at least as much damage,
    up to ``tolerance``)."""
    return random_accuracy <= invariant_accuracy + tolerance + _EPS


def decide(start: int, sets: Sequence[tuple[int, ...]], counts: Sequence[tuple[int, int]],
           invariant_accuracy: float, tolerance: float, needed: int, first_trial: int = 0) -> list[Draw]:
    r"""Apply :func:`keeps` to evaluated draws in order, stopping once ``needed`` are kept.

    Args:
        start (int): sequence index of ``sets[0]``.
        sets (sequence): the evaluated sets, in draw order.
        counts (sequence of (correct, n_images)): their no-scale results.
        invariant_accuracy (float): the invariant set's no-scale accuracy.
        tolerance (float): see :func:`keeps`.
        needed (int): how many more sets to keep.
        first_trial (int): trial index of the first set kept here.

    Returns:
        list of :class:`Draw`, up to and including the ``needed``-th kept one.
    """
    out: list[Draw] = []
    trial = first_trial
    for offset, (channels, (correct, n)) in enumerate(zip(sets, counts)):
        if trial - first_trial >= needed:
            break
        accuracy = correct / n if n else float("nan")
        kept = n > 0 and keeps(accuracy, invariant_accuracy, tolerance)
        out.append(Draw(start + offset, tuple(int(c) for c in channels), int(correct), int(n), accuracy,
                        float(invariant_accuracy), kept, trial if kept else -1))
        trial += kept
    return out


def screen(
    sets: Sequence[tuple[int, ...]],
    evaluate: Callable[[list[tuple[int, ...]]], Sequence[tuple[int, int]]],
    invariant_accuracy: Callable[[], float] | float,
    trials: int,
    tolerance: float = 0.0,
    chunk: int | None = None,
    done: Sequence[Draw] = (),
    on_decided: Callable[[list[Draw]], None] | None = None,
) -> list[Draw]:
    r"""Screen the seeded draws ``sets`` until ``trials`` are kept or the draws run out.

    Candidates are evaluated ``max(chunk, still needed)`` at a time (one pass over the data
    each); the records are those :func:`decide` returns, so they do not depend on ``chunk``.

    Args:
        sets (sequence): every draw allowed, in order (``max_draws`` of them).
        evaluate (callable): ``evaluate(candidates) -> [(correct, n_images), ...]`` in the
            no-scale condition.
        invariant_accuracy (float or callable): the invariant set's no-scale accuracy; a
            callable is asked after each evaluation (so the first pass can measure it).
        trials (int): sets to keep.
        tolerance (float): see :func:`keeps`.
        chunk (int, optional): candidates per evaluation; ``trials`` by default.
        done (sequence of Draw): draws already decided (a resumed sweep), in order.
        on_decided (callable, optional): called with the new records after each evaluation.

    Returns:
        list of :class:`Draw`, ``done`` first.
    """
    records = list(done)
    chunk = max(1, chunk or trials or 1)
    while True:
        kept = sum(r.kept for r in records)
        needed = trials - kept
        if needed <= 0 or len(records) >= len(sets):
            return records
        start = len(records)
        candidates = list(sets[start:start + max(chunk, needed)])
        counts = evaluate(candidates)
        threshold = invariant_accuracy() if callable(invariant_accuracy) else invariant_accuracy
        new = decide(start, candidates, counts, threshold, tolerance, needed, first_trial=kept)
        records.extend(new)
        if on_decided is not None:
            on_decided(new)


def auto_tolerance(draws: Sequence[Draw], trials: int) -> float | None:
    r"""The smallest tolerance that keeps ``trials`` of the evaluated ``draws``.

    The ``trials``-th smallest excess ``accuracy - invariant_accuracy`` over the draws,
    clipped at 0 (so 0 when the paper's rule already keeps enough). Draws of no image are
    ignored.

    Args:
        draws (sequence of Draw): evaluated draws (kept or not).
        trials (int): sets wanted.

    Returns:
        float, or None when fewer than ``trials`` draws were evaluated (no tolerance keeps
        that many).
    """
    excess = sorted(max(0.0, d.accuracy - d.invariant_accuracy) for d in draws if d.n_images > 0)
    if trials <= 0:
        return 0.0
    if len(excess) < trials:
        return None
    return float(excess[trials - 1])


def redecide(draws: Sequence[Draw], tolerance: float, trials: int) -> list[Draw]:
    r"""The screening of already evaluated ``draws`` decided again with ``tolerance``
    (:func:`decide` from draw 0: trial numbers follow draw order, records stop at the
    ``trials``-th kept set).

    Args:
        draws (sequence of Draw): evaluated draws, in draw order from draw 0.
        tolerance (float): see :func:`keeps`.
        trials (int): sets to keep.

    Returns:
        list of :class:`Draw`.
    """
    if not draws:
        return []
    threshold = draws[0].invariant_accuracy
    return decide(draws[0].draw, [d.channels for d in draws], [(d.correct, d.n_images) for d in draws],
                  threshold, tolerance, trials)


def draws_frame(draws: Sequence[Draw]):
    """The draws as a ``pandas.DataFrame`` (channels as a space-separated string)."""
    import pandas as pd

    columns = [f for f in Draw.__dataclass_fields__]
    rows = [{**asdict(d), "channels": " ".join(map(str, d.channels))} for d in draws]
    return pd.DataFrame(rows, columns=columns)
