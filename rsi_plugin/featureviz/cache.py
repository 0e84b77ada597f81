"""The on-disk cache of feature visualisations: one record per (model, block, node, channel, config).

Layout under a cache directory::

    <cache_dir>/<model fingerprint>/<block>/<node>/<config hash>/c00042.pt   # the record
    <cache_dir>/<model fingerprint>/<block>/<node>/<config hash>/c00042.png  # the image, 8-bit
    <cache_dir>/<model fingerprint>/<block>/<node>/<config hash>/config.json # what the hash stands for

A record (``torch.save`` of a dict) holds the float image ``[3, H, W]`` in [0, 1], the
achieved activation, the objective per step, the keys it was stored under, the SHA-256 of
its PNG's bytes (``"png_sha256"``) and a checksum of all of these. Its tensors are stored as compact copies (a view of a whole batch would
make ``torch.save`` write the batch's storage: 32x the bytes at 32 channels a batch).
Every file is written to a temporary name in the same directory and moved into place with
:func:`os.replace`, so a record either exists whole or not at all; the PNG is written
before its record, so a record's PNG always exists.

What a reader trusts: :func:`read_record` returns ``None`` (the channel is recomputed)
for a record that is missing, unreadable, written under other keys, whose checksum does
not match (flipped bytes), or whose values are implausible (:func:`check_record`: a
non-finite value, an image outside [0, 1], an activation beyond
:data:`MAX_ABS_ACTIVATION`). A PNG beside a good record that is missing, damaged or not the
record's own (its SHA-256 differs from ``"png_sha256"``: e.g. another channel's PNG copied
over it) is written again from the record. Records written before ``"png_sha256"`` existed
still load (the PNG is then only checked to decode at the image's size); the field does not
enter the cache key (the config hash and the record's path are unchanged).

Concurrent runs: :class:`RecordLocks` takes one lock per record (:class:`RecordLock`:
``.c00042.lock``, an OS file lock that a killed process releases, its file removed by the
holder on release), so two processes rendering into one cache
split the channels between them and each waits for, then reads, the records the other
is computing. Temporary files left by a killed writer are removed once their record's
lock is held (:func:`rsi_plugin.core.atomic.remove_stale_tmp`).
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import math
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import torch
from torch import nn

from rsi_plugin.core.atomic import TMP_SUFFIX, atomic_write, remove_stale_tmp
from rsi_plugin.core.wrapped import unwrap

__all__ = ["model_fingerprint", "config_hash", "record_path", "write_record", "read_record", "check_record",
           "record_checksum", "RecordLock", "RecordLocks", "MAX_ABS_ACTIVATION"]

MAX_ABS_ACTIVATION: float = 1e6
"""Largest plausible magnitude of a stored activation or objective value. A ResNet unit
driven by an image in [0, 1] stays orders of magnitude below it; a value beyond it means
a damaged record (one flipped exponent bit gave 2.5e23)."""

STALE_TMP_AGE: float = 3600.0
"""Seconds after which any temporary file in a record folder counts as left by a killed
writer (those of a record are removed at once when its lock is taken)."""

IMAGE_SLACK: float = 1e-4
"""How far outside [0, 1] a stored image may lie (the sigmoid output is in [0, 1])."""

logger = logging.getLogger(__name__)


def model_fingerprint(model: nn.Module) -> str:
    """A hash of a model's class, module structure (``repr``) and state dict (names, dtypes,
    shapes and bytes).

    Two models with the same class, structure and equal weights and buffers get the same
    fingerprint, whatever their device. Hashing resnet18's 47 MB takes about 0.1 s.

    Args:
        model (nn.Module): the model (an ``nnsight.NNsight`` is unwrapped).

    Returns:
        str: 32 hex digits.
    """
    module = unwrap(model)
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{type(module).__module__}.{type(module).__qualname__}".encode())
    digest.update(repr(module).encode())  # the architecture: a swapped parameter-free module (max-pool) counts
    for name, value in module.state_dict().items():
        if not isinstance(value, torch.Tensor):
            digest.update(f"{name}={value!r}".encode())
            continue
        tensor = value.detach().to("cpu").contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().data)
    return digest.hexdigest()


def config_hash(config: Mapping[str, Any]) -> str:
    """16 hex digits of the JSON of ``config`` (keys sorted)."""
    text = json.dumps(dict(config), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def record_dir(cache_dir: str | os.PathLike, fingerprint: str, block: str, node: str, chash: str) -> Path:
    """The directory holding the records of one (model, block, node, config)."""
    return Path(cache_dir) / fingerprint / block / node / chash


def record_path(cache_dir: str | os.PathLike, fingerprint: str, block: str, node: str, chash: str,
                channel: int) -> Path:
    """Path of the record of one channel (``.pt``; its PNG has the same stem)."""
    return record_dir(cache_dir, fingerprint, block, node, chash) / f"c{int(channel):05d}.pt"


def _png_bytes(image: torch.Tensor) -> bytes:
    """The 8-bit PNG of an image ``[3, H, W]`` in [0, 1], as bytes."""
    import io

    from PIL import Image

    array = (image.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8)
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array.permute(1, 2, 0).numpy())).save(buffer, format="PNG")
    return buffer.getvalue()


def _write_png_bytes(data: bytes, path: Path) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_sha256(path: Path) -> str | None:
    try:
        return _sha256(path.read_bytes())
    except OSError:
        return None


def _compact(value: Any) -> Any:
    """A CPU tensor that owns exactly its own elements (not a view of a larger storage)."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu").clone(memory_format=torch.contiguous_format)
    return value


