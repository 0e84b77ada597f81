"""benchmarks/scan_scaling.py: its command line, the table digest and the Markdown (the timed run
itself is the benchmark, run by hand: see the script's docstring)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchmarks import scan_scaling  # noqa: E402


def _args(**kw):
    base = dict(model="tiny", blocks=["2.1"], steps=8, image_size=32, seeds=1, device=None, threads=1)
    return argparse.Namespace(**{**base, **kw})


def test_the_command_is_torchrun_of_rsi_scan_with_k_processes(tmp_path):
    command = scan_scaling.scan_command(4, _args(device="cuda"), tmp_path)
    assert command[1:4] == ["-m", "torch.distributed.run", "--standalone"] and "--nproc_per_node=4" in command
    at = command.index("rsi_plugin.cli")
    assert command[at + 1] == "scan" and command[command.index("--device") + 1] == "cuda"
    assert command[command.index("--out") + 1] == str(tmp_path)


def test_the_digest_ignores_the_folder_name_but_not_the_content(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        for table in scan_scaling.TABLES:
            (tmp_path / name / table).write_text(f"block,path\n2.1,{tmp_path / name}/fz/x.png\n")
    a, b = scan_scaling.table_digest(tmp_path / "a"), scan_scaling.table_digest(tmp_path / "b")
    assert a == b
    (tmp_path / "b" / "summary.csv").write_text("block\n3.1\n")
    assert scan_scaling.table_digest(tmp_path / "b") != a


def test_the_markdown_says_the_load_and_flags_different_tables():
    result = {"environment": {"command": "scan", "cpus": 2, "load_before": (0.1, 0, 0), "load_after": (1.5, 0, 0)},
              "rows": [{"procs": 1, "seconds": 10.0, "speedup": 1.0, "same_tables": True},
                       {"procs": 2, "seconds": 6.0, "speedup": 1.667, "same_tables": False}]}
    text = scan_scaling.markdown(result)
    assert "load 0.10 before, 1.50 after" in text and "| 2 | 6.0 | 1.67 | NO |" in text


def test_procs_must_start_from_the_baseline():
    with pytest.raises(SystemExit):
        scan_scaling.main(["--procs", "2", "1"])


ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["scan-scaling-cpu", "scan-scaling-cpu-1thread"])
def test_the_readme_tables_are_the_committed_measurements(name):
    import json

    committed = ROOT / "benchmarks" / "results" / f"{name.replace('-', '_')}.json"
    result = json.loads(committed.read_text())
    assert [row["procs"] for row in result["rows"]] == [1, 2]
    assert scan_scaling.readme_block(name, result) in (ROOT / "README.md").read_text()
    if name.endswith("1thread"):  # equal threads per process: the tables must have been identical
        assert all(row["same_tables"] is True for row in result["rows"])


def test_update_readme_rewrites_only_its_block_and_names_missing_markers(tmp_path):
    import json

    result = {"environment": {"command": "scan", "cpus": 2, "load_before": (0.5, 0, 0), "load_after": (1.0, 0, 0)},
              "rows": [{"procs": 1, "seconds": 8.0, "speedup": 1.0, "same_tables": None}]}
    readme = tmp_path / "README.md"
    readme.write_text("head\n<!-- s:start -->\nold\n<!-- s:end -->\ntail\n")
    saved = tmp_path / "r.json"
    saved.write_text(json.dumps(result))
    assert scan_scaling.main(["--from-json", str(saved), "--update-readme", str(readme), "--readme-block", "s"]) == 0
    text = readme.read_text()
    assert text.startswith("head\n<!-- s:start -->\nScan scaling") and text.endswith("<!-- s:end -->\ntail\n")
    assert "old" not in text and "| 1 | 8.0 | 1.00 |" in text
    with pytest.raises(SystemExit, match="<!-- other:start -->"):
        scan_scaling.update_readme(readme, "other", result)
