"""Controls that are what they claim (screening starvation, ``tolerance="auto"``), the tests of
Eq. 3 (paired permutation and sign tests, bootstrap, the null of random same-size sets) on
constructed numbers, and a failed sweep that does not block its own rerun."""

from __future__ import annotations

import json
import logging
import math

import pandas as pd
import pytest
import torch
from matplotlib.container import ErrorbarContainer
from rsi_plugin.testing.models import random_data, small_resnet  # noqa: F401

from rsi_plugin.ablation import experiment as scale_sweep
from rsi_plugin.ablation.eq3 import eq3_summary
from rsi_plugin.outputs.plots import eq3_figure
from rsi_plugin.ablation.eq3_stats import bootstrap_ci, permutation_test, ratio_tests, sign_test, verdict
from rsi_plugin.ablation.experiment import SweepConfig, sweep
from rsi_plugin.ablation.screening import Draw, auto_tolerance, random_sets, redecide

N = 20
BLOCK = "3.1"
INVARIANT = (0, 1, 2, 3)


# --------------------------------------------------------------------------- constructed accuracies


def _correct(channels: tuple[int, ...], scale: float) -> int:
    """Images (of N, all of class 0) predicted correctly with ``channels`` ablated: 10 for the
    invariant set (6 when scaled), 20 unablated, 9 for a set holding channel 20, else 12."""
    if not channels:
        return N
    if tuple(channels) == INVARIANT:
        return 10 if scale == 0 else 6
    return 9 if 20 in channels else 12


@pytest.fixture()
def constructed(monkeypatch):
    """The sweep's forward replaced by logits that give :func:`_correct` per condition."""

    def fake_logits(run, x, conditions):
        scale = fake_logits.scale
        out = torch.zeros(len(conditions), x.shape[0], 10)
        for i, c in enumerate(conditions):
            k = _correct(tuple(c.channels), scale)
            out[i, :k, 0] = 1.0  # class 0 (the label) for the first k images
            out[i, k:, 1] = 1.0
        return out

    real_prepare = scale_sweep.prepare_batch

    def prepare(images, model, p=0.0, *args, **kwargs):
        fake_logits.scale = p
        return real_prepare(images, model, p, *args, **kwargs)

    fake_logits.scale = 0.0
    monkeypatch.setattr(scale_sweep, "_logits", fake_logits)
    monkeypatch.setattr(scale_sweep, "prepare_batch", prepare)
    images, _ = random_data(N, seed=3)
    return small_resnet(), (images, torch.zeros(N, dtype=torch.long))


def _expected_kept(max_draws: int, seed: int) -> int:
    """The rule applied by hand: a draw is kept iff its accuracy <= the invariant set's (0.5)."""
    pool = [c for c in range(32) if c not in INVARIANT]
    return sum(_correct(s, 0.0) <= 10 for s in random_sets(pool, len(INVARIANT), seed, max_draws))


def test_starved_screening_warns_records_the_kept_count_and_draws_no_error_bars(constructed, tmp_path, caplog):
    model, data = constructed
    config = SweepConfig(scales=(0.0, 0.5), trials=10, max_draws=12, seed=5, null_sets=4, batch_size=N)
    expected = _expected_kept(12, 5)
    assert expected == 1  # this seed's twelve draws hold one set with channel 20
    with caplog.at_level(logging.WARNING, logger="rsi_plugin.ablation.experiment"):
        result = sweep(model, data, BLOCK, INVARIANT, config, out_dir=tmp_path, progress=False)
    assert result.kept == 1 and result.starved and result.trials_asked == 10
    assert any("kept 1 of 10 random sets after 12 draws" in r.getMessage() for r in caplog.records)
    table = pd.read_csv(tmp_path / "eq3.csv")
    assert set(table["trials_asked"]) == {10} and set(table["trials_kept"]) == {1} and set(table["draws"]) == {12}
    assert set(table["n_trials"]) == {1} and table["ratio_se"].isna().all()
    axes = eq3_figure(result.summary).axes[0]
    assert not [c for c in axes.containers if isinstance(c, ErrorbarContainer)]
    assert any("no error bars: 1 random set" in t.get_text() for t in axes.texts)
    # the report's first screen carries the banner and the verdict
    from rsi_plugin.outputs.report import write_report

    text = write_report(tmp_path).read_text()
    assert text.index("At a glance") < text.index("Ablation: block")
    assert "screening kept only 1 of the 10 random control sets asked" in text and "no error bars" in text
    assert "1 of 10" in text and result.verdict.split(":")[0] in text


