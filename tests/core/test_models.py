"""load_model: random init, local state dicts, the torch hub cache, clear errors; residual_blocks."""

from __future__ import annotations

import pytest
import torch
import torchvision

import rsi_plugin as rsi
from rsi_plugin.core.models import hub_cache_path


def test_random_init_is_seeded_and_eval():
    a = rsi.load_model("resnet18", seed=3)
    b = rsi.load_model("resnet18", seed=3)
    c = rsi.load_model("resnet18", seed=4)
    assert not a.training and all(not m.training for m in a.modules())
    assert torch.equal(a.conv1.weight, b.conv1.weight)
    assert not torch.equal(a.conv1.weight, c.conv1.weight)
    assert a.rsi_info.name == "resnet18" and a.rsi_info.weights == "random@3"


def test_load_from_pth_gives_same_tensors(tmp_path):
    source = rsi.load_model("resnet18", seed=7)
    path = tmp_path / "weights.pth"
    torch.save(source.state_dict(), path)
    loaded = rsi.load_model("resnet18", weights=path, seed=0)
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    # checkpoints that wrap the state dict load too
    torch.save({"state_dict": source.state_dict(), "epoch": 3}, tmp_path / "ckpt.pth")
    wrapped = rsi.load_model("resnet18", weights=str(tmp_path / "ckpt.pth"))
    assert torch.equal(wrapped.fc.weight, source.fc.weight)
    assert loaded.rsi_info.weights == str(path)


def test_mismatched_state_dict_names_keys(tmp_path):
    state = rsi.load_model("resnet18").state_dict()
    state.pop("layer2.1.bn2.running_mean")
    state["extra.weight"] = torch.zeros(1)
    state["fc.weight"] = torch.zeros(10, 512)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(ValueError) as info:
        rsi.load_model("resnet18", weights=path)
    message = str(info.value)
    assert "layer2.1.bn2.running_mean" in message and "extra.weight" in message and "fc.weight" in message


def test_missing_weights_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        rsi.load_model("resnet18", weights=tmp_path / "nope.pth")


def test_enum_weights_from_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    source = rsi.load_model("resnet18", seed=11)
    url = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url
    cached = hub_cache_path(url)
    assert cached.parent == tmp_path / "hub" / "checkpoints"
    cached.parent.mkdir(parents=True)
    torch.save(source.state_dict(), cached)
    loaded = rsi.load_model("resnet18", weights="IMAGENET1K_V1", download=False)
    assert torch.equal(loaded.layer3[1].bn2.running_var, source.layer3[1].bn2.running_var)
    assert loaded.rsi_info.weights == "IMAGENET1K_V1"
    # DEFAULT resolves to the same enum member for resnet18
    assert torch.equal(rsi.load_model("resnet18", weights="DEFAULT", download=False).fc.bias, source.fc.bias)


def test_enum_weights_offline_without_cache_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError) as info:
        rsi.load_model("resnet18", weights="IMAGENET1K_V1", download=False)
    message = str(info.value)
    assert "resnet18-f37072fd.pth" in message and str(tmp_path / "hub" / "checkpoints") in message


def test_unknown_names():
    with pytest.raises(ValueError, match="valid: tiny, resnet18"):
        rsi.load_model("vgg16")
    with pytest.raises(ValueError, match="IMAGENET1K_V1"):
        rsi.load_model("resnet18", weights="IMAGENET_V9")


@pytest.mark.parametrize("name, n_blocks, kind", [
    ("resnet18", 8, "BasicBlock"), ("resnet34", 16, "BasicBlock"), ("resnet50", 16, "Bottleneck"),
    ("wide_resnet50_2", 16, "Bottleneck"), ("resnext50_32x4d", 16, "Bottleneck"),
])
def test_residual_blocks_found_by_type(name, n_blocks, kind):
    model = getattr(torchvision.models, name)()
    blocks = rsi.residual_blocks(model)
    assert len(blocks) == n_blocks and {b.kind for b in blocks} == {kind}
    assert blocks[0].name == "1.0" and [b.index for b in blocks] == list(range(n_blocks))
    for block in blocks:
        module = model.get_submodule(block.path)
        assert (block.downsample_path is not None) == (module.downsample is not None)
        assert block.channels == model.get_submodule(block.pre_path).num_features
        assert block.site("pre").path.endswith("bn3" if kind == "Bottleneck" else "bn2")
        if block.downsample_path:
            assert block.order("in") > block.order("pre"), "downsample runs after the branch"


def test_residual_blocks_of_a_subclass():
    class MyBlock(torchvision.models.resnet.BasicBlock):
        pass

    model = torchvision.models.resnet.ResNet(MyBlock, [1, 1, 1, 1], num_classes=3)
    names = [b.name for b in rsi.residual_blocks(model)]
    assert names == ["1.0", "2.0", "3.0", "4.0"]


def test_block_names_and_paths(resnet18):
    blocks = {b.name: b for b in rsi.residual_blocks(resnet18)}
    assert list(blocks) == ["1.0", "1.1", "2.0", "2.1", "3.0", "3.1", "4.0", "4.1"]
    assert blocks["2.1"].site("in").path == "layer2.1" and blocks["2.1"].site("in").attr == "input"
    assert blocks["2.0"].site("in").path == "layer2.0.downsample"
    assert blocks["3.1"].site("post").path == "layer3.1"
    with pytest.raises(ValueError, match="computed as in \\+ pre"):
        blocks["2.1"].site("sum")


def test_normalize_roundtrip_and_model_stats(resnet18):
    x = torch.rand(2, 3, 8, 8)
    y = rsi.normalize(x, resnet18)  # a torchvision model: ImageNet's statistics
    torch.testing.assert_close(y[:, 0], (x[:, 0] - 0.485) / 0.229)
    torch.testing.assert_close(rsi.denormalize(y, resnet18), x)
    custom = rsi.ModelInfo(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    model = torch.nn.Linear(1, 1)
    model.rsi_info = custom
    torch.testing.assert_close(rsi.normalize(x, model), (x - 0.5) / 0.25)
    with pytest.raises(ValueError, match="RGB"):
        rsi.normalize(torch.rand(2, 1, 8, 8))
    with pytest.raises(TypeError, match="floating point"):
        rsi.normalize(torch.zeros(3, 4, 4, dtype=torch.uint8))


def test_import_is_light():
    import subprocess
    import sys
    code = ("import sys, rsi_plugin; heavy = [m for m in ('nnsight', 'transformer_lens', 'pandas', 'captum', "
            "'lucent', 'matplotlib') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
