"""Atomic file writes: every result file of the library is written to a temporary file next to
its destination and moved into place with :func:`os.replace`, so a file either exists whole or
not at all, and an interrupted run never leaves half a table, image or record behind.

Files get the permissions ``open()`` would give them: ``0o666`` less the process's umask
(``0o644`` under the usual umask ``022``), not the ``0o600`` of a bare temporary file, so a
report folder can be served or shared. A temporary file left by a killed process is named
``.<name>.<random>.tmp`` (:data:`TMP_SUFFIX`) and can be removed with :func:`remove_stale_tmp`.

A write that fails because the disk is full (``ENOSPC``, or ``torch.save``'s
``[enforce fail at inline_container.cc:...]``) removes its temporary file and raises
:class:`~rsi_plugin.errors.PathError` ("could not write PATH: the disk is full ..."), which
the ``rsi`` command prints as one line."""

from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

__all__ = ["atomic_write", "atomic_write_text", "atomic_write_csv", "atomic_write_json", "file_mode",
           "remove_stale_tmp", "TMP_SUFFIX"]

TMP_SUFFIX = ".tmp"


def _umask() -> int:
    try:  # Linux reports it without changing it (thread-safe)
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    umask = os.umask(0o022)  # elsewhere reading the umask means setting it; put it straight back
    os.umask(umask)
    return umask


def file_mode() -> int:
    """The permission bits ``open()`` gives a new file: ``0o666`` less the umask."""
    return 0o666 & ~_umask()


def remove_stale_tmp(folder: str | os.PathLike, older_than: float = 0.0) -> list[Path]:
    """Remove the temporary files that interrupted atomic writes left in ``folder``.

    Args:
        folder (str or Path): where to look (not recursive); a missing folder is fine.
        older_than (float): only files last modified more than this many seconds ago
            (leave a margin when another process may be writing into the folder now).

    Returns:
        list of the paths removed.
    """
    import time

    folder = Path(folder)
    if not folder.is_dir():
        return []
    now, removed = time.time(), []
    for path in folder.glob(f".*{TMP_SUFFIX}"):
        try:
            if now - path.stat().st_mtime >= older_than:
                path.unlink()
                removed.append(path)
        except FileNotFoundError:  # another process finished or removed it
            continue
    return removed


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
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    except OSError as error:
        _raise_if_disk_full(path, error)
        raise
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, file_mode())  # mkstemp makes it 0o600 whatever the umask
        os.replace(tmp, path)
    except BaseException as error:
        if os.path.exists(tmp):
            os.unlink(tmp)
        _raise_if_disk_full(path, error)
        raise
    return path


#: ``errno`` values of a write that failed for want of space (no space left, quota exceeded)
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)})

#: what ``torch.save`` says when the stream under it fails (a full disk): its C++ writer's
#: messages carry no ``errno``
TORCH_WRITE_FAILURES = ("inline_container.cc", "PytorchStreamWriter failed")


def _raise_if_disk_full(path: Path, error: BaseException) -> None:
    """Raise :class:`~rsi_plugin.errors.PathError` (one line, naming ``path``) for a write that
    failed because the disk is full: an ``OSError`` with ``ENOSPC``/``EDQUOT``, or the
    ``RuntimeError`` of ``torch.save``'s zip writer (``[enforce fail at inline_container.cc:...]``)."""
    from rsi_plugin.errors import PathError

    if isinstance(error, PathError):
        return
    if isinstance(error, OSError) and error.errno in DISK_FULL_ERRNOS:
        raise PathError(f"could not write {path}: the disk is full ({error.strerror or 'no space left'}); "
                        "free some space or choose another folder") from error
    if isinstance(error, RuntimeError) and any(marker in str(error) for marker in TORCH_WRITE_FAILURES):
        raise PathError(f"could not write {path}: the disk is probably full (torch.save failed: "
                        f"{str(error).splitlines()[0][:120]}); free some space or choose another folder") from error


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) atomically."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def atomic_write_csv(path: str | os.PathLike, frame) -> Path:
    """Write a DataFrame as CSV (no index) atomically."""
    return atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False))


def atomic_write_json(path: str | os.PathLike, payload: Any) -> Path:
    """Write ``payload`` as indented JSON atomically (objects JSON cannot hold become strings)."""
    return atomic_write_text(path, json.dumps(payload, indent=2, default=str))
