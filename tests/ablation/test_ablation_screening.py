"""Random control sets and the paper's screening rule, on constructed outcomes."""

from __future__ import annotations

import pytest
import torch
from rsi_plugin.testing.models import random_data, small_resnet  # noqa: F401

from rsi_plugin.ablation import SweepConfig, keeps, random_sets, sweep
from rsi_plugin.ablation.screening import Draw, decide, draws_frame, screen


def test_random_sets_are_seeded_prefix_stable_and_from_the_pool():
    pool = [0, 2, 3, 5, 8, 13, 21]
    sets = random_sets(pool, 3, seed=4, count=20)
    assert sets == random_sets(pool, 3, seed=4, count=20)
    assert sets[:5] == random_sets(pool, 3, seed=4, count=5)
    assert sets != random_sets(pool, 3, seed=5, count=20)
    for s in sets:
        assert len(s) == 3 and len(set(s)) == 3 and set(s) <= set(pool) and list(s) == sorted(s)
    assert len(set(sets)) > 1
    with pytest.raises(ValueError, match="pool of 7"):
        random_sets(pool, 8, seed=0, count=1)


@pytest.mark.parametrize("random_acc, inv_acc, tolerance, expected", [
    (0.50, 0.50, 0.0, True),     # equal damage is kept
    (0.49, 0.50, 0.0, True),     # more damage is kept
    (0.51, 0.50, 0.0, False),    # less damage is rejected
    (0.51, 0.50, 0.01, True),    # within one point with the 3.1 relaxation
    (0.30, 0.29, 0.01, True),    # exactly one point higher (floating point: 0.29 + 0.01)
    (0.512, 0.50, 0.01, False),  # beyond one point
])
def test_keep_rule(random_acc, inv_acc, tolerance, expected):
    assert keeps(random_acc, inv_acc, tolerance) is expected


def _fake_evaluate(accuracy_of, n=100, log=None):
    def evaluate(candidates):
        if log is not None:
            log.append(list(candidates))
        return [(round(accuracy_of[c] * n), n) for c in candidates]
    return evaluate


def test_screen_keeps_and_rejects_in_draw_order():
    sets = [(i,) for i in range(10)]
    # invariant accuracy 0.60; draws 1, 4 and 7 do less damage (higher accuracy)
    accuracy = {(i,): (0.70 if i in (1, 4, 7) else 0.55) for i in range(10)}
    log = []
    draws = screen(sets, _fake_evaluate(accuracy, log=log), 0.60, trials=4, chunk=3)
    assert [d.draw for d in draws] == [0, 1, 2, 3, 4, 5]
    assert [d.kept for d in draws] == [True, False, True, True, False, True]
    assert [d.trial for d in draws] == [0, -1, 1, 2, -1, 3]
    assert all(d.invariant_accuracy == 0.60 for d in draws)
    # evaluated max(chunk, still needed) at a time; draw 6 was evaluated but is not
    # recorded, since the fourth set was kept before it
    assert log == [[(0,), (1,), (2,), (3,)], [(4,), (5,), (6,)]]


def test_screen_records_do_not_depend_on_the_chunk():
    sets = [(i,) for i in range(30)]
    accuracy = {(i,): (0.9 if i % 3 == 0 else 0.2) for i in range(30)}
    runs = [screen(sets, _fake_evaluate(accuracy), 0.5, trials=5, chunk=c) for c in (1, 2, 5, 30)]
    assert all(r == runs[0] for r in runs)
    assert sum(d.kept for d in runs[0]) == 5


def test_tolerance_relaxes_the_rule():
    sets = [(i,) for i in range(4)]
    accuracy = {(0,): 0.505, (1,): 0.52, (2,): 0.50, (3,): 0.509}
    strict = screen(sets, _fake_evaluate(accuracy, n=1000), 0.50, trials=4, tolerance=0.0)
    relaxed = screen(sets, _fake_evaluate(accuracy, n=1000), 0.50, trials=4, tolerance=0.01)
    assert [d.kept for d in strict] == [False, False, True, False]
    assert [d.kept for d in relaxed] == [True, False, True, True]


def test_drawing_stops_at_the_bound():
    sets = [(i,) for i in range(7)]  # max_draws = 7
    accuracy = {(i,): 0.9 for i in range(7)}
    draws = screen(sets, _fake_evaluate(accuracy), 0.5, trials=3, chunk=2)
    assert len(draws) == 7 and not any(d.kept for d in draws)


def test_screen_resumes_from_done_draws_and_asks_the_threshold_after_evaluating():
    sets = [(i,) for i in range(6)]
    accuracy = {(i,): 0.4 for i in range(6)}
    done = decide(0, sets[:2], [(40, 100), (40, 100)], 0.5, 0.0, needed=3)
    asked = []

    def threshold():
        asked.append(1)
        return 0.5

    log = []
    draws = screen(sets, _fake_evaluate(accuracy, log=log), threshold, trials=3, done=done)
    assert log == [[(2,), (3,), (4,)]]  # starts after the done draws, trials (3) at a time
    assert [d.draw for d in draws] == [0, 1, 2] and [d.trial for d in draws] == [0, 1, 2]
    assert draws[:2] == done and len(asked) == 1


def test_draws_frame_columns():
    frame = draws_frame([Draw(0, (3, 1), 5, 10, 0.5, 0.6, True, 0)])
    assert list(frame.columns) == ["draw", "channels", "correct", "n_images", "accuracy",
                                   "invariant_accuracy", "kept", "trial"]
    assert frame.loc[0, "channels"] == "3 1"


def test_sweep_screening_follows_the_rule_on_a_model():
    """Rejected and kept draws of a real sweep satisfy the rule against the measured
    invariant no-scale accuracy, and the kept ones become the random trials."""
    model = small_resnet()
    data = random_data(30, seed=8)
    config = SweepConfig(scales=(0.0, 0.5), trials=3, tolerance=0.0, max_draws=12, seed=1, batch_size=15)
    result = sweep(model, data, "3.1", [0, 1, 2, 3, 4, 5, 6, 7], config, progress=False)
    table = result.results.set_index(["condition", "trial", "scale"])
    inv = table.loc[("invariant", 0, 0.0), "accuracy"]
    draws = result.draws
    assert draws["kept"].any() and not draws["kept"].all()  # this seeded case has both outcomes
    for row in draws.itertuples():
        assert row.kept == (row.accuracy <= inv + 1e-9)
        assert row.invariant_accuracy == inv
        chosen = {int(c) for c in row.channels.split()}
        assert len(chosen) == 8 and not chosen & set(range(8))
    kept = draws[draws["kept"]]
    assert len(kept) <= 3 and list(kept["trial"]) == list(range(len(kept)))
    if len(kept) < 3:  # ran out of draws
        assert len(draws) == 12
    for row in kept.itertuples():
        assert table.loc[("random", row.trial, 0.0), "correct"] == row.correct
    assert set(result.results.loc[result.results["condition"] == "random", "trial"]) == set(kept["trial"])
    assert torch.equal(torch.tensor(sorted(set(result.results["scale"]))), torch.tensor([0.0, 0.5]))
