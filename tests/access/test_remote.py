"""Remote-ready traces: every trace of the library under remote="local" (nnsight's serialise /
hide local modules / deserialise / run path) gives the local numbers; remote=True without an
API key fails before any network use; model keys round-trip; node_gradient (the feature
visualisation step) against plain autograd with hooks."""

from __future__ import annotations

import logging
import socket

import nnsight
import pytest
import torch
import torchvision
from rsi_plugin.testing.state import assert_same_state, model_state
from nnsight.intervention.backends.local import LocalSimulationBackend
from nnsight.intervention.backends.remote import RemoteBackend
from nnsight.modeling.mixins.remotable import Remotable
from torch import nn
from torchvision.models.convnext import CNBlockConfig, ConvNeXt

import rsi_plugin as rsi
from rsi_plugin.criteria.captum import ScaleInvariance
from rsi_plugin.core.data import validation_loader
from rsi_plugin.ablation.means import ablate_conditions, channel_means
from rsi_plugin.access.remote import (ModelKey, RemoteConfigError, VisionModel, check_remote, model_key,
                               needs_api_key, remote_ready)
from rsi_plugin.access.nnsight import node_gradient

NODES = ("in", "pre", "sum", "post")


def small_convnext() -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = ConvNeXt([CNBlockConfig(16, 32, 1), CNBlockConfig(32, None, 2)], layer_scale=0.5, num_classes=5)
    return model.eval()


@pytest.fixture(scope="module")
def convnext() -> nn.Module:
    return small_convnext()


@pytest.fixture()
def simulated(monkeypatch) -> list[int]:
    """Counts the traces that went through nnsight's LocalSimulationBackend."""
    calls = []
    original = LocalSimulationBackend.__call__

    def counting(self, tracer):
        calls.append(1)
        return original(self, tracer)

    monkeypatch.setattr(LocalSimulationBackend, "__call__", counting)
    return calls


@pytest.fixture()
def no_network(monkeypatch) -> list[tuple]:
    """Every attempt to open a connection is recorded and refused."""
    attempts = []

    def refuse(self, address, *args):
        attempts.append(address)
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(RemoteBackend, "request", lambda *a, **k: attempts.append("request"))
    monkeypatch.setattr(RemoteBackend, "submit", lambda *a, **k: attempts.append("submit"))
    return attempts


def _loader(model):
    images = torch.rand(4, 3, 73, 73, generator=torch.Generator().manual_seed(5))
    return validation_loader((images, torch.zeros(4, dtype=torch.long)), model, batch_size=2,
                             resize_size=73, input_size=64)


def _values(m, x):
    return torch.linspace(-1, 1, rsi.get_block(m, "3.1" if hasattr(m, "layer3") else "2.1").channels)


# Every trace the library runs: (name, models it applies to, call(model, x, **trace_kwargs))
TRACES = {
    "capture_full": lambda m, x, **kw: rsi.capture(m, x, nodes=NODES, center=False, **kw),
    "capture_centre_batched": lambda m, x, **kw: rsi.capture(m, x, blocks="all", nodes=("in", "pre"),
                                                             batch_size=1, **kw),
    **{f"ablate_{node}": (lambda node: lambda m, x, **kw: rsi.ablate(
        m, x, block="2.0", channels=[1, 5], values=[0.5, -1.0], node=node, **kw))(node) for node in NODES},
    **{f"node_gradient_{node}": (lambda node: lambda m, x, **kw: node_gradient(
        m, x, "2.0", node, [1, 5], **kw))(node) for node in NODES},
    "node_gradient_channel": lambda m, x, **kw: node_gradient(m, x, "2.0", "pre", [3, 3], objective="channel",
                                                              **kw),
    "ablate_conditions": lambda m, x, **kw: ablate_conditions(
        m, x, "3.1" if hasattr(m, "layer3") else "2.1", [[1, 2], [], [5]], values=_values(m, x), **kw),
    "ablate_conditions_sum": lambda m, x, **kw: ablate_conditions(
        m, x, "3.1" if hasattr(m, "layer3") else "2.1", [[0], [3, 4]], values=_values(m, x), node="sum", **kw),
    "channel_means": lambda m, x, **kw: channel_means(m, _loader(m), "2.0", **kw),
    "criteria": lambda m, x, **kw: ScaleInvariance(m, "2.0").attribute((x, x.flip(0)), channels=[0, 1], **kw),
}
CASES = ([("resnet18", name) for name in TRACES]
         + [("resnet50", name) for name in ("capture_full", "ablate_in", "node_gradient_sum")]
         + [("convnext", name) for name in ("capture_full", "ablate_sum", "node_gradient_pre",
                                            "ablate_conditions", "criteria")])


