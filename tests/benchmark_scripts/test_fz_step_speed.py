"""benchmarks/fz_step_speed.py: a smoke run (``--quick``) writes its JSON and Markdown with every
field, and the decision rule of issue 22 item 4."""

from __future__ import annotations

import json

from benchmarks.fz_step_speed import OPTIONS, decide, main


def test_quick_run_writes_the_json_and_table(tmp_path):
    stem = tmp_path / "fz"
    assert main(["--quick", "--rounds", "1", "--out", str(stem)]) == 0
    result = json.loads(stem.with_suffix(".json").read_text())
    assert {"machine", "device", "threads", "load_start", "load_end", "speed", "verdicts", "decision"} <= set(result)
    assert {"cpu", "avx512_bf16", "amx_bf16", "torch"} <= set(result["machine"])
    assert len(result["load_start"]) == 3 and len(result["load_end"]) == 3
    assert [r["option"] for r in result["speed"]] == list(OPTIONS)
    assert all(r["channel_steps_per_s"] > 0 and r["model"] == "tiny" for r in result["speed"])
    assert result["speed"][0]["speedup"] == 1.0
    assert all(0 < r["param_share"] < 1 for r in result["speed"])
    compared = result["verdicts"]["compared"]
    assert set(compared) == {"bf16@seed0", "channels_last@seed0", "bf16+channels_last@seed0", "fp32@seed1"}
    assert all(0 <= c["changed"] <= c["channels"] == 1 for c in compared.values())
    assert set(result["decision"]) == set(OPTIONS) - {"fp32"}
    table = stem.with_suffix(".md").read_text()
    assert "| tiny | 32 | 2.1 post | 4 | 2 | bf16 |" in table and "Decision" in table


def test_the_rule_needs_both_speed_and_stable_verdicts():
    rows = [{"model": m, "option": o, "speedup": s} for m, o, s in
            [("tiny", "fp32", 1.0), ("tiny", "a", 1.5), ("tiny", "b", 1.5), ("tiny", "c", 1.1),
             ("resnet18", "fp32", 1.0), ("resnet18", "a", 1.3), ("resnet18", "b", 1.3), ("resnet18", "c", 2.0)]]
    verdicts = {"seed_change": 2, "compared": {"a@seed0": {"changed": 2}, "b@seed0": {"changed": 3},
                                               "c@seed0": {"changed": 0}}}
    decision = decide(rows, verdicts)
    assert [decision[o]["adopt"] for o in "abc"] == [True, False, False]
    assert decide(rows, None)["a"]["adopt"] is False  # no verdict comparison: nothing is adopted
