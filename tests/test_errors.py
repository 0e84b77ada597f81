"""rsi_plugin.errors: every bad-input error is an RSIError that is still the built-in type code
caught before, the library raises no bare built-in for bad input, and the CLI turns RSIError (and
only RSIError) into one line with exit status 2."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

import rsi_plugin as rsi
from rsi_plugin import errors
from rsi_plugin.cli import main

PACKAGE = Path(rsi.__file__).parent

#: modules that may raise built-in errors: server-side code run inside NDIF's venv, and the
#: test helpers (assertions of tests, not user input)
EXEMPT = ("serve/cpu_actor.py", "testing/")
#: built-ins that mean bad input: the library raises an RSIError subclass instead
BAD_INPUT_BUILTINS = {"ValueError", "TypeError", "IndexError", "FileNotFoundError", "NotADirectoryError",
                      "IsADirectoryError", "FileExistsError", "PermissionError", "KeyError"}


@pytest.mark.parametrize("cls, builtin", [
    (errors.RSIError, ValueError), (errors.UnknownNameError, KeyError), (errors.ChannelError, IndexError),
    (errors.OutOfRangeError, IndexError), (errors.InputTypeError, TypeError),
    (errors.MissingFileError, FileNotFoundError), (errors.PathError, OSError), (errors.ShapeError, ValueError),
    (errors.ConfigError, ValueError), (errors.DataError, ValueError), (errors.WeightsError, ValueError),
])
def test_each_error_is_an_rsi_error_and_its_builtin(cls, builtin):
    error = cls("channel 99 out of range; valid: 0..63")
    assert isinstance(error, errors.RSIError) and isinstance(error, ValueError) and isinstance(error, builtin)
    assert str(error) == "channel 99 out of range; valid: 0..63"  # the sentence, not quoted
    assert cls.__name__ in errors.__all__ and cls.__doc__


def test_library_errors_defined_elsewhere_are_rsi_errors():
    from rsi_plugin.access.remote import RemoteConfigError
    from rsi_plugin.core.models import DeviceError, WeightsFileError

    assert issubclass(DeviceError, errors.RSIError) and issubclass(DeviceError, RuntimeError)
    assert issubclass(WeightsFileError, errors.WeightsError)
    assert issubclass(RemoteConfigError, errors.RSIError)


def test_real_raise_sites_give_the_specific_error(tmp_path):
    model = rsi.load_model("tiny")
    x = torch.rand(2, 3, 64, 64)
    with pytest.raises(errors.UnknownNameError, match="valid"):
        rsi.load_model("resnet-nope")
    with pytest.raises(errors.UnknownNameError, match="valid blocks"):
        rsi.capture(model, x, blocks=["9.9"])
    with pytest.raises(errors.ChannelError) as info:
        rsi.ablate(model, x, "2.1", [10_000], 0.0)
    assert isinstance(info.value, IndexError)
    with pytest.raises(errors.MissingFileError) as info:
        rsi.load_model("tiny", weights=tmp_path / "missing.pth")
    assert isinstance(info.value, FileNotFoundError)
    with pytest.raises(errors.ShapeError):
        rsi.normalize(torch.rand(2, 1, 8, 8))
    with pytest.raises(errors.InputTypeError):
        rsi.normalize([[0.5]])
    with pytest.raises(errors.RSIError, match="tolerance"):
        rsi.ScaleInvariance(model, "2.1").attribute((x, x), channels=[0, 1], tolerance=0.5)


def _bare_builtin_raises() -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel.startswith(EXEMPT) or rel == "errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Raise) and node.exc is not None:
                exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
                if isinstance(exc, ast.Name) and exc.id in BAD_INPUT_BUILTINS:
                    found.append(f"{rel}:{node.lineno}: raise {exc.id}")
    return found


def test_the_library_raises_no_bare_builtin_for_bad_input():
    found = _bare_builtin_raises()
    assert not found, ("raise an rsi_plugin.errors class instead (it stays an instance of the built-in): "
                       + "; ".join(found))


def test_cli_shows_rsi_errors_as_one_line_and_bugs_as_tracebacks(monkeypatch, capsys):
    assert main(["inspect", "--model", "resnet-nope"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith("rsi inspect: error: unknown model")

    def bug(model):
        raise ValueError("a bug, not bad input")

    monkeypatch.setattr("rsi_plugin.apps.inspect.block_table", bug)
    with pytest.raises(ValueError, match="a bug"):
        main(["inspect", "--model", "tiny"])