def _assert_same(a, b, where=""):
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _assert_same(a[key], b[key], f"{where}{key}")
    elif isinstance(a, (tuple, list)):
        assert len(a) == len(b), where
        for i, (u, v) in enumerate(zip(a, b)):
            _assert_same(u, v, f"{where}[{i}]")
    else:
        assert torch.equal(a, b), where


@pytest.mark.parametrize("model_name, trace", CASES)
def test_every_trace_same_under_remote_local(model_name, trace, request, images, simulated):
    model = request.getfixturevalue(model_name)
    local = TRACES[trace](model, images)
    assert not simulated
    remote = TRACES[trace](model, images, remote="local")
    assert simulated, "the trace did not go through nnsight's LocalSimulationBackend"
    _assert_same(local, remote)


def test_remote_local_leaves_the_model_unchanged(images):
    model = rsi.load_model("resnet18", seed=2)
    rsi.wrap(model)
    before = model_state(model)
    rsi.capture(model, images, blocks=["2.0"], nodes=NODES, remote="local")
    rsi.ablate(model, images, block="2.0", channels=[1], node="sum", remote="local")
    node_gradient(model, images, "2.0", "pre", [1, 2], remote="local")
    assert_same_state(before, model_state(model))


# --------------------------------------------------------------------------- remote=True / hosts

def test_remote_true_without_key_fails_before_any_network(resnet18, images, monkeypatch, no_network):
    monkeypatch.setattr(nnsight.CONFIG.API, "HOST", "https://api.ndif.us")
    monkeypatch.setattr(nnsight.CONFIG.API, "APIKEY", None)
    monkeypatch.delenv("NDIF_API_KEY", raising=False)
    before = model_state(resnet18)
    calls = [lambda: rsi.capture(resnet18, images, blocks=["2.1"], remote=True),
             lambda: rsi.ablate(resnet18, images, block="2.1", channels=[1], remote=True),
             lambda: node_gradient(resnet18, images, "2.1", "pre", [1, 2], remote=True)]
    for call in calls:
        with pytest.raises(RemoteConfigError, match="NDIF_API_KEY") as info:
            call()
        assert "Nothing was sent" in str(info.value) and "remote='local'" in str(info.value)
    # the wrapper's own trace refuses it too (before the with-block runs)
    envoy = rsi.wrap(resnet18)
    ran = []
    with pytest.raises(RemoteConfigError, match="API key"):
        with envoy.trace(images, remote=True):
            ran.append(1)
    assert ran == [] and no_network == []
    assert_same_state(before, model_state(resnet18))


def test_remote_with_key_but_no_model_identity_fails_before_sending(images, monkeypatch, no_network, tmp_path):
    monkeypatch.setattr(nnsight.CONFIG.API, "APIKEY", "test-key")
    bare = torchvision.models.resnet18().eval()  # no rsi_info: a server cannot know what to build
    with pytest.raises(ValueError, match="carries no rsi_info"):
        rsi.capture(bare, images, blocks=["2.1"], remote=True)
    path = tmp_path / "w.pth"
    torch.save(rsi.load_model("resnet18", seed=4).state_dict(), path)
    local_file = rsi.load_model("resnet18", weights=path)  # weights from a local file
    with pytest.raises(ValueError, match="local file"):
        rsi.ablate(local_file, images, block="2.1", channels=[0], remote="http://localhost:5001")
    assert no_network == []
    # a seeded random init records its seed, so it has a key a server can rebuild
    assert str(model_key(rsi.load_model("resnet18", seed=4))) == "torchvision:resnet18:random@4"


