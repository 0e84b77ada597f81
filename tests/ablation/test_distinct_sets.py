"""Distinct random and null sets, all of them when there are no more than asked, the invariant set
never in its own null, and every test counting each set once (issue 20, item 4)."""

from __future__ import annotations

import io
import itertools
import json
import math

import pandas as pd
import pytest
import torch
from rsi_plugin.testing.models import random_data, small_resnet  # noqa: F401

from rsi_plugin.ablation import SweepConfig, sweep
from rsi_plugin.ablation.eq3 import eq3_summary
from rsi_plugin.ablation.eq3_stats import distinct_sets, ratio_tests, verdict
from rsi_plugin.ablation.screening import possible_sets, random_sets
from rsi_plugin.errors import RSIError


def _old_sequence(pool, size, seed, count):
    """The draws before sets were made distinct: one ``randperm`` per draw, repeats allowed."""
    generator = torch.Generator().manual_seed(seed)
    return [tuple(sorted(pool[j] for j in torch.randperm(len(pool), generator=generator)[:size].tolist()))
            for _ in range(count)]


# --------------------------------------------------------------------------- the draws


@pytest.mark.parametrize("pool_size", [1, 2, 5, 7, 16])
def test_random_sets_are_distinct_complete_and_prefix_stable(pool_size):
    pool = [3 * c + 1 for c in range(pool_size)]  # not 0..n-1: the sets name channels, not positions
    for size in sorted({s for s in (0, 1, 2, 3, pool_size - 1, pool_size) if 0 <= s <= pool_size}):
        everything = set(itertools.combinations(pool, size))
        assert possible_sets(pool_size, size) == len(everything) == math.comb(pool_size, size)
        for seed in (0, 7):
            longest = random_sets(pool, size, seed, 1000)
            for count in (1, 3, len(everything), len(everything) + 5, 200):
                sets = random_sets(pool, size, seed, count)
                assert len(sets) == min(count, len(everything))
                assert len(set(sets)) == len(sets)  # no set twice
                assert all(s in everything for s in sets)  # sorted tuples of the pool
                assert sets == longest[:len(sets)]  # prefix-stable
                if count >= len(everything):
                    assert set(sets) == everything  # all of them


def test_the_invariant_set_is_never_in_its_null():
    for channels, size, invariant in ((16, 1, (5,)), (8, 2, (6, 1)), (10, 3, (2, 4, 9))):
        everything = set(itertools.combinations(range(channels), size))
        for seed in (0, 1, 1_000_003):
            null = random_sets(range(channels), size, seed, 500, exclude=[invariant])
            assert tuple(sorted(invariant)) not in null
            assert set(null) == everything - {tuple(sorted(invariant))}  # all the others, each once
            assert len(null) == possible_sets(channels, size, 1)
            # partial overlaps with the invariant set stay in the null (the paper draws from all channels)
            assert size == 1 or any(set(s) & set(invariant) for s in null)


def test_draws_before_a_repeat_are_the_earlier_sequence():
    """A large pool never repeats in a few hundred draws, so its sets are those of earlier versions
    (folders written then hold the same sets); a small pool diverges only at its first repeat."""
    pool = list(range(4, 64))
    assert random_sets(pool, 4, 11, 300) == _old_sequence(pool, 4, 11, 300)
    small = [c for c in range(16) if c != 5]
    old = _old_sequence(small, 1, 0, 100)
    first_repeat = next(i for i, s in enumerate(old) if s in old[:i])
    new = random_sets(small, 1, 0, 100)
    assert new[:first_repeat] == old[:first_repeat] and len(new) == 15 and len(set(old)) <= 15


def test_random_sets_refuse_a_pool_that_repeats_a_channel():
    with pytest.raises(RSIError, match="repeats channel"):
        random_sets([1, 2, 2, 3], 2, 0, 4)
    assert random_sets([1], 1, 0, 5, exclude=[(1,)]) == []  # nothing left to draw


# --------------------------------------------------------------------------- a block of 16, one channel


def test_one_channel_among_16_uses_the_15_others_exactly(tmp_path):
    model = small_resnet()  # width 8: block 2.1 has 16 channels
    data = random_data(12, seed=1)
    config = SweepConfig(scales=(0.0, 0.5), trials=10, tolerance=1.0, batch_size=12)  # null_sets=200, max_draws=100
    result = sweep(model, data, "2.1", [5], config, out_dir=tmp_path, progress=False)
    others = {(c,) for c in range(16) if c != 5}
    results = result.results
    null = results[results["condition"] == "null_set"]
    null_sets = [tuple(int(c) for c in s.split()) for s in null.drop_duplicates("trial")["channels"]]
    assert sorted(null_sets) == sorted(others)  # 15 distinct sets, the invariant channel not among them
    kept = [tuple(int(c) for c in s.split()) for s in result.draws["channels"]]
    assert len(kept) == len(set(kept)) == 10 and set(kept) <= others
    table = pd.read_csv(tmp_path / "eq3.csv").set_index("scale")
    row = table.loc[0.5]
    assert (row["distinct_null"], row["possible_null"], row["n_null"], row["distinct_random"]) == (15, 15, 15, 10)
    assert bool(row["exact_null"]) and bool(row["exact_permutation"])
    assert row["possible_random"] == 15 and not bool(row["exhaustive_random"])
    # 15 null sets: p_null >= 1/16 > 0.05, nothing could be detected
    assert row["min_p_null"] == pytest.approx(1 / 16) and not bool(row["detectable"])
    assert math.isnan(row["detectable_deficit"]) and row["p_null"] >= 1 / 16
    assert "too few distinct sets to detect any effect" in result.verdict and "exact" in result.verdict
    # a rerun resumes the stored cells to the same tables
    again = sweep(model, data, "2.1", [5], config, out_dir=tmp_path, progress=False)
    pd.testing.assert_frame_equal(again.results, result.results)
    pd.testing.assert_frame_equal(again.summary, result.summary)
    # a folder written before sets were drawn distinct is refused, not mixed
    manifest = json.loads((tmp_path / "sweep.json").read_text())
    assert manifest["set_draws"] == "distinct"
    del manifest["set_draws"]
    (tmp_path / "sweep.json").write_text(json.dumps(manifest))
    with pytest.raises(RSIError, match="before random and null sets were drawn distinct"):
        sweep(model, data, "2.1", [5], config, out_dir=tmp_path, progress=False)


