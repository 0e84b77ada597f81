"""Power of the Eq. 3 null test: the detectable deficit read off a constructed null (known order
statistics), the case where nothing is detectable, and the verdict's sentence (issue 20, item 3)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from rsi_plugin.ablation.eq3 import eq3_summary
from rsi_plugin.ablation.eq3_stats import ALPHA, detectable_deficit, ratio_tests, verdict
from rsi_plugin.errors import RSIError


def test_detectable_deficit_is_a_known_order_statistic():
    null = [-0.002 * j for j in range(1, 200)]  # 199 deficits, the k-th smallest is -0.002 (200 - k)
    # one scale: (1 + k) / 200 < 0.05 for k <= 8, so the 9th smallest is the first not detected
    assert detectable_deficit(null, 0.05, 1) == pytest.approx(-0.002 * 191)
    # five scales: (1 + k) * 5 / 200 < 0.05 only for k = 0: the smallest
    assert detectable_deficit(null, 0.05, 5) == pytest.approx(-0.002 * 199)
    # order and non-finite values do not matter
    shuffled = list(np.random.default_rng(0).permutation(null)) + [float("nan")]
    assert detectable_deficit(shuffled, 0.05, 1) == detectable_deficit(null, 0.05, 1)
    # ties: 20 null sets at -1 and the rest at 0; k <= 8 (one scale): the 9th smallest is -1
    assert detectable_deficit([-1.0] * 20 + [0.0] * 179, 0.05, 1) == -1.0


def test_nothing_is_detectable_with_too_few_null_sets():
    # 15 distinct null sets (a block of 16, one channel): p_null >= 1/16, above 0.05 / 5 and 0.05
    assert math.isnan(detectable_deficit([-0.1 * j for j in range(15)], 0.05, 5))
    assert math.isnan(detectable_deficit([-0.1 * j for j in range(15)], 0.05, 1))
    assert math.isnan(detectable_deficit([], 0.05, 1))
    # 19 sets: 1/20 = 0.05 is not below 0.05; 20 sets: 1/21 is
    assert math.isnan(detectable_deficit(list(range(19)), 0.05, 1))
    assert detectable_deficit(list(range(20)), 0.05, 1) == 0
    with pytest.raises(RSIError, match="alpha"):
        detectable_deficit([0.0], 0.0, 1)


def _results(invariant: float, nulls: list[float], scales=(0.5,)) -> pd.DataFrame:
    """One random set at 0.5 everywhere (denominator 0.5), the invariant set 0.5 -> ``invariant``
    and null set j 0.5 -> ``nulls[j]`` at every scaled condition: deficits 2 a - 1."""
    rows = []
    for scale in (0.0, *scales):
        scaled = scale != 0.0
        rows += [("none", 0, scale, 0.9), ("random", 0, scale, 0.5),
                 ("invariant", 0, scale, invariant if scaled else 0.5)]
        rows += [("null_set", j, scale, a if scaled else 0.5) for j, a in enumerate(nulls)]
    frame = pd.DataFrame(rows, columns=["condition", "trial", "scale", "accuracy"])
    frame["n_images"] = 1000
    frame["correct"] = (frame["accuracy"] * 1000).round().astype(int)
    return frame


NULLS = [0.5 - 0.001 * j for j in range(1, 200)]  # null deficits 2 (0.5 - 0.001 j) - 1 = -0.002 j


def test_ratio_tests_report_the_detectable_deficit_and_it_separates_detection():
    row = ratio_tests(_results(0.45, NULLS)).set_index("scale").loc[0.5]
    expected = 2 * NULLS[190] - 1  # the 9th smallest null deficit (j = 191)
    assert row["detectable_deficit"] == pytest.approx(expected) and bool(row["detectable"])
    median = float(np.median([2 * a - 1 for a in NULLS]))
    assert row["null_deficit_median"] == pytest.approx(median)
    assert row["detectable_effect"] == pytest.approx(expected - median)
    assert row["min_p_null"] == pytest.approx(1 / 200) and row["alpha_scale"] == pytest.approx(ALPHA)
    # D* is the boundary of the verdict's rule: below it detected, at or above it not
    outcomes = set()
    for invariant in [0.5 - 0.0005 * j for j in range(360, 420)] + [NULLS[190]]:
        row = ratio_tests(_results(invariant, NULLS)).set_index("scale").loc[0.5]
        detected = row["p_null"] * 1 < ALPHA
        assert detected == (row["deficit"] < row["detectable_deficit"]), invariant
        outcomes.add(detected)
    assert outcomes == {True, False}
    at = ratio_tests(_results(NULLS[190], NULLS)).set_index("scale").loc[0.5]
    assert at["p_null"] == pytest.approx(10 / 200)  # the boundary itself is not detected


def test_bonferroni_over_scales_enters_the_detectable_deficit():
    scales = (0.1, 0.2, 0.3, 0.4, 0.5)
    table = ratio_tests(_results(0.45, NULLS, scales)).set_index("scale")
    assert table.loc[0.5, "alpha_scale"] == pytest.approx(ALPHA / 5)
    assert table.loc[0.5, "detectable_deficit"] == pytest.approx(2 * NULLS[-1] - 1)  # only below every null set
    assert np.isnan(table.loc[0.0, "detectable_deficit"]) and not table.loc[0.0, "detectable"]
    few = ratio_tests(_results(0.3, NULLS[:15], scales)).set_index("scale").loc[0.5]
    assert not bool(few["detectable"]) and math.isnan(few["detectable_deficit"])
    assert few["min_p_null"] == pytest.approx(1 / 16)


def test_verdict_states_what_could_have_been_detected():
    # not distinguishable, but a deficit below -0.382 would have been
    weak = eq3_summary(_results(0.45, NULLS))
    text = verdict(weak, "3.1")
    assert "not distinguishable" in text
    assert "would have detected any scale-specific deficit D(p) below -0.382 at 50 %" in text
    # a deficit beyond it is distinguishable, and the sentence says so without a power clause
    strong = verdict(eq3_summary(_results(0.30, NULLS)), "3.1")
    assert "is distinguishable from the null at 50 %" in strong and "would have detected" not in strong
    # 15 null sets at five scales: nothing could be detected
    few = verdict(eq3_summary(_results(0.2, NULLS[:15], (0.1, 0.2, 0.3, 0.4, 0.5))), "1.1")
    assert "not distinguishable" in few
    assert "the null has too few distinct sets to detect any effect at this alpha" in few
    assert "1/16 = 0.0625, not below 0.05/5 = 0.01" in few
    # a summary tested at another alpha: no power clause rather than a wrong one
    assert "would have detected" not in verdict(weak, "3.1", alpha=0.01)
