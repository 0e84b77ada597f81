"""The method card's marks on constructed summaries: each rule's pass, fail and inconclusive
side, and the rendering (every block, every check, the rules stated once)."""

from __future__ import annotations

import pytest

from rsi_plugin.outputs.method_card import CHECKS, RULES, card_frame, card_markdown, card_reading, method_card


def _marks(summary, block="2.1"):
    return {c.check: c.mark for c in method_card(summary) if c.block == block}


def _block(**extra):
    base = {"block": "2.1", "channels": 32, "robust": 3, "any_seed": 3, "seeds": 3, "jaccard_mean": 0.9}
    return {**base, **extra}


@pytest.mark.parametrize("controls, mark", [
    ({"trained": 5, "counts": [0, 1], "p": 0.01}, "pass"),
    ({"trained": 5, "counts": [0, 5], "p": 0.01}, "fail"),          # a copy passes as many: fail whatever p
    ({"trained": 2, "counts": [3, 1], "p": 0.9}, "fail"),
    ({"trained": 2, "counts": [0, 1], "p": 0.2}, "inconclusive"),   # above both, test disagrees
    ({"trained": 0, "counts": [0, 0], "p": 1.0}, "fail"),           # nothing above nothing
    (None, "inconclusive"),
])
def test_untrained_check(controls, mark):
    block = _block() if controls is None else _block(controls=controls)
    assert _marks({"blocks": [block]})["untrained"] == mark


@pytest.mark.parametrize("planted, mark", [
    ({"recall": 1.0, "false_positive_rate": 0.0, "control_passing": 0, "eq3_detected": True}, "pass"),
    ({"recall": 0.85, "false_positive_rate": 0.0}, "fail"),
    ({"recall": 1.0, "false_positive_rate": 0.1}, "fail"),
    ({"recall": 1.0, "false_positive_rate": 0.0, "control_passing": 1}, "fail"),
    ({"recall": 1.0, "false_positive_rate": 0.0, "control_passing": 1, "control_planted_p": 0.01}, "pass"),
    ({"recall": 1.0, "false_positive_rate": 0.0, "control_passing": 0, "control_planted_p": 0.2}, "fail"),
    ({"recall": 1.0, "false_positive_rate": 0.0, "eq3_detected": False}, "fail"),
    (None, "inconclusive"),
])
def test_planted_check_is_one_result_on_every_block(planted, mark):
    summary = {"blocks": [_block(), _block(block="3.1")], "planted": planted}
    assert _marks(summary, "2.1")["planted"] == _marks(summary, "3.1")["planted"] == mark


@pytest.mark.parametrize("fields, mark", [
    ({"jaccard_mean": 0.9, "robust": 2}, "pass"),
    ({"jaccard_mean": 0.9, "robust": 0}, "inconclusive"),   # agree, but nothing robust
    ({"jaccard_mean": 0.3}, "fail"),
    ({"jaccard_mean": 0.6}, "inconclusive"),
    ({"jaccard_mean": None, "any_seed": 0}, "inconclusive"),
    ({"seeds": 1}, "inconclusive"),
])
def test_seed_check(fields, mark):
    assert _marks({"blocks": [_block(**fields)]})["seeds"] == mark


def _ablation(p_nulls, detectable, kept=10, n_null=200):
    scales = [{"scale": 0.0, "p_null": None}]
    scales += [{"scale": s, "p_null": p, "detectable_deficit": d, "n_null": n_null}
               for s, p, d in zip((0.1, 0.2, 0.3, 0.4, 0.5), p_nulls, detectable)]
    return {"block": "2.1", "trials_kept": kept, "scales": scales}


@pytest.mark.parametrize("ablation, mark", [
    (_ablation([0.5, 0.5, 0.005, 0.5, 0.5], [-0.01] * 5), "pass"),          # 0.005 x 5 < 0.05
    (_ablation([0.5, 0.5, 0.02, 0.5, 0.5], [-0.01] * 5), "fail"),           # 0.02 x 5 = 0.1: not distinguishable
    (_ablation([0.5] * 5, [None] * 5, n_null=15), "inconclusive"),          # the null cannot detect anything
    (_ablation([0.5] * 5, [-0.01] * 5, kept=1), "inconclusive"),
    (None, "inconclusive"),
    ({"block": "2.1", "trials_kept": 10, "scales": [{"scale": 0.5, "p_null": 0.3}]}, "inconclusive"),  # no power
])
def test_eq3_check_uses_bonferroni_and_power(ablation, mark):
    summary = {"blocks": [_block()], "ablations": [] if ablation is None else [ablation]}
    assert _marks(summary)["eq3"] == mark


def test_eq3_fail_states_the_detectable_deficit():
    card = method_card({"blocks": [_block()], "ablations": [_ablation([0.5] * 5, [-0.03, -0.02, -0.01, -0.02, -0.04])]})
    detail = next(c.detail for c in card if c.check == "eq3")
    assert "-0.01" in detail  # the most sensitive scale's detectable deficit


@pytest.mark.parametrize("sensitivity, mark", [
    ({"zoom_center": {"rows": 100, "verdict_flips": 5}, "png": {"rows": 100, "verdict_flips": 0}}, "pass"),
    ({"zoom_center": {"rows": 100, "verdict_flips": 21}, "png": {"rows": 100, "verdict_flips": 0}}, "fail"),
    ({"zoom_center": {"rows": 100, "verdict_flips": 10}}, "inconclusive"),
    (None, "inconclusive"),
])
def test_choices_check(sensitivity, mark):
    block = _block() if sensitivity is None else _block(sensitivity=sensitivity)
    assert _marks({"blocks": [block]})["choices"] == mark


def test_card_lists_every_block_and_check_and_states_each_rule_once():
    summary = {"blocks": [_block(), _block(block="3.1")], "ablations": [{**_ablation([0.5] * 5, [-0.01] * 5),
                                                                          "block": "4.1"}]}
    card = method_card(summary)
    assert [c.block for c in card] == ["2.1"] * 5 + ["3.1"] * 5 + ["4.1"] * 5  # an ablated-only block too
    frame = card_frame(card)
    assert list(frame.index) == ["2.1", "3.1", "4.1"] and list(frame.columns) == list(CHECKS.values())
    text = card_markdown(card)
    for rule in RULES.values():
        assert text.count(rule) == 1
    assert text.count("| 2.1 |") == 1 and "**inconclusive**: not run" in text
    assert all(c.mark in ("pass", "inconclusive", "fail") for c in card)
    assert card_markdown([]).startswith("No block")


def test_reading_counts_the_marks_of_each_check():
    summary = {"blocks": [_block(controls={"trained": 5, "counts": [0, 1], "p": 0.01}),
                          _block(block="3.1", controls={"trained": 0, "counts": [1, 1], "p": 1.0}),
                          _block(block="4.1")]}
    text = card_reading(method_card(summary))
    assert "trained vs untrained: pass in 1, inconclusive in 1, fail in 1 of 3 blocks" in text
    assert "planted recovery: inconclusive (one result for the run)" in text
    assert text in card_markdown(method_card(summary))
