"""``rsi report DIR``: a self-contained HTML report of the scan and ablation outputs below DIR.

Finds every ``scan.csv`` (``rsi scan``) and every sweep folder (``sweep.json``, ``rsi ablate``)
below DIR, the Fig.-1 grids and ``settings.json`` of an ``rsi demo`` run, and writes
``DIR/report.html`` (images referenced by relative paths). No model is loaded.
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("report", help="write DIR/report.html from the scan and ablation outputs below DIR "
                                           "(no model needed)")
    parser.add_argument("dir", metavar="DIR",
                        help="run directory: holds scan.csv and/or sweep folders (sweep.json) anywhere below it")
    parser.add_argument("--title", default=None, help="title of the report (default: named after the model)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..report import write_report

    print(write_report(args.dir, title=args.title))
    return 0
