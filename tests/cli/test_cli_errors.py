"""Bad output paths, weights files, devices and image dtypes: typed errors in the library,
one readable line and exit status 2 on the command line, and no work done before."""

from __future__ import annotations

import os

import pytest
import torch

import rsi_plugin as rsi
from rsi_plugin.cli import main
from rsi_plugin.core.models import DeviceError, WeightsFileError


def _error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("rsi ")]
    assert len(lines) == 1, err
    return lines[0]


def _read_only_folder(tmp_path):
    if os.geteuid() != 0:
        folder = tmp_path / "read-only"
        folder.mkdir()
        folder.chmod(0o555)
        return folder / "out"
    return "/sys/rsi-out-test"  # root ignores mode bits; sysfs refuses new entries to everyone


def _scan(out):
    return ["scan", "--model", "tiny", "--blocks", "2.1", "--channels", "0", "--steps", "1", "--out", str(out)]


@pytest.mark.parametrize("case, expected", [
    ("file", "is a file, not a folder"),
    ("under_file", "cannot be created"),
    ("read_only", "not writable"),
])
@pytest.mark.parametrize("command", ["scan", "featureviz", "ablate"])
def test_bad_out_folder_is_one_line_exit_2_before_any_work(tmp_path, capsys, monkeypatch, case, expected, command):
    def no_work(*args, **kwargs):
        raise AssertionError("the model was loaded before the output folder was checked")

    monkeypatch.setattr("rsi_plugin.core.models.load_model", no_work)
    a_file = tmp_path / "a_file.txt"
    a_file.write_text("not a folder")
    out = {"file": a_file, "under_file": a_file / "sub", "read_only": _read_only_folder(tmp_path)}[case]
    argv = {"scan": _scan(out),
            "featureviz": ["featureviz", "--model", "tiny", "--block", "2.1", "--node", "pre", "--out", str(out)],
            "ablate": ["ablate", "--model", "tiny", "--block", "3.1", "--channels", "1", "--out", str(out)]}[command]
    assert main(argv) == 2
    line = _error_line(capsys)
    assert expected in line and str(out) in line


def test_output_file_that_is_a_folder(tmp_path, capsys):
    assert main(["inspect", "--model", "tiny", "--csv", str(tmp_path)]) == 2
    assert "is a folder" in _error_line(capsys)


@pytest.fixture()
def weights_files(tmp_path):
    good = tmp_path / "good.pth"
    torch.save(rsi.load_model("tiny").state_dict(), good)
    data = good.read_bytes()
    files = {"truncated": data[: len(data) // 2], "empty": b"", "text": b"these are not weights\n",
             "head_only": data[:200]}
    paths = {}
    for name, content in files.items():
        paths[name] = tmp_path / f"{name}.pth"
        paths[name].write_bytes(content)
    return good, paths


def test_unreadable_weights_files_are_typed_errors(weights_files):
    good, paths = weights_files
    assert rsi.load_model("tiny", weights=good) is not None
    for name, path in paths.items():
        with pytest.raises(WeightsFileError, match=str(path)):
            rsi.load_model("tiny", weights=path)
        with pytest.raises(WeightsFileError):
            rsi.load_model("resnet18", weights=path)


def test_unreadable_weights_on_the_cli_are_one_line_exit_2(weights_files, capsys):
    _, paths = weights_files
    for name, path in paths.items():
        assert main(["inspect", "--model", "tiny", "--weights", str(path)]) == 2, name
        line = _error_line(capsys)
        assert str(path) in line and ("cannot read weights file" in line or "is empty" in line), line


def test_cuda_without_a_gpu(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceError, match="no CUDA GPU"):
        rsi.load_model("tiny", device="cuda")
    with pytest.raises(ValueError, match="unknown device"):
        rsi.load_model("tiny", device="gpu0")
    assert main(["inspect", "--model", "tiny", "--device", "cuda"]) == 2
    assert "no CUDA GPU" in _error_line(capsys)


def test_float64_images_are_a_type_error_naming_the_fix():
    model = rsi.load_model("tiny")
    x = torch.rand(2, 3, 64, 64, dtype=torch.float64)
    for call in (lambda: rsi.capture(model, x, blocks=["2.1"]),
                 lambda: rsi.ablate(model, x, "2.1", [0], 0.0),
                 lambda: rsi.ScaleInvariance(model, "2.1").attribute((x[:1], x[:1]), channels=[0])):
        with pytest.raises(TypeError, match=r"float64.*float32"):
            call()
    rsi.capture(model, x.float(), blocks=["2.1"])  # the named fix works


def test_threads_default_keeps_torchs_and_bad_counts_are_refused(tmp_path):
    import torch

    from rsi_plugin.cli.args import set_threads
    from rsi_plugin.errors import RSIError

    before = torch.get_num_threads()
    try:
        set_threads(None)  # the default of rsi demo / rsi scan: torch's own, for every model
        assert torch.get_num_threads() == before
        set_threads(2)
        assert torch.get_num_threads() == 2
        for bad in (0, -1):
            with pytest.raises(RSIError, match="--threads must be >= 1"):
                set_threads(bad)
    finally:
        torch.set_num_threads(before)
    assert main(["demo", "--threads", "0", "--out", str(tmp_path / "run")]) == 2
