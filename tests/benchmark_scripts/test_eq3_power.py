"""benchmarks/eq3_power.py: one sweep of the planted classifier per strength; the test's decision
follows the deficit (none at strength 0, detected at full strength) and the power table
aggregates the runs it was given."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks import eq3_power  # noqa: E402


def test_power_rows_follow_the_planted_deficit(tmp_path):
    result = eq3_power.run(quick=True, replicates=1)
    by = {r["strength"]: r for r in result["rows"]}
    assert set(by) == {0.0, 0.1, 1.0} and all(r["replicates"] == 1 for r in by.values())
    assert by[0.0]["detection_rate"] == 0.0 and by[1.0]["detection_rate"] == 1.0
    # the full-strength deficit is the largest: ablating the planted set costs most there
    assert by[1.0]["mean_largest_deficit"] < by[0.0]["mean_largest_deficit"]
    runs = {r["strength"]: r for r in result["runs"]}
    assert runs[1.0]["detected"] and runs[1.0]["largest_deficit"] < runs[1.0]["detectable_deficit_best"]
    eq3_power.plot(result, str(tmp_path / "power.png"))
    assert (tmp_path / "power.png").stat().st_size > 1000
