"""`rsi report DIR` on a full disk, a read-only DIR and a file instead of a folder (issue 21
items 10, 11 and 15): one line on stderr, exit status 2, nothing partial left."""

from __future__ import annotations

import errno
import pathlib
from pathlib import Path

import pandas as pd

from rsi_plugin.cli import main


def _run_dir(root: Path) -> Path:
    (root / "scan").mkdir(parents=True)
    pd.DataFrame({"source": "fz", "block": "1.1", "channel": [0, 1, 2], "passes": [True, False, True]}
                 ).to_csv(root / "scan" / "scan.csv", index=False)
    return root


def _leftovers(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.name.endswith(".tmp"))


def test_a_full_disk_is_one_line_and_leaves_no_partial_report(tmp_path, monkeypatch, capsys):
    root = _run_dir(tmp_path / "run")
    assert main(["report", str(root)]) == 0
    before = (root / "report.html").read_text(encoding="utf-8")
    capsys.readouterr()
    write_text = pathlib.Path.write_text

    def full_disk(self, data, *args, **kwargs):  # half of the file fits, then the disk is full
        write_text(self, data[: len(data) // 2], *args, **kwargs)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pathlib.Path, "write_text", full_disk)
    assert main(["report", str(root), "--title", "new"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("rsi report: error:") and "No space left on device" in err and "report.html" in err
    assert (root / "report.html").read_text(encoding="utf-8") == before  # the old report, whole
    assert _leftovers(root) == []
    # the summary file too
    assert main(["report", str(root), "--summary-json", str(root / "s.json")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not (root / "s.json").exists() and _leftovers(root) == []


def test_a_read_only_run_directory_is_one_line_before_any_work(tmp_path, monkeypatch, capsys):
    import os
    import tempfile

    root = _run_dir(tmp_path / "run")
    # root ignores mode bits, so the folder also refuses temporary files as a read-only mount does
    for name in ("mkstemp", "TemporaryFile", "NamedTemporaryFile"):
        real = getattr(tempfile, name)

        def refuse(*args, _real=real, **kwargs):
            folder = kwargs.get("dir")
            if folder is not None and Path(folder).resolve().is_relative_to(root.resolve()):
                raise OSError(errno.EROFS, "Read-only file system")
            return _real(*args, **kwargs)

        monkeypatch.setattr(tempfile, name, refuse)
    files = sorted(p.relative_to(root) for p in root.rglob("*"))
    root.chmod(0o555)
    try:
        assert main(["report", str(root)]) == 2
    finally:
        root.chmod(0o755)
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("rsi report: error:") and str(root) in err and "not writable" in err
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == files  # nothing drawn, nothing written
    assert os.access(root, os.W_OK)


def test_a_file_instead_of_the_run_directory_is_named_a_file(tmp_path, capsys):
    root = _run_dir(tmp_path / "run")
    afile = root / "scan" / "scan.csv"
    assert main(["report", str(afile)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert "is a file, not a directory" in err and "not found" not in err
    assert str(root / "scan") in err  # the folder holding it, as the likely intent
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "run directory not found" in capsys.readouterr().err
