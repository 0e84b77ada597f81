"""The rsi command line, run in-process."""

from __future__ import annotations

import pandas as pd

from rsi_plugin.cli import main


def test_inspect_resnet18(tmp_path, capsys):
    csv = tmp_path / "blocks.csv"
    assert main(["inspect", "--model", "resnet18", "--csv", str(csv)]) == 0
    out = capsys.readouterr().out
    assert "layer2.0.downsample.output" in out and "at every block: yes" in out
    table = pd.read_csv(csv)
    assert list(table["block"].astype(str)) == ["1.0", "1.1", "2.0", "2.1", "3.0", "3.1", "4.0", "4.1"]
    assert list(table["channels"]) == [64, 64, 128, 128, 256, 256, 512, 512]
    assert list(table["height"]) == [56, 56, 28, 28, 14, 14, 7, 7]
    assert table["post_eq_relu_in_plus_pre"].all()


def test_unknown_model_is_a_clear_error(capsys):
    assert main(["inspect", "--model", "vgg"]) == 2
    assert "valid: tiny, resnet18" in capsys.readouterr().err


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "inspect" in capsys.readouterr().out
