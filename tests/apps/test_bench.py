"""rsi bench: every case measures the real path (its output equals its reference), the table's
schema, JSON round trip, the plain-vs-plain sanity row, and clear errors."""

from __future__ import annotations

import copy

import pandas as pd
import pytest
import torch

import rsi_plugin as rsi
from rsi_plugin.apps.bench import BENCH_CASES, bench, load_bench, make_cases, save_bench
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
    import rsi_plugin.apps.timing as timing

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
    code = main(["bench", "--model", "resnet18", "--batch-size", "1", "--repeats", "1", "--cases", "plain", "nnsight_empty",
                 "--json", str(tmp_path / "b.json"), "--plot", str(tmp_path / "b.png")])
    assert code == 0
    assert (tmp_path / "b.png").stat().st_size > 1000
    frame = load_bench(tmp_path / "b.json")
    assert set(frame.case) == {"plain", "nnsight_empty"}
    assert "nnsight_empty" in capsys.readouterr().out


# --- issue 13 item 14: noisy-machine warning, per-case memory, a readable plot, --threads ---

def test_peak_memory_of_a_known_allocation_pattern():
    """4 MB, then 8 MB while the 4 MB is alive, free the 4 MB, then 2 MB: peak 12 MB above start,
    whatever was allocated before (the pre-existing tensor must not count)."""
    from rsi_plugin.apps.bench import peak_memory_mb

    kept = torch.ones(3_000_000)  # live before the call: not part of its peak

    def pattern():
        a = torch.empty(1_000_000)
        b = torch.empty(2_000_000)
        del a
        c = torch.empty(500_000)
        return b, c

    assert peak_memory_mb(pattern) == pytest.approx(12e6 / 2**20, rel=0.01)
    assert peak_memory_mb(lambda: kept.sum()) < 0.01
    assert kept.shape == (3_000_000,)


def test_bench_memory_is_each_cases_own(monkeypatch):
    """The process RSS was the same for every case. With two cases of known allocations (40 MB
    and 4 MB beyond their input) in place of the library's, bench reports each one's own peak;
    and the real plain forward, run twice, gives the same peak both times."""
    import rsi_plugin.apps.bench as overhead
    from rsi_plugin.apps.bench import BenchCase

    def allocating(n_floats):
        def run(x):
            return torch.empty(n_floats).sum() + x.sum()
        return run

    def fake_cases(model, plain_model, block="3.1", channels=None, cases=None):
        return {"plain": BenchCase("plain", "40 MB", allocating(10_000_000), allocating(10_000_000)),
                "plain_again": BenchCase("plain_again", "4 MB", allocating(1_000_000), allocating(1_000_000))}

    with monkeypatch.context() as patch:
        patch.setattr(overhead, "make_cases", fake_cases)
        frame = bench("tiny", batches=[1], repeats=1, warmup=0, progress=False)
    peak = frame.set_index("case")["peak_mem_mb"]
    assert peak["plain"] == pytest.approx(40e6 / 2**20, rel=0.02)
    assert peak["plain_again"] == pytest.approx(4e6 / 2**20, rel=0.05)
    assert (frame.memory_kind == "cpu_profiler_peak").all()

    frame = bench("resnet18", batches=[1, 4], repeats=1, warmup=0, cases=["plain", "plain_again"],
                  image_size=64, progress=False)
    peak = frame.set_index(["case", "batch"])["peak_mem_mb"]
    assert peak["plain", 1] == pytest.approx(peak["plain_again", 1], rel=1e-6)
    assert peak["plain", 4] > peak["plain", 1] > 0


def _fake_timings(ratio):
    from rsi_plugin.apps.timing import TimingResult

    def fake(cases, repeats=5, warmup=1, device=None, progress=False):
        return {name: TimingResult(name, [0.010 * (ratio if name == "plain_again" else 1.0)] * repeats)
                for name in cases}
    return fake


@pytest.mark.parametrize("ratio, warned", [(0.6, True), (1.3, True), (1.05, False), (0.95, False)])
def test_noisy_sanity_row_is_warned(monkeypatch, caplog, ratio, warned):
    import rsi_plugin.apps.bench as overhead

    monkeypatch.setattr(overhead, "time_cases", _fake_timings(ratio))
    monkeypatch.setattr(overhead, "peak_memory_mb", lambda fn, device="cpu": 1.0)
    with caplog.at_level("WARNING", logger="rsi_plugin.apps.bench"):
        frame = bench("tiny", batches=[1], repeats=2, cases=["plain", "plain_again"], progress=False)
    assert frame.loc[frame.case == "plain_again", "overhead"].item() == pytest.approx(ratio)
    assert bool(frame.attrs["warnings"]) is warned
    assert any("too noisy" in r.message for r in caplog.records) is warned


def test_plot_gives_every_case_its_own_style_on_a_log_axis():
    from rsi_plugin.outputs.plots import bench_figure

    rows = [{"case": case, "batch": b, "overhead": 1.0 + i + (40.0 if case == "remote_local" else 0.0)}
            for i, case in enumerate(BENCH_CASES) for b in (1, 8, 32)]
    frame = pd.DataFrame(rows)
    fig = bench_figure(frame)
    try:
        ax = fig.axes[0]
        lines = [l for l in ax.get_lines() if l.get_label() in BENCH_CASES]
        assert [l.get_label() for l in lines] == list(BENCH_CASES)
        styles = [(tuple(__import__("matplotlib").colors.to_rgba(l.get_color())), l.get_marker()) for l in lines]
        assert len({c for c, _ in styles}) == len(BENCH_CASES)
        assert len({m for _, m in styles}) == len(BENCH_CASES)
        assert ax.get_yscale() == "log"
    finally:
        __import__("matplotlib.pyplot").pyplot.close(fig)


def test_cli_bench_threads_are_used_and_recorded(tmp_path):
    before = torch.get_num_threads()
    assert main(["bench", "--model", "tiny", "--batch-size", "1", "--repeats", "1", "--cases", "plain",
                 "--threads", "2", "--json", str(tmp_path / "b.json")]) == 0
    assert load_bench(tmp_path / "b.json").attrs["environment"]["threads"] == 2
    assert torch.get_num_threads() == before
    assert main(["bench", "--model", "tiny", "--threads", "0"]) == 2


def test_peak_memory_leaves_a_running_profiler_alone():
    from torch.profiler import ProfilerActivity, profile

    from rsi_plugin.apps.bench import peak_memory_mb

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        value = peak_memory_mb(lambda: torch.empty(1000))
        torch.ones(3).sum()
    assert value != value  # NaN: not measured
    assert any(e.name == "aten::ones" for e in prof.events())
