"""The scan shared among processes (torchrun, gloo on the CPU): the same files as one process, a
killed rank's rerun renders only what is missing, the unit plan, and one progress bar."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

import rsi_plugin as rsi
from rsi_plugin.cli import main
from rsi_plugin.criteria import channel_scan
from rsi_plugin.criteria.channel_scan import ScanConfig, scan
from rsi_plugin.criteria.controls import control_rows
from rsi_plugin.criteria.shards import (
    UNIT_BATCHES,
    RunProgress,
    assign_units,
    plan_units,
    render_share,
    unit_size,
)
from rsi_plugin.errors import ConfigError
from rsi_plugin.featureviz.optimize import FeatureVizConfig
from rsi_plugin.testing.processes import run_cli_ranks

BLOCKS = ["2.1", "3.1"]
# small FZs: 8 channels per block and node, units of 4 (2 per block and node), 2 seeds
CONFIG = ScanConfig(featureviz=FeatureVizConfig(image_size=32, steps=4, jitter=0, channels_per_batch=2),
                    channels=tuple(range(8)), seeds=(0, 1), unit_channels=4)
CLI = ["scan", "--model", "tiny", "--blocks", *BLOCKS, "--seeds", "2", "--steps", "4", "--image-size", "32",
       "--channels", *map(str, range(8)), "--channels-per-batch", "2", "--unit-channels", "4", "--threads", "1",
       "--no-progress"]
TABLES = ("scan.csv", "summary.csv", "scan_channels.csv")


class Killed(Exception):
    pass


def test_torchrun_scan_resumes_a_killed_rank_and_writes_the_tables_of_one_process(tmp_path, monkeypatch):
    two, one = tmp_path / "two", tmp_path / "one"
    # rank 1 of 2, killed right after its first unit was cached (in this process: the rank is
    # faked; without a process group the barrier and the gathers are the identity)
    first = []

    def share_then_die(*args, **kwargs):
        def die(unit, result):
            first.append((unit, result.paths))
            raise Killed

        return render_share(*args, **{**kwargs, "on_unit": die})

    with monkeypatch.context() as patch:
        patch.setattr(channel_scan, "rank_and_world", lambda: (1, 2))
        patch.setattr(channel_scan, "render_share", share_then_die)
        with pytest.raises(Killed):
            main(CLI + ["--out", str(two)])
    ((unit, pngs),) = first
    kept = [Path(p).with_suffix(".pt") for p in pngs]
    assert (unit.block, unit.role, unit.seed, unit.channels) == ("2.1", "in", 0, (4, 5, 6, 7))
    assert sorted((two / "fz").rglob("*.pt")) == sorted(kept) and not (two / "scan.csv").exists()
    before = {p: p.stat().st_mtime_ns for p in kept}
    started = time.time_ns()
    time.sleep(0.05)

    printed = run_cli_ranks(CLI + ["--out", str(two)], tmp_path / "logs")
    assert "jaccard_mean" in printed[0] and printed[1] == ""  # rank 0 reported; rank 1 stayed quiet
    assert main(CLI + ["--out", str(one)]) == 0  # one process, one thread, the same units
    for name in TABLES:
        # the FZ paths name the output folder; everything else is the same bytes
        got = (two / name).read_text().replace(str(two), "OUT")
        want = (one / name).read_text().replace(str(one), "OUT")
        assert got == want, name
    rows = pd.read_csv(two / "scan.csv", dtype={"block": str})
    # every channel has an FZ rendered in this run (by some rank): the killed unit had In only
    assert len(rows) == 2 * 2 * 8 and rows["fz_computed"].all()
    records = sorted(p.relative_to(two) for p in (two / "fz").rglob("*.pt"))
    assert len(records) == 2 * 2 * 2 * 8 and records == sorted(p.relative_to(one) for p in (one / "fz").rglob("*.pt"))
    # the killed rank's finished unit was read, not rendered again; every other record is new
    assert {p: p.stat().st_mtime_ns for p in kept} == before
    assert all((two / p).stat().st_mtime_ns > started for p in records if two / p not in before)
    for a in kept:  # the same images as one process renders
        assert torch.equal(torch.load(a)["image"], torch.load(one / a.relative_to(two))["image"])


def test_several_processes_need_a_cache(monkeypatch):
    monkeypatch.setattr(channel_scan, "rank_and_world", lambda: (0, 2))
    with pytest.raises(ConfigError, match="cache_dir"):
        scan(rsi.load_model("tiny"), BLOCKS, CONFIG, progress=False)


def test_the_unit_plan_is_deterministic_and_covers_every_channel_once():
    channels = {"2.1": list(range(10)), "3.1": [5, 3, 9]}
    units = plan_units(channels, 7, 4)
    assert units == plan_units(channels, 7, 4)
    assert [(u.block, u.role, u.channels) for u in units] == [
        ("2.1", "in", (0, 1, 2, 3)), ("2.1", "in", (4, 5, 6, 7)), ("2.1", "in", (8, 9)),
        ("2.1", "pre", (0, 1, 2, 3)), ("2.1", "pre", (4, 5, 6, 7)), ("2.1", "pre", (8, 9)),
        ("3.1", "in", (5, 3, 9)), ("3.1", "pre", (5, 3, 9))]
    assert {u.seed for u in units} == {7}
    for world in (1, 2, 3, 5, 11):
        shares = [assign_units(units, rank, world) for rank in range(world)]
        assert sorted((u for share in shares for u in share), key=units.index) == units  # each unit once
        got = sorted((u.block, u.role, c) for share in shares for u in share for c in u.channels)
        want = sorted((b, r, c) for b, cs in channels.items() for r in ("in", "pre") for c in cs)
        assert got == want
    assert unit_size(FeatureVizConfig(channels_per_batch=8)) == UNIT_BATCHES * 8 == 32
    with pytest.raises(ConfigError, match="unit_channels"):
        ScanConfig(unit_channels=0)
    with pytest.raises(ConfigError, match="rank"):
        assign_units(units, 2, 2)


def test_one_bar_for_the_whole_run_counts_the_cached_records(tmp_path, monkeypatch, capsys):
    bars: list[RunProgress] = []

    class Recorded(RunProgress):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            bars.append(self)

    monkeypatch.setattr(channel_scan, "RunProgress", Recorded)
    config = ScanConfig(featureviz=CONFIG.featureviz, channels=(0, 1, 2), seeds=(0, 1), unit_channels=2,
                        cache_dir=tmp_path, controls=("random-init:1",))
    table = scan(rsi.load_model("tiny"), ["2.1"], config, progress=True)
    (bar,) = bars
    planned = 3 * 2 * 2 * 2  # channels x nodes x seeds x (trained, one copy)
    assert bar.bar.total == planned and bar.done == planned
    copies = control_rows(table)
    assert len(table) == len(copies) == 3 * 2
    steps = sum(int(t["in_steps_used"].sum() + t["pre_steps_used"].sum()) for t in (table, copies))
    assert bar.steps == steps > 0  # the channel-steps of every judged record, the copy's too
    shown = capsys.readouterr().err
    assert "scan: FZ records" in shown and f"{planned}/{planned}" in shown
    assert "FZ 2.1 in" not in shown and "scan (seed" not in shown  # no per-block bars

    # the bar counts records that appear in the cache, whoever writes them
    paths = [tmp_path / "elsewhere" / f"c{i}.pt" for i in range(4)]
    paths[0].parent.mkdir()
    with RunProgress(10, poll_seconds=0) as progress:
        progress.start_phase(4, paths)
        assert progress.done == 0
        for p in paths[:3]:
            p.write_bytes(b"")
        progress.poll()
        assert progress.done == 3
        progress.end_phase()
        assert progress.done == 4
        progress.shrink(2)
        assert progress.bar.total == 8


def test_a_rank_without_a_device_asked_takes_its_gpu_when_there_are_gpus(monkeypatch):
    """torchrun users expect one GPU per process: nothing asked -> cuda:LOCAL_RANK under a group
    with CUDA; the CPU in one process or without CUDA; an explicit choice is kept."""
    import torch

    from rsi_plugin.core import distributed

    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.setattr(distributed, "rank_and_world", lambda: (1, 2))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert distributed.rank_device(None) == torch.device("cuda", 1)
    assert distributed.rank_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert distributed.rank_device(None) == torch.device("cpu")
    monkeypatch.setattr(distributed, "rank_and_world", lambda: (0, 1))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert distributed.rank_device(None) == torch.device("cpu")  # one process: the CPU, as before


def test_two_nodes_of_one_process_each_write_the_tables_of_one_process(tmp_path, monkeypatch):
    """``torchrun --nnodes 2 --nproc_per_node 1`` on each node (here: one machine, one disk):
    the global ranks share the units (each node's process is its LOCAL_RANK 0)."""
    two_nodes, one = tmp_path / "nodes", tmp_path / "one"
    rendered = tmp_path / "rendered"
    rendered.mkdir()

    def share_and_note(*args, **kwargs):
        def note(unit, result):
            name = f"{os.environ['RANK']}_{unit.block}_{unit.role}_{unit.seed}_{unit.channels[0]}"
            (rendered / name).touch()

        return render_share(*args, **{**kwargs, "on_unit": note})

    monkeypatch.setattr(channel_scan, "render_share", share_and_note)
    printed = run_cli_ranks(CLI + ["--out", str(two_nodes)], tmp_path / "logs", nprocs=2, per_node=1)
    by_rank = {r: {p.name.split("_", 1)[1] for p in rendered.glob(f"{r}_*")} for r in ("0", "1")}
    # 2 blocks x In/Pre x 2 seeds x 2 units of 4 channels, each rendered by one node only
    assert by_rank["0"] and by_rank["1"] and not by_rank["0"] & by_rank["1"]
    assert len(by_rank["0"] | by_rank["1"]) == 2 * 2 * 2 * 2
    assert "jaccard_mean" in printed[0] and printed[1] == ""
    assert main(CLI + ["--out", str(one)]) == 0
    for name in TABLES:
        got = (two_nodes / name).read_text().replace(str(two_nodes), "OUT")
        assert got == (one / name).read_text().replace(str(one), "OUT"), name
    rows = pd.read_csv(two_nodes / "scan.csv", dtype={"block": str})
    assert rows["fz_computed"].all()


def test_threads_are_the_nodes_cores_divided_among_its_processes(monkeypatch):
    from rsi_plugin.core import distributed

    cpus = len(os.sched_getaffinity(0))
    monkeypatch.setattr(distributed, "rank_and_world", lambda: (1, 4))
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # two nodes of two processes each
    assert distributed.rank_threads(None) == max(1, cpus // 2)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")  # one process per node: all of its cores
    assert distributed.rank_threads(None) == cpus
    assert distributed.rank_threads(3) == 3  # --threads wins
    monkeypatch.setattr(distributed, "rank_and_world", lambda: (0, 1))
    assert distributed.rank_threads(None) is None  # one process: torch's default
