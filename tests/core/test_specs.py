"""Block specs: ConvNeXt (Post == In + Pre exactly, no activation), a hand-built family with a
known answer through attach_specs, capture/ablate against raw hooks, criteria on ConvNeXt."""

from __future__ import annotations

import pytest
import torch
import torchvision
from rsi_plugin.testing.state import assert_same_state, model_state
from torch import nn
from torchvision.models.convnext import CNBlockConfig, ConvNeXt

import rsi_plugin as rsi
from rsi_plugin.criteria.captum import ScaleInvariance
from rsi_plugin.featureviz.optimize import FeatureVizConfig, render, visualize
from rsi_plugin.criteria.channel_scan import ScanConfig, scan
from rsi_plugin.core.specs import (CONVNEXT, DEFAULT_SPECS, RESNET_BASIC, BlockSpec, attach_specs,
                              model_specs)

NODES = ("in", "pre", "sum", "post")


def small_convnext(seed: int = 0) -> nn.Module:
    """A torchvision ConvNeXt with three small stages (2, 1, 2 blocks); layer scale 0.5 so
    that Pre is not negligible next to In."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ConvNeXt([CNBlockConfig(16, 32, 2), CNBlockConfig(32, 64, 1), CNBlockConfig(64, None, 2)],
                         layer_scale=0.5, num_classes=5)
    return model.eval()


@pytest.fixture(scope="module")
def convnext() -> nn.Module:
    return small_convnext()


@pytest.fixture()
def x() -> torch.Tensor:
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))


def hook_convnext(model: nn.Module, images: torch.Tensor, block_path: str) -> dict[str, torch.Tensor]:
    """In, Pre and Post of a CNBlock with plain PyTorch hooks (Pre cloned before the add)."""
    block = model.get_submodule(block_path)
    seen = {}
    handles = [
        block.register_forward_pre_hook(lambda m, a: seen.__setitem__("in", a[0].clone())),
        block.stochastic_depth.register_forward_hook(lambda m, a, o: seen.__setitem__("pre", o.clone())),
        block.register_forward_hook(lambda m, a, o: seen.__setitem__("post", o.clone())),
    ]
    try:
        with torch.no_grad():
            model(images)
    finally:
        for handle in handles:
            handle.remove()
    return seen


# --------------------------------------------------------------------------- ConvNeXt

def test_convnext_blocks_names_and_sites(convnext):
    blocks = rsi.residual_blocks(convnext)
    assert [b.name for b in blocks] == ["1.0", "1.1", "2.0", "3.0", "3.1"]
    assert [b.path for b in blocks] == ["features.1.0", "features.1.1", "features.3.0", "features.5.0",
                                        "features.5.1"]
    assert [b.channels for b in blocks] == [16, 16, 32, 64, 64]
    assert [b.index for b in blocks] == list(range(5))
    for block in blocks:
        assert block.family == "convnext" and block.kind == "CNBlock" and block.activation == "identity"
        assert block.site("in") == rsi.NodeSite(block.path, "input")
        assert block.site("pre") == rsi.NodeSite(f"{block.path}.stochastic_depth", "output")
        assert block.site("post") == rsi.NodeSite(block.path, "output")
        assert block.order("in") < block.order("pre") < block.order("sum") < block.order("post")


def test_torchvision_convnext_tiny_has_18_blocks_by_stage():
    with torch.device("meta"):  # the structure only: no 28M random weights
        model = torchvision.models.convnext_tiny()
    blocks = rsi.residual_blocks(model)
    assert len(blocks) == 3 + 3 + 9 + 3
    assert [b.name for b in blocks][:4] == ["1.0", "1.1", "1.2", "2.0"] and blocks[-1].name == "4.2"
    assert {b.name: b.path for b in blocks}["3.8"] == "features.5.8"
    assert [b.channels for b in blocks if b.name.endswith(".0")] == [96, 192, 384, 768]


def test_convnext_post_equals_in_plus_pre_every_block(convnext, x):
    acts = rsi.capture(convnext, x, nodes=NODES, center=False)
    for block in rsi.residual_blocks(convnext):
        i, p, s, o = (acts[(block.name, n)] for n in NODES)
        assert not torch.equal(p, o), f"Pre of {block.name} aliases Post (not cloned)"
        assert p.abs().max() > 1e-3, "Pre is not negligible with layer scale 0.5"
        assert torch.equal(o, i + p), block.name  # the block's own in-place add, bit for bit
        assert torch.equal(s, o), "no activation: Sum is Post"


def test_convnext_capture_equals_raw_hooks(convnext, x):
    acts = rsi.capture(convnext, x, nodes=("in", "pre", "post"), center=False)
    for block in rsi.residual_blocks(convnext):
        reference = hook_convnext(convnext, x, block.path)
        for node in ("in", "pre", "post"):
            assert torch.equal(acts[(block.name, node)], reference[node]), (block.name, node)
    centre = rsi.capture(convnext, x, blocks=["2.0"], nodes=("pre",))[("2.0", "pre")]
    full = acts[("2.0", "pre")]
    assert torch.equal(centre, full[:, :, full.shape[2] // 2, full.shape[3] // 2])


def test_convnext_ablation_sum_is_post_and_matches_hooks(convnext, x):
    channels, values = [1, 7], [0.5, -1.5]
    post = rsi.ablate(convnext, x, block="2.0", channels=channels, values=values, node="post")
    total = rsi.ablate(convnext, x, block="2.0", channels=channels, values=values, node="sum")
    assert torch.equal(post, total), "identity activation: patching Sum is patching Post"
    block = convnext.get_submodule("features.3.0")

    def overwrite(module, args, out):
        out = out.clone()
        out[:, channels] = torch.tensor(values)[None, :, None, None]
        return out

    for module, node in ((block, "post"), (block.stochastic_depth, "pre")):
        handle = module.register_forward_hook(overwrite)
        try:
            with torch.no_grad():
                expected = convnext(x)
        finally:
            handle.remove()
        got = rsi.ablate(convnext, x, block="2.0", channels=channels, values=values, node=node)
        assert torch.equal(got, expected), node
    with torch.no_grad():
        assert not torch.equal(post, convnext(x))


def test_convnext_model_unchanged(x):
    model = small_convnext(1)
    rsi.wrap(model)
    before = model_state(model)
    rsi.capture(model, x, nodes=NODES)
    rsi.ablate(model, x, block="3.1", channels=[0], values=0.0, node="sum")
    assert_same_state(before, model_state(model))


def test_convnext_criteria_and_feature_visualisation(convnext):
    """The scan's two steps on ConvNeXt: FZs of In and Pre of block 2.0 (few steps), then
    Eq. (1)/(2) from them; the table's values are the centre neurons capture reads."""
    channels = [0, 3, 5]
    config = FeatureVizConfig(image_size=32, steps=3, jitter=0, channels_per_batch=3)
    fz_in = visualize(convnext, "2.0", "in", channels, config)
    fz_pre = visualize(convnext, "2.0", "pre", channels, config)
    assert fz_in.images.shape == (3, 3, 32, 32) and torch.isfinite(fz_pre.history).all()
    x_in, x_pre = rsi.normalize(fz_in.images, convnext), rsi.normalize(fz_pre.images, convnext)
    method = ScaleInvariance(convnext, "2.0")
    result = method.evaluate((x_in, x_pre), channels=channels)
    assert result.margins.shape == (3, 2)
    table = result.table()
    assert list(table["channel"]) == channels
    acts = rsi.capture(convnext, x_in, blocks=["2.0"], nodes=("pre", "post"))
    rows = torch.arange(3)
    torch.testing.assert_close(torch.tensor(table["pre_in"].tolist()),
                               acts[("2.0", "pre")][rows, channels], rtol=1e-5, atol=1e-6)
    # the FZ of Pre drives Pre as it was optimised to
    assert torch.allclose(fz_pre.activations, rsi.capture(convnext, x_pre, blocks=["2.0"], nodes=("pre",))[
        ("2.0", "pre")][rows, channels], rtol=1e-4, atol=1e-5)


