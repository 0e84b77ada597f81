"""The ``rsi`` command. Each subcommand lives in its own module of this package and
defines ``register(subparsers)``; :func:`main` dispatches to the ``run`` it sets.

Subcommand modules are imported lazily: ``rsi --help`` and ``rsi --version`` import none of
them (so no torch), and ``rsi scan ...`` imports only :mod:`rsi_plugin.cli.scan`. To add a
subcommand, write ``rsi_plugin/cli/<name>.py`` with ``register`` and add one line to
:data:`COMMANDS` (its one-line help, the same text ``register`` passes to ``add_parser``; a
test checks they agree).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import os
import sys
from typing import Sequence

from rsi_plugin.errors import RSIError

__all__ = ["main", "build_parser", "log_settings", "COMMANDS"]

#: errors that mean bad input (arguments, data, weights, device, output path): one line on
#: stderr and exit status 2 instead of a traceback. Only the library's own
#: :class:`~rsi_plugin.errors.RSIError`: any other exception is a bug and keeps its traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (RSIError,)

#: argument names holding an output folder / an output file, checked before any work
OUTPUT_DIRS: tuple[str, ...] = ("out",)
OUTPUT_FILES: tuple[str, ...] = ("json", "plot", "csv")


def _check_outputs(args: argparse.Namespace) -> None:
    from rsi_plugin.cli.common import check_output_dir, check_output_file

    for name in OUTPUT_DIRS:
        if getattr(args, name, None):
            check_output_dir(getattr(args, name), flag="--" + name)
    for name in OUTPUT_FILES:
        if getattr(args, name, None):
            check_output_file(getattr(args, name), flag="--" + name)


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 2000 else text[:2000] + " ..."


#: subcommand -> its one-line help, in the order ``rsi --help`` lists them. The module
#: ``rsi_plugin.cli.<name>`` is imported only when that subcommand runs.
COMMANDS: dict[str, str] = {
    "inspect": "table of every residual block: In/Pre/Post paths, sizes, Post == activation(In + Pre)",
    "demo": "scan blocks (tiny: 1.1 2.0 2.1 3.1 by default) with untrained and planted controls, draw Fig.-1 grids, run the scale-ablation sweep on the "
            "two blocks with the most passing channels, write report.html",
    "scan": "find scale-invariant channels (Eq. 1 and 2) from feature visualisations or natural images; "
            "writes scan.csv and summary.csv",
    "sensitivity": "verdict flips of a finished scan under analysis choices (zoom centre, 8-bit PNG), from its FZ cache",
    "ablate": "mean-ablate scale-invariant vs random channels across scales; writes ablation.csv, eq3.csv and Fig. 2",
    "report": "write DIR/report.html from the scan and ablation outputs below DIR (no model needed)",
    "bench": "time plain forward vs hooks vs nnsight capture/ablate, per batch size",
    "featureviz": "feature visualisations of a block's In/Pre/Post channels (cached, resumable)",
    "serve": "a self-hosted NDIF server for remote= runs: install, start, deploy, status, stop",
}


def _version() -> str:
    from rsi_plugin import __version__

    return f"rsi {__version__}"


def _chosen(argv: Sequence[str]) -> str | None:
    """The subcommand named in ``argv``: its first token that is not an option (the
    top-level options take no values)."""
    for token in argv:
        if token == "--":
            return None
        if not token.startswith("-"):
            return token
    return None


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The ``rsi`` parser. Only the subcommand named in ``argv`` is imported and gets its
    full parser; the others are listed by their help line alone.

    Args:
        argv (sequence of str, optional): the command line (without the program name);
            ``None`` registers every subcommand fully (imports them all).

    Returns:
        argparse.ArgumentParser.
    """
    parser = argparse.ArgumentParser(prog="rsi", description="Scale invariance in the residual stream of ResNets.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = None if argv is None else _chosen(argv)
    for name, help_line in COMMANDS.items():
        if importlib.util.find_spec(f"{__name__}.{name}") is None:
            continue
        if argv is None or name == chosen:
            importlib.import_module(f"{__name__}.{name}").register(sub)
            _add_verbose(sub.choices[name])
        else:
            sub.add_parser(name, help=help_line, add_help=False)
    return parser


def _add_verbose(parser: argparse.ArgumentParser) -> None:
    """``-v`` after the subcommand too (``rsi scan -v ...``), and after a nested one
    (``rsi serve start -v``). Its default is suppressed so that it never resets a ``-v``
    given before the subcommand."""
    if not any("-v" in action.option_strings for action in parser._actions):
        parser.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                            help="log at DEBUG level (also accepted before the subcommand)")
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for nested in set(action.choices.values()):
                _add_verbose(nested)


def log_settings(verbose: bool, rank: str | None) -> tuple[int, str]:
    """The CLI's log level and format: INFO (DEBUG with ``-v``); under ``torchrun`` (``rank``,
    the ``RANK`` variable, set) the ranks other than 0 log errors only, so that each warning is
    said once, and with ``-v`` every rank logs at DEBUG with ``[rank N]`` before its lines.

    Args:
        verbose (bool): ``-v``.
        rank (str, optional): ``os.environ.get("RANK")``.

    Returns:
        tuple ``(level, format)`` for :func:`logging.basicConfig`.
    """
    level, form = (logging.DEBUG if verbose else logging.INFO), "%(levelname)s %(name)s: %(message)s"
    if rank not in (None, "", "0"):
        level, form = (level if verbose else logging.ERROR), f"[rank {rank}] {form}"
    return level, form


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    level, form = log_settings(args.verbose, os.environ.get("RANK"))
    logging.basicConfig(level=level, format=form)
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    from tqdm.contrib.logging import logging_redirect_tqdm

    try:
        if not getattr(args, "estimate", False):  # an estimate (rsi scan/demo --estimate) writes nothing
            _check_outputs(args)
        # log lines go through tqdm.write, above the progress bars instead of through them
        with logging_redirect_tqdm():
            return int(args.run(args) or 0)
    except USER_ERRORS as error:
        print(f"rsi {args.command}: error: {_one_line(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"rsi {args.command}: interrupted; finished results are kept, rerun to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