def test_backend_for_a_host_names_the_model_key(monkeypatch, caplog, no_network):
    monkeypatch.setattr(nnsight.CONFIG.API, "APIKEY", "test-key")
    model = VisionModel("torchvision:resnet18:random@3")
    backend = model._remote_backend("http://localhost:5001", True, None, False)
    assert isinstance(backend, RemoteBackend)
    assert backend.host == "http://localhost:5001" and backend.api_key == "test-key"
    assert backend.model_key == "rsi_plugin.access.remote.VisionModel:torchvision:resnet18:random@3"
    with caplog.at_level(logging.WARNING, logger="rsi_plugin.access.remote"):
        model.check_remote_run("https://api.ndif.us")  # what trace / session call before nnsight builds a backend
    assert "Hugging Face language models" in caplog.text
    assert no_network == [] and not model.dispatched, "building a backend loads nothing and sends nothing"


@pytest.mark.parametrize("host, public", [
    ("https://api.ndif.us", True), ("https://ndif.us", True), ("http://API.NDIF.US:443/x", True),
    ("http://127.0.0.1:8001", False), ("http://localhost:5001", False), ("https://ndif.us.example.org", False),
    ("https://notndif.us", False), ("https://lab.example.org:8001", False),
])
def test_api_key_rule_follows_the_host(host, public, monkeypatch, no_network):
    """Public NDIF (*.ndif.us) needs a key; a self-hosted URL, or remote=True pointed at one, does not."""
    monkeypatch.setattr(nnsight.CONFIG.API, "APIKEY", None)
    monkeypatch.delenv("NDIF_API_KEY", raising=False)
    assert needs_api_key(host) is public
    monkeypatch.setattr(nnsight.CONFIG.API, "HOST", host)
    for remote in (host, True):
        if public:
            with pytest.raises(RemoteConfigError, match="NDIF_API_KEY"):
                check_remote(remote)
        else:
            assert check_remote(remote) == host
    monkeypatch.setattr(nnsight.CONFIG.API, "APIKEY", "a-key")
    assert check_remote(host) == host and check_remote(True) == host
    assert no_network == []


@pytest.mark.parametrize("remote, error, match", [
    ("ftp://host", RemoteConfigError, "http"),
    ("localhost:5001", RemoteConfigError, "not valid"),
    (3, TypeError, "remote must be"),
])
def test_bad_remote_values(remote, error, match):
    with pytest.raises(error, match=match):
        check_remote(remote)
    assert check_remote("local") is None and check_remote(False) is None
    assert check_remote("https://my.server:5001") == "https://my.server:5001"


def test_plain_nnsight_wrapper_with_remote_is_a_clear_type_error(resnet18, images):
    plain = nnsight.NNsight(resnet18)
    with pytest.raises(TypeError, match="remote-ready wrapper"):
        rsi.capture(plain, images, blocks=["1.0"], remote="local")
    with pytest.raises(TypeError, match="cannot run remotely"):
        remote_ready(plain)


# --------------------------------------------------------------------------- keys and wrappers

def test_wrap_builds_one_remote_ready_nnsight(resnet18):
    envoy = rsi.wrap(resnet18)
    assert isinstance(envoy, VisionModel) and isinstance(envoy, nnsight.NNsight)
    assert isinstance(envoy, Remotable) and envoy._module is resnet18
    assert rsi.wrap(resnet18) is envoy and remote_ready(resnet18) is envoy and rsi.wrap(envoy) is envoy


def test_keyed_model_builds_on_meta_and_round_trips(images):
    key = "rsi_plugin.access.remote.VisionModel:torchvision:resnet18:random@3"
    model = Remotable.from_model_key(key)
    assert isinstance(model, VisionModel) and model.to_model_key() == key
    assert not model.dispatched and next(model._module.parameters()).device.type == "meta"
    params = sum(p.numel() for p in model._module.parameters()) + sum(b.numel() for b in model._module.buffers())
    assert VisionModel.estimate_bytes(key, "float32") == 4 * params
    # what NDIF's tooling passes when it mints a key or loads a model
    ndif_style = VisionModel("torchvision:resnet18:random@3", revision=None, trust_remote_code=True,
                             device_map="cpu", dispatch=False)
    assert ndif_style.to_model_key() == key and not ndif_style.dispatched
    reference = rsi.load_model("resnet18", seed=3)
    got = rsi.capture(model, images, blocks=["3.0"], nodes=NODES, remote="local")
    assert model.dispatched and model._module.rsi_info.weights == "random@3"
    _assert_same(got, rsi.capture(reference, images, blocks=["3.0"], nodes=NODES))
    assert str(model_key(model)) == "torchvision:resnet18:random@3"
    logits = rsi.ablate(remote_ready("torchvision:resnet18:random@3"), images, block="4.1", channels=[0])
    assert torch.equal(logits, rsi.ablate(reference, images, block="4.1", channels=[0]))


