"""rsi scan/demo --estimate (issue 22 item 3): the arithmetic of the estimate (channel-steps,
controls, adaptive seeds, the running batch, disk from a record's size), the cache counted and
read, nothing rendered into or written by an estimate, and the usual error for a bad block.
The timing is replaced where the numbers are checked; no assertion is on a measured time."""

from __future__ import annotations

import math

import pytest
import torch

import rsi_plugin as rsi
from rsi_plugin.apps import estimate as est
from rsi_plugin.apps.demo import DemoConfig
from rsi_plugin.cli import main
from rsi_plugin.criteria.channel_scan import ScanConfig
from rsi_plugin.featureviz.optimize import FeatureVizConfig, render

PER_ROW = 0.01  # seconds per row of a batch step, patched in
FIXED = 0.5  # seconds per batch step whatever its rows, patched in


@pytest.fixture
def fixed_timing(monkeypatch):
    """A batch step of w rows costs FIXED + PER_ROW * w."""
    def fake(model, cases, config, k, repeats, progress):
        return {(block, node, len(channels)): FIXED + PER_ROW * len(channels) for block, node, channels in cases}

    monkeypatch.setattr(est, "_calibrate", fake)


@pytest.fixture(scope="module")
def tiny():
    return rsi.load_model("tiny")


def _config(**kw):
    fz = dict(steps=7, early_stop=False, image_size=16, channels_per_batch=4)
    fz.update(kw.pop("fz", {}))
    return ScanConfig(featureviz=FeatureVizConfig(**fz), **kw)


def test_channel_steps_are_channels_times_nodes_times_seeds_times_steps(tiny, fixed_timing):
    config = _config(channels=[0, 1, 2, 3, 4, 5], seeds=(0, 1))
    result = est.estimate_scan(tiny, ["1.1", "2.0"], config)
    assert list(result.blocks["block"]) == ["1.1", "2.0"]
    for row in result.blocks.itertuples():
        assert row.fz == 6 * 2 * 2 and row.cached == 0 and row.channels_per_batch == 4
        assert row.channel_steps == 6 * 2 * 2 * 7 and row.steps_per_fz == 7
    assert result.channel_steps == 2 * 6 * 2 * 2 * 7
    # the running batch: 6 channels of 7 steps at width 4 (rows join at any step without early
    # stopping): 4 rows for 7 steps, then 2 rows for 7: 14 batch steps per node and seed
    nodes = result.nodes
    assert set(nodes["batch_steps"]) == {14}
    expected = nodes["batch_steps"] * FIXED + nodes["channel_steps"] * PER_ROW
    assert nodes["seconds"].tolist() == pytest.approx(expected.tolist())
    assert result.seconds == pytest.approx(float(expected.sum()))
    assert any("early stopping off" in a for a in result.assumptions)


def test_controls_multiply_the_work_by_one_plus_k_on_their_seeds(tiny, fixed_timing):
    alone = est.estimate_scan(tiny, ["1.1"], _config(channels=[0, 1], seeds=(0, 1, 2)))
    with_copies = est.estimate_scan(tiny, ["1.1"], _config(channels=[0, 1], seeds=(0, 1, 2),
                                                           controls=("random-init:2",)))
    assert with_copies.channel_steps == 3 * alone.channel_steps  # 1 + K, every seed
    cheap = est.estimate_scan(tiny, ["1.1"], _config(channels=[0, 1], seeds=(0, 1, 2), controls=("random-init:2",),
                                                     control_seeds=1))
    assert cheap.channel_steps == alone.channel_steps + 2 * alone.channel_steps // 3  # copies on one seed
    row = cheap.blocks.iloc[0]
    assert (row["copies"], row["copy_seeds"], row["fz"]) == (2, 1, 2 * 2 * 3 + 2 * 2 * 2 * 1)


def test_cascade_copy_scans_only_its_blocks(tiny, fixed_timing):
    result = est.estimate_scan(tiny, ["1.1", "2.0"], _config(channels=[0], controls=("cascade:2.0",)))
    assert result.blocks.set_index("block")["copies"].to_dict() == {"1.1": 0, "2.0": 1}


def test_adaptive_seeds_after_the_first_take_the_reference_share(tiny, fixed_timing):
    config = _config(seeds=(0, 1, 2), adaptive=True)
    result = est.estimate_scan(tiny, ["3.1"], config)
    kept = math.ceil(est.ADAPTIVE_KEPT_SHARE * 64)
    assert result.blocks.iloc[0]["fz"] == 2 * (64 + 2 * kept)
    assert any("adaptive" in a and "20 of 144" in a for a in result.assumptions)


