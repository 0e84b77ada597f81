"""``rsi ablate`` on a random-init resnet18 and a small generated ImageNet-layout folder."""

from __future__ import annotations

import numpy as np
import torch
import pandas as pd
import pytest
from PIL import Image

from rsi_plugin.cli import main
from rsi_plugin.cli.ablate import parse_channels


@pytest.fixture()
def folder(tmp_path):
    rng = np.random.default_rng(0)
    for label in ("tench", "goldfish"):  # ImageNet classes by name (weights.meta["categories"])
        (tmp_path / "val" / label).mkdir(parents=True)
        for i in range(2):
            pixels = rng.integers(0, 256, (60, 70, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "val" / label / f"{i}.png")
    (tmp_path / "val" / "goldfish" / "broken.jpg").write_text("not a jpeg")
    return tmp_path / "val"


def test_ablate_command_writes_the_tables_and_figures(folder, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["ablate", "--model", "resnet18", "--data", str(folder), "--block", "4.1", "--channels", "3,7",
            "--trials", "1", "--screen-tolerance", "1", "--null-sets", "3", "--scales", "0", "0.5", "--batch-size", "4", "--out", str(out),
            "--no-progress"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "block 4.1" in printed and "1 file(s) skipped" in printed and "ratio_mean" in printed
    cells = pd.read_csv(out / "ablation.csv")
    assert len(cells) == 2 * (3 + 3) and set(cells["n_images"]) == {4}  # 2 scales x (3 conditions + 3 null sets)
    assert set(cells["condition"]) == {"none", "invariant", "random", "null_set"}
    for name in ("eq3.csv", "eq3.png", "accuracy.png", "draws.csv", "means.csv", "sweep.json", "skipped.csv"):
        assert (out / name).is_file(), name
    # a rerun resumes: nothing left to compute, the same table
    assert main(argv) == 0
    pd.testing.assert_frame_equal(pd.read_csv(out / "ablation.csv"), cells)


def test_parse_channels_from_a_scan_csv(tmp_path):
    table = pd.DataFrame({
        "block": ["3.1", "3.1", "3.1", "2.1", "3.1"],
        "channel": [9, 1, 4, 5, 9],
        "passes": [True, True, False, True, True],
    })
    path = tmp_path / "scan.csv"
    table.to_csv(path, index=False)
    assert parse_channels([str(path)], "3.1") == [1, 9]
    assert parse_channels([str(path)], "2.1") == [5]
    with pytest.raises(ValueError, match="block 1.0 was not scanned in .*; scanned blocks: 2.1, 3.1"):
        parse_channels([str(path)], "1.0")
    table.assign(source=["fz", "natural", "fz", "fz", "fz"]).to_csv(path, index=False)
    with pytest.raises(ValueError, match="--source"):
        parse_channels([str(path)], "3.1")
    assert parse_channels([str(path)], "3.1", source="fz") == [9]
    table.drop(columns="passes").to_csv(path, index=False)
    with pytest.raises(ValueError, match="passes"):
        parse_channels([str(path)], "3.1")


def test_parse_channel_numbers():
    assert parse_channels(["1", "9", "23"], "3.1") == [1, 9, 23]
    assert parse_channels(["1,9", "23"], "3.1") == [1, 9, 23]
    with pytest.raises(ValueError, match="scan CSV or channel numbers"):
        parse_channels(["one"], "3.1")
    with pytest.raises(FileNotFoundError):
        parse_channels(["missing.csv"], "3.1")


@pytest.mark.parametrize("extra, message", [
    (["--channels", "1"], "--data is required"),
    (["--channels", "1", "--data", "/no/such/folder"], "not found"),
    (["--channels", "9999", "--data", "."], "out of range"),
])
def test_ablate_command_errors(extra, message, tmp_path, capsys, folder):
    extra = [str(folder) if e == "." else e for e in extra]
    code = main(["ablate", "--model", "resnet18", "--block", "3.1", "--out", str(tmp_path / "o"), "--no-progress"]
                + extra)
    assert code == 2
    assert message in capsys.readouterr().err


def test_tiny_default_data_is_the_centred_generated_set_at_the_resize_size():
    import argparse

    from rsi_plugin.cli.ablate import _default_data
    from rsi_plugin.core.data import validation_loader
    from rsi_plugin.core.modelinfo import ModelInfo
    from rsi_plugin.zoo.shapes import ShapesDataset, eval_seed
    from rsi_plugin.testing.models import small_resnet

    model = small_resnet()
    model.rsi_info = ModelInfo(name="tiny", input_size=64, resize_size=73, num_classes=10)
    data = _default_data(argparse.Namespace(model="tiny", data=None, samples=6, data_seed=1), model)
    assert isinstance(data, ShapesDataset)
    assert (len(data), data.size, data.centered, data.seed) == (6, 73, True, eval_seed(1))
    images, labels = next(iter(validation_loader(data, model, batch_size=6)))
    assert images.shape == (6, 3, 73, 73) and torch.equal(images[2], data[2][0])
    assert labels.tolist() == [data[i][1] for i in range(6)]
