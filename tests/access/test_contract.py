"""One contract for every reader of the residual nodes (issue 15).

Every reader — ``capture``, ``capture(remote="local")``, ``node_gradient``, the FZ reader
(``NodeProbe``), the Lucent objectives' reader (``NodeReader``), ``block_nodes`` in a user's
trace and the TransformerLens view — is run on every kind of residual block the library ships
a spec for (the specs table of :mod:`rsi_plugin.core.specs`: torchvision ``BasicBlock``,
``Bottleneck``, ConvNeXt's ``CNBlock``, MobileNetV2's ``InvertedResidual``) and on a custom
block described by ``BlockSpec(post=...)``, at every node, and must agree with an independent
reference: raw PyTorch hooks on module sites named by hand here
(:func:`rsi_plugin.testing.hooks_reference.hook_values`), not by the library's read plan.
"""

from __future__ import annotations

from functools import lru_cache

import pytest
import torch
from torch import nn
from torchvision.models.convnext import CNBlockConfig, ConvNeXt
from torchvision.models.mobilenetv2 import MobileNetV2
from torchvision.models.resnet import Bottleneck, ResNet

import rsi_plugin as rsi
from rsi_plugin.access.hooks import NodeProbe, relu_source
from rsi_plugin.access.lens import hook_name, hooked
from rsi_plugin.core import specs as specs_table
from rsi_plugin.core.specs import DEFAULT_SPECS, BlockSpec, attach_specs
from rsi_plugin.featureviz.lucent import NodeReader
from rsi_plugin.testing.hooks_reference import hook_values
from rsi_plugin.testing.models import randomize_norms, small_resnet

NODES = ("in", "pre", "sum", "post")
READERS = ("capture", "capture_remote_local", "node_gradient", "fz_reader", "lucent_reader", "block_nodes", "lens")
SIZE = 32


class PostBlock(nn.Module):
    """A residual block whose Post is not its output: ``tail(act(skip + branch(x)))``.

    The shortcut ``proj`` (when present) runs *before* the branch, and a 1x1 ``tail`` follows
    the activation, so Post must be read at ``act`` (``BlockSpec(post="act")``)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.branch = nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout))
        self.proj = nn.Conv2d(cin, cout, 1, bias=False) if cin != cout else None
        self.act = nn.ReLU()
        self.tail = nn.Conv2d(cout, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.proj(x) if self.proj is not None else x
        return self.tail(self.act(skip + self.branch(x)))


POST_SPEC = BlockSpec(family="postblock", block_types=(PostBlock,), pre="branch", shortcut="proj", post="act",
                      channels="tail.out_channels", shortcut_after_branch=False)

#: every spec the library ships (the table of :mod:`rsi_plugin.core.specs`), then the custom one;
#: a kind is named by its block class
SPECS: dict[str, BlockSpec] = {
    **{spec.block_types[0].__name__: spec for spec in vars(specs_table).values() if isinstance(spec, BlockSpec)},
    "PostBlock": POST_SPEC,
}
KINDS = tuple(SPECS)


def _model(kind: str) -> nn.Module:
    if kind == "BasicBlock":
        return small_resnet(width=4, num_classes=5, seed=3)
    if kind == "Bottleneck":
        return ResNet(Bottleneck, [1, 2, 1, 1], num_classes=5, width_per_group=4)  # thin branches
    if kind == "CNBlock":
        return ConvNeXt([CNBlockConfig(8, 16, 2), CNBlockConfig(16, None, 1)], num_classes=5)
    if kind == "InvertedResidual":  # residual where stride 1 and widths agree (all 8 wide): not features.2
        return MobileNetV2(num_classes=5, width_mult=0.25,
                           inverted_residual_setting=[[1, 8, 1, 1], [2, 8, 2, 2], [2, 16, 2, 1]])
    if kind == "PostBlock":
        return nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1),
                             nn.Sequential(PostBlock(8, 8), PostBlock(8, 12), PostBlock(12, 12)),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(12, 5))
    raise AssertionError(f"the specs table has a spec for {kind} blocks: give the contract a small model of them")


@lru_cache(maxsize=None)
def build(kind: str) -> nn.Module:
    """The small model of a block kind (seeded, eval mode, the kind's spec attached unless it is
    a default one; cached: readers leave it unchanged)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        model = randomize_norms(_model(kind), torch.Generator().manual_seed(3)).eval()
    return model if SPECS[kind] in DEFAULT_SPECS else attach_specs(model, [SPECS[kind]])


