"""A second scan into the same folder (issue 21 item 9): the tables merge by block when the
settings match, a rescanned block's rows are replaced, other settings are refused."""

from __future__ import annotations

import pandas as pd
import pytest

import rsi_plugin as rsi
from rsi_plugin.cli import main
from rsi_plugin.core.runfolder import ScanFiles
from rsi_plugin.criteria.channel_scan import ScanConfig, read_table, scan, write_scan
from rsi_plugin.errors import RSIError
from rsi_plugin.featureviz.optimize import FeatureVizConfig

FAST = FeatureVizConfig(image_size=32, steps=2, jitter=0, channels_per_batch=4)


@pytest.fixture(scope="module")
def tiny():
    return rsi.load_model("tiny")


def blocks_of(path) -> list[tuple[str, int]]:
    table = read_table(path)
    return list(zip(table["block"], table["channel"]))


def test_scans_of_other_blocks_merge_and_a_rescan_replaces(tiny, tmp_path):
    files = ScanFiles(tmp_path)
    config = ScanConfig(featureviz=FAST, channels=[0, 1], cache_dir=tmp_path / "fz")
    write_scan(scan(tiny, ["1.0"], config, progress=False), tmp_path)
    write_scan(scan(tiny, ["1.1"], config, progress=False), tmp_path)
    assert blocks_of(files.table) == [("1.0", 0), ("1.0", 1), ("1.1", 0), ("1.1", 1)]
    assert read_table(files.summary)["block"].tolist() == ["1.0", "1.1"]
    assert read_table(files.summary)["channels"].tolist() == [2, 2]
    assert blocks_of(files.channels) == [("1.0", 0), ("1.0", 1), ("1.1", 0), ("1.1", 1)]
    assert pd.read_parquet(files.parquet)["block"].tolist() == ["1.0", "1.0", "1.1", "1.1"]
    # rescanning 1.0 (other channels): its rows are replaced, not added; 1.1 is kept
    again = ScanConfig(featureviz=FAST, channels=[2], cache_dir=tmp_path / "fz")
    write_scan(scan(tiny, ["1.0"], again, progress=False), tmp_path)
    assert blocks_of(files.table) == [("1.0", 2), ("1.1", 0), ("1.1", 1)]
    assert read_table(files.summary)["channels"].tolist() == [1, 2]


def test_a_scan_with_other_settings_is_refused_and_nothing_changes(tiny, tmp_path):
    files = ScanFiles(tmp_path)
    config = ScanConfig(featureviz=FAST, channels=[0, 1], cache_dir=tmp_path / "fz")
    write_scan(scan(tiny, ["1.0"], config, progress=False), tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    other = ScanConfig(featureviz=FeatureVizConfig(image_size=32, steps=3, jitter=0, channels_per_batch=4),
                       channels=[0, 1], tolerance=2.0, cache_dir=tmp_path / "fz")
    with pytest.raises(RSIError, match=r"blocks 1\.0 with other settings") as refused:
        write_scan(scan(tiny, ["1.1"], other, progress=False), tmp_path)
    assert "featureviz.steps: 2 there, 3 here" in str(refused.value)
    assert "tolerance: 1.5 there, 2.0 here" in str(refused.value)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before
    assert blocks_of(files.table) == [("1.0", 0), ("1.0", 1)]
    # the same block with other settings replaces it: nothing of the old scan is left to mix with
    write_scan(scan(tiny, ["1.0"], other, progress=False), tmp_path)
    assert read_table(files.table)["tolerance"].tolist() == [2.0, 2.0]


def test_rsi_scan_merges_and_refuses_in_one_line(tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["scan", "--model", "tiny", "--channels", "0", "--steps", "2", "--image-size", "32", "--jitter", "0",
            "--out", str(out), "--no-progress"]
    assert main(argv + ["--blocks", "1.0"]) == 0
    assert main(argv + ["--blocks", "1.1"]) == 0
    assert blocks_of(out / "scan.csv") == [("1.0", 0), ("1.1", 0)]
    capsys.readouterr()
    assert main(argv + ["--blocks", "2.0", "--tolerance", "2"]) == 2
    assert not list((out / "fz").rglob("*2.0*")), "rsi scan rendered FZs of a scan it then refused"
    error = capsys.readouterr().err
    assert "tolerance" in error and "1.0 1.1" in error and len(error.strip().splitlines()) == 1
    assert blocks_of(out / "scan.csv") == [("1.0", 0), ("1.1", 0)]


def test_the_folder_is_checked_before_any_work(tiny, tmp_path, monkeypatch):
    from rsi_plugin.criteria.channel_scan import check_scan_folder
    from rsi_plugin.featureviz import optimize

    config = ScanConfig(featureviz=FAST, channels=[0], cache_dir=tmp_path / "fz")
    write_scan(scan(tiny, ["1.0"], config, progress=False), tmp_path)
    check_scan_folder(tmp_path, tiny, ["1.1"], config)  # same settings: fine
    check_scan_folder(tmp_path, tiny, ["1.0"], ScanConfig(featureviz=FAST, tolerance=2.0))  # all rows replaced
    monkeypatch.setattr(optimize, "_optimize_stream", lambda *a, **k: pytest.fail("an FZ was rendered"))
    with pytest.raises(RSIError, match="tolerance: 1.5 there, 2.0 here"):
        check_scan_folder(tmp_path, tiny, ["1.1"], ScanConfig(featureviz=FAST, tolerance=2.0))