def record_checksum(record: Mapping[str, Any]) -> str:
    """32 hex digits over every entry of a record but ``"checksum"`` (tensors by dtype,
    shape and bytes; other values by ``repr``)."""
    digest = hashlib.blake2b(digest_size=16)
    for key in sorted(k for k in record if k != "checksum"):
        value = record[key]
        digest.update(f"{key}\0".encode())
        if isinstance(value, torch.Tensor):
            tensor = value.detach().to("cpu").contiguous()
            digest.update(f"{tensor.dtype}:{tuple(tensor.shape)}\0".encode())
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
        else:
            digest.update(f"{value!r}\0".encode())
    return digest.hexdigest()


def check_record(record: Mapping[str, Any]) -> str | None:
    """Why a record's values are implausible, or ``None`` when they are fine.

    Checks: ``image`` is a floating-point ``[3, H, W]`` tensor, finite, within [0, 1]
    (:data:`IMAGE_SLACK`); ``activation`` and every ``history`` value are finite and at
    most :data:`MAX_ABS_ACTIVATION` in magnitude.
    """
    image = record.get("image")
    if not isinstance(image, torch.Tensor) or not image.is_floating_point() or image.dim() != 3 \
            or image.shape[0] != 3:
        return f"image is not a float [3, H, W] tensor ({getattr(image, 'shape', type(image).__name__)})"
    if not bool(torch.isfinite(image).all()):
        return "image holds non-finite values"
    low, high = float(image.min()), float(image.max())
    if low < -IMAGE_SLACK or high > 1 + IMAGE_SLACK:
        return f"image values span [{low:.4g}, {high:.4g}], outside [0, 1]"
    activation = record.get("activation")
    if activation is not None:
        try:
            activation = float(activation)
        except (TypeError, ValueError):
            return f"activation {activation!r} is not a number"
        if not math.isfinite(activation) or abs(activation) > MAX_ABS_ACTIVATION:
            return f"activation {activation!r} is non-finite or implausibly large"
    history = record.get("history")
    if history is not None:
        if not isinstance(history, torch.Tensor) or not history.is_floating_point():
            return "history is not a float tensor"
        if history.numel() and (not bool(torch.isfinite(history).all())
                                or float(history.abs().max()) > MAX_ABS_ACTIVATION):
            return "history holds non-finite or implausibly large values"
    return None


