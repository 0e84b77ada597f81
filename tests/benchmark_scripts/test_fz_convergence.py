"""benchmarks/fz_convergence.py: the tables it derives from scan folders (synthetic folders with
known answers; no FZ is rendered)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pandas as pd
import pytest

from rsi_plugin.core.runfolder import ScanFiles
from benchmarks.fz_convergence import agreement, chance_jaccard, convergence, markdown


def _folder(root: Path, name: str, rows: list[dict], steps: int) -> Path:
    folder = root / name
    (ScanFiles(folder).fz_cache / "m" / "2.1" / "pre" / "h").mkdir(parents=True)
    seeds = sorted({r["seed"] for r in rows})
    for seed in seeds:
        sub = ScanFiles(folder).fz_cache / "m" / "2.1" / "pre" / f"h{seed}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / "config.json").write_text(json.dumps({"steps": steps, "seed": seed, "early_stop": True,
                                                     "plateau_window": 64, "plateau_rtol": 0.01}))
    pd.DataFrame(rows).to_csv(ScanFiles(folder).table, index=False)
    return folder


def _row(seed: int, channel: int, verdict: str, used: tuple[int, int], act: float = 1.0, status=("ok", "ok"),
         eq: bool | None = None) -> dict:
    eq = verdict == "pass" if eq is None else eq
    return {"eq1": eq, "eq2": eq, "source": "fz", "seed": seed, "block": "2.1", "channel": channel, "passes": verdict == "pass",
            "verdict": verdict, "in_status": status[0], "pre_status": status[1], "in_steps_used": used[0],
            "pre_steps_used": used[1], "in_fz_act": act, "pre_fz_act": act, "pre_in": 1.0, "pre_scaled": 1.0,
            "eq2_margin": 0.1}


def test_chance_jaccard_matches_enumeration():
    n, a, b = 6, 2, 3
    items = range(n)
    values = [len(set(x) & set(y)) / len(set(x) | set(y))
              for x in itertools.combinations(items, a) for y in itertools.combinations(items, b)]
    assert chance_jaccard(n, a, b) == pytest.approx(sum(values) / len(values))
    assert chance_jaccard(5, 0, 0) is None
    assert chance_jaccard(5, 5, 5) == pytest.approx(1.0)


def test_convergence_counts_transitions_sets_and_prefix_mismatches(tmp_path):
    short = [_row(0, 0, "pass", (128, 192)), _row(0, 1, "undetermined", (512, 512), 1.0, ("ok", "unconverged"), eq=True),
             _row(0, 2, "fail", (128, 128)), _row(1, 0, "pass", (128, 192)),
             _row(1, 1, "undetermined", (512, 512), 2.0, ("ok", "unconverged")), _row(1, 2, "fail", (64, 64))]
    long = [_row(0, 0, "pass", (128, 192)), _row(0, 1, "pass", (512, 1024), 3.0),
            _row(0, 2, "fail", (128, 128)), _row(1, 0, "pass", (128, 192)),
            _row(1, 1, "undetermined", (512, 2560), 2.0, ("ok", "unconverged")),
            _row(1, 2, "fail", (64, 128))]  # channel 2 of seed 1 stopped before 512 yet differs: not a prefix
    result = convergence(_folder(tmp_path, "s", short, 512), _folder(tmp_path, "l", long, 2560))
    assert result["prefix_check"]["rows_stopped_before_short_cap"] == 4
    assert result["prefix_check"]["identical"] == 3
    assert result["prefix_check"]["differing"] == [{"seed": 1, "block": "2.1", "channel": 2}]
    seed0 = next(p for p in result["per_seed"] if p["seed"] == 0)
    assert seed0["transitions"] == {"fail->fail": 1, "pass->pass": 1, "undetermined->pass": 1}
    assert seed0["passing_short"] == {0} and seed0["passing_long"] == {0, 1}
    assert seed0["passing_jaccard"] == pytest.approx(0.5)
    fate = next(f for f in result["unconverged_fates"] if f["node"] == "pre")
    assert (fate["unconverged_at_short_cap"], fate["then_ok"], fate["then_unconverged"]) == (2, 1, 1)
    assert fate["objective_ratio_long_over_short"]["median"] == pytest.approx((3.0 + 1.0) / 2)
    assert result["undetermined_short"] == {"rows": 2, "equations_met_short": 1,
                                            "met_then": {"pass": 1, "fail": 0, "undetermined": 0},
                                            "not_met_then": {"pass": 0, "fail": 0, "undetermined": 1}}
    sets = result["sets"][0]
    assert sets["robust_short"] == {0} and sets["robust_long"] == {0}  # channel 1 passes in seed 0 only
    assert sets["any_seed_long"] == {0, 1}
    pre_short = next(r for r in result["steps_short"] if r["node"] == "pre")
    assert pre_short["status_unconverged"] == 2 and pre_short["stopped_before_cap"] == 4
    assert "**Finding (A, 2.1).**" in markdown(result, None)


def test_agreement_rejects_shared_seeds_and_compares_robust_sets(tmp_path):
    a = [_row(s, c, "pass" if c < 2 else "fail", (64, 64)) for s in (0, 1) for c in range(4)]
    b = [_row(s, c, "pass" if c in (1, 2) else "fail", (64, 64)) for s in (2, 3) for c in range(4)]
    first, second = _folder(tmp_path, "a", a, 512), _folder(tmp_path, "b", b, 512)
    result = agreement(first, second)
    row = result["compare"][0]
    assert row["robust_first"] == {0, 1} and row["robust_second"] == {1, 2}
    assert row["robust_jaccard"] == pytest.approx(1 / 3)
    assert row["robust_chance"] == pytest.approx(chance_jaccard(4, 2, 2))
    assert "Finding (B, 2.1)" in markdown(None, result) and "2.1: 0-3" in markdown(None, [result])
    with pytest.raises(ValueError, match="share seeds"):
        agreement(first, first)


def test_the_adaptive_replay_is_skipped_for_a_run_that_was_adaptive(tmp_path):
    full = [_row(s, c, "pass" if c < 2 else "fail", (64, 64)) for s in (0, 1) for c in range(4)]
    # channel 3 rendered in seed 0 only: the run itself skipped a seed
    adaptive = [_row(s, c, "pass" if c in (1, 2) else "fail", (64, 64)) for s in (2, 3) for c in range(4)
                if not (s == 3 and c == 3)]
    result = agreement(_folder(tmp_path, "full", full, 512), _folder(tmp_path, "adaptive", adaptive, 512))
    assert result["adaptive"]["second"] == {"adaptive_run": True}
    assert result["adaptive"]["first"]["channels"] == 4  # the full run is replayed
    text = markdown(None, result)
    assert "second run: adaptive itself, nothing to replay" in text
    assert f"first run {result['adaptive']['first']['stopped']} of 4 channels stopped after one seed" in text