def reference_sites(kind: str, model: nn.Module, path: str) -> dict[str, tuple[str, str]]:
    """Where each node of the block at ``path`` is, named by hand for each kind."""
    block = model.get_submodule(path)
    if kind in ("BasicBlock", "Bottleneck"):
        return {"in": (f"{path}.downsample", "output") if block.downsample is not None else (path, "input"),
                "pre": (f"{path}.bn3" if kind == "Bottleneck" else f"{path}.bn2", "output"),
                "sum": (f"{path}.relu", "last_input"),  # the last ReLU call sees the sum
                "post": (path, "output")}
    if kind == "CNBlock":  # result = stochastic_depth(...); result += input: no activation
        return {"in": (path, "input"), "pre": (f"{path}.stochastic_depth", "output"),
                "sum": (path, "output"), "post": (path, "output")}
    if kind == "InvertedResidual":  # x + self.conv(x): no activation
        return {"in": (path, "input"), "pre": (f"{path}.conv", "output"), "sum": (path, "output"),
                "post": (path, "output")}
    assert kind == "PostBlock", kind
    return {"in": (f"{path}.proj", "output") if block.proj is not None else (path, "input"),
            "pre": (f"{path}.branch", "output"), "sum": (f"{path}.act", "input"), "post": (f"{path}.act", "output")}


def block_paths(kind: str) -> list[str]:
    """The blocks of a kind's model, found by class here (MobileNetV2's only where they add
    their input)."""
    return [path for path, m in build(kind).named_modules()
            if type(m).__name__ == kind and getattr(m, "use_res_connect", True)]


def reference(kind: str, x: torch.Tensor, path: str) -> dict[str, torch.Tensor]:
    model = build(kind)
    return hook_values(model, x, reference_sites(kind, model, path))


