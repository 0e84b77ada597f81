"""Tests of rsi_plugin.zoo: the procedural shapes set, the tiny ResNet and its weights."""

from __future__ import annotations

import dataclasses
import shutil

import pytest
import torch
import torchvision
from torchvision.models.resnet import BasicBlock, ResNet

from rsi_plugin.core.modelinfo import ModelInfo
from rsi_plugin.zoo import (CLASSES, TINY_METADATA, TINY_WEIGHTS, ShapesDataset,
                            build_tiny_resnet, export_imagefolder, generate, load_tiny)
from rsi_plugin.zoo.evaluate import scale_sweep, validation_accuracy
from rsi_plugin.zoo.pretrained import ChecksumError, load_metadata
from rsi_plugin.zoo.shapes import (CHUNK, EVAL_BASE, SEED_SPAN, TRAIN_BASE, VAL_BASE,
                                   class_folder_names, eval_seed, render, train_seed, val_seed)
from rsi_plugin.zoo.train import TrainConfig, save, train


# ----------------------------------------------------------------------------- data
def test_same_seed_identical_different_seed_differs():
    a, la = generate(40, seed=3)
    b, lb = generate(40, seed=3)
    c, lc = generate(40, seed=4)
    assert a.shape == (40, 3, 64, 64) and a.dtype == torch.float32 and la.dtype == torch.int64
    assert torch.equal(a, b) and torch.equal(la, lb)
    assert not torch.equal(a, c)
    assert 0.0 <= float(a.min()) and float(a.max()) <= 1.0


def test_sizes_and_centered_variant():
    x, _ = generate(12, seed=1, size=73, centered=True)
    assert x.shape == (12, 3, 73, 73)
    assert not torch.equal(generate(12, 1, centered=True)[0], generate(12, 1)[0])


def test_classes_balanced():
    _, labels = generate(300, seed=5)
    assert torch.equal(labels.bincount(minlength=10), torch.full((10,), 30))
    _, sub = generate(40, seed=5, classes=["ring", "dots"])
    assert sorted(sub.unique().tolist()) == [CLASSES.index("ring"), CLASSES.index("dots")]
    assert (sub == CLASSES.index("ring")).sum() == 20
    assert len(ShapesDataset(50, 0).labels.bincount().unique()) == 1


def test_dataset_matches_generate_across_chunks():
    n = CHUNK + 20
    images, labels = generate(n, seed=11)
    data = ShapesDataset(n, seed=11)
    assert len(data) == n
    for i in (0, 7, CHUNK - 1, CHUNK, n - 1, -1):
        img, lab = data[i]
        assert torch.equal(img, images[i]) and lab == int(labels[i])
    with pytest.raises(IndexError):
        data[n]


def test_seed_ranges_disjoint():
    for s in range(5):
        assert TRAIN_BASE <= train_seed(s, 0) < TRAIN_BASE + SEED_SPAN
        assert VAL_BASE <= val_seed(s) < VAL_BASE + SEED_SPAN
        assert EVAL_BASE <= eval_seed(s) < EVAL_BASE + SEED_SPAN


def _clean_centred(classes, seed=0, radius=0.35):
    """Centred, unrotated, unstretched, large objects on a plain background."""
    _, labels, [params] = generate(20, seed, classes=classes, clutter=False, return_params=True)
    n = len(params)
    params = dataclasses.replace(params, center=torch.full((n, 2), 0.5),
                                 rotation=torch.zeros(n), stretch=torch.ones(n),
                                 radius=torch.full((n,), radius))
    return render(params, 64, clutter=False), labels, params


def test_labels_match_drawn_class_ring_vs_disc():
    images, labels, params = _clean_centred(["disc", "ring"])
    centre = images[:, :, 32, 32]
    corner = images[:, :, 0, 0]
    assert torch.allclose(corner, params.background, atol=1e-6)
    ring = labels == CLASSES.index("ring")
    assert ring.any() and (~ring).any()
    # A ring's centre shows the background, a disc's centre the object colour.
    assert torch.allclose(centre[ring], params.background[ring], atol=1e-5)
    assert torch.allclose(centre[~ring], params.color[~ring], atol=1e-5)
    assert ((params.color - params.background).norm(dim=1) >= 0.3).all()