def test_scan_on_convnext(convnext, tmp_path):
    """The paper's scan on a random-init ConvNeXt: FZs (few steps) -> Eq. (1)/(2) per channel;
    the table's Pre values are what capture reads on the cached In FZs."""
    fast = FeatureVizConfig(image_size=32, steps=2, jitter=0, channels_per_batch=4)
    config = ScanConfig(featureviz=fast, channels=[0, 1, 2, 3], cache_dir=tmp_path)
    before = model_state(convnext)
    table = scan(convnext, ["1.1", "3.0"], config, progress=False)
    assert_same_state(before, model_state(convnext))
    assert list(table["block"].unique()) == ["1.1", "3.0"] and len(table) == 8
    assert table["passes"].dtype == bool
    assert ((table["eq1"] & table["eq2"]) == table["passes"]).all()
    # the table's values are capture's centre neurons on the FZs the scan cached
    fz_in = render(convnext, "3.0", "in", [0, 1, 2, 3], fast, cache_dir=tmp_path, progress=False)
    fz_pre = render(convnext, "3.0", "pre", [0, 1, 2, 3], fast, cache_dir=tmp_path, progress=False)
    assert fz_in.computed == [] and fz_pre.computed == [], "the scan rendered and cached them"
    rows, channels = table[table["block"] == "3.0"], torch.arange(4)
    on_in = rsi.capture(convnext, rsi.normalize(fz_in.images, convnext), blocks=["3.0"], nodes=("pre", "post"))
    on_pre = rsi.capture(convnext, rsi.normalize(fz_pre.images, convnext), blocks=["3.0"], nodes=("post",))
    torch.testing.assert_close(torch.tensor(rows["pre_in"].tolist()), on_in[("3.0", "pre")][channels, channels],
                               rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(torch.tensor(rows["post_pre"].tolist()),
                               on_pre[("3.0", "post")][channels, channels], rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- a hand-built family

class Doubler(nn.Module):
    """post = relu(x + 2x): the branch is a 1x1 conv with weight 2 * I."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.branch = nn.Conv2d(channels, channels, 1, bias=False)
        with torch.no_grad():
            self.branch.weight.copy_(2 * torch.eye(channels)[:, :, None, None])
        self.norm = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.norm(self.branch(x)))


def toy_model() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Sequential(Doubler(4), Doubler(4)),
                         nn.Sequential(Doubler(4)), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)).eval()


TOY = BlockSpec(family="doubler", block_types=(Doubler,), pre="norm", channels="branch.in_channels")


def test_custom_spec_known_answer(x):
    model = toy_model()
    with pytest.raises(ValueError, match="no residual block"):
        rsi.residual_blocks(model)
    assert attach_specs(model, [TOY]) is model and model_specs(model) == (TOY,)
    blocks = rsi.residual_blocks(model)
    assert [(b.name, b.path, b.family, b.channels) for b in blocks] == [
        ("1.0", "1.0", "doubler", 4), ("1.1", "1.1", "doubler", 4), ("2.0", "2.0", "doubler", 4)]
    acts = rsi.capture(model, x, nodes=NODES, center=False)
    for block in blocks:
        i, p, s, o = (acts[(block.name, n)] for n in NODES)
        assert torch.equal(p, 2 * i)  # the known branch
        assert torch.equal(s, i + p) and torch.equal(o, torch.relu(i + p))
    # the sum ablation goes through ReLU, as the spec's activation says
    got = rsi.ablate(model, x, block="1.1", channels=[2], values=-3.0, node="sum")
    expected_post = rsi.ablate(model, x, block="1.1", channels=[2], values=0.0, node="post")
    assert torch.equal(got, expected_post)


def test_spec_argument_overrides_model_specs(resnet18):
    assert [b.name for b in rsi.residual_blocks(resnet18, specs=[RESNET_BASIC])][:2] == ["1.0", "1.1"]
    with pytest.raises(ValueError, match="no residual block"):
        rsi.residual_blocks(resnet18, specs=[CONVNEXT])
    assert model_specs(resnet18) == DEFAULT_SPECS


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(family="", block_types=(Doubler,), pre="norm", channels="branch.in_channels"), ValueError, "family"),
    (dict(family="f", block_types=(int,), pre="norm", channels="branch.in_channels"), TypeError, "nn.Module"),
    (dict(family="f", block_types=(Doubler,), pre="", channels="branch.in_channels"), ValueError, "Pre"),
    (dict(family="f", block_types=(Doubler,), pre="norm", channels="c", activation="gelu"), ValueError,
     "valid: relu, identity"),
    (dict(family="f", block_types=(Doubler,), pre="norm"), ValueError, "channels"),
    (dict(family="f", block_types=(Doubler,), pre="norm", channels="c", name_pattern=r"(\d+)"), ValueError,
     "two groups"),
])
def test_bad_specs(kwargs, error, match):
    with pytest.raises(error, match=match):
        BlockSpec(**kwargs)


def test_spec_naming_missing_modules():
    model = toy_model()
    attach_specs(model, [BlockSpec(family="f", block_types=(Doubler,), pre="bn9", channels="branch.in_channels")])
    with pytest.raises(ValueError, match="no module 'bn9'"):
        rsi.residual_blocks(model)
    attach_specs(model, [BlockSpec(family="f", block_types=(Doubler,), pre="norm", channels="branch.nope")])
    with pytest.raises(ValueError, match="'branch.nope'"):
        rsi.residual_blocks(model)
    with pytest.raises(TypeError, match="BlockSpec"):
        attach_specs(model, ["resnet"])
    with pytest.raises(ValueError, match="no spec"):
        attach_specs(model, [])


# --- issue 13 item 20: a spec says which instances are residual (MobileNetV2) ---

def _mobilenet_v2(seed: int = 0) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return torchvision.models.mobilenet_v2(weights=None, num_classes=7).eval()


def _hook_inverted_residual(model: nn.Module, x: torch.Tensor, path: str) -> dict[str, torch.Tensor]:
    """In (block input), Pre (output of its ``conv`` branch) and Post read with raw hooks."""
    block = model.get_submodule(path)
    seen: dict[str, torch.Tensor] = {}
    handles = [block.register_forward_pre_hook(lambda m, a: seen.__setitem__("in", a[0].clone())),
               block.conv.register_forward_hook(lambda m, a, o: seen.__setitem__("pre", o.clone())),
               block.register_forward_hook(lambda m, a, o: seen.__setitem__("post", o.clone()))]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return seen


def test_mobilenet_v2_only_blocks_with_a_skip_and_capture_equals_raw_hooks():
    from torchvision.models.mobilenetv2 import InvertedResidual

    from rsi_plugin.core.specs import MOBILENET_V2

    model = _mobilenet_v2()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    with pytest.raises(ValueError, match="no residual block"):
        rsi.residual_blocks(model)          # not searched by default: a clear error
    before = model_state(model)
    attach_specs(model, [MOBILENET_V2])
    blocks = rsi.residual_blocks(model)
    expected = [path for path, m in model.named_modules() if isinstance(m, InvertedResidual) and m.use_res_connect]
    assert [b.path for b in blocks] == expected and len(expected) == 10
    assert any(isinstance(m, InvertedResidual) and not m.use_res_connect for m in model.modules())
    acts = rsi.capture(model, x, blocks="all", nodes=NODES, center=False)
    for block in blocks:
        reference = _hook_inverted_residual(model, x, block.path)
        for node in ("in", "pre", "post"):
            assert torch.equal(acts[(block.name, node)], reference[node]), (block.name, node)
        assert torch.equal(acts[(block.name, "post")], reference["in"] + reference["pre"])
        assert torch.equal(acts[(block.name, "sum")], acts[(block.name, "post")])
    assert_same_state(before, model_state(model))


def test_without_the_predicate_the_skipless_blocks_break_capture():
    """The same spec without ``residual`` takes every InvertedResidual for a residual block,
    and the ones without a skip cannot be read as In + Pre (the predicate is what fixes it)."""
    from rsi_plugin.core.specs import MOBILENET_V2

    model = _mobilenet_v2()
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    spec = BlockSpec(**{**MOBILENET_V2.__dict__, "residual": None})
    assert len(rsi.residual_blocks(model, specs=[spec])) == 17
    attach_specs(model, [spec])
    with pytest.raises(RuntimeError, match="must match the size"):
        rsi.capture(model, x, blocks="all", nodes=("sum",))


def test_residual_predicate_must_be_callable():
    with pytest.raises(TypeError, match="residual must be a callable"):
        BlockSpec(family="f", block_types=(nn.Conv2d,), pre="x", channels="out_channels", residual=True)
