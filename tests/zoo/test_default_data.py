"""One default data set per purpose and one preprocessing of natural images: scan and demo search the same images."""

from __future__ import annotations

import pytest
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image

import rsi_plugin as rsi
from rsi_plugin.apps import demo
from rsi_plugin.cli import main
from rsi_plugin.criteria import channel_scan
from rsi_plugin.criteria.natural import natural_images
from rsi_plugin.zoo.data import default_data
from rsi_plugin.zoo.shapes import ShapesDataset, eval_seed, export_imagefolder, generate


@pytest.fixture(scope="module")
def tiny():
    return rsi.load_model("tiny")


def test_default_data_recipes(tiny):
    info = tiny.rsi_info
    natural = default_data(tiny, "natural", 20, seed=3)
    images, labels = natural.tensors()
    ref_images, ref_labels = generate(20, 3, size=info.input_size)  # objects anywhere, model-ready size
    assert torch.equal(images, ref_images) and torch.equal(labels, ref_labels)
    sweep = default_data(tiny, "sweep", 20, seed=3)
    ref = ShapesDataset(20, eval_seed(3), size=info.resize_size, centered=True)  # what ablate and demo drew
    assert all(torch.equal(sweep[i][0], ref[i][0]) and sweep[i][1] == ref[i][1] for i in range(20))
    assert torch.equal(natural_images(tiny, None, 20, 3), rsi.normalize(ref_images, tiny))
    assert torch.equal(channel_scan.natural_data(tiny, 20, 3), rsi.normalize(ref_images, tiny))
    with pytest.raises(ValueError, match="natural, sweep"):
        default_data(tiny, "train", 4)


def test_default_data_only_for_tiny(resnet18):
    with pytest.raises(ValueError, match="only 'tiny'"):
        default_data(resnet18, "sweep", 4)
    with pytest.raises(ValueError, match="only 'tiny'"):
        natural_images(resnet18)


def _reference(folder, model) -> torch.Tensor:
    """The standard evaluation preprocessing, written out: Resize(R) of the short side, crop to the input size."""
    info = model.rsi_info
    files = sorted(p for p in folder.rglob("*.png"))
    out = []
    for path in files:
        x = TF.pil_to_tensor(Image.open(path).convert("RGB")).float() / 255
        x = TF.resize(x, [info.resize_size], interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
        out.append(TF.center_crop(x, [info.input_size, info.input_size]))
    return rsi.normalize(torch.stack(out), model)


def test_scan_and_demo_search_the_same_images(tiny, tmp_path, monkeypatch):
    folder = export_imagefolder(tmp_path / "val", 12, seed=5, size=96)  # 96 px: resized to 73, cropped to 64
    seen = {}

    class Stop(Exception):
        pass

    def capture_data(model, data, *args, **kwargs):
        seen["scan"] = torch.cat([b for b in data])
        raise Stop

    monkeypatch.setattr(channel_scan, "top_k_images", capture_data)
    with pytest.raises(Stop):
        main(["scan", "--model", "tiny", "--source", "natural", "--data", str(folder), "--blocks", "2.1",
              "--batch-size", "5", "--out", str(tmp_path / "scan"), "--no-progress"])
    config = demo.DemoConfig(out=str(tmp_path / "demo"), data=str(folder), natural_samples=12)
    demo_images = torch.cat([b for b in demo._natural_images(config, tiny)])
    reference = _reference(folder, tiny)
    assert seen["scan"].shape == demo_images.shape == reference.shape == (12, 3, 64, 64)
    assert torch.equal(seen["scan"], demo_images)
    assert torch.allclose(demo_images, reference, atol=1e-5)
    # the old demo squashed the whole resized image to the input size: other pixels
    squashed = rsi.normalize(TF.resize(TF.resize(
        torch.stack([TF.pil_to_tensor(Image.open(p).convert("RGB")).float() / 255
                     for p in sorted(folder.rglob("*.png"))]), [73], antialias=True), [64, 64], antialias=False), tiny)
    assert not torch.allclose(demo_images, squashed, atol=1e-2)
