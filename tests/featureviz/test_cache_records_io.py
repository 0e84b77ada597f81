"""The FZ cache's records on disk, issue 21: one clear warning per damaged record (truncated,
empty, unreadable), a full disk as one :class:`~rsi_plugin.errors.RSIError` with nothing
partial left, and no lock files left beside the records."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import rsi_plugin as rsi
from rsi_plugin.featureviz.optimize import FeatureVizConfig

BLOCK, NODE = "2.1", "pre"
CONFIG = FeatureVizConfig(steps=2, image_size=32, jitter=0, channels_per_batch=4)
CACHE_LOGGER = "rsi_plugin.featureviz.cache"


@pytest.fixture(scope="module")
def tiny():
    return rsi.load_model("tiny")


def _render(model, cache, channels=(0, 1, 2)):
    return rsi.render(model, BLOCK, NODE, list(channels), CONFIG, cache_dir=cache, progress=False)


def _records(cache: Path) -> dict[int, Path]:
    return {int(p.stem[1:]): p for p in cache.rglob("c*.pt")}


def test_damaged_records_are_named_with_their_reason_once_each(tiny, tmp_path, caplog):
    # issue 21 item 14: "[Errno 22] Invalid argument" for a truncated record, an empty reason
    # for an empty one, every warning printed twice
    _render(tiny, tmp_path)
    records = _records(tmp_path)
    records[0].write_bytes(records[0].read_bytes()[: records[0].stat().st_size // 2])
    records[1].write_bytes(b"")
    records[2].write_bytes(b"not a torch file at all, but long enough" * 40)
    with caplog.at_level(logging.WARNING, logger=CACHE_LOGGER):
        again = _render(tiny, tmp_path)
    assert sorted(again.computed) == [0, 1, 2]
    messages = [r.getMessage() for r in caplog.records if r.name == CACHE_LOGGER]
    for c, kind in ((0, "truncated"), (1, "empty"), (2, "unreadable")):
        mine = [m for m in messages if str(records[c]) in m]
        assert len(mine) == 1, (c, messages)
        assert mine[0].startswith(f"cache record {records[c]} is {kind} ("), mine[0]
        assert mine[0].endswith("; recomputing"), mine[0]
        reason = mine[0][mine[0].index("(") + 1: mine[0].rindex(")")]
        assert reason.strip() and "Errno" not in reason, mine[0]
    assert len(messages) == 3, messages


TORCH_DISK_FULL = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 1856 vs 1740")


def test_full_disk_while_writing_a_record_is_one_rsi_error_and_leaves_nothing_partial(tiny, tmp_path, monkeypatch):
    # issue 21 item 10: torch.save of a record on a full disk raised a raw RuntimeError
    import torch

    from rsi_plugin.errors import PathError, RSIError

    def full_disk(obj, f, *args, **kwargs):
        Path(f).write_bytes(b"PK\x03\x04 half a record")
        raise TORCH_DISK_FULL

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(RSIError) as caught:
        _render(tiny, tmp_path, channels=(0,))
    assert isinstance(caught.value, PathError)
    message = str(caught.value)
    assert "\n" not in message and "disk" in message and "c00000.pt" in message, message
    assert message.startswith("could not write "), message
    assert list(tmp_path.rglob("*.pt")) == [] and list(tmp_path.rglob("*.tmp")) == []
    # the failed render removed its hooks and restored the model (no half-finished probe left)
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in tiny.modules())
    assert all(p.requires_grad for p in tiny.parameters())


def test_enospc_in_an_atomic_write_is_a_path_error_and_leaves_nothing(tmp_path):
    import errno

    from rsi_plugin.core.atomic import atomic_write
    from rsi_plugin.errors import PathError

    def full(tmp):
        Path(tmp).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(PathError, match=r"^could not write .*table\.csv: the disk is full"):
        atomic_write(tmp_path / "table.csv", full)
    assert list(tmp_path.iterdir()) == []


def test_no_lock_files_are_left_beside_the_records(tiny, tmp_path):
    # issue 21 item 19: one empty .cNNNNN.lock was left per record
    _render(tiny, tmp_path)
    _render(tiny, tmp_path, channels=(0, 1, 2, 3))  # cached ones read, one computed
    assert len(_records(tmp_path)) == 4
    assert list(tmp_path.rglob("*.lock")) == []


def test_a_removed_lock_file_never_lets_two_holders_in(tmp_path):
    # the holder removes the lock file on release; a waiter that had opened the removed file
    # must lock the path's new file, so that it and a third process never both hold the lock
    import threading
    import time

    from rsi_plugin.featureviz.cache import RecordLock

    path = tmp_path / ".c00000.lock"
    first = RecordLock(path)
    assert first.acquire(blocking=False)
    assert not RecordLock(path).acquire(blocking=False)
    waiter, got = RecordLock(path), threading.Event()
    thread = threading.Thread(target=lambda: (waiter.acquire(), got.set()))
    thread.start()
    time.sleep(0.2)  # (either order is correct: the waiter opens the old file or the new one)
    first.release()
    thread.join(timeout=30)
    assert got.is_set()
    assert path.exists()  # the waiter holds the path's current file
    third = RecordLock(path)
    assert not third.acquire(blocking=False)
    waiter.release()
    assert not path.exists()
    assert third.acquire(blocking=False)
    third.release()
    assert list(tmp_path.iterdir()) == []
