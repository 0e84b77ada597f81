"""Shared helpers of the benchmark scripts (a thin layer over :mod:`rsi_plugin.timing`)."""

from __future__ import annotations

import argparse

from rsi_plugin.timing import environment, format_table, time_cases, write_json

__all__ = ["environment", "format_table", "time_cases", "write_json", "parser"]


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="few repeats, small batches: checks the script runs")
    p.add_argument("--json", default=None, help="write the results to this JSON file")
    return p
