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
    assert table["post_eq_activation_in_plus_pre"].all() and set(table["activation"]) == {"relu"}
    assert list(table["post_path"])[:2] == ["layer1.0.output", "layer1.1.output"]


def test_unknown_model_is_a_clear_error(capsys):
    assert main(["inspect", "--model", "vgg"]) == 2
    assert "valid: tiny, resnet18" in capsys.readouterr().err


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "inspect" in capsys.readouterr().out


# --- lazy subcommands, --version, logging above the progress bars (issue 13 items 12, 13) ---

import subprocess
import sys
from pathlib import Path

import rsi_plugin
from rsi_plugin.cli import COMMANDS, build_parser

ROOT = Path(__file__).resolve().parents[2]


def _python(code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter from the repository root (this tree's rsi_plugin)."""
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)


_LOADED = """
import sys
from rsi_plugin.cli import main
try:
    main({argv!r})
except SystemExit as exit:
    print("EXIT", exit.code)
print("LOADED", sorted(m for m in sys.modules if m == "torch" or m.startswith("rsi_plugin.cli.")))
"""


def _loaded(argv: list[str]) -> tuple[str, list[str]]:
    done = _python(_LOADED.format(argv=argv))
    assert done.returncode == 0, done.stderr
    line = next(l for l in done.stdout.splitlines() if l.startswith("LOADED"))
    return done.stdout, eval(line[len("LOADED "):])


def test_help_and_version_import_no_subcommand_and_no_torch():
    out, loaded = _loaded(["--help"])
    assert "EXIT 0" in out and all(name in out for name in COMMANDS)
    assert loaded == []
    out, loaded = _loaded(["--version"])
    assert f"rsi {rsi_plugin.__version__}" in out and "EXIT 0" in out
    assert loaded == []


def test_a_subcommand_imports_only_its_own_module():
    out, loaded = _loaded(["report", "--help"])
    assert "EXIT 0" in out and "--title" in out
    assert loaded == ["rsi_plugin.cli.report"]


def test_command_table_help_is_each_modules_own_help():
    """The lazy table's help lines are what each module registers (no drift)."""
    parser = build_parser(None)  # registers every module fully
    sub = next(a for a in parser._actions if isinstance(a, __import__("argparse")._SubParsersAction))
    registered = {action.dest: " ".join(action.help.split()) for action in sub._choices_actions}
    assert registered == {name: " ".join(help_line.split()) for name, help_line in COMMANDS.items()}


_BARS = """
import logging, sys
import rsi_plugin.cli.report as report
from tqdm import tqdm

def run(args):
    with tqdm(total=4, desc="outer", file=sys.stderr) as bar:
        bar.update(1)
        logging.getLogger("rsi_plugin.test").info("MESSAGE-LINE")
        bar.update(1)
    return 0

report.run = run
from rsi_plugin.cli import main
sys.exit(main(["report", "somewhere"]))
"""


def test_log_lines_do_not_break_progress_bars():
    """A log line written while a bar is shown stands on its own line (cleared bar above it),
    not glued onto the bar's text."""
    done = _python(_BARS)
    assert done.returncode == 0, done.stderr
    segments = [s for s in done.stderr.replace("\r", "\n").split("\n") if "MESSAGE-LINE" in s]
    assert segments == ["INFO rsi_plugin.test: MESSAGE-LINE"], done.stderr


def test_under_torchrun_only_rank_0_logs_below_errors_unless_verbose():
    import logging

    from rsi_plugin.cli import log_settings

    assert log_settings(False, None) == (logging.INFO, "%(levelname)s %(name)s: %(message)s")
    assert log_settings(True, None)[0] == logging.DEBUG
    assert log_settings(False, "0") == log_settings(False, None)  # rank 0 logs as one process does
    level, form = log_settings(False, "1")
    assert level == logging.ERROR and form.startswith("[rank 1] ")  # each warning once, from rank 0
    assert log_settings(True, "3") == (logging.DEBUG, "[rank 3] %(levelname)s %(name)s: %(message)s")