def test_early_stopping_takes_the_reference_steps_capped(tiny, fixed_timing):
    config = _config(fz=dict(early_stop=True, steps=2560))
    result = est.estimate_scan(tiny, ["1.1"], config)
    nodes = result.nodes.set_index("node")
    assert set(nodes["steps_from"]) == {"reference"}
    # 16 draws spread over the reference deciles: their mean is near the deciles' middle
    for node in ("in", "pre"):
        deciles = est.REFERENCE_STEPS["tiny"][("1.1", node)]
        assert deciles[0] * 16 <= nodes.loc[node, "channel_steps"] <= deciles[-1] * 16
    capped = est.estimate_scan(tiny, ["1.1"], _config(fz=dict(early_stop=True, steps=100)))
    assert capped.channel_steps == 2 * 16 * 100  # every reference FZ needs more than the cap
    other = est.estimate_scan(tiny, ["4.0"], config)  # a block outside the reference: tiny pooled
    assert set(other.nodes["steps_from"]) == {"reference (tiny, all blocks)"}


def test_batch_steps_of_the_running_batch():
    assert est._batch_steps([5, 3, 9], width=4, window=0) == 9  # all at once: the longest
    assert est._batch_steps([5, 3, 9], width=1, window=0) == 17  # one at a time: the sum
    # width 2, joining at multiples of 4: rows 5 and 3; at step 4 the third joins (3 is done),
    # at 5 the first leaves, the third runs to step 13
    assert est._batch_steps([5, 3, 9], width=2, window=4) == 13
    assert est._batch_steps([], width=2, window=4) == 0


def test_disk_is_the_record_and_png_of_each_fz(tiny, fixed_timing, tmp_path):
    result = est.estimate_scan(tiny, ["1.1"], _config(channels=[0, 1, 2]))
    per_fz = est._record_bytes(16, 7) + est._png_bytes(16)
    assert result.disk_bytes == 3 * 2 * per_fz
    # the record's size is what render writes for such a record (within the PNG's compression)
    out = render(tiny, "1.1", "in", [0], FeatureVizConfig(steps=7, early_stop=False, image_size=16),
                 cache_dir=tmp_path, progress=False)
    record = next(tmp_path.rglob("c00000.pt"))
    assert abs(record.stat().st_size - est._record_bytes(16, 7)) < 200
    png = out.paths[0]
    assert 0 < png.stat().st_size <= est._png_bytes(16)


def test_cached_fzs_cost_nothing_and_give_their_steps(tiny, fixed_timing, tmp_path):
    fz = FeatureVizConfig(steps=256, image_size=16, plateau_window=4)
    render(tiny, "1.1", "in", [0, 1], fz, cache_dir=tmp_path, progress=False)
    render(tiny, "1.1", "pre", [0, 1], fz, cache_dir=tmp_path, progress=False)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    config = ScanConfig(featureviz=fz, channels=[0, 1, 2], cache_dir=str(tmp_path))
    result = est.estimate_scan(tiny, ["1.1"], config)
    row = result.blocks.iloc[0]
    assert (row["fz"], row["cached"]) == (6, 4)
    assert set(result.nodes["steps_from"]) == {"cache"}
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing written
    forced = est.estimate_scan(tiny, ["1.1"], ScanConfig(featureviz=fz, channels=[0, 1, 2], cache_dir=str(tmp_path),
                                                          force=True))
    assert forced.blocks.iloc[0]["cached"] == 0


def test_natural_scan_and_bad_calibration_are_refused(tiny):
    with pytest.raises(rsi.errors.RSIError, match="natural"):
        est.estimate_scan(tiny, ["1.1"], ScanConfig(source="natural"))
    with pytest.raises(rsi.errors.RSIError, match="calibration_steps"):
        est.estimate_scan(tiny, ["1.1"], _config(), calibration_steps=0)


