"""Atomic writes: whole files or none, and the permissions open() would give (the umask)."""

from __future__ import annotations

import os
import stat
from contextlib import contextmanager

import pandas as pd
import pytest
import torch

from rsi_plugin.core.atomic import (
    atomic_write,
    atomic_write_csv,
    atomic_write_json,
    atomic_write_text,
    remove_stale_tmp,
)
from rsi_plugin.featureviz.cache import write_record


@contextmanager
def umask(value):
    old = os.umask(value)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_every_writer_follows_the_umask_like_open(tmp_path, mask):
    with umask(mask):
        reference = tmp_path / "plain.txt"
        with open(reference, "w") as handle:
            handle.write("x")
        written = [
            atomic_write_text(tmp_path / "a.txt", "text"),
            atomic_write_csv(tmp_path / "a.csv", pd.DataFrame({"x": [1, 2]})),
            atomic_write_json(tmp_path / "a.json", {"x": 1}),
            atomic_write(tmp_path / "a.pt", lambda tmp: torch.save({"x": 1}, tmp)),
        ]
        record = tmp_path / "cache" / "c00001.pt"
        png = write_record(record, {"image": torch.rand(3, 8, 8)}, config={"steps": 1})
        written += [record, png, record.parent / "config.json"]
    assert _mode(reference) == 0o666 & ~mask
    for path in written:
        assert _mode(path) == _mode(reference), (path.name, oct(_mode(path)))


def test_a_failed_write_leaves_neither_file_nor_temporary(tmp_path):
    def broken(tmp):
        with open(tmp, "w") as handle:
            handle.write("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        atomic_write(tmp_path / "out.csv", broken)
    assert list(tmp_path.iterdir()) == []


def test_remove_stale_tmp_removes_only_leftover_temporaries(tmp_path):
    keep = atomic_write_text(tmp_path / "scan.csv", "a,b\n")
    stale = tmp_path / ".c00003.pt.k2j4h1.tmp"
    stale.write_bytes(b"partial")
    visible = tmp_path / "notes.tmp"  # not one of ours: no leading dot
    visible.write_text("user file")
    assert remove_stale_tmp(tmp_path) == [stale]
    assert keep.exists() and visible.exists() and not stale.exists()
    fresh = tmp_path / ".scan.csv.abc.tmp"
    fresh.write_text("being written")
    assert remove_stale_tmp(tmp_path, older_than=3600) == [] and fresh.exists()
    assert remove_stale_tmp(tmp_path / "missing") == []
