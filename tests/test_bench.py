"""rsi bench: every case measures the real path (its output equals its reference), the table's
schema, JSON round trip, the plain-vs-plain sanity row, and clear errors."""

from __future__ import annotations

import copy

import pandas as pd
import pytest
import torch

import rsi_plugin as rsi
from rsi_plugin.overhead import BENCH_CASES, bench, load_bench, make_cases, save_bench
from rsi_plugin.cli import main


def _equal(a, b):
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _equal(a[k], b[k])
    else:
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_every_case_returns_what_its_reference_returns():
    model = rsi.load_model("resnet18", seed=2)
    plain = copy.deepcopy(model)
    cases = make_cases(model, plain, block="2.0", channels=[0, 3, 7])
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    assert set(cases) >= set(BENCH_CASES) - {"remote_local"}
    for name, case in cases.items():
        _equal(case.run(x), case.reference(x))
    # the ablation cases really ablate
    assert not torch.equal(cases["ablate_post"].run(x), cases["plain"].run(x))


def test_bench_table_json_roundtrip_and_sanity_row(tmp_path):
    frame = bench("resnet18", batches=[1, 2], repeats=3, cases=["plain", "plain_again", "ablate_post"],
                  image_size=64, progress=False)
    assert list(frame.columns) == ["case", "description", "batch", "median_s", "iqr_s", "images_per_s",
                                   "overhead", "peak_mem_mb", "memory_kind", "repeats"]
    assert len(frame) == 6 and set(frame["batch"]) == {1, 2}
    assert (frame.loc[frame.case == "plain", "overhead"] == 1.0).all()
    assert (frame.overhead > 0).all() and frame.overhead.notna().all()
    assert (frame.peak_mem_mb > 0).all()
    env = frame.attrs["environment"]
    assert env["threads"] >= 1 and env["torch"] == torch.__version__ and "nnsight" in env
    path = save_bench(frame, tmp_path / "b.json")
    back = load_bench(path)
    pd.testing.assert_frame_equal(back, frame, check_dtype=False)
    assert back.attrs["environment"] == env


def test_harness_is_unbiased_on_a_deterministic_clock(monkeypatch):
    """Two identical cases cost the same on a fake clock where each call takes a fixed time
    that drifts upwards round by round: interleaving must give them equal medians (a
    harness timing A's rounds before B's would make B look slower)."""
    import rsi_plugin.timing as timing

    clock = {"t": 0.0, "calls": 0}

    def fake_perf_counter():
        return clock["t"]

    def work():
        clock["calls"] += 1
        clock["t"] += 1.0 + 0.01 * clock["calls"]  # drift: each call a little slower

    monkeypatch.setattr(timing.time, "perf_counter", fake_perf_counter)
    results = timing.time_cases({"a": work, "b": work, "c": work}, repeats=5, warmup=1)
    assert all(len(r.times) == 5 for r in results.values())
    ratio = results["c"].median / results["a"].median
    assert ratio == pytest.approx(1.0, abs=0.03)
    assert clock["calls"] == 18  # 3 cases x (1 warm-up + 5 timed)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"cases": ["warp_speed"]}, ValueError, "valid: plain"),
    ({"batches": [0]}, ValueError, "positive"),
    ({"batches": [-2]}, ValueError, "positive"),
    ({"repeats": 0}, ValueError, "repeats"),
    ({"device": "tpu"}, ValueError, "valid: cpu, cuda"),
])
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        bench("resnet18", image_size=32, progress=False, **{"batches": [1], **kwargs})


def test_cuda_without_gpu_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="no CUDA GPU"):
        bench("resnet18", batches=[1], device="cuda", progress=False)


def test_cli_bench_writes_json_and_plot(tmp_path, capsys):
    code = main(["bench", "--model", "resnet18", "--batch", "1", "--repeats", "1", "--cases", "plain", "nnsight_empty",
                 "--json", str(tmp_path / "b.json"), "--plot", str(tmp_path / "b.png")])
    assert code == 0
    assert (tmp_path / "b.png").stat().st_size > 1000
    frame = load_bench(tmp_path / "b.json")
    assert set(frame.case) == {"plain", "nnsight_empty"}
    assert "nnsight_empty" in capsys.readouterr().out
