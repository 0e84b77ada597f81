"""``rsi ablate --channels scan.csv`` checks the scan's recorded model against the one it
ablates (issue 21 item 5)."""

from __future__ import annotations

import pandas as pd
import pytest

from rsi_plugin.cli import main
from rsi_plugin.core.runfolder import ScanFiles


def _scan_folder(tmp_path, model: str, weights: str):
    files = ScanFiles(tmp_path / "scan")
    files.dir.mkdir(parents=True)
    table = pd.DataFrame({"source": "fz", "block": ["2.1"] * 4, "channel": [0, 1, 2, 3],
                          "passes": [True, True, False, False]})
    table.to_csv(files.table, index=False)
    table.attrs.update({"model": model, "weights": weights})
    table.to_parquet(files.parquet, index=False)
    return files


def _argv(files, tmp_path, *extra):
    return ["ablate", "--model", "tiny", "--block", "2.1", "--channels", str(files.table), "--samples", "4",
            "--trials", "1", "--null-sets", "0", "--scales", "0", "--batch-size", "4", "--out",
            str(tmp_path / "out"), "--no-progress", *extra]


def test_ablate_refuses_a_scan_of_another_model(tmp_path, capsys):
    files = _scan_folder(tmp_path, "resnet18", "random@0")
    assert main(_argv(files, tmp_path)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "resnet18" in err and "random@0" in err and "tiny" in err and "--allow-model-mismatch" in err
    assert not (tmp_path / "out" / "ablation.csv").exists()


def test_ablate_refuses_a_scan_of_other_weights_of_the_same_model(tmp_path, capsys):
    files = _scan_folder(tmp_path, "tiny", "random@3")
    assert main(_argv(files, tmp_path)) == 2
    assert "random@3" in capsys.readouterr().err


def test_ablate_accepts_the_scans_own_model_and_the_override(tmp_path, capsys):
    from rsi_plugin.core.models import load_model

    files = _scan_folder(tmp_path, "tiny", load_model("tiny").rsi_info.weights)
    assert main(_argv(files, tmp_path)) == 0
    other = _scan_folder(tmp_path / "b", "resnet18", "random@0")
    assert main(_argv(other, tmp_path / "b", "--allow-model-mismatch")) == 0
    assert "--allow-model-mismatch" in capsys.readouterr().err  # the override is not silent either


def test_ablate_reads_a_demo_runs_settings_when_the_scan_has_no_parquet(tmp_path, capsys):
    import json

    from rsi_plugin.core.runfolder import RunLayout

    run = RunLayout(tmp_path / "run")
    files = _scan_folder(tmp_path / "x", "tiny", "random@0")
    run.scan.dir.mkdir(parents=True)
    files.table.rename(run.scan.table)
    run.settings.write_text(json.dumps({"model": "resnet18", "weights": None, "model_weights": "random@0"}))
    assert main(_argv(run.scan, tmp_path)) == 2
    assert "resnet18 (random@0 weights)" in capsys.readouterr().err


def test_ablate_reads_scan_settings_json_without_pyarrow(tmp_path, capsys):
    """Every write_scan records model and weights in scan_settings.json (pyarrow or not)."""
    import json

    files = _scan_folder(tmp_path, "tiny", "random@0")
    files.parquet.unlink()
    files.settings.write_text(json.dumps({"model": "resnet18", "weights": "random@5"}))
    assert main(_argv(files, tmp_path)) == 2
    assert "random@5" in capsys.readouterr().err
