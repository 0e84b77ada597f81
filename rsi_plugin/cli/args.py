"""Argument types shared by subcommands (no heavy imports: ``rsi --help`` stays fast)."""

from __future__ import annotations

import argparse
import warnings
from typing import Any, Callable

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


def screen_tolerance(value: str) -> float | str:
    """``--screen-tolerance`` of ``rsi demo`` / ``rsi ablate``: the screening slack of the
    random control sets, an accuracy difference in ``[0, 1]``, or ``"auto"``.

    A value above 1 would keep every random set (accuracies lie in [0, 1]); it is almost
    always Eq. 2's ``t`` (``rsi scan --tolerance``, default 1.5) given to the wrong command,
    so it is refused instead of silently disabling the screening.

    Raises:
        argparse.ArgumentTypeError: anything else.
    """
    parsed = tolerance(value)
    if parsed != "auto" and parsed > 1:
        raise argparse.ArgumentTypeError(
            f"expected a screening slack in [0, 1] or 'auto', got {value!r}: accuracies lie in [0, 1], so a slack "
            "above 1 keeps every random set; Eq. 2's t (1/t < ratio < t) is rsi scan --tolerance")
    return parsed


class DeprecatedAlias(argparse.Action):
    """An old spelling of a renamed flag: it still works, and warns (``FutureWarning``, shown by
    default, as pandas does for deprecations users must act on) naming the new spelling.

    Its values are converted after the warning, so a bad value still says which name to use.
    Add it with :func:`add_deprecated_alias`.
    """

    def __init__(self, option_strings: list[str], dest: str, new: str, convert: Callable[[str], Any] | None = None,
                 **kwargs: Any) -> None:
        self.new, self.convert = new, convert
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        warnings.warn(f"{parser.prog}: {option_string} is deprecated; use {self.new}", FutureWarning, stacklevel=2)
        if self.nargs == 0:
            values = self.const
        elif self.convert is not None:
            try:
                values = ([self.convert(v) for v in values] if isinstance(values, list)
                          else self.convert(values))
            except (argparse.ArgumentTypeError, ValueError) as error:
                raise argparse.ArgumentError(self, str(error)) from None
        setattr(namespace, self.dest, values)


def add_deprecated_alias(parser: argparse.ArgumentParser | Any, old: str, new: str, dest: str,
                         type: Callable[[str], Any] | None = None, **kwargs: Any) -> None:
    """Keep ``old`` working as a deprecated spelling of the flag ``new`` (stored in ``dest``).

    Args:
        parser: the parser or argument group holding ``new``.
        old (str): the old flag, e.g. ``"--batch"``.
        new (str): the new flag, named in the warning and the help.
        dest (str): ``new``'s destination.
        type (callable, optional): ``new``'s type.
        **kwargs: ``nargs``, ``metavar``... as ``new`` has them.
    """
    parser.add_argument(old, action=DeprecatedAlias, new=new, convert=type, dest=dest,
                        default=argparse.SUPPRESS, help=f"deprecated: use {new}", **kwargs)


def add_threads_argument(parser: argparse.ArgumentParser) -> None:
    """``--threads`` (applied by :func:`set_threads`)."""
    parser.add_argument("--threads", type=int, default=None, help=THREADS_HELP)


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