def _png_ok(png: Path, image: torch.Tensor) -> bool:
    from PIL import Image

    try:
        with Image.open(png) as handle:
            handle.load()  # decodes fully: a truncated file fails here
            return handle.size == (image.shape[-1], image.shape[-2])
    except (OSError, ValueError, SyntaxError):
        return False


def write_record(path: Path, record: dict[str, Any], config: Mapping[str, Any] | None = None) -> Path:
    """Write one channel's PNG, then its record, atomically.

    Args:
        path (Path): the ``.pt`` path from :func:`record_path`.
        record (dict): must hold ``"image"`` (Tensor ``[3, H, W]`` in [0, 1]); tensors are
            stored on the CPU as compact copies, with the PNG's SHA-256 (``"png_sha256"``)
            and a ``"checksum"`` of the whole record (:func:`record_checksum`).
        config (mapping, optional): written once per directory as ``config.json``.

    Returns:
        Path of the PNG.

    Raises:
        PathError: the disk is full (or ``torch.save`` could not write): one line naming the
            file; no partial file is left (:func:`rsi_plugin.core.atomic.atomic_write`).
    """
    png = path.with_suffix(".png")
    data = _png_bytes(record["image"])
    _write_png_bytes(data, png)
    stored = {k: _compact(v) for k, v in record.items() if k != "checksum"}
    stored["png_sha256"] = _sha256(data)
    stored["checksum"] = record_checksum(stored)
    atomic_write(path, lambda tmp: torch.save(stored, tmp))
    if config is not None:
        meta = path.parent / "config.json"
        if not meta.exists():
            atomic_write(meta, lambda tmp: Path(tmp).write_text(json.dumps(dict(config), indent=1, sort_keys=True,
                                                                           default=str)))
    return png


def _load_failure(path: Path, error: Exception) -> tuple[str, str]:
    """``(kind, reason)`` for a record ``torch.load`` could not read: ``"empty"``, ``"truncated"``
    (a zip archive without its end: an interrupted copy, a full disk) or ``"unreadable"``."""
    import zipfile

    try:
        size = path.stat().st_size
    except OSError as stat_error:
        return "unreadable", stat_error.strerror or type(stat_error).__name__
    if size == 0:
        return "empty", "0 bytes"
    try:
        with path.open("rb") as handle:
            is_zip = handle.read(4) == b"PK\x03\x04"
    except OSError as read_error:
        return "unreadable", read_error.strerror or type(read_error).__name__
    if is_zip and not zipfile.is_zipfile(path):
        return "truncated", f"{size} bytes, the end of the archive is missing"
    first = next((line.strip() for line in str(error).splitlines() if line.strip()), "")
    return "unreadable", f"{type(error).__name__}: {first}" if first else type(error).__name__


