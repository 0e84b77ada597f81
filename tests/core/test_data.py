"""Validation data: ImageNet-layout folders with bad files, datasets, limits, shards."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image
from rsi_plugin.testing.models import small_resnet  # noqa: F401

from rsi_plugin.ablation import SweepConfig, sweep
from rsi_plugin.core.data import SkippedFiles, ValidationLoader, validation_loader

R, S = 37, 32


def _rgb(seed: int, size=(48, 40)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB")


@pytest.fixture()
def folder(tmp_path):
    """Two classes: good RGB JPEG/PNG files, a truncated JPEG, a text file named .jpg,
    a grayscale PNG, a CMYK JPEG and a README (no image extension)."""
    a, b = tmp_path / "a_class", tmp_path / "b_class"
    a.mkdir()
    b.mkdir()
    for i in range(3):
        _rgb(i).save(a / f"good{i}.png")
    _rgb(10).save(b / "good.jpg", quality=95)
    buffer = io.BytesIO()
    _rgb(11, (64, 64)).save(buffer, format="JPEG", quality=95)
    (b / "truncated.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    (b / "text.jpg").write_text("this is not an image\n")
    gray = np.tile(np.arange(50, dtype=np.uint8)[None, :] * 5, (45, 1))
    Image.fromarray(gray, "L").save(a / "gray.png")
    _rgb(12).convert("CMYK").save(b / "cmyk.jpg")
    (a / "README.txt").write_text("notes")
    return tmp_path


def test_folder_skips_and_counts_bad_files_and_converts_modes(folder):
    loader = validation_loader(folder, resize_size=R, input_size=S, batch_size=3)
    assert isinstance(loader, ValidationLoader)
    # the README is known when the folder is listed
    assert list(loader.skipped.entries) == [str(folder / "a_class" / "README.txt")]
    got = list(loader)
    images = torch.cat([x for x, _ in got])
    labels = torch.cat([y for _, y in got])
    assert images.shape == (6, 3, R, R)  # 4 good RGB + gray + cmyk
    assert images.dtype == torch.float32 and images.min() >= 0 and images.max() <= 1
    assert labels.tolist() == [0, 0, 0, 0, 1, 1]
    skipped = loader.skipped.entries
    assert loader.skipped.count == 3
    assert set(skipped) == {str(folder / "a_class" / "README.txt"), str(folder / "b_class" / "truncated.jpg"),
                            str(folder / "b_class" / "text.jpg")}
    assert "truncated" in skipped[str(folder / "b_class" / "truncated.jpg")]
    assert "UnidentifiedImageError" in skipped[str(folder / "b_class" / "text.jpg")]
    # the grayscale PNG (sorted: good0, good1, good2, gray) became three equal channels
    gray = images[3]
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])
    assert gray.std() > 0
    # reading again reports the same files once
    list(loader)
    assert loader.skipped.count == 3
    frame = loader.skipped.to_frame()
    assert list(frame.columns) == ["file", "reason"] and len(frame) == 3
    assert "3 file(s) skipped" in loader.skipped.summary()


def test_resize_then_centre_crop_matches_torchvision(folder):
    from torchvision import transforms as T

    loader = validation_loader(folder, resize_size=R, input_size=S, batch_size=8)
    images = next(iter(loader))[0]
    with Image.open(folder / "a_class" / "good0.png") as image:
        expected = T.Compose([T.Resize(R), T.CenterCrop(R), T.ToTensor()])(image.convert("RGB"))
    assert torch.allclose(images[0], expected, atol=1 / 255 + 1e-6)


def test_sweep_completes_on_a_folder_with_bad_files(folder, tmp_path):
    model = small_resnet(num_classes=2)
    out = tmp_path / "out"
    result = sweep(model, folder, "3.1", [1, 2], SweepConfig(scales=(0.0, 0.3), trials=1, tolerance=1.0, batch_size=4),
                   out_dir=out, progress=False)
    assert set(result.results["n_images"]) == {6}
    assert result.skipped.count == 3
    assert (out / "skipped.csv").is_file() and len((out / "skipped.csv").read_text().splitlines()) == 4


def test_a_batch_of_only_bad_files_is_empty_not_an_error(tmp_path):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "bad.png").write_bytes(b"\x89PNG not really")
    _rgb(0).save(tmp_path / "c" / "good.png")
    loader = validation_loader(tmp_path, resize_size=R, input_size=S, batch_size=1)
    shapes = [x.shape for x, _ in loader]
    assert shapes == [(0, 3, R, R), (1, 3, R, R)]
    assert loader.skipped.count == 1


def test_dataset_of_pil_and_tensor_items_and_limit():
    class Items(torch.utils.data.Dataset):
        def __len__(self):
            return 10

        def __getitem__(self, i):
            if i == 4:
                raise OSError("cannot read item 4")
            if i % 2:
                return _rgb(i, (50, 80)).convert("L"), i % 3
            return torch.randint(0, 256, (3, 60, 45), dtype=torch.uint8), i % 3

    loader = validation_loader(Items(), resize_size=R, input_size=S, batch_size=4)
    images, labels = zip(*loader)
    assert torch.cat(images).shape == (9, 3, R, R)
    assert torch.cat(labels).tolist() == [i % 3 for i in range(10) if i != 4]
    assert loader.skipped.entries == {"item 4": "OSError: cannot read item 4"}
    limited = validation_loader(Items(), resize_size=R, input_size=S, limit=4)
    assert limited.indices == [0, 3, 6, 9] and limited.num_images == 4


def test_tensor_pair_and_model_sizes():
    model = small_resnet()
    images = torch.rand(5, 3, R, R)
    loader = validation_loader((images, torch.arange(5)), model, batch_size=2)
    assert (loader.resize_size, loader.input_size) == (R, S)
    got = torch.cat([x for x, _ in loader])
    assert torch.equal(got, images)  # already at the resize size: untouched
    bigger = validation_loader((torch.rand(2, 3, 50, 60), torch.zeros(2, dtype=torch.long)), model)
    assert next(iter(bigger))[0].shape == (2, 3, R, R)


def test_shards_partition_the_batches():
    data = (torch.rand(11, 3, R, R), torch.arange(11))
    whole = validation_loader(data, resize_size=R, input_size=S, batch_size=3)
    assert whole.num_batches == 4
    seen = []
    for rank in range(3):
        shard = whole.shard(rank, 3)
        for b, _, labels in shard.batches():
            assert b % 3 == rank
            seen.append((b, labels.tolist()))
    assert sorted(seen) == [(b, list(range(3 * b, min(3 * b + 3, 11)))) for b in range(4)]
    assert [b for b, _, _ in whole.batches(start=2)] == [2, 3]


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(root_or_dataset="/no/such/folder"), FileNotFoundError, "not found"),
    (dict(root_or_dataset=42), TypeError, "ImageNet-layout folder"),
    (dict(batch_size=0), ValueError, "batch_size"),
    (dict(limit=0), ValueError, "limit"),
    (dict(workers=-1), ValueError, "workers"),
    (dict(root_or_dataset=(torch.rand(3, 3, 8, 8), torch.zeros(2))), ValueError, r"\[N\]"),
])
def test_loader_errors(kwargs, error, match):
    args = dict(root_or_dataset=(torch.rand(3, 3, R, R), torch.zeros(3, dtype=torch.long)),
                resize_size=R, input_size=S)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        validation_loader(**args)


def test_loader_needs_sizes():
    with pytest.raises(ValueError, match="resize_size"):
        validation_loader((torch.rand(2, 3, R, R), torch.zeros(2, dtype=torch.long)))


def test_skipped_files_report():
    report = SkippedFiles()
    report.add("x.jpg", "broken")
    report.add("x.jpg", "again")
    report.update({"y.jpg": "text"})
    assert report.count == 2 and report.entries["x.jpg"] == "broken"
    assert SkippedFiles().summary() == "no file skipped"


def test_worker_processes_give_the_same_batches_and_report(folder):
    one = validation_loader(folder, resize_size=R, input_size=S, batch_size=3)
    two = validation_loader(folder, resize_size=R, input_size=S, batch_size=3, workers=2)
    a, b = list(one.batches()), list(two.batches())
    assert [i for i, _, _ in a] == [i for i, _, _ in b]
    for (_, xa, ya), (_, xb, yb) in zip(a, b):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert one.skipped.entries == two.skipped.entries and two.skipped.count == 3


def test_a_loader_given_again_keeps_its_report_or_is_returned(folder):
    loader = validation_loader(folder, resize_size=R, input_size=S, batch_size=3)
    assert validation_loader(loader, resize_size=R, input_size=S, batch_size=3) is loader
    rebatched = validation_loader(loader, resize_size=R, input_size=S, batch_size=5)
    assert rebatched.batch_size == 5 and rebatched.num_images == loader.num_images
    assert rebatched.skipped.entries == loader.skipped.entries  # the README found when listing


# ------------------------------------------------------------------ class folders -> model labels

def _class_folders(root, names, per_class=2, size=40):
    for k, name in enumerate(names):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            _rgb(100 * k + i, (size, size)).save(root / name / f"{i}.png")
    return root


def _labels(loader):
    return torch.cat([labels for _, labels in loader]).tolist()


def test_a_subset_folder_keeps_the_models_labels(tmp_path):
    from rsi_plugin import load_model
    from rsi_plugin.zoo import export_imagefolder

    tiny = load_model("tiny")
    full = export_imagefolder(tmp_path / "full", n=40, seed=3)
    star = tmp_path / "only_star"
    star.mkdir()
    (full / "05_star").rename(star / "05_star")  # the case: was relabelled 0
    loader = validation_loader(star, tiny, batch_size=8)
    labels = _labels(loader)
    assert labels and set(labels) == {5}
    # and the model agrees with those labels on its own test shapes
    images = torch.cat([x for x, _ in loader])
    from rsi_plugin.core.transforms import scale_crop
    from rsi_plugin.core.images import normalize

    with torch.no_grad():
        predicted = tiny(normalize(scale_crop(images, 0.0, 64), tiny)).argmax(1)
    assert (predicted == 5).float().mean() > 0.5
    # bare class names and label numbers map too; the order of folders does not matter
    named = _class_folders(tmp_path / "named", ["spiral", "disc"])
    assert sorted(set(_labels(validation_loader(named, tiny, batch_size=8)))) == [0, 8]
    numbered = _class_folders(tmp_path / "numbered", ["7", "3"])
    assert sorted(set(_labels(validation_loader(numbered, tiny, batch_size=8)))) == [3, 7]


@pytest.mark.parametrize("names, match", [
    (["05_star", "dog"], "dog"),
    (["05_disc"], "05_disc"),                 # the prefix and the name disagree
    (["star", "05_star"], "same class"),
    (["12"], "outside"),
])
def test_folders_that_cannot_be_mapped_are_a_clear_error(tmp_path, names, match):
    from rsi_plugin import load_model

    root = _class_folders(tmp_path / "data", names, per_class=1)
    with pytest.raises(ValueError, match=match):
        validation_loader(root, load_model("tiny"))


def test_imagenet_folders_map_by_category_and_a_wnid_subset_by_id(tmp_path):
    from rsi_plugin import load_model

    resnet = load_model("resnet18", weights=None)
    named = _class_folders(tmp_path / "named", ["goldfish", "tench"], per_class=1)
    assert sorted(_labels(validation_loader(named, resnet))) == [0, 1]
    wnids = _class_folders(tmp_path / "wnids", ["n01443537"], per_class=1)
    assert _labels(validation_loader(wnids, resnet)) == [1]  # goldfish, by the shipped ImageNet-1k ids
    unknown = _class_folders(tmp_path / "unknown", ["n00000001"], per_class=1)
    with pytest.raises(ValueError, match="WordNet"):
        validation_loader(unknown, resnet)
    given = ["n0000%04d" % i for i in range(999)] + ["n01443537"]  # class_names= maps a subset
    assert _labels(validation_loader(wnids, resnet, class_names=given)) == [999]


def test_models_without_class_names_keep_sorted_order_for_a_full_set_only(tmp_path):
    full = _class_folders(tmp_path / "full", ["b_class", "a_class"], per_class=1)
    model = small_resnet(num_classes=2)
    assert sorted(_labels(validation_loader(full, model))) == [0, 1]
    subset = _class_folders(tmp_path / "subset", ["b_class"], per_class=1)
    with pytest.raises(ValueError, match="no class names"):
        validation_loader(subset, model)


def test_ablate_cli_refuses_an_unmappable_folder_before_the_channel_means(tmp_path, capsys, monkeypatch):
    from rsi_plugin.cli import main

    def no_means(*args, **kwargs):
        raise AssertionError("the channel means were computed before the data's classes were checked")

    monkeypatch.setattr("rsi_plugin.ablation.experiment.channel_means", no_means)
    data = _class_folders(tmp_path / "data", ["05_star", "unicorn"], per_class=1)
    argv = ["ablate", "--model", "tiny", "--block", "3.1", "--channels", "1", "2", "--data", str(data),
            "--out", str(tmp_path / "out"), "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "unicorn" in err and "Traceback" not in err


def test_natural_images_whose_labels_are_unused_need_no_mapping(tmp_path):
    from rsi_plugin import load_model

    photos = _class_folders(tmp_path / "photos", ["holiday", "garden"], per_class=1)
    with pytest.raises(ValueError, match="holiday"):
        validation_loader(photos, load_model("tiny"))
    assert sorted(_labels(validation_loader(photos, load_model("tiny"), map_classes=False))) == [0, 1]
