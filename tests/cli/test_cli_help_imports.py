"""``rsi <subcommand> --help`` stays fast: building the parsers imports neither torch nor the
heavy libraries (issue 21 item 17). An import check, not a timed one."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from rsi_plugin.cli import COMMANDS

HEAVY = ("torch", "torchvision", "nnsight", "pandas", "matplotlib")

PROBE = """
import contextlib, io, json, sys
import rsi_plugin.cli as cli
cli.build_parser(None)  # every subcommand's full parser
for name in cli.COMMANDS:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
        cli.main([name, "--help"])
print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)))
"""


def test_every_subcommand_help_imports_no_heavy_library():
    out = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY)], capture_output=True, text=True,
                         timeout=120, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [], out.stdout + out.stderr


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_subcommand_help_prints_usage(name, capsys):
    from rsi_plugin.cli import main

    with pytest.raises(SystemExit) as done:
        main([name, "--help"])
    assert done.value.code == 0 and f"rsi {name}" in capsys.readouterr().out