def images(n: int = 2, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def test_models_cover_what_the_contract_is_about():
    """Every spec of the specs table has a kind here; the library finds exactly the blocks
    listed by class; the kinds include blocks with a shortcut module run after the branch
    (ResNet), before it (PostBlock), none (ConvNeXt, MobileNetV2), instances of a block type
    that are not residual (MobileNetV2), and a Post that is not the block's output."""
    assert {"BasicBlock", "Bottleneck", "CNBlock", "InvertedResidual", "PostBlock"} <= set(KINDS)
    assert all(spec in SPECS.values() for spec in DEFAULT_SPECS)
    skipless = [m for m in build("InvertedResidual").modules() if type(m).__name__ == "InvertedResidual"
                and not m.use_res_connect]
    assert skipless and len(block_paths("InvertedResidual")) == 4
    for kind in KINDS:
        assert [b.path for b in rsi.residual_blocks(build(kind))] == block_paths(kind), kind
    resnet_downsample = [b for b in rsi.residual_blocks(build("BasicBlock")) if b.downsample_path]
    assert resnet_downsample and all(b.shortcut_after_branch for b in resnet_downsample)
    custom = rsi.residual_blocks(build("PostBlock"))
    assert [b.downsample_path for b in custom] == [None, "1.1.proj", None]
    assert all(not b.shortcut_after_branch and b.post_path == f"{b.path}.act" for b in custom)
    x = images()
    for path in block_paths("PostBlock"):
        model = build("PostBlock")
        ref = hook_values(model, x, {"post": (f"{path}.act", "output"), "out": (path, "output")})
        assert not torch.allclose(ref["post"], ref["out"]), "Post must differ from the block's output"
    for kind in KINDS:  # every node takes both signs somewhere, so ReLU vs identity is visible
        ref = reference(kind, x, block_paths(kind)[-1])
        assert (ref["sum"] < 0).any() and (ref["pre"] > 0).any(), kind


def _read_all(reader: str, kind: str, node: str, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """``block path -> value of node`` ([N, C, H, W]) by one reader."""
    model = build(kind)
    blocks = rsi.residual_blocks(model)
    if reader in ("capture", "capture_remote_local"):
        kwargs = {"remote": "local"} if reader == "capture_remote_local" else {}
        got = rsi.capture(model, x, blocks="all", nodes=[node], center=False, **kwargs)
        return {b.path: got[(b.name, node)] for b in blocks}
    if reader == "lens":
        _, cache = hooked(model).run_with_cache(x)
        return {b.path: cache[hook_name(b, node)] for b in blocks}
    if reader == "lucent_reader":  # the hooks of rsi.lucent's objectives: the whole forward runs
        readers = [NodeReader(model, b.name, node) for b in blocks]
        try:
            with torch.no_grad():
                model(x)
            return {b.path: r.value() for b, r in zip(blocks, readers)}
        finally:
            for r in readers:
                r.remove()
    if reader == "block_nodes":  # in a user's own trace, the blocks in execution order
        env = rsi.wrap(model)
        saved = {}
        with torch.no_grad(), env.trace(x):
            for b in blocks:
                saved[b.path] = rsi.block_nodes(env, b.name).get(node).save()
        return saved
    if reader == "fz_reader":
        out = {}
        for b in blocks:
            with torch.enable_grad(), NodeProbe(model, b.name, node, pre_activation=True) as probe:
                out[b.path] = probe(x).detach()
                behind = probe.pre_activation
            source = relu_source(blocks, b, node)
            assert (behind is None) == (source is None)
            if source is not None:  # the sum behind the node's ReLU, read in the same forward
                ref = reference(kind, x, source.path)
                torch.testing.assert_close(behind.detach(), ref["sum"])
                torch.testing.assert_close(out[b.path], torch.relu(ref["sum"]) if b.activation == "relu"
                                           else ref["sum"])
        return out
    raise ValueError(reader)


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("node", NODES)
@pytest.mark.parametrize("kind", KINDS)
def test_every_reader_agrees_with_raw_hooks(kind, node, reader):
    model = build(kind)
    x = images()
    with torch.no_grad():
        logits = model(x)
    if reader == "node_gradient":
        total = 0.0
        for block in rsi.residual_blocks(model):
            channels = [0, block.channels - 1]
            scores, grad = rsi.node_gradient(model, x, block.name, node, channels, objective="neuron")
            xr = x.clone().requires_grad_(True)
            with torch.enable_grad():
                act = reference(kind, xr, block.path)[node]
                h, w = act.shape[2] // 2, act.shape[3] // 2
                ref_scores = act[torch.arange(2), torch.tensor(channels), h, w]
                (ref_grad,) = torch.autograd.grad(ref_scores.sum(), xr)
            torch.testing.assert_close(scores, ref_scores.detach())
            torch.testing.assert_close(grad, ref_grad)
            total += float(grad.abs().sum())
        assert total > 0, "some gradient is not zero (a ReLU node may be 0 at one neuron)"
    else:
        got = _read_all(reader, kind, node, x)
        assert sorted(got) == sorted(block_paths(kind))
        for path, value in got.items():
            torch.testing.assert_close(value, reference(kind, x, path)[node], msg=lambda m: f"{path}: {m}")
    with torch.no_grad():
        assert torch.equal(model(x), logits), "a reader changed the model"


def test_post_site_of_a_spec_is_what_the_fz_and_the_criteria_read():
    """The bug of issue 15: the FZ reader read Post at the block's output while ``capture`` read
    the spec's ``post`` module; both now read the spec's site."""
    model = build("PostBlock")
    x = images()
    criteria = rsi.capture(model, x, nodes=["post"], center=False)
    for block in rsi.residual_blocks(model):
        with NodeProbe(model, block.name, "post") as probe, torch.no_grad():
            fz = probe(x)
        at_act = reference("PostBlock", x, block.path)["post"]
        block_output = hook_values(model, x, {"out": (block.path, "output")})["out"]
        torch.testing.assert_close(fz, criteria[(block.name, "post")])
        torch.testing.assert_close(fz, at_act)
        assert not torch.allclose(fz, block_output)


def test_inspect_checks_the_activation_of_each_spec():
    """``rsi inspect``'s identity is Post == activation(In + Pre): ReLU for ResNets, the
    identity for ConvNeXt (whose Post is not relu(In + Pre))."""
    from rsi_plugin.apps.inspect import IDENTITY_COLUMN, block_table

    x = images()
    table = block_table(build("CNBlock"), x)
    assert list(table["activation"]) == ["identity"] * 3 and table[IDENTITY_COLUMN].all()
    acts = rsi.capture(build("CNBlock"), x, nodes=("in", "pre", "post"), center=False)
    relu_error = max((acts[(b, "post")] - torch.relu(acts[(b, "in")] + acts[(b, "pre")])).abs().max().item()
                     for b in table["block"])
    assert relu_error > 1e-3, "the old relu check would have failed on ConvNeXt"
    custom = block_table(build("PostBlock"), x)
    assert custom[IDENTITY_COLUMN].all() and list(custom["post_path"]) == [
        "1.0.act.output", "1.1.act.output", "1.2.act.output"]
    basic = block_table(build("BasicBlock"), x)
    assert basic[IDENTITY_COLUMN].all() and set(basic["activation"]) == {"relu"}
