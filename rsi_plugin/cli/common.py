"""Arguments shared by several subcommands, and the checks of output paths run before any work."""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from rsi_plugin.cli.args import WEIGHTS_HELP, weights
from rsi_plugin.core.choices import MODEL_NAMES
from rsi_plugin.errors import PathError


def add_model_arguments(parser: argparse.ArgumentParser, default: str = "tiny") -> None:
    parser.add_argument("--model", default=default,
                        help=f"model name ({', '.join(MODEL_NAMES)}); default {default}")
    parser.add_argument("--weights", type=weights, default=None, help=WEIGHTS_HELP)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--seed", type=int, default=0, help="seed of random init and sampling")


def load_model_from_args(args: argparse.Namespace):
    from rsi_plugin.core.models import load_model

    return load_model(args.model, weights=args.weights, seed=args.seed, device=args.device)


def _existing_ancestor(path: Path) -> Path:
    for parent in (path, *path.parents):
        if parent.exists():
            return parent
    return Path(".")


def check_output_dir(path: str | os.PathLike, flag: str = "--out") -> Path:
    """Make sure ``path`` is, or can become, a folder this process can write into; create it.

    Checked before any work, so a run does not fail after its first hour.

    Raises:
        NotADirectoryError: ``path`` is a file, or lies under a file.
        PermissionError: the folder (or the nearest existing folder above it) is not writable.
    """
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise PathError(f"{flag} {path} is a file, not a folder; give a folder (it is created if missing)")
    existing = _existing_ancestor(path)
    if not existing.is_dir():
        raise PathError(f"{flag} {path} cannot be created: {existing} is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):  # the real test: root ignores mode bits, read-only mounts do not
            pass
    except OSError as error:
        raise PathError(f"{flag} {path} is not writable ({error.strerror or type(error).__name__}); "
                              "give a folder you can write to") from None
    return path


def check_output_file(path: str | os.PathLike, flag: str) -> Path:
    """Make sure a file can be written at ``path`` (its folder is created).

    Raises:
        IsADirectoryError: ``path`` is a folder. NotADirectoryError / PermissionError: as
        :func:`check_output_dir` for its folder.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        raise PathError(f"{flag} {path} is a folder; give a file name")
    check_output_dir(path.parent if str(path.parent) else Path("."), flag=f"{flag} {path}: folder")
    return path