def test_enum_weights_key_from_the_hub_cache(tmp_path, monkeypatch, images):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    source = rsi.load_model("resnet18", seed=11)
    from rsi_plugin.core.models import hub_cache_path
    import torchvision

    cached = hub_cache_path(torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url)
    cached.parent.mkdir(parents=True)
    torch.save(source.state_dict(), cached)
    loaded = rsi.load_model("resnet18", weights="IMAGENET1K_V1", download=False)
    assert str(model_key(loaded)) == "torchvision:resnet18:IMAGENET1K_V1"
    keyed = VisionModel("torchvision:resnet18:IMAGENET1K_V1", dispatch=True)
    assert torch.equal(keyed._module.layer2[1].bn2.running_mean, source.layer2[1].bn2.running_mean)


def test_non_resnet_keys():
    key = ModelKey.parse("torchvision:convnext_tiny:IMAGENET1K_V1")
    assert key.seed is None and str(key) == "torchvision:convnext_tiny:IMAGENET1K_V1"
    meta = VisionModel("torchvision:convnext_tiny:random@1")
    assert [b.name for b in rsi.residual_blocks(meta)][-1] == "4.2"  # blocks known before any weight
    a = ModelKey.parse("torchvision:mobilenet_v3_small:random@2").build()
    b = ModelKey.parse("torchvision:mobilenet_v3_small:random@2").build()
    c = ModelKey.parse("torchvision:mobilenet_v3_small:random").build()
    assert all(torch.equal(u, v) for u, v in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.features[0][0].weight, c.features[0][0].weight)
    assert a.rsi_info.weights == "random@2" and c.rsi_info.weights == "random@0" and not a.training
    assert str(model_key(a)) == "torchvision:mobilenet_v3_small:random@2"


@pytest.mark.parametrize("text, match", [
    ("resnet18", "expected torchvision:<arch>:<weights>"),
    ("torchvision:resnet18", "expected"),
    ("hub:resnet18:random", "valid: torchvision, rsi"),
    ("torchvision:resnet9:random", "unknown torchvision model"),
    ("torchvision:resnet18:IMAGENET9", "valid: DEFAULT, IMAGENET1K_V1"),
    ("torchvision:resnet18:random@x", "random@<seed>"),
    ("rsi:small", "rsi:tiny"),
])
def test_bad_keys(text, match):
    with pytest.raises(ValueError, match=match):
        ModelKey.parse(text)


def test_models_without_a_remote_identity(tmp_path):
    plain = nn.Sequential(nn.Conv2d(3, 3, 1))
    with pytest.raises(ValueError, match="no rsi_info"):
        model_key(plain)
    source = rsi.load_model("resnet18", seed=1)
    torch.save(source.state_dict(), tmp_path / "mine.pth")
    with pytest.raises(ValueError, match="local file"):
        model_key(rsi.load_model("resnet18", weights=tmp_path / "mine.pth"))
    with pytest.raises(TypeError, match="model key string"):
        VisionModel(3)


# --------------------------------------------------------------------------- the FZ step