def test_label_alone_changes_the_drawing():
    _, _, params = _clean_centred(None)
    base = render(params, 64, clutter=False)
    for c in range(len(CLASSES)):
        other = render(dataclasses.replace(params, labels=torch.full_like(params.labels, c)),
                       64, clutter=False)
        same = params.labels == c
        assert torch.equal(other[same], base[same])
        assert all(not torch.allclose(other[i], base[i]) for i in (~same).nonzero().flatten())


def test_export_imagefolder_roundtrip(tmp_path):
    from torchvision.transforms.v2.functional import pil_to_tensor

    n = 30
    root = export_imagefolder(tmp_path / "shapes", n, seed=2)
    images, labels = generate(n, seed=2)
    folder = torchvision.datasets.ImageFolder(str(root))
    assert folder.classes == class_folder_names()
    assert [folder.class_to_idx[name] for name in class_folder_names()] == list(range(10))
    assert len(folder) == n
    for path, label in folder.samples:
        i = int(path.rsplit("/", 1)[1].split(".")[0])
        assert label == int(labels[i])
        img = pil_to_tensor(folder.loader(path)).float() / 255
        assert (img - images[i]).abs().max() <= 1 / 255


# ----------------------------------------------------------------------------- model
def test_tiny_resnet_structure():
    model = build_tiny_resnet()
    assert isinstance(model, ResNet)
    names = [n for n, _ in model.named_modules()]
    assert names == [n for n, _ in torchvision.models.resnet18().named_modules()]
    blocks = [m for m in model.modules() if isinstance(m, BasicBlock)]
    assert len(blocks) == 8
    assert [model.layer1[0].conv1.out_channels, model.layer2[0].conv1.out_channels,
            model.layer3[0].conv1.out_channels, model.layer4[0].conv1.out_channels] == [16, 32, 64, 128]
    assert model(torch.zeros(2, 3, 64, 64)).shape == (2, 10)
    assert build_tiny_resnet(width=8).fc.in_features == 64


def test_load_tiny_matches_recorded_accuracy():
    meta = load_metadata()
    model = load_tiny()
    assert isinstance(model, ResNet) and not model.training
    assert all(p.requires_grad and p.dtype == torch.float32 for p in model.parameters())
    info = model.rsi_info
    assert isinstance(info, ModelInfo)
    assert (info.name, info.input_size, info.resize_size, info.num_classes) == ("tiny", 64, 73, 10)
    assert info.weights == str(TINY_WEIGHTS)
    assert info.mean == tuple(meta["mean"]) and info.std == tuple(meta["std"])
    assert meta["classes"] == list(CLASSES)
    acc = validation_accuracy(model, meta["seed"], n=meta["val_size"])
    assert abs(acc - meta["val_accuracy"]) <= 0.02
    assert meta["val_accuracy"] >= 0.85


def test_load_tiny_checksum(tmp_path):
    copy = tmp_path / "copy.pt"
    shutil.copy(TINY_WEIGHTS, copy)
    assert isinstance(load_tiny(weights_path=copy), ResNet)  # no sibling JSON: shipped one
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 0xFF
    copy.write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match="sha256"):
        load_tiny(weights_path=copy)
    assert TINY_METADATA.is_file()


# ----------------------------------------------------------------------------- training
def test_short_training_run_lowers_loss_and_saves(tmp_path):
    config = TrainConfig(steps=30, batch=32, lr=0.05, warmup=0.1, stats_samples=200,
                         val_size=50, eval_size=50, eval_every=0, threads=1)
    threads = torch.get_num_threads()
    model, metrics = train(config, progress=False)
    assert torch.get_num_threads() == threads
    losses = metrics["losses"]
    assert len(losses) == 30
    assert sum(losses[-8:]) / 8 < sum(losses[:8]) / 8
    meta = save(model, metrics, config, tmp_path)
    assert set(meta["scale_sweep"]["accuracy"]) == {"standard", "0.0", "0.1", "0.2", "0.3", "0.4", "0.5"}
    loaded = load_tiny(weights_path=tmp_path / "tiny_resnet.pt")  # sibling JSON
    assert loaded.rsi_info.mean == tuple(meta["mean"])
    sweep = scale_sweep(loaded, config.seed, n=50)
    assert sweep == meta["scale_sweep"]["accuracy"]
