"""Shared helpers of the benchmark scripts (a thin layer over :mod:`rsi_plugin.apps.timing`)."""

from __future__ import annotations

import argparse

from rsi_plugin.apps.timing import environment, format_table, time_cases, write_json

__all__ = ["environment", "finish", "format_table", "parse", "parser", "time_cases", "write_json"]


def parser(description: str) -> argparse.ArgumentParser:
    """The arguments every benchmark script takes: ``--quick``, ``--json``, ``--threads``."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="few repeats, small batches: checks the script runs")
    p.add_argument("--json", default=None, help="write the results to this JSON file")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    return p


def parse(p: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    """Parse the arguments and apply ``--threads``."""
    import torch

    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    return args


def finish(result: dict, args: argparse.Namespace) -> int:
    """Print a script's table and write its JSON when ``--json`` was given."""
    print(format_table(result["rows"]))
    if args.json:
        write_json(args.json, result)
    return 0