def _hook_gradient(model, x, block, node, channels, objective):
    """Reference: plain forward hooks and torch.autograd.grad."""
    seen, handles = {}, []
    unit = model.get_submodule(block.path)
    handles.append(model.get_submodule(block.pre_path).register_forward_hook(
        lambda m, a, o: seen.__setitem__("pre", o.clone())))
    if block.downsample_path:
        handles.append(model.get_submodule(block.downsample_path).register_forward_hook(
            lambda m, a, o: seen.__setitem__("in", o)))
    else:
        handles.append(unit.register_forward_pre_hook(lambda m, a: seen.__setitem__("in", a[0])))
    handles.append(unit.register_forward_hook(lambda m, a, o: seen.__setitem__("post", o)))
    try:
        start = x.clone().requires_grad_(True)
        model(start)
    finally:
        for handle in handles:
            handle.remove()
    act = seen["in"] + seen["pre"] if node == "sum" else seen[node]
    maps = act[torch.arange(len(channels)), torch.tensor(channels)]
    score = maps[:, maps.shape[1] // 2, maps.shape[2] // 2] if objective == "neuron" else maps.mean((1, 2))
    return score.detach(), torch.autograd.grad(score.sum(), start)[0]


@pytest.mark.parametrize("block, objective", [("2.0", "neuron"), ("3.1", "channel")])  # with, without downsample
@pytest.mark.parametrize("node", NODES)
def test_node_gradient_equals_hooks_and_autograd(resnet18, images, block, objective, node):
    target = rsi.get_block(resnet18, block)
    values, grad = node_gradient(resnet18, images, block, node, [4, 7], objective=objective)
    ref_values, ref_grad = _hook_gradient(resnet18, images, target, node, [4, 7], objective)
    torch.testing.assert_close(values, ref_values, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-4, atol=1e-7)
    assert grad.shape == images.shape
    assert all(p.grad is None for p in resnet18.parameters()), "no parameter gradient accumulated"


def test_node_gradient_is_nonzero_and_errors(resnet18, images):
    _, grad = node_gradient(resnet18, images, "2.0", "pre", [4, 7])
    assert grad.abs().sum() > 0
    with pytest.raises(ValueError, match="one channel per image"):
        node_gradient(resnet18, images, "2.0", "pre", [4])
    with pytest.raises(IndexError, match="128 channels"):
        node_gradient(resnet18, images, "2.0", "pre", [4, 128])
    with pytest.raises(ValueError, match="valid: neuron, channel"):
        node_gradient(resnet18, images, "2.0", "pre", [4, 5], objective="max")
    with pytest.raises(ValueError, match="valid nodes"):
        node_gradient(resnet18, images, "2.0", "mid", [4, 5])


# --------------------------------------------------------------------------- whole experiments in one request

def test_render_with_remote_is_one_session_per_batch_and_equals_local(simulated):
    from rsi_plugin.featureviz.optimize import FeatureVizConfig, render

    model = rsi.load_model("tiny")
    config = FeatureVizConfig(image_size=32, steps=4, channels_per_batch=2, seed=1)
    remote = render(model, "2.0", "pre", [0, 3, 5], config=config, progress=False, remote="local")
    assert len(simulated) == 2, "two batches of channels, one request each (not one per step)"
    local = render(model, "2.0", "pre", [0, 3, 5], config=config, progress=False)
    assert torch.equal(remote.images, local.images) and torch.equal(remote.activations, local.activations)
    assert all(torch.equal(a, b) for a, b in zip(remote.histories, local.histories))


def test_stacked_conditions_with_remote_are_one_session(simulated):
    from rsi_plugin.ablation.means import ablate_conditions
    from rsi_plugin.core.blocks import get_block, residual_blocks

    model = rsi.load_model("tiny")
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    values = torch.linspace(-1, 1, get_block(residual_blocks(model), "3.0").channels)
    conditions = [[], [1], [2, 3], [4]]
    remote = ablate_conditions(model, x, "3.0", conditions, values, max_stack=1, remote="local")
    assert len(simulated) == 1, "four stacks in one session"
    local = ablate_conditions(model, x, "3.0", conditions, values, max_stack=1)
    assert torch.equal(remote, local)
    for i, channels in enumerate(conditions):  # independent reference: one rsi.ablate per condition
        single = rsi.ablate(model, x, block="3.0", channels=channels, values=values[channels] if channels else 0.0)
        torch.testing.assert_close(local[i], single, rtol=1e-5, atol=1e-5)


def test_in_one_request_needs_a_remote_and_a_key(tmp_path, monkeypatch, no_network):
    from rsi_plugin.access.sessions import in_one_request
    from rsi_plugin.featureviz.engine import optimize_on_server

    model = rsi.load_model("tiny")
    with pytest.raises(ValueError, match="needs remote="):
        in_one_request(model, optimize_on_server, remote=None)
    bare = nn.Sequential(nn.Conv2d(3, 4, 3))
    with pytest.raises(ValueError, match="rsi_info"):
        in_one_request(bare, optimize_on_server, remote="http://127.0.0.1:8001")
    assert no_network == []