def read_record(path: Path, expect: Mapping[str, Any] | None = None, log: bool = True) -> dict[str, Any] | None:
    """Read a record; ``None`` when it is missing, unreadable, damaged or implausible, or
    does not match ``expect``: the caller recomputes it.

    A record passes when it loads, its checksum matches (:func:`record_checksum`), its
    channel is the one in its file name, it holds ``expect``, and :func:`check_record`
    finds nothing wrong. A PNG beside a good record that is missing, damaged or not its own
    (SHA-256 other than the record's ``"png_sha256"``) is written again from the record.

    Args:
        path (Path): the ``.pt`` path.
        expect (mapping, optional): key/value pairs the record must hold (e.g. the config hash).
        log (bool): log why a record is not used, as one warning ``cache record PATH is
            KIND (REASON); recomputing``, KIND one of ``empty``, ``truncated``, ``unreadable``,
            ``malformed``, ``stale`` (other keys), ``damaged`` (checksum, implausible values);
            ``False`` when the caller already reported this file (a second read of it).
    """
    def warn(kind: str, reason: str) -> None:
        if log:
            logger.warning("cache record %s is %s (%s); recomputing", path, kind, reason)

    if not path.is_file():
        return None
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a foreign or damaged file: recompute it
        warn(*_load_failure(path, error))
        return None
    if not isinstance(record, dict) or "image" not in record:
        warn("malformed", f"a {type(record).__name__}, not a dict holding an image")
        return None
    for key, value in (expect or {}).items():
        if record.get(key) != value:
            warn("stale", f"its {key} is {record.get(key)!r}, expected {value!r}")
            return None
    problem = None
    if record.get("checksum") != record_checksum(record):
        problem = "its checksum does not match (damaged or written by an older version)"
    elif "channel" in record and path.stem.startswith("c") and path.stem[1:].isdigit() \
            and record["channel"] != int(path.stem[1:]):
        problem = f"it holds channel {record['channel']!r}"
    else:
        problem = check_record(record)
    if problem is not None:
        warn("damaged", problem)
        return None
    png = path.with_suffix(".png")
    expected = record.get("png_sha256")
    if expected is None:  # a record from before the PNG checksum: check that the PNG decodes
        if not _png_ok(png, record["image"]):
            logger.warning("writing the missing or damaged PNG %s again from its record", png)
            _write_png_bytes(_png_bytes(record["image"]), png)
        return record
    found = _file_sha256(png)
    if found != expected:
        data = _png_bytes(record["image"])
        if found != _sha256(data):  # (equal: the same pixels encoded by another Pillow version)
            logger.warning("writing the PNG %s again from its record: it is %s", png,
                           "missing" if found is None else "not the record's own (checksum differs)")
            _write_png_bytes(data, png)
    return record


def _lock_path(record: Path) -> Path:
    return record.parent / f".{record.stem}.lock"


#: ``errno`` values of a file system that has no ``flock`` (some network mounts)
_NO_FLOCK_ERRNOS = frozenset({errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOLCK, errno.EINVAL})


