"""Argument types shared by subcommands (no heavy imports: ``rsi --help`` stays fast)."""

from __future__ import annotations

import argparse

from rsi_plugin.errors import RSIError
from rsi_plugin.paper import VARIANTS

THREADS_HELP = ("torch CPU threads (default: torch's own, one per physical core; use 1 when other jobs share the "
                "cores). Results can differ in the last bits between thread counts")


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


WEIGHTS_HELP = ("none (the default: seeded random init; for tiny its shipped weights), a torchvision enum name "
                "such as IMAGENET1K_V1, or a path to a .pth state dict")


def weights(value: str) -> str | None:
    """``--weights``: ``none``/``None`` (or an empty string) is the default, no weights file;
    anything else (an enum name or a path) is passed on as given.

    ``--weights None`` is how a user spells the default shown in the help; it must not be read
    as a file named ``None``.
    """
    return None if value.strip().lower() in ("", "none") else value


def add_variant_argument(parser: argparse.ArgumentParser, governs: str) -> None:
    """``--variant text|code``: the paper's text or its code (:func:`rsi_plugin.paper.resolve`).

    Args:
        parser: the subcommand's parser.
        governs (str): the switches it sets in this subcommand, for the help text.
    """
    parser.add_argument("--variant", choices=VARIANTS, default="text",
                        help=f"the paper's text (default) or its code; sets {governs} "
                             "unless given on their own")


def set_threads(threads: int | None) -> None:
    """``--threads``: torch's intra-op threads; ``None`` keeps torch's default.

    Raises:
        RSIError: ``threads < 1``.
    """
    if threads is None:
        return
    if threads < 1:
        raise RSIError(f"--threads must be >= 1, got {threads}")
    import torch

    torch.set_num_threads(threads)
