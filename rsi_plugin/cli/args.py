"""Argument types shared by subcommands (no heavy imports: ``rsi --help`` stays fast)."""

from __future__ import annotations

import argparse


def tolerance(value: str) -> float | str:
    """``--tolerance``: a number >= 0, or ``"auto"``.

    Raises:
        argparse.ArgumentTypeError: anything else.
    """
    if value.strip().lower() == "auto":
        return "auto"
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0 or 'auto', got {value!r}") from None
    if not number >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0 or 'auto', got {value!r}")
    return number
