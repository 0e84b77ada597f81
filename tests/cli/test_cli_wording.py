"""Wording of the CLI's help and messages (issue 21 item 15, CLI parts)."""

from __future__ import annotations

import pandas as pd
import pytest

from rsi_plugin.cli import build_parser, main


@pytest.mark.parametrize("command", ["inspect", "scan", "ablate", "featureviz", "demo", "bench"])
@pytest.mark.parametrize("spelling", ["None", "none"])
def test_weights_none_as_the_help_spells_it_is_the_default(command, spelling):
    parser = build_parser([command])
    required = {"scan": ["--out", "o"], "ablate": ["--out", "o", "--block", "2.1", "--channels", "1"],
                "featureviz": ["--out", "o", "--block", "2.1"]}.get(command, [])
    args = parser.parse_args([command, "--weights", spelling, *required])
    assert args.weights is None


def test_inspect_accepts_weights_none(capsys):
    assert main(["inspect", "--model", "tiny", "--weights", "None"]) == 0
    assert "at every block: yes" in capsys.readouterr().out


def test_featureviz_channels_help_and_empty_channels_do_not_mention_none(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["featureviz", "--help"])
    help_text = capsys.readouterr().out
    assert "--channels" in help_text and "None" not in help_text.split("--channels", 1)[1].split("--steps")[0]
    with pytest.raises(SystemExit) as exit_:  # a bare --channels is a usage error, not "or None for all"
        main(["featureviz", "--block", "2.1", "--channels", "--out", str(tmp_path / "o")])
    assert exit_.value.code == 2
    assert "None" not in capsys.readouterr().err


def test_natural_image_scan_announces_no_fz_folder(tmp_path, capsys):
    out = tmp_path / "scan"
    assert main(["scan", "--model", "tiny", "--source", "natural", "--blocks", "1.1", "--channels", "0", "1",
                 "--samples", "8", "--top-k", "2", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "feature visualisations in" not in printed
    assert not (out / "fz").exists()


def test_ablate_on_a_block_the_scan_did_not_scan_says_so(tmp_path, capsys):
    path = tmp_path / "scan.csv"
    pd.DataFrame({"block": ["1.1", "3.1"], "channel": [0, 1], "passes": [True, False]}).to_csv(path, index=False)
    assert main(["ablate", "--model", "tiny", "--block", "2.1", "--channels", str(path), "--out",
                 str(tmp_path / "o"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "block 2.1 was not scanned" in err and "scanned blocks: 1.1, 3.1" in err
    # a scanned block without a passing channel keeps its own message
    assert main(["ablate", "--model", "tiny", "--block", "3.1", "--channels", str(path), "--out",
                 str(tmp_path / "o"), "--no-progress"]) == 2
    assert "no passing channel" in capsys.readouterr().err
