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
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import torch

from rsi_plugin.errors import RSIError

__all__ = ["Draw", "random_sets", "keeps", "decide", "screen", "draws_frame", "auto_tolerance", "redecide",
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


def random_sets(pool: Sequence[int], size: int, seed: int, count: int) -> list[tuple[int, ...]]:
    r"""The first ``count`` random sets of ``size`` channels from ``pool``, seeded.

    Draw ``i`` is ``size`` distinct channels (uniform without replacement, from a
    ``torch.Generator`` seeded with ``seed``), sorted. The sequence is prefix-stable: the
    first ``m`` sets do not depend on ``count``. Two draws may coincide (with probability
    ``1 / C(len(pool), size)`` per pair).

    Args:
        pool (sequence of int): channels to draw from.
        size (int): channels per set.
        seed (int): seed of the generator.
        count (int): number of sets.

    Returns:
        list of tuples of int.

    Raises:
        ValueError: ``size`` larger than the pool, or negative.
    """
    pool = [int(c) for c in pool]
    if size < 0 or size > len(pool):
        raise RSIError(f"cannot draw {size} channels from a pool of {len(pool)} non-passing channels")
    generator = torch.Generator().manual_seed(int(seed))
    sets = []
    for _ in range(count):
        pick = torch.randperm(len(pool), generator=generator)[:size].tolist()
        sets.append(tuple(sorted(pool[j] for j in pick)))
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