def test_demo_estimate_adds_the_planted_scan_and_the_other_stages(fixed_timing, tmp_path):
    config = DemoConfig(out=str(tmp_path / "run"), blocks=["1.1"], steps=64, seeds=2, controls=1)
    result = est.estimate_demo(config)
    assert result.planted is not None and list(result.planted.blocks["block"]) == ["1.0"]
    assert result.planted.blocks.iloc[0]["copies"] == 1
    assert result.other_stages == est.DEMO_OTHER_STAGES_S
    assert result.seconds == pytest.approx(result.scan.seconds + result.planted.seconds
                                           + sum(est.DEMO_OTHER_STAGES_S.values()))
    text = est.format_estimate(result)
    assert "planted" in text and "assumptions:" in text and "ablation sweeps" in text
    assert not (tmp_path / "run").exists()
    alone = est.estimate_demo(DemoConfig(out=str(tmp_path / "run"), blocks=["1.1"], steps=64, seeds=2, controls=0,
                                         planted=False))
    assert alone.planted is None and "planted Eq. 3 sweep" not in alone.other_stages


def test_format_duration():
    assert est.format_duration(0) == "0:00:00"
    assert est.format_duration(698) == "0:11:38"
    assert est.format_duration(3 * 3600 + 61.4) == "3:01:01"


def test_reference_recomputed_from_a_run_folder(tmp_path):
    import pandas as pd

    scan_dir = tmp_path / "scan"
    scan_dir.mkdir()
    pd.DataFrame({"source": "fz", "block": ["1.1"] * 4, "in_steps_used": [64, 128, 192, 256],
                  "pre_steps_used": [64, 64, 64, 64]}).to_csv(scan_dir / "scan.csv", index=False)
    ref = est.steps_reference(tmp_path)
    assert list(ref) == ["tiny"]
    assert ref["tiny"][("1.1", "pre")] == (64,) * 11
    assert ref["tiny"][("1.1", "in")][0] == 64 and ref["tiny"][("1.1", "in")][-1] == 256


def test_cli_scan_estimate_names_blocks_and_assumptions_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "scan"
    code = main(["scan", "--model", "tiny", "--blocks", "1.1", "2.0", "--channels", "0", "1", "--steps", "3",
                 "--image-size", "16", "--threads", "1", "--out", str(out), "--estimate", "--no-progress"])
    text = capsys.readouterr().out
    assert code == 0
    lines = text.splitlines()
    assert any(line.split()[:1] == ["1.1"] for line in lines) and any(line.split()[:1] == ["2.0"] for line in lines)
    assert "assumptions:" in text and "channel-steps" in text and "wall time" in text
    assert "0:00:" in text or "0:01:" in text  # h:mm:ss
    assert not out.exists()  # no folder, no FZ, no table


def test_cli_scan_estimate_unknown_block_is_the_usual_error(tmp_path, capsys):
    code = main(["scan", "--model", "tiny", "--blocks", "9.9", "--out", str(tmp_path / "x"), "--estimate"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    line = [l for l in err.splitlines() if l.startswith("rsi scan")]
    assert len(line) == 1 and "9.9" in line[0] and "1.1" in line[0]  # names the valid blocks
    assert not (tmp_path / "x").exists()


def test_cli_demo_estimate_writes_nothing(tmp_path, capsys, fixed_timing):
    out = tmp_path / "demo"
    code = main(["demo", "--out", str(out), "--blocks", "1.1", "--seeds", "1", "--controls", "0", "--estimate",
                 "--no-progress"])
    text = capsys.readouterr().out
    assert code == 0 and "estimated cost of rsi demo" in text and "total:" in text and "planted" in text
    assert not out.exists()


def test_load_note_warns_on_a_busy_machine():
    import os

    cores = os.cpu_count() or 1
    assert est._load_note(None) == []
    assert "busy" in est._load_note(cores * 2.0)[0]
    assert "busy" not in est._load_note(0.0)[0] and "load average" in est._load_note(0.0)[0]


def test_calibration_times_each_case_once_more_when_calls_are_slow(tiny, monkeypatch):
    from rsi_plugin.apps import timing

    seen = []
    real = timing.time_cases

    def spy(cases, repeats=5, warmup=1, **kw):
        seen.append(repeats)
        return real(cases, repeats=repeats, warmup=warmup, **kw)

    monkeypatch.setattr(timing, "time_cases", spy)
    cfg = FeatureVizConfig(image_size=16).resolved(tiny, "1.1", "in")
    cases = [("1.1", "in", [0, 1]), ("1.1", "in", [0])]
    fast = est._calibrate(tiny, cases, cfg, k=2, repeats=3, progress=False)
    assert seen == [1, 3] and set(fast) == {("1.1", "in", 2), ("1.1", "in", 1)}
    assert all(v > 0 for v in fast.values())
    monkeypatch.setattr(est, "SLOW_CALL_S", 0.0)
    est._calibrate(tiny, cases, cfg, k=2, repeats=3, progress=False)
    assert seen[2:] == [1, 1]
