"""``torchrun -m rsi_plugin.cli demo`` (2 gloo ranks, forked): the FZ work and the sweeps are
shared among the ranks, rank 0 alone writes the tables, draws the grids and plots and writes the
report, and the run folder's tables are those of one process (issue 22 item 1: "and rsi demo")."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from rsi_plugin.cli import main
from rsi_plugin.testing.processes import run_cli_ranks

CLI = ["demo", "--quick", "--blocks", "2.1", "--seeds", "1", "--controls", "0", "--samples", "48",
       "--null-sets", "4", "--trials", "2", "--threads", "1", "--no-progress"]
# what only one process may do: (module, function) as run_demo / run_planted_control look them up
WRITERS = [("rsi_plugin.criteria.channel_scan", "write_scan"), ("rsi_plugin.criteria.sensitivity", "write_sensitivity"),
           ("rsi_plugin.apps.fig1", "channel_grids"), ("rsi_plugin.outputs.plots", "plot_sweep"),
           ("rsi_plugin.outputs.report", "write_report"), ("rsi_plugin.apps.planted", "atomic_write_text")]
TABLES = ["scan/scan.csv", "scan/summary.csv", "scan/scan_channels.csv", "planted/planted_scan.csv", "planted/planted_eq3.csv", "planted/planted.json"]


def _recording(calls: Path, name: str, function):
    def wrapper(*args, **kwargs):
        (calls / f"{name}.rank{os.environ.get('RANK', '-')}.pid{os.getpid()}").touch()
        return function(*args, **kwargs)

    return wrapper


def test_two_ranks_share_the_work_and_rank_0_alone_writes_the_tables_of_one_process(tmp_path, monkeypatch):
    import importlib

    calls = tmp_path / "calls"
    calls.mkdir()
    for module_name, name in WRITERS:
        module = importlib.import_module(module_name)
        monkeypatch.setattr(module, name, _recording(calls, name, getattr(module, name)))
    two, one = tmp_path / "two", tmp_path / "one"

    printed = run_cli_ranks(CLI + ["--out", str(two)], tmp_path / "logs")
    assert "report:" in printed[0] and printed[1] == ""  # rank 0 reports; rank 1 stays quiet
    by_rank = {}
    for path in calls.iterdir():
        name, rank, _ = path.name.split(".")
        by_rank.setdefault(name, set()).add(rank)
    # every writer ran, and on rank 0 only
    assert by_rank == {name: {"rank0"} for _, name in WRITERS}, by_rank
    # the ablation sweep was shared: its images were split between the ranks (the sweep's own test
    # checks that the shares sum to one process's counts)
    [block] = [p.name for p in (two / "ablation").iterdir() if p.is_dir()]
    assert (two / "ablation" / block / "eq3.png").exists() and (two / "report.html").exists()

    assert main(CLI + ["--out", str(one)]) == 0  # one process, one thread
    for name in TABLES + [f"ablation/{block}/eq3.csv", f"ablation/{block}/ablation.csv"]:
        got = (two / name).read_text().replace(str(two), "OUT")
        want = (one / name).read_text().replace(str(one), "OUT")
        assert got == want, name
    grids = sorted(p.name for p in (two / "figures").glob("*.png"))
    assert grids and grids == sorted(p.name for p in (one / "figures").glob("*.png"))
    assert pd.read_csv(two / "scan" / "scan.csv")["fz_computed"].all()
