"""Eq. (3), its standard error and the figures, against hand computations."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from rsi_plugin.ablation import eq3_summary
from rsi_plugin.outputs.plots import plot_accuracy, plot_eq3


def _table():
    rows = [
        ("none", 0, 0.0, 0.80), ("none", 0, 0.1, 0.70),
        ("invariant", 0, 0.0, 0.60), ("invariant", 0, 0.1, 0.40),
        ("random", 0, 0.0, 0.50), ("random", 0, 0.1, 0.50),
        ("random", 1, 0.0, 0.60), ("random", 1, 0.1, 0.40),
        ("random", 2, 0.0, 0.40), ("random", 2, 0.1, 0.25),
    ]
    frame = pd.DataFrame(rows, columns=["condition", "trial", "scale", "accuracy"])
    frame["n_images"] = 100
    frame["correct"] = (frame["accuracy"] * 100).round().astype(int)
    return frame


def test_eq3_equals_a_hand_computation():
    summary = eq3_summary(_table())
    assert list(summary["scale"]) == [0.0, 0.1]
    # p = 0: ratios 0.6/0.5, 0.6/0.6, 0.6/0.4 = 1.2, 1.0, 1.5
    r0 = [1.2, 1.0, 1.5]
    m0 = sum(r0) / 3
    se0 = math.sqrt(sum((r - m0) ** 2 for r in r0) / 2) / math.sqrt(3)
    # p = 0.1: ratios 0.4/0.5, 0.4/0.4, 0.4/0.25 = 0.8, 1.0, 1.6
    r1 = [0.8, 1.0, 1.6]
    m1 = sum(r1) / 3
    se1 = math.sqrt(sum((r - m1) ** 2 for r in r1) / 2) / math.sqrt(3)
    row0, row1 = summary.iloc[0], summary.iloc[1]
    assert row0["ratio_mean"] == pytest.approx(m0) and row0["ratio_se"] == pytest.approx(se0)
    assert row1["ratio_mean"] == pytest.approx(m1) and row1["ratio_se"] == pytest.approx(se1)
    assert summary["no_scale_ratio"].tolist() == pytest.approx([m0, m0])
    assert row1["ratio_minus_no_scale"] == pytest.approx(m1 - m0)
    assert list(summary["n_trials"]) == [3, 3]
    assert row1["acc_none"] == 0.70 and row1["acc_invariant"] == 0.40
    assert row1["acc_random_mean"] == pytest.approx((0.5 + 0.4 + 0.25) / 3)


def test_eq3_edge_cases():
    one = _table()
    one = one[(one["condition"] != "random") | (one["trial"] == 0)]
    summary = eq3_summary(one)
    assert summary["n_trials"].tolist() == [1, 1] and summary["ratio_se"].isna().all()
    zero = _table()
    zero.loc[(zero["condition"] == "random") & (zero["trial"] == 2) & (zero["scale"] == 0.1), "accuracy"] = 0.0
    assert math.isinf(eq3_summary(zero).iloc[1]["ratio_mean"])
    no_base = _table()
    no_base = no_base[no_base["scale"] != 0.0]
    assert math.isnan(eq3_summary(no_base)["no_scale_ratio"].iloc[0])


def test_eq3_errors():
    with pytest.raises(TypeError):
        eq3_summary([1, 2])
    with pytest.raises(ValueError, match="lacks column"):
        eq3_summary(pd.DataFrame({"condition": ["none"]}))
    doubled = pd.concat([_table(), _table().iloc[[2]]])
    with pytest.raises(ValueError, match="more than one 'invariant'"):
        eq3_summary(doubled)


def test_figures_are_written(tmp_path):
    summary = eq3_summary(_table())
    eq3 = plot_eq3(summary, tmp_path / "fig" / "eq3.png", title="t")
    acc = plot_accuracy(_table(), tmp_path / "accuracy.png")
    for path in (eq3, acc):
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
    assert not list(tmp_path.rglob("*.tmp"))
    with pytest.raises(ValueError, match="eq3_summary"):
        plot_eq3(_table(), tmp_path / "x.png")