def test_screening_sees_every_possible_set_when_there_are_few():
    model = small_resnet()
    config = SweepConfig(scales=(0.0, 0.5), trials=20, tolerance=1.0, null_sets=3, batch_size=12)
    result = sweep(model, random_data(12, seed=1), "2.1", [5], config, progress=False)
    kept = {tuple(int(c) for c in s.split()) for s in result.draws["channels"]}
    assert kept == {(c,) for c in range(16) if c != 5} and len(result.draws) == 15  # all 15, each once
    assert result.starved and result.kept == 15
    row = result.summary.set_index("scale").loc[0.5]
    assert bool(row["exhaustive_random"]) and row["distinct_random"] == 15 and row["n_trials"] == 15
    # three null sets of 15 possible: not exact
    assert row["distinct_null"] == 3 and not bool(row["exact_null"])


# --------------------------------------------------------------------------- each set counted once


def _frame(random_sets_: list[tuple[tuple[int, ...], float]], null_sets: list[tuple[tuple[int, ...], float]],
           with_channels: bool = True) -> pd.DataFrame:
    """Accuracies at p = 0 and 0.5: invariant (0,) 0.5 -> 0.4; every other set 0.5 -> its value."""
    rows = [("none", 0, 0.0, 0.9, ""), ("none", 0, 0.5, 0.8, ""),
            ("invariant", 0, 0.0, 0.5, "0"), ("invariant", 0, 0.5, 0.4, "0")]
    for condition, sets in (("random", random_sets_), ("null_set", null_sets)):
        for trial, (channels, scaled) in enumerate(sets):
            text = " ".join(map(str, channels))
            rows += [(condition, trial, 0.0, 0.5, text), (condition, trial, 0.5, scaled, text)]
    frame = pd.DataFrame(rows, columns=["condition", "trial", "scale", "accuracy", "channels"])
    frame["n_images"] = 100
    frame["correct"] = (frame["accuracy"] * 100).round().astype(int)
    return frame if with_channels else frame.drop(columns="channels")


RANDOM = [((1,), 0.5), ((2,), 0.5), ((3,), 0.45), ((4,), 0.4), ((5,), 0.5)]
NULL = [((c,), 0.5 - 0.01 * c) for c in range(1, 12)]


def test_a_duplicated_set_cannot_lower_a_p_value():
    # random set (1,) repeated four times (the block 1.1), null set (11,) -- the most
    # extreme -- three times, and the invariant set itself in the null
    repeated_random = RANDOM + [((1,), 0.5)] * 4
    repeated_null = NULL + [((11,), 0.39)] * 3 + [((0,), 0.4)]
    clean = ratio_tests(_frame(RANDOM, NULL))
    deduplicated = ratio_tests(_frame(repeated_random, repeated_null))
    pd.testing.assert_frame_equal(deduplicated, clean)
    assert clean.set_index("scale").loc[0.5, "distinct_null"] == 11
    # also after a CSV round trip (one-channel sets come back as numbers, "" as NaN)
    reread = pd.read_csv(io.StringIO(_frame(repeated_random, repeated_null).to_csv(index=False)))
    pd.testing.assert_frame_equal(ratio_tests(reread), clean)
    # the same repeats counted as independent sets (no channels to tell) lower the p-values:
    # the comparison above can fail
    naive = ratio_tests(_frame(repeated_random, repeated_null, with_channels=False)).set_index("scale").loc[0.5]
    row = clean.set_index("scale").loc[0.5]
    assert naive["p_permutation"] < row["p_permutation"] and naive["p_sign"] < row["p_sign"]
    assert naive["n_null"] == 15 and naive["min_p_null"] < row["min_p_null"]
    # the summary counts each random set once too
    summary = eq3_summary(_frame(repeated_random, repeated_null)).set_index("scale")
    assert summary.loc[0.5, "n_trials"] == 5
    pd.testing.assert_frame_equal(summary, eq3_summary(_frame(RANDOM, NULL)).set_index("scale"))
    assert verdict(summary.reset_index(), "1.1") == verdict(eq3_summary(_frame(RANDOM, NULL)), "1.1")


def test_distinct_sets_keeps_the_first_trial_of_a_set_and_leaves_frames_without_channels():
    frame = _frame([((2, 1), 0.5), ((1, 2), 0.4), ((3,), 0.5)], [((0,), 0.3), ((4,), 0.3), ((4,), 0.2)])
    kept = distinct_sets(frame)
    assert sorted(set(kept.loc[kept["condition"] == "random", "trial"])) == [0, 2]  # "1 2" repeats "2 1"
    assert sorted(set(kept.loc[kept["condition"] == "null_set", "trial"])) == [1]  # (0,) is the invariant set
    assert len(kept[kept["condition"].isin(["none", "invariant"])]) == 4
    bare = frame.drop(columns="channels")
    pd.testing.assert_frame_equal(distinct_sets(bare), bare)