class RecordLock:
    """An exclusive lock on one record, through an OS file lock (``flock``) on ``path``, that
    removes its file when released.

    A killed holder's lock is released by the OS. Removing a lock file is safe because
    of the lock-then-check protocol: the holder unlinks the file *while it still holds the
    lock*, and a process that acquires the lock checks that ``path`` still names the file it
    locked (same device and inode); if not (it had opened the file just removed), it
    unlocks it and locks the path's new file. So two processes never both hold the lock
    of one path. Where ``flock`` does not exist (Windows, some network file systems) it is
    :class:`filelock.FileLock`, whose file stays (Windows removes its own).

    Args:
        path (Path): the lock file (created on acquire, removed on release).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._fd: int | None = None
        self._fallback: Any = None

    def acquire(self, blocking: bool = True) -> bool:
        """Take the lock; ``False`` when ``blocking`` is False and another holder has it."""
        if self._fallback is not None:
            return self._acquire_fallback(blocking)
        try:
            import fcntl
        except ImportError:
            return self._acquire_fallback(blocking)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except OSError as error:
                os.close(fd)
                if error.errno in _NO_FLOCK_ERRNOS:
                    return self._acquire_fallback(blocking)
                if error.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
                    return False
                raise
            try:
                held, named = os.fstat(fd), os.stat(self.path)
                same = (held.st_dev, held.st_ino) == (named.st_dev, named.st_ino)
            except FileNotFoundError:
                same = False
            if same:
                self._fd = fd
                return True
            os.close(fd)  # its holder removed this file after we opened it: lock the path's new one

    def _acquire_fallback(self, blocking: bool) -> bool:
        from filelock import FileLock, Timeout  # a dependency of torch

        if self._fallback is None:
            self._fallback = FileLock(str(self.path))
        try:
            self._fallback.acquire(blocking=blocking)
        except Timeout:
            return False
        return True

    def release(self) -> None:
        """Remove the lock file, then release the lock (a no-op when not held)."""
        if self._fallback is not None:
            if self._fallback.is_locked:
                self._fallback.release()
            return
        if self._fd is None:
            return
        import fcntl

        fd, self._fd = self._fd, None
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self) -> "RecordLock":
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


class RecordLocks:
    """Per-record locks of one render call, so that concurrent runs share the work.

    Use as a context manager; every lock still held is released on exit. Without paths
    (no cache) every method is a no-op that hands all channels to the caller.

    Args:
        where (dict, optional): channel -> record path (:func:`record_path`).
        expect (mapping, optional): what records must hold, as in :func:`read_record`.
    """

    def __init__(self, where: Mapping[int, Path] | None, expect: Mapping[str, Any] | None = None) -> None:
        self.where = dict(where or {})
        self.expect = expect
        self._held: dict[int, Any] = {}
        self._waited: set[int] = set()

    def __enter__(self) -> "RecordLocks":
        for folder in {path.parent for path in self.where.values()}:
            for tmp in remove_stale_tmp(folder, older_than=STALE_TMP_AGE):
                logger.info("removed %s, left by an interrupted write", tmp)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release(list(self._held))

    def _lock(self, channel: int) -> RecordLock:
        path = self.where[channel]
        path.parent.mkdir(parents=True, exist_ok=True)
        return RecordLock(_lock_path(path))

    def claim(self, channels: Iterable[int], reread: bool = True) -> tuple[list[int], dict[int, dict[str, Any]], list[int]]:
        """Take, without waiting, the locks of the records still to compute.

        Args:
            channels (iterable of int): channels without a usable record.
            reread (bool): read each record again once its lock is held (another process
                may have finished it); ``False`` to recompute regardless (``force``). The
                caller has read them just before, so a damaged record is not reported again,
                unless it was written by the process :meth:`wait` waited for.

        Returns:
            ``(mine, done, busy)``: channels now locked by this process, to compute;
            channels whose record another process finished meanwhile (their records);
            channels another process holds the lock of (see :meth:`wait`).
        """
        channels = list(channels)
        if not self.where:
            return channels, {}, []
        mine, done, busy = [], {}, []
        for c in channels:
            lock = self._lock(c)
            if not lock.acquire(blocking=False):
                busy.append(c)
                continue
            # finished elsewhere since? (quiet the first time: the caller has just read and reported
            # this file; after waiting for another process it is that process's record)
            record = read_record(self.where[c], self.expect, log=c in self._waited) if reread else None
            if record is not None:
                lock.release()
                done[c] = record
                continue
            self._held[c] = lock
            self._clean(c)
            mine.append(c)
        if busy:
            logger.info("%d record(s) are being computed by another process; computing the others first", len(busy))
        return mine, done, busy

    def _clean(self, channel: int) -> None:
        """Remove the temporary files a killed writer of this record left (its lock is held)."""
        path = self.where[channel]
        for suffix in (".pt", ".png"):
            for tmp in path.parent.glob(f".{path.stem}{suffix}.*{TMP_SUFFIX}"):
                try:
                    tmp.unlink()
                    logger.info("removed %s, left by an interrupted write", tmp)
                except FileNotFoundError:
                    pass

    def release(self, channels: Iterable[int]) -> None:
        """Release the locks of ``channels`` (their records are written)."""
        for c in list(channels):
            lock = self._held.pop(c, None)
            if lock is not None:
                lock.release()

    def wait(self, channels: Iterable[int]) -> list[int]:
        """Wait until no process holds the locks of ``channels``; returns them (claim
        them again: their records are read, or recomputed if the other process failed)."""
        channels = list(channels)
        self._waited.update(channels)
        for c in channels:
            lock = self._lock(c)
            with lock:  # blocks while the other process computes the record
                pass
        return channels
