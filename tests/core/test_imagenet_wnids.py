"""ImageNet-1k WordNet ids shipped with the package: checked against timm's list, and a subset maps by id."""

from __future__ import annotations

from importlib.resources import files

import pytest
from PIL import Image

from rsi_plugin.core.data import imagenet_wnids, map_class_folders, validation_loader


def test_the_shipped_list_is_timms_imagenet1k_synsets_in_label_order():
    timm_list = files("timm").joinpath("data", "_info", "imagenet_synsets.txt").read_text().split()
    ours = imagenet_wnids()
    assert len(ours) == 1000 and len(set(ours)) == 1000
    assert list(ours) == timm_list
    assert ours[0] == "n01440764" and ours[-1] == "n15075141"


def test_the_ids_name_torchvisions_categories():
    """An independent check of the order: label i's WordNet lemmas contain torchvision's name of label i
    (timm's synset -> lemma table), for nearly every class (torchvision edits a few names)."""
    import torchvision

    categories = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["categories"]
    lemmas = {}
    for line in files("timm").joinpath("data", "_info", "imagenet_synset_to_lemma.txt").read_text().splitlines():
        wnid, _, text = line.partition("\t")
        lemmas[wnid] = {t.strip().lower() for t in text.split(",")}
    agree = sum(categories[i].lower() in lemmas[w] for i, w in enumerate(imagenet_wnids()))
    assert agree >= 950, agree
    shifted = sum(categories[i].lower() in lemmas[w] for i, w in enumerate(imagenet_wnids()[1:] + imagenet_wnids()[:1]))
    assert shifted < 50


def test_a_subset_of_synset_folders_maps_by_id():
    assert map_class_folders(["n01443537", "n15075141"], 1000) == {"n01443537": 1, "n15075141": 999}
    names = tuple(f"class{i}" for i in range(1000))  # a model's own (non-WordNet) names do not block it
    assert map_class_folders(["n01484850"], 1000, names) == {"n01484850": 2}


def test_ids_outside_imagenet1k_are_a_clear_error():
    with pytest.raises(ValueError, match="imagenet_wnids"):
        map_class_folders(["n00000001", "n01443537"], 1000)


def test_user_given_wordnet_ids_decide():
    given = ["n0000%04d" % i for i in range(999)] + ["n01443537"]
    assert map_class_folders(["n01443537"], 1000, given) == {"n01443537": 999}


def test_an_imagenet_subset_folder_loads_offline_with_true_labels(tmp_path):
    from rsi_plugin import load_model

    for wnid in ("n01443537", "n01530575"):
        (tmp_path / wnid).mkdir()
        Image.new("RGB", (8, 8)).save(tmp_path / wnid / "a.png")
    loader = validation_loader(tmp_path, load_model("resnet18", weights=None))
    labels = sorted(int(y) for _, ys in loader for y in ys)
    assert labels == [1, 10]  # goldfish, brambling