def test_tolerance_auto_keeps_the_asked_number_with_the_smallest_tolerance(constructed, tmp_path):
    model, data = constructed
    config = SweepConfig(scales=(0.0, 0.5), trials=3, max_draws=12, seed=5, tolerance="auto", null_sets=0,
                         batch_size=N)
    result = sweep(model, data, BLOCK, INVARIANT, config, out_dir=tmp_path, progress=False)
    # one draw at 9/20 (excess 0), the others at 12/20 (excess 0.1): the third-smallest excess is 0.1
    assert result.tolerance == pytest.approx(0.1) and result.kept == 3 and not result.starved
    assert list(result.draws.loc[result.draws["kept"], "trial"]) == [0, 1, 2]
    table = pd.read_csv(tmp_path / "eq3.csv")
    assert set(table["trials_kept"]) == {3} and table["tolerance"].iloc[0] == pytest.approx(0.1)
    assert set(table["tolerance_setting"]) == {"auto"}
    axes = eq3_figure(result.summary).axes[0]
    assert [c for c in axes.containers if isinstance(c, ErrorbarContainer)]  # three sets: whiskers
    # a rerun resumes to the same decisions
    again = sweep(model, data, BLOCK, INVARIANT, config, out_dir=tmp_path, progress=False)
    pd.testing.assert_frame_equal(again.draws, result.draws)
    assert again.tolerance == result.tolerance


def test_auto_tolerance_and_redecide_by_hand():
    draws = [Draw(i, (i,), k, 10, k / 10, 0.5, k <= 5, -1) for i, k in enumerate([7, 9, 5, 6, 8])]
    assert auto_tolerance(draws, 1) == 0.0
    assert auto_tolerance(draws, 3) == pytest.approx(0.2)
    assert auto_tolerance(draws, 6) is None
    again = redecide(draws, 0.2, 3)
    assert [d.kept for d in again] == [True, False, True, True]  # stops at the third kept set
    assert [d.trial for d in again] == [0, -1, 1, 2]


