"""`rsi scan`: the tables it writes, natural images from a folder, seeds, threads and resume."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from PIL import Image

from rsi_plugin.cli import main


# --------------------------------------------------------------------------- rsi scan


def test_cli_scan_writes_tables_and_resumes(tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["scan", "--model", "resnet18", "--blocks", "1.1", "--channels", "0", "1", "--steps", "2",
            "--image-size", "32", "--jitter", "0", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "agreement with the paper" in printed
    table = pd.read_csv(out / "scan.csv", dtype={"block": str})
    assert len(table) == 2 and table["fz_computed"].all()
    assert pd.read_parquet(out / "scan.parquet")["channel"].tolist() == [0, 1]
    summary = pd.read_csv(out / "summary.csv", dtype={"block": str})
    assert summary[["block", "channels"]].values.tolist() == [["1.1", 2]]
    assert (out / "paper_comparison.csv").is_file()
    assert len(list((out / "fz").rglob("*.png"))) == 4
    assert main(argv) == 0  # resumes: every FZ from the cache
    assert not pd.read_csv(out / "scan.csv")["fz_computed"].any()
    assert not list(out.glob("*.tmp"))


def test_cli_scan_natural_images_from_a_folder(tmp_path):
    root = tmp_path / "val"
    g = np.random.default_rng(0)
    for label in ("a", "b"):
        (root / label).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(g.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(root / label / f"{i}.png")
    out = tmp_path / "out"
    argv = ["scan", "--model", "resnet18", "--blocks", "1.1", "--channels", "3", "4", "--source", "natural",
            "--top-k", "2", "--data", str(root), "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    table = pd.read_csv(out / "scan.csv")
    assert table["source"].tolist() == ["natural", "natural"]
    assert table["in_top_index"].between(0, 5).all()
    assert main(argv + ["--tolerance", "1"]) == 2  # a bad tolerance is an error, not a traceback


def test_cli_scan_with_seeds_threads_and_resume(tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["scan", "--model", "resnet18", "--blocks", "1.1", "--channels", "0", "1", "--steps", "2",
            "--image-size", "32", "--jitter", "0", "--out", str(out), "--no-progress", "--seeds", "2",
            "--seed", "3", "--threads", "1"]
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert main(argv) == 0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    printed = capsys.readouterr().out
    assert "seeds 3 4" in printed and "jaccard_mean" in printed
    table = pd.read_csv(out / "scan.csv", dtype={"block": str})
    assert table["seed"].tolist() == [3, 3, 4, 4] and table["fz_computed"].all()
    channels = pd.read_csv(out / "scan_channels.csv", dtype={"block": str})
    assert channels["n_seeds"].tolist() == [2, 2] and channels["seeds"].tolist() == ["3 4", "3 4"]
    summary = pd.read_csv(out / "summary.csv", dtype={"block": str})
    assert summary[["block", "channels", "seeds"]].values.tolist() == [["1.1", 2, 2]]
    comparison = pd.read_csv(out / "paper_comparison.csv", dtype={"block": str})
    assert {"seeds", "any_seed", "undetermined"} <= set(comparison.columns) and comparison["seeds"].tolist() == [2]
    assert len(list((out / "fz").rglob("*.png"))) == 8  # 2 channels x (In, Pre) x 2 seeds
    assert main(argv[:-2]) == 0  # resumes from the cache (no --threads: the thread count stays as it was)
    assert not pd.read_csv(out / "scan.csv")["fz_computed"].any()
    # an explicit list: seed 5 new, 3 cached (--seed also seeds resnet18's random init: keep it)
    assert main(argv[:-6] + ["--seed", "3", "--seeds", "5", "3"]) == 0
    table = pd.read_csv(out / "scan.csv")
    assert table["seed"].tolist() == [5, 5, 3, 3] and table["fz_computed"].tolist() == [True, True, False, False]
    assert main(argv[:-6] + ["--seeds", "0"]) == 2
    assert main(argv[:-2] + ["--threads", "0"]) == 2
