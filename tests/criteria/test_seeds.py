"""Seeds as a dimension of a scan (rsi_plugin.criteria.seeds): a planted channel passes in every
seed, adaptive seeds, robust sets, pass-rate intervals, the permutation null, channel selection,
and a killed multi-seed scan resuming."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from rsi_plugin.featureviz import optimize as featureviz
from rsi_plugin.featureviz.optimize import FeatureVizConfig
from rsi_plugin.criteria.channel_scan import ScanConfig, scan


# --------------------------------------------------------------------------- seeds
#
# The planted network of test_criteria (a stem of radial filters and one BasicBlock with
# hand-set weights), with bn2's bias of channels 0 and 4 raised so that Post answers alike
# to the In and the Pre FZ (ratio ~ 1 whatever the FZ's step count):
#   ch 0 (planted): In = small-blob detector, Pre = 0.25 relu(large-blob) + BIAS:
#        zooming the In FZ raises Pre (Eq. 1), Post ratio ~ 1 (Eq. 2)  -> passes in every seed
#   ch 4 (dead):    In = 0 (a zero stem filter): its In FZ cannot drive its target (it stays
#        the initial noise), so every verdict on it is undetermined, never a pass, although
#        Eq. 2 holds and Eq. 1 on a noise image is a coin flip
#   ch 1, 2: a Pre that is 0 for the initial noise (Pre = 0 or relu of a negative): dead Pre FZ
#   ch 3, 5: clear fails (Eq. 2 ratio far outside the tolerance)
PLANTED_BIAS = 2000.0
SEEDS = (0, 1, 2)
# FZs run until their objective plateaus (about 200 steps at lr 0.2 for this net), so that a
# validity check that flags unconverged FZs finds them converged
PLANTED_CONVERGED = FeatureVizConfig(image_size=32, steps=256, lr=0.2, jitter=0, channels_per_batch=8)
PLANTED_FZ = FeatureVizConfig(image_size=32, steps=8, jitter=0, channels_per_batch=8)  # resume checks only


def biased_planted_net() -> nn.Module:
    """test_criteria's planted network with bn2's bias of channels 0 and 4 raised (see above);
    test_controls_scan and test_sensitivity build theirs from it."""
    from test_criteria import PlantedNet

    net = PlantedNet()
    with torch.no_grad():
        net.layer1[0].bn2.bias[0] = PLANTED_BIAS
        net.layer1[0].bn2.bias[4] = PLANTED_BIAS
    return net


@pytest.fixture(scope="module")
def planted() -> nn.Module:
    return biased_planted_net()


@pytest.fixture(scope="module")
def planted_full(planted, tmp_path_factory) -> tuple[pd.DataFrame, Path]:
    cache = tmp_path_factory.mktemp("planted_fz")
    config = ScanConfig(featureviz=PLANTED_CONVERGED, seeds=SEEDS, cache_dir=cache)
    return scan(planted, "1.0", config, progress=False), cache


def test_planted_channel_passes_in_every_seed_and_the_dead_one_is_undetermined(planted_full, tmp_path):
    from rsi_plugin.criteria.seeds import block_summary, channel_table

    table, _ = planted_full
    assert table["seed"].tolist() == [s for s in SEEDS for _ in range(6)]
    assert table.attrs["seeds"] == list(SEEDS)
    # the FZs differ between seeds (they are rendered per seed, not reused)
    in_acts = table[table.channel == 0].set_index("seed")["in_fz_act"]
    assert in_acts.nunique() == len(SEEDS)
    dead = table[table.channel == 4]
    assert (dead["in_fz_act"] == 0).all()  # the planted dead In: nothing drives it
    assert (dead["verdict"] == "undetermined").all() and not dead["passes"].any()
    assert dead["eq2"].all()  # Eq. 2 alone would have let it through
    assert (table.loc[table.channel == 0, "verdict"] == "pass").all()
    assert set(table.loc[table.passes, "channel"]) == {0}

    channels = channel_table(table).set_index("channel")
    assert channels.loc[0, "pass_rate"] == 1.0 and channels.loc[0, "robust"] and channels.loc[0, "status"] == "robust"
    assert channels.loc[0, "pass_rate_low"] == pytest.approx(0.4385, abs=1e-3)  # Wilson 3/3
    assert channels.loc[4, "pass_rate"] == 0.0 and not channels.loc[4, "any_seed"]
    assert channels.loc[4, "status"] == "undetermined" and channels.loc[4, "n_undetermined"] == 3
    assert channels.loc[3, "status"] == "not robust" and channels.loc[5, "status"] == "not robust"
    summary = block_summary(table).iloc[0]
    assert (summary.channels, summary.seeds, summary.robust, summary.any_seed) == (6, 3, 1, 1)
    assert summary.undetermined == int((channels["status"] == "undetermined").sum()) >= 1
    assert summary.jaccard_mean == summary.jaccard_min == summary.jaccard_max == 1.0
    # one passing channel per seed among 6: by chance all three seeds agree with p = 1/36
    assert summary.null_expected == pytest.approx(6 * (1 / 6) ** 3, abs=0.02)
    assert summary.null_p == pytest.approx(1 / 36, abs=0.02)

    from rsi_plugin.criteria.channel_scan import read_table, write_scan

    written = write_scan(table, tmp_path)
    assert {p.name for p in written} >= {"scan.csv", "scan_channels.csv", "summary.csv"}
    back = read_table(tmp_path / "scan_channels.csv").set_index("channel")
    assert back.loc[0, "robust"] and back.loc[4, "status"] == "undetermined"
    assert read_table(tmp_path / "summary.csv").loc[0, "undetermined"] == summary.undetermined
    assert read_table(tmp_path / "summary.csv").loc[0, "block"] == "1.0"


def test_adaptive_seeds_on_the_planted_model(planted, planted_full, monkeypatch):
    from rsi_plugin.criteria.seeds import adaptive_error, channel_table

    full, cache = planted_full
    measured = adaptive_error(full)
    assert measured["stopped"] >= 2 and measured["errors"] == 0 and measured["error_rate"] == 0.0
    assert measured["renders_adaptive"] < measured["renders_full"] == 18
    calls = []
    original = featureviz._optimize_stream

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(featureviz, "_optimize_stream", counting)
    config = ScanConfig(featureviz=PLANTED_CONVERGED, seeds=SEEDS, cache_dir=cache, adaptive=True)
    adaptive = scan(planted, "1.0", config, progress=False)
    assert calls == []  # every FZ it needs is cached by the full run (per seed)
    first = adaptive[adaptive.seed == 0]
    stopped = set(first.loc[first.adaptive_stop, "channel"])
    assert len(stopped) == measured["stopped"] and 4 not in stopped  # undetermined channels get more seeds
    for seed in SEEDS[1:]:
        assert set(adaptive.loc[adaptive.seed == seed, "channel"]) == set(range(6)) - stopped
    assert len(adaptive) == measured["renders_adaptive"]
    same = ["verdict", "pre_scaled", "post_pre"]
    merged = adaptive.merge(full, on=["seed", "channel"], suffixes=("", "_full"))
    for column in same:
        assert merged[column].tolist() == merged[f"{column}_full"].tolist()
    a = channel_table(adaptive).set_index("channel")
    f = channel_table(full).set_index("channel")
    assert a["status"].equals(f["status"]) and a["robust"].equals(f["robust"])  # error rate 0 here
    assert (a.loc[sorted(stopped), "n_seeds"] == 1).all() and a.loc[sorted(stopped), "adaptive_stop"].all()


def test_adaptive_rule_on_constructed_rows():
    from rsi_plugin.criteria.seeds import adaptive_stop, eq1_relative

    rows = pd.DataFrame({
        # pre_in, pre_scaled -> eq1_rel; eq2_margin; passes
        "pre_in": [1.0, 1.0, 1.0, 1.0, -2.0, 1.0, 1.0],
        "pre_scaled": [3.0, 1.2, 3.0, 0.2, -1.0, 3.0, 3.0],
        "eq2_margin": [0.3, 0.3, 0.1, 0.3, 0.3, -0.3, float("-inf")],
        "passes": [True, True, True, False, False, False, False],
        "in_status": ["ok"] * 6 + ["dead"],
    })
    # eq1_rel = (Pre(S x) - relu(Pre x)) / (|Pre(S x)| + |Pre x|)
    assert eq1_relative(rows).round(4).tolist() == [0.5, round(0.2 / 2.2, 4), 0.5, round(-0.8 / 1.2, 4),
                                                      round(-1 / 3, 4), 0.5, 0.5]
    stop = adaptive_stop(rows, eq1=0.25, eq2=0.25).tolist()
    # clear pass | eq1 near | eq2 near | clear eq1 fail | clear eq1 fail | clear eq2 fail | undetermined
    assert stop == [True, False, False, True, True, True, False]
    assert adaptive_stop(rows, eq1=0.9, eq2=0.25).tolist() == [False, False, False, False, False, True, False]
    # a Pre from -1.7 to just above 0 passes Eq. 1 by a hair: not far from its threshold
    hair = pd.DataFrame({"pre_in": [-1.686], "pre_scaled": [0.167], "eq2_margin": [0.35], "passes": [True]})
    assert eq1_relative(hair).iloc[0] == pytest.approx(0.167 / 1.853) and not adaptive_stop(hair).iloc[0]
    with pytest.raises(ValueError, match="eq1"):
        adaptive_stop(rows, eq1=0.0)
    with pytest.raises(ValueError, match="eq2"):
        adaptive_stop(rows, eq2=-1.0)


def test_adaptive_error_counts_membership_flips():
    from rsi_plugin.criteria.seeds import adaptive_error

    base = {"source": "fz", "block": "2.1", "pre_in": 1.0, "pre_scaled": 0.0, "eq2_margin": -1.0}
    rows = [  # channels 0, 1, 2 are clear fails in seed 0 (stopped); 3 is near (kept)
        {**base, "seed": 0, "channel": 0, "verdict": "fail"}, {**base, "seed": 1, "channel": 0, "verdict": "pass"},
        {**base, "seed": 0, "channel": 1, "verdict": "fail"},
        {**base, "seed": 1, "channel": 1, "verdict": "undetermined"},
        {**base, "seed": 0, "channel": 2, "verdict": "fail"}, {**base, "seed": 1, "channel": 2, "verdict": "fail"},
        {**base, "seed": 0, "channel": 3, "verdict": "fail", "eq2_margin": -0.1, "pre_scaled": 1.1},
        {**base, "seed": 1, "channel": 3, "verdict": "pass"},
    ]
    table = pd.DataFrame(rows)
    table["passes"] = table["verdict"] == "pass"
    measured = adaptive_error(table)
    assert (measured["stopped"], measured["errors"], measured["verdict_changes"]) == (3, 1, 2)
    assert measured["error_rate"] == pytest.approx(1 / 3)
    assert (measured["renders_full"], measured["renders_adaptive"]) == (8, 5)


def test_wilson_interval_known_values():
    from rsi_plugin.criteria.seeds import wilson_interval

    low, high = wilson_interval([0, 3, 5, 10], [5, 10, 5, 10])
    # Wilson score interval, 95 % (e.g. Newcombe 1998: 3/10 -> 0.108 to 0.603)
    assert np.round(low, 4).tolist() == [0.0, 0.1078, 0.5655, 0.7225]
    assert np.round(high, 4).tolist() == [0.4345, 0.6032, 1.0, 1.0]
    low, high = wilson_interval(0, 0)
    assert math.isnan(float(low)) and math.isnan(float(high))
    with pytest.raises(ValueError):
        wilson_interval(4, 3)


def _rows(passing: dict[int, set[int]], channels: int = 6, undetermined: dict[int, set[int]] | None = None):
    undetermined = undetermined or {}
    rows = []
    for seed, found in passing.items():
        for c in range(channels):
            verdict = "undetermined" if c in undetermined.get(seed, set()) else ("pass" if c in found else "fail")
            rows.append({"source": "fz", "seed": seed, "block": "3.10", "channel": c, "passes": verdict == "pass",
                         "verdict": verdict})
    return pd.DataFrame(rows)


def test_channel_table_and_block_summary_on_constructed_verdicts():
    from rsi_plugin.criteria.seeds import block_summary, channel_table

    table = _rows({0: {0, 1, 2}, 1: {0, 1, 3}, 2: {0, 2}}, undetermined={2: {1, 5}})
    channels = channel_table(table).set_index("channel")
    assert channels["n_pass"].tolist() == [3, 2, 2, 1, 0, 0]
    assert channels["robust"].tolist() == [True, False, False, False, False, False]
    # ch 1 passed twice and was undetermined once: the third seed decides -> undetermined;
    # ch 5 never passed, undetermined once: it cannot reach 3 passes -> not robust
    assert channels["status"].tolist() == ["robust", "undetermined", "not robust", "not robust", "not robust",
                                           "not robust"]
    assert channels.loc[1, "seeds_passing"] == "0 1" and (channels["layer"] == 3).all()
    assert (channels["index"] == 10).all()
    two_of_three = channel_table(table, share=2 / 3).set_index("channel")
    assert two_of_three["robust"].tolist() == [True, True, True, False, False, False]
    summary = block_summary(table).iloc[0]
    assert (summary["block"], summary["layer"], summary["index"]) == ("3.10", 3, 10)
    assert (summary.channels, summary.robust, summary.any_seed, summary.undetermined) == (6, 1, 4, 1)
    assert (summary.passing_min, summary.passing_max, summary.passing_mean) == (2, 3, pytest.approx(8 / 3))
    # Jaccard: {0,1,2} vs {0,1,3}: 2/4; {0,1,2} vs {0,2}: 2/3; {0,1,3} vs {0,2}: 1/4
    assert summary.jaccard_mean == pytest.approx((1 / 2 + 2 / 3 + 1 / 4) / 3)
    assert (summary.jaccard_min, summary.jaccard_max) == (pytest.approx(1 / 4), pytest.approx(2 / 3))
    assert summary.undetermined_mean == pytest.approx(2 / 3)
    single = block_summary(table[table.seed == 0]).iloc[0]
    assert single.seeds == 1 and math.isnan(single.jaccard_mean) and math.isnan(single.null_p)


def test_permutation_null_matches_its_closed_form():
    from rsi_plugin.criteria.seeds import permutation_null

    rng = np.random.default_rng(3)
    matrix = np.zeros((40, 3), dtype=bool)
    for j, k in enumerate((20, 16, 30)):
        matrix[rng.choice(40, k, replace=False), j] = True
    null = permutation_null(matrix, draws=4000, seed=1)
    assert null.mean() == pytest.approx(40 * (20 / 40) * (16 / 40) * (30 / 40), rel=0.05)
    assert np.array_equal(null, permutation_null(matrix, draws=4000, seed=1))  # reproducible
    # the same 10 channels pass in every seed: far above the null
    consistent = np.zeros((40, 3), dtype=bool)
    consistent[:10] = True
    assert (permutation_null(consistent, draws=2000) >= 10).mean() < 0.001
    # share 2/3: robust = passes in >= 2 of 3 seeds
    two = permutation_null(matrix, share=2 / 3, draws=4000, seed=1)
    p = np.array([20, 16, 30]) / 40
    expected = 40 * (p.prod() + sum(p[i] * p[j] * (1 - p[k]) for i, j, k in ((0, 1, 2), (0, 2, 1), (1, 2, 0))))
    assert two.mean() == pytest.approx(expected, rel=0.05)


def test_select_channels_and_the_ablate_channel_set(tmp_path):
    from rsi_plugin.cli.ablate import parse_channels
    from rsi_plugin.criteria.seeds import select_channels

    table = _rows({0: {0, 1, 2}, 1: {0, 1, 3}, 2: {0, 2}})
    table = pd.concat([table, table.assign(block="3.1", passes=False, verdict="fail")], ignore_index=True)
    assert select_channels(table, "3.10") == [0]
    assert select_channels(table, "3.10", "any") == [0, 1, 2, 3]
    assert select_channels(table, "3.10", "seed:1") == [0, 1, 3]
    assert select_channels(table, "3.1", "any") == []
    with pytest.raises(ValueError, match="robust, any, seed:K"):
        select_channels(table, "3.10", "best")
    with pytest.raises(ValueError, match="its seeds: 0, 1, 2"):
        select_channels(table, "3.10", "seed:7")
    path = tmp_path / "scan.csv"
    table.to_csv(path, index=False)
    assert parse_channels([str(path)], "3.10") == [0]
    assert parse_channels([str(path)], "3.10", channel_set="seed:2") == [0, 2]
    with pytest.raises(ValueError, match="no passing channel"):
        parse_channels([str(path)], "3.1", channel_set="any")


def test_scan_config_seeds():
    assert ScanConfig().seeds == (0,)
    assert ScanConfig(featureviz=FeatureVizConfig(seed=4)).seeds == (4,)
    assert ScanConfig(seeds=range(3)).seeds == (0, 1, 2)
    for bad, error in (([], ValueError), ((0, 0), ValueError), ((1.5,), ValueError), ((-1,), ValueError),
                       ((True,), ValueError), ("012", TypeError), (3, TypeError)):
        with pytest.raises(error, match="seeds"):
            ScanConfig(seeds=bad)
    with pytest.raises(ValueError, match="share"):
        ScanConfig(robust_share=0)
    with pytest.raises(ValueError, match="adaptive_eq1"):
        ScanConfig(adaptive_eq1=2)


def test_a_killed_multi_seed_scan_keeps_its_finished_seeds_and_resumes(planted, tmp_path, monkeypatch):
    from rsi_plugin.criteria.channel_scan import read_table, write_scan

    config = ScanConfig(featureviz=PLANTED_FZ, seeds=(7, 8), cache_dir=tmp_path / "fz")

    def write_then_die(seed, rows):
        write_scan(rows, tmp_path)
        raise KeyboardInterrupt  # killed right after the first seed's files were written

    with pytest.raises(KeyboardInterrupt):
        scan(planted, "1.0", config, progress=False, on_seed=write_then_die)
    kept = read_table(tmp_path / "scan.csv")
    assert kept["seed"].tolist() == [7] * 6 and kept["fz_computed"].all()
    assert read_table(tmp_path / "scan_channels.csv")["n_seeds"].tolist() == [1] * 6
    optimised = []
    original = featureviz._optimize_stream
    monkeypatch.setattr(featureviz, "_optimize_stream", lambda *a, **k: optimised.append(1) or original(*a, **k))
    again = scan(planted, "1.0", config, progress=False, on_seed=lambda seed, rows: write_scan(rows, tmp_path))
    assert not again.loc[again.seed == 7, "fz_computed"].any() and again.loc[again.seed == 8, "fz_computed"].all()
    assert len(optimised) == 2  # In and Pre of the missing seed only
    assert read_table(tmp_path / "scan.csv")["seed"].tolist() == [7] * 6 + [8] * 6
