"""The TransformerLens view: canonical hook names, run_with_cache == capture at every node,
run_with_hooks ablation == ablate, no hooks left behind, no transformer-lens on import."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from rsi_plugin.testing.state import assert_same_state, model_state
from torchvision.models.convnext import CNBlockConfig, ConvNeXt

import rsi_plugin as rsi
from rsi_plugin.access import lens as lens
from rsi_plugin.access.lens import hook_name, hooked, parse_hook_name

NODES = ("in", "pre", "sum", "post")


def test_importing_rsi_plugin_does_not_import_transformer_lens():
    code = ("import sys, rsi_plugin, rsi_plugin.access.lens; rsi_plugin.capture; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'transformer_lens'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    assert rsi.lens.hook_name("2.1", "pre") == "blocks.2.1.hook_pre"  # usable without TL


def test_hook_names_from_one_function():
    assert hook_name("2.1", "in") == "blocks.2.1.hook_in"
    block = rsi.residual_blocks(rsi.load_model("resnet18"))[3]
    assert hook_name(block, "post") == "blocks.2.1.hook_post"
    for node in NODES:
        assert parse_hook_name(hook_name("3.0", node)) == ("3.0", node)
    with pytest.raises(ValueError, match="valid nodes"):
        hook_name("2.1", "mid")
    with pytest.raises(ValueError, match="blocks.<block>.hook_<node>"):
        parse_hook_name("blocks.2.1.hook_resid")


@pytest.fixture(scope="module")
def views(resnet18, resnet50):
    return {"resnet18": hooked(resnet18), "resnet50": hooked(resnet50)}


@pytest.mark.parametrize("model_name", ["resnet18", "resnet50"])
def test_run_with_cache_equals_capture_at_every_node(model_name, request, views, images):
    model, view = request.getfixturevalue(model_name), views[model_name]
    blocks = rsi.residual_blocks(model)
    assert sorted(view.hook_dict) == sorted(hook_name(b, n) for b in blocks for n in NODES)
    logits, cache = view.run_with_cache(images)
    with torch.no_grad():
        assert torch.equal(logits, model(images)), "the view computes the model"
    reference = rsi.capture(model, images, nodes=NODES, center=False)
    assert len(reference) == len(cache) == 4 * len(blocks)
    for (block, node), value in reference.items():
        assert torch.equal(cache[hook_name(block, node)], value), (block, node)


def test_run_with_cache_equals_capture_on_convnext(images):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = ConvNeXt([CNBlockConfig(16, 32, 1), CNBlockConfig(32, None, 2)], layer_scale=0.5,
                         num_classes=5).eval()
    _, cache = hooked(model).run_with_cache(images, names_filter=lambda name: not name.endswith("hook_sum"))
    reference = rsi.capture(model, images, nodes=("in", "pre", "post"), center=False)
    assert len(cache) == len(reference) == 9
    for (block, node), value in reference.items():
        assert torch.equal(cache[hook_name(block, node)], value), (block, node)


@pytest.mark.parametrize("block", ["3.0", "3.1"])  # with and without a downsample
@pytest.mark.parametrize("node", NODES)
def test_run_with_hooks_ablation_equals_ablate(resnet18, views, images, block, node):
    channels, values = [1, 9, 200], torch.tensor([0.5, -1.25, 2.0])

    def patch(value, hook):
        value[:, channels] = values[None, :, None, None]
        return value

    got = views["resnet18"].run_with_hooks(images, fwd_hooks=[(hook_name(block, node), patch)])
    expected = rsi.ablate(resnet18, images, block=block, channels=channels, values=values, node=node)
    assert torch.equal(got, expected)
    with torch.no_grad():
        assert not torch.equal(got, resnet18(images))


def test_hooks_removed_and_model_unchanged(images):
    model = rsi.load_model("resnet18", seed=5)
    before = model_state(model)
    view = hooked(model, blocks=["2.1", "4.0"])
    assert sorted(view.hook_dict) == sorted(hook_name(b, n) for b in ("2.1", "4.0") for n in NODES)
    view.run_with_cache(images)

    def boom(value, hook):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        view.run_with_hooks(images, fwd_hooks=[(hook_name("4.0", "pre"), boom)])
    assert_same_state(before, model_state(model))
    assert "name" not in model.layer2.__dict__, "TL's setup must not touch the model's modules"
    assert view.list_hooks() == {}
    with pytest.raises(ValueError, match="valid blocks"):
        hooked(model, blocks=["9.9"])
    with pytest.raises(ValueError, match="blocks with hook points: 2.1, 4.0"):
        view.hook_point("1.0", "pre")


def test_missing_transformer_lens_says_how_to_install(monkeypatch):
    lens.view_class.cache_clear()
    monkeypatch.setitem(sys.modules, "transformer_lens.hook_points", None)
    try:
        with pytest.raises(ImportError, match=r"rsi_plugin\[tl\]"):
            hooked(rsi.load_model("resnet18"))
    finally:
        lens.view_class.cache_clear()


# ----------------------------------------------------------------------------- TransformerLens aliases

ALIASES = {"resid_pre": "in", "branch": "pre", "resid_post": "post"}


def test_alias_names_map_to_the_canonical_nodes():
    assert lens.HOOK_ALIASES == ALIASES
    for alias, node in ALIASES.items():
        assert parse_hook_name(f"blocks.2.1.hook_{alias}") == ("2.1", node)
        assert lens.canonical_hook_name(f"blocks.2.1.hook_{alias}") == hook_name("2.1", node)
        assert hook_name("2.1", alias) == hook_name("2.1", node)
    assert lens.canonical_hook_name("blocks.3.0.hook_sum") == "blocks.3.0.hook_sum"  # today's names stay
    with pytest.raises(ValueError, match="one branch.*hook_branch"):
        parse_hook_name("blocks.2.1.hook_resid_mid")


def test_run_with_cache_returns_an_activation_cache_that_takes_aliases(resnet18, views, images):
    from transformer_lens.ActivationCache import ActivationCache

    view = views["resnet18"]
    reference = rsi.capture(resnet18, images, blocks=["2.1", "3.0"], nodes=NODES, center=False)
    wanted = ["blocks.2.1.hook_resid_pre", "blocks.3.0.hook_branch", "blocks.3.0.hook_resid_post"]
    _, cache = view.run_with_cache(images, names_filter=wanted)
    assert isinstance(cache, ActivationCache)
    assert sorted(cache.keys()) == sorted(["blocks.2.1.hook_in", "blocks.3.0.hook_pre", "blocks.3.0.hook_post"])
    assert torch.equal(cache["blocks.2.1.hook_resid_pre"], reference[("2.1", "in")])
    assert torch.equal(cache["resid_pre", "2.1"], reference[("2.1", "in")])
    assert torch.equal(cache["3.0", "branch"], reference[("3.0", "pre")])
    assert torch.equal(cache["blocks.3.0.hook_resid_post"], reference[("3.0", "post")])
    assert torch.equal(cache["3.0", "pre"], reference[("3.0", "pre")])
    _, by_function = view.run_with_cache(images, names_filter=lambda name: name.endswith("hook_resid_pre"))
    assert sorted(by_function.keys()) == sorted(hook_name(b, "in") for b in rsi.residual_blocks(resnet18))
    _, plain = view.run_with_cache(images, names_filter="blocks.2.1.hook_branch", return_cache_object=False)
    assert type(plain) is dict and list(plain) == ["blocks.2.1.hook_pre"]
    _, everything = view.run_with_cache(images)
    assert len(everything) == 4 * len(rsi.residual_blocks(resnet18))  # aliases are not cached twice


@pytest.mark.parametrize("alias", ["resid_pre", "branch", "resid_post"])
def test_run_with_hooks_by_alias_equals_ablate(resnet18, views, images, alias):
    channels = [1, 9]

    def patch(value, hook):
        value[:, channels] = 0.5
        return value

    got = views["resnet18"].run_with_hooks(images, fwd_hooks=[(f"blocks.3.1.hook_{alias}", patch)])
    expected = rsi.ablate(resnet18, images, block="3.1", channels=channels, values=0.5, node=ALIASES[alias])
    assert torch.equal(got, expected)