def test_cli_warns_when_screening_starves(constructed, tmp_path, capsys, monkeypatch):
    model, data = constructed
    real = scale_sweep.sweep

    def on_constructed(_model, _data, block, channels, config, **kwargs):
        return real(model, data, BLOCK, INVARIANT, config, **kwargs)

    monkeypatch.setattr(scale_sweep, "sweep", on_constructed)
    from rsi_plugin.cli import main

    argv = ["ablate", "--block", BLOCK, "--channels", "0", "1", "2", "3", "--trials", "10", "--max-draws", "12",
            "--seed", "5", "--null-sets", "4", "--scales", "0", "0.5", "--samples", "4", "--out",
            str(tmp_path / "out"), "--no-progress"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "screening kept only 1 of the 10 random sets" in captured.err and "no error bars" in captured.err
    assert "vs 1 of 10 random sets" in captured.out


# --------------------------------------------------------------------------- tests on constructed ratios


def test_sign_and_permutation_tests_give_known_p_values():
    all_negative = [-float(i) for i in range(1, 11)]
    assert sign_test(all_negative) == pytest.approx(1 / 1024)
    assert permutation_test(all_negative) == pytest.approx(1 / 1024)
    # 7 of 10 negative: P(Bin(10, 1/2) >= 7) = (120 + 45 + 10 + 1) / 1024
    assert sign_test([-1] * 7 + [1] * 3) == pytest.approx(176 / 1024)
    # magnitudes 3, 2, 1, 1 with sum -5: sign vectors with negative mass >= 6 are 3 of 16
    assert permutation_test([-3, -2, -1, 1]) == pytest.approx(3 / 16)
    assert sign_test([0.0, 0.0]) == 1.0 and permutation_test([]) == 1.0
    assert sign_test([1, 2, 3]) == 1.0 and permutation_test([1, 2, 3]) == pytest.approx(1.0)
    # above the exact limit: Monte Carlo, (1 + #) / (1 + resamples); the all-negative mean is the minimum
    assert permutation_test([-1.0 - i for i in range(20)], resamples=999) == pytest.approx(1 / 1000)


def test_bootstrap_interval():
    low, high = bootstrap_ci([0.5] * 8)
    assert low == high == 0.5
    values = [0.9, 1.0, 1.1, 1.2, 0.8, 1.05, 0.95, 1.0]
    low, high = bootstrap_ci(values)
    assert low < sum(values) / len(values) < high and min(values) <= low and high <= max(values)
    assert all(math.isnan(v) for v in bootstrap_ci([1.0]))
    with pytest.raises(ValueError, match="level"):
        bootstrap_ci(values, level=1.5)


def _constructed_results(scaled_random: list[float], nulls: list[float]) -> pd.DataFrame:
    """Accuracies at p = 0 and 0.5: invariant 0.5 -> 0.4, random sets 0.5 -> ``scaled_random``,
    null sets 0.5 -> ``nulls``."""
    rows = [("none", 0, 0.0, 0.9), ("none", 0, 0.5, 0.8), ("invariant", 0, 0.0, 0.5), ("invariant", 0, 0.5, 0.4)]
    for i, a in enumerate(scaled_random):
        rows += [("random", i, 0.0, 0.5), ("random", i, 0.5, a)]
    for j, a in enumerate(nulls):
        rows += [("null_set", j, 0.0, 0.5), ("null_set", j, 0.5, a)]
    frame = pd.DataFrame(rows, columns=["condition", "trial", "scale", "accuracy"])
    frame["n_images"] = 100
    frame["correct"] = (frame["accuracy"] * 100).round().astype(int)
    return frame


def test_ratio_tests_on_constructed_ratios():
    # ratios at p = 0 are all 1; at 0.5 they are 0.4 / a_i: 0.8 for a = 0.5, 1.0 for a = 0.4
    scaled_random = [0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.4, 0.4]  # differences: six of -0.2, two of 0
    nulls = [0.5 - 0.02 * j for j in range(10)]  # null deficits -0.04 j (one random-set denominator 0.5)
    results = _constructed_results(scaled_random, nulls)
    tests = ratio_tests(results).set_index("scale")
    row = tests.loc[0.5]
    assert row["diff_mean"] == pytest.approx(-1.2 / 8)
    assert row["p_sign"] == pytest.approx(1 / 64)  # zeros dropped: 6 of 6 negative
    assert row["p_permutation"] == pytest.approx(1 / 64)  # the two zeros flip freely: 4 of 256 vectors
    assert row["n_images"] == 100
    # invariant deficit: mean_i 0.4 / a_i - 1 = (6 * 0.8 + 2 * 1.0) / 8 - 1 = -0.15
    assert row["deficit"] == pytest.approx(-0.15)
    # null deficits: mean_i (0.5 - 0.02 j) / a_i - 1 over the same eight denominators
    factor = (6 / 0.5 + 2 / 0.4) / 8
    null = [(0.5 - 0.02 * j) * factor - 1 for j in range(10)]
    at_least = sum(d <= -0.15 + 1e-12 for d in null)
    assert row["n_null"] == 10 and row["null_share"] == pytest.approx(at_least / 10)
    assert row["p_null"] == pytest.approx((1 + at_least) / 11)
    assert math.isnan(tests.loc[0.0, "p_null"]) and math.isnan(tests.loc[0.0, "p_sign"])
    summary = eq3_summary(results)
    assert summary.set_index("scale").loc[0.5, "p_sign"] == pytest.approx(1 / 64)
    assert "distinguishable" in verdict(summary, "3.1") and verdict(summary, "3.1").startswith("Block 3.1")


def test_verdict_sentences():
    strong = eq3_summary(_constructed_results([0.5] * 10, [0.5] * 200))  # every null set: deficit 0
    assert "is distinguishable from the null at 50 %" in verdict(strong, "4.0")
    weak = eq3_summary(_constructed_results([0.5] * 10, [0.3] * 200))  # every null set does worse
    assert "not distinguishable from the null at any scale" in verdict(weak, "4.1")
    lonely = eq3_summary(_constructed_results([0.5], []))
    assert "undetermined" in verdict(lonely, "4.0")


def test_null_sets_of_a_real_sweep_are_drawn_from_all_channels_and_swept(tmp_path):
    model = small_resnet()
    images, labels = random_data(12, seed=2)
    config = SweepConfig(scales=(0.0, 0.5), trials=2, tolerance=1.0, max_draws=4, null_sets=5, batch_size=12)
    result = sweep(model, (images, labels), BLOCK, INVARIANT, config, progress=False)
    nulls = result.results[result.results["condition"] == "null_set"]
    assert sorted(set(nulls["trial"])) == list(range(5)) and set(nulls["scale"]) == {0.0, 0.5}
    # the null sets' cells equal separate ablations of those sets (the stacked trace against rsi.ablate)
    from rsi_plugin.ablation.experiment import NULL_SEED_OFFSET
    from rsi_plugin.ablation.means import prepare_batch
    from rsi_plugin.access.nnsight import ablate

    sets = random_sets(range(32), 4, 0 + NULL_SEED_OFFSET, 5)
    x = prepare_batch(images, model, 0.5)
    for j, channels in enumerate(sets):
        logits = ablate(model, x, BLOCK, list(channels), result.means[list(channels)])
        correct = int((logits.argmax(-1) == labels).sum())
        assert int(nulls[(nulls["trial"] == j) & (nulls["scale"] == 0.5)]["correct"].iloc[0]) == correct
    assert result.summary["n_null"].max() == 5 and result.verdict.startswith("Block 3.1")


# --------------------------------------------------------------------------- a failed start does not block


class _Unreadable(torch.utils.data.Dataset):
    def __len__(self):
        return 6

    def __getitem__(self, i):
        raise OSError("cannot identify image file")


def test_a_failed_sweep_does_not_block_its_rerun(tmp_path):
    model = small_resnet()
    config = SweepConfig(scales=(0.0, 0.5), trials=1, tolerance=1.0, max_draws=2, null_sets=0, batch_size=4)
    with pytest.raises(ValueError, match="no image could be read"):
        sweep(model, _Unreadable(), BLOCK, INVARIANT, config, out_dir=tmp_path, progress=False)
    assert not (tmp_path / "sweep.json").exists()
    data = random_data(8, seed=1)  # the data fixed: another number of images
    result = sweep(model, data, BLOCK, INVARIANT, config, out_dir=tmp_path, progress=False)
    assert json.loads((tmp_path / "sweep.json").read_text())["num_images"] == 8
    assert set(result.results["n_images"]) == {8}
    # a sweep.json beside no result (left by an older version's failed start) is replaced
    other = tmp_path / "other"
    other.mkdir()
    (other / "sweep.json").write_text(json.dumps({"block": BLOCK, "num_images": 0}))
    sweep(model, data, BLOCK, INVARIANT, config, out_dir=other, progress=False)
    assert json.loads((other / "sweep.json").read_text())["num_images"] == 8
    # but a folder with results and other settings is still refused
    with pytest.raises(ValueError, match="other settings"):
        sweep(model, random_data(6, seed=1), BLOCK, INVARIANT, config, out_dir=tmp_path, progress=False)
