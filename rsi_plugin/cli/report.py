"""``rsi report DIR``: a self-contained HTML report of the scan and ablation outputs below DIR.

Finds every ``scan.csv`` (``rsi scan``) and every sweep folder (``sweep.json``, ``rsi ablate``)
below DIR, the Fig.-1 grids and ``settings.json`` of an ``rsi demo`` run, and writes
``DIR/report.html`` (images referenced by relative paths). No model is loaded.

``--summary-json PATH`` also writes the run's headline numbers (:mod:`rsi_plugin.outputs.summary`),
``--markdown`` prints them as the README's Markdown tables, and ``--update-readme README.md``
rewrites the README between ``<!-- results:start -->`` and ``<!-- results:end -->`` from the
summary file (``--summary-json``, or ``DIR/results-summary.json``).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("report", help="write DIR/report.html from the scan and ablation outputs below DIR "
                                           "(no model needed)")
    parser.add_argument("dir", metavar="DIR",
                        help="run directory: holds scan.csv and/or sweep folders (sweep.json) anywhere below it")
    parser.add_argument("--title", default=None, help="title of the report (default: named after the model)")
    parser.add_argument("--summary-json", default=None, metavar="PATH",
                        help="also write the run's headline numbers to PATH (JSON; e.g. docs/results/demo-summary.json)")
    parser.add_argument("--markdown", action="store_true",
                        help="print the headline numbers as Markdown tables (the README's 'What the demo finds')")
    parser.add_argument("--update-readme", default=None, metavar="README",
                        help="rewrite README between <!-- results:start --> and <!-- results:end --> from the "
                             "summary JSON (--summary-json, default DIR/results-summary.json)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Write the report (and the summary / Markdown / README asked for).

    DIR must be a folder this process can write into: a read-only one is refused before
    any work (one line, exit status 2), as ``--out`` of the other subcommands is; so is
    an unwritable ``--summary-json`` folder. A write that fails later (a full disk) leaves
    the previous files whole (:func:`rsi_plugin.outputs.summary.write_output`).
    """
    from rsi_plugin.cli.common import check_output_dir, check_output_file

    if Path(args.dir).is_dir():  # a missing DIR or a file is explained by write_report, not created
        check_output_dir(args.dir, flag="DIR")
    if args.summary_json:
        check_output_file(args.summary_json, flag="--summary-json")

    from rsi_plugin.core.runfolder import RunLayout
    from rsi_plugin.outputs.report import write_report

    print(write_report(args.dir, title=args.title))
    if args.summary_json or args.markdown or args.update_readme:
        from rsi_plugin.outputs.summary import render_markdown, summarize_run, update_readme, write_summary

        summary = summarize_run(args.dir)
        path = Path(args.summary_json) if args.summary_json else RunLayout(args.dir).results_summary
        if args.summary_json or args.update_readme:
            print(write_summary(summary, path))
        if args.markdown:
            print(render_markdown(summary), end="")
        if args.update_readme:
            print(update_readme(args.update_readme, path))
    return 0
