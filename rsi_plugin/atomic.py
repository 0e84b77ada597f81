"""Atomic file writes: every result file of the library is written to a temporary file next to
its destination and moved into place with :func:`os.replace`, so a file either exists whole or
not at all, and an interrupted run never leaves half a table, image or record behind."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

__all__ = ["atomic_write", "atomic_write_text", "atomic_write_csv", "atomic_write_json"]


def atomic_write(path: str | os.PathLike, write: Callable[[str], Any]) -> Path:
    """Call ``write(tmp_path)`` on a temporary file next to ``path``, then move it into place.

    Args:
        path (str or Path): the destination (its folder is created).
        write (callable): writes the content to the path it is given.

    Returns:
        Path, the destination.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) atomically."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def atomic_write_csv(path: str | os.PathLike, frame) -> Path:
    """Write a DataFrame as CSV (no index) atomically."""
    return atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False))


def atomic_write_json(path: str | os.PathLike, payload: Any) -> Path:
    """Write ``payload`` as indented JSON atomically (objects JSON cannot hold become strings)."""
    return atomic_write_text(path, json.dumps(payload, indent=2, default=str))
