"""End to end against a real, self-hosted NDIF server (``ndif`` 0.1.2 on the CPU).

Marker ``ndif``: deselected by the default test command, run by ``.ci/run`` (which fails if
it does not run) or with ``python -m pytest -m ndif tests/integration``. The module
provisions the server venv (cached under the user cache directory; the first run installs
~6 GB), moves this test process into a private network namespace (``unshare(CLONE_NEWNET)``,
then ``ip link set lo up``: Ray listens on all interfaces, so nothing of the stack may be
reachable from outside), starts the stack with ``rsi_plugin.serve``, deploys
``torchvision:resnet18:random@0`` and ``rsi:tiny`` and checks that remote results are
bitwise equal to local ones. The stack is stopped by PID when the module ends, also when a
test fails, and the teardown asserts that no process of it and no port is left.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import socket
import subprocess
import tempfile
import time

import pytest
import torch
from nnsight.intervention.backends.remote import RemoteBackend

import rsi_plugin as rsi
from rsi_plugin import serve
from rsi_plugin.criteria.captum import ScaleInvariance
from rsi_plugin.featureviz.optimize import FeatureVizConfig, render
from rsi_plugin.ablation.means import ablate_conditions
from rsi_plugin.core.blocks import get_block, residual_blocks

pytestmark = pytest.mark.ndif

NODES = ("in", "pre", "sum", "post")
CLONE_NEWNET = 0x40000000


def _enter_private_network() -> None:
    """Move this process into a new network namespace with only loopback, up."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        error = ctypes.get_errno()
        pytest.fail(f"unshare(CLONE_NEWNET) failed ({os.strerror(error)}): the NDIF tests start a Ray cluster, "
                    "which listens on every interface, so they run only in a private network namespace; run "
                    "them as root (CI does) or under `unshare -rn`", pytrace=False)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    with open("/proc/self/net/dev") as dev:  # this process's namespace (sysfs shows the mount's)
        interfaces = sorted(line.split(":")[0].strip() for line in dev.readlines()[2:])
    assert interfaces == ["lo"], f"the namespace should hold only loopback, found {interfaces}"


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def stack():
    import nnsight

    began = time.monotonic()
    config = serve.ServeConfig(home=tempfile.mkdtemp(prefix="rsi-ndif-"), threads=1)
    serve.install(config)  # cached: a no-op once the venv is complete
    installed = time.monotonic()
    _enter_private_network()
    saved = {k: os.environ.get(k) for k in ("NO_PROXY", "no_proxy")}
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"
    logging_before = nnsight.CONFIG.APP.REMOTE_LOGGING
    nnsight.CONFIG.APP.REMOTE_LOGGING = False
    try:
        try:
            url = serve.start(config, cpu=True, timeout=900)
        except serve.ServeError as error:  # start stops what it began: one more try on a loaded machine
            print(f"\nNDIF stack did not start, retrying once: {error}")
            url = serve.start(config, cpu=True, timeout=900)
        started = time.monotonic()
        serve.deploy(["torchvision:resnet18:random@0", "rsi:tiny"], config, timeout=900)
        print(f"\nNDIF stack: install check {installed - began:.0f}s, start {started - installed:.0f}s, "
              f"deploy {time.monotonic() - started:.0f}s")
        yield config, url
    finally:
        stopping = time.monotonic()
        stopped = serve.stop(config)
        print(f"\nNDIF stack stopped in {time.monotonic() - stopping:.0f}s: {', '.join(stopped)}")
        nnsight.CONFIG.APP.REMOTE_LOGGING = logging_before
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        left = serve.stack_processes(config)
        ports = [p for p in list(config.ports().values()) + list(serve.stack.RAY_EXTRA_PORTS.values())
                 if _listening(p)]
        shutil.rmtree(config.home, ignore_errors=True)
        assert left == [], f"processes of the stack left running: {left}"
        assert ports == [], f"ports still listening after stop: {ports}"


@pytest.fixture()
def requests(monkeypatch):
    """Every request sent to a server (RemoteBackend calls) and every result download."""
    sent, downloads = [], []
    call, download = RemoteBackend.__call__, RemoteBackend.download_result

    def counting(self, tracer=None):
        sent.append(self.model_key)
        return call(self, tracer)

    def spying(self, url):
        downloads.append("object store" if isinstance(url, str) else "inline")
        return download(self, url)

    monkeypatch.setattr(RemoteBackend, "__call__", counting)
    monkeypatch.setattr(RemoteBackend, "download_result", spying)
    return sent, downloads


@pytest.fixture(scope="module")
def resnet18():
    return rsi.load_model("resnet18", seed=0)


@pytest.fixture(scope="module")
def tiny():
    return rsi.load_model("tiny")


def _images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=generator)


def _assert_equal(remote, local):
    assert remote.keys() == local.keys()
    for key in local:
        assert remote[key].shape == local[key].shape, key
        assert torch.equal(remote[key], local[key]), f"{key}: max diff {(remote[key] - local[key]).abs().max()}"


# --------------------------------------------------------------------------- capture / ablate

@pytest.mark.parametrize("which, blocks, size", [("resnet18", ["1.0", "2.0", "4.1"], 64), ("tiny", "all", 32)])
def test_capture_every_node_is_bitwise_local(stack, requests, which, blocks, size, request):
    _, url = stack
    model = request.getfixturevalue(which)
    x = _images(4, size)
    remote = rsi.capture(model, x, blocks=blocks, nodes=NODES, remote=url)
    local = rsi.capture(model, x, blocks=blocks, nodes=NODES)
    _assert_equal(remote, local)
    assert len(requests[0]) == 1, "one trace, one request"


@pytest.mark.parametrize("node", ["post", "sum"])
def test_ablate_is_bitwise_local(stack, resnet18, node):
    _, url = stack
    x = _images(4, 64, seed=1)
    channels, values = [0, 3, 7], torch.tensor([0.5, -1.0, 2.0])
    remote = rsi.ablate(resnet18, x, block="3.0", channels=channels, values=values, node=node, remote=url)
    local = rsi.ablate(resnet18, x, block="3.0", channels=channels, values=values, node=node)
    plain = rsi.ablate(resnet18, x, block="3.0", channels=[], node=node)
    assert torch.equal(remote, local)
    assert not torch.equal(local, plain), "the ablation must change the logits"


def test_scale_invariance_attribute_is_bitwise_local(stack, resnet18):
    _, url = stack
    x_in, x_pre = _images(3, 64, seed=2), _images(3, 64, seed=3)
    si = ScaleInvariance(resnet18, "2.1")
    remote = si.attribute((x_in, x_pre), channels=[0, 5, 9], remote=url)
    local = ScaleInvariance(resnet18, "2.1").attribute((x_in, x_pre), channels=[0, 5, 9])
    assert remote.shape == local.shape and torch.equal(remote, local)


# --------------------------------------------------------------------------- whole experiments in one request

def test_render_runs_a_batch_of_channels_in_one_request(stack, requests, resnet18):
    _, url = stack
    config = FeatureVizConfig(image_size=48, steps=6, channels_per_batch=3, seed=4)
    remote = render(resnet18, "2.0", "post", [1, 2, 3], config=config, progress=False, remote=url)
    assert requests[0] == [requests[0][0]], "the whole optimisation of a batch is one request"
    local = render(resnet18, "2.0", "post", [1, 2, 3], config=config, progress=False)
    assert torch.equal(remote.images, local.images)
    assert torch.equal(remote.activations, local.activations)
    assert all(torch.equal(a, b) for a, b in zip(remote.histories, local.histories))
    assert remote.histories[0].shape == (6,)


def test_stacked_ablation_conditions_run_in_one_request(stack, requests, resnet18):
    _, url = stack
    x = _images(3, 64, seed=5)
    block = get_block(residual_blocks(resnet18), "3.1")
    values = torch.linspace(-1, 1, block.channels)
    conditions = [[], [1], [2, 3], [4, 5, 6], [0]]
    remote = ablate_conditions(resnet18, x, "3.1", conditions, values, max_stack=2, remote=url)
    assert len(requests[0]) == 1, "three stacks, one request (a session)"
    local = ablate_conditions(resnet18, x, "3.1", conditions, values, max_stack=2)
    assert remote.shape == (5, 3, 1000) and torch.equal(remote, local)
    # independent reference: each condition as its own rsi.ablate
    for i, channels in enumerate(conditions):
        single = rsi.ablate(resnet18, x, block="3.1", channels=channels,
                            values=values[channels] if channels else 0.0)
        torch.testing.assert_close(local[i], single, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- transport and deployment

def test_large_upload_and_result_go_through_the_object_store(stack, requests, resnet18):
    """A 4.8 MB input (uploads over 1 MB need PYMOUNT off in the API) and a 12.8 MB result: over
    the 8 MiB that NDIF hands back inline (its redis pubsub cap), so it comes from the object store."""
    _, url = stack
    x = _images(8, 224, seed=6)
    assert x.numel() * x.element_size() > 1_000_000
    remote = rsi.capture(resnet18, x, blocks=["1.0", "1.1"], nodes=("post",), center=False, remote=url)
    local = rsi.capture(resnet18, x, blocks=["1.0", "1.1"], nodes=("post",), center=False)
    size = sum(v.numel() * v.element_size() for v in remote.values())
    assert size > 8 * 2 ** 20, size
    _assert_equal(remote, local)
    assert requests[1] == ["object store"], f"expected a download from the object store, got {requests[1]}"


def test_undeployed_key_is_deployed_on_first_request(stack):
    _, url = stack
    model = rsi.load_model("resnet18", seed=1)  # random@1: not deployed
    x = _images(2, 64, seed=7)
    remote = rsi.capture(model, x, blocks=["4.0"], nodes=("post",), remote=url)
    local = rsi.capture(model, x, blocks=["4.0"], nodes=("post",))
    _assert_equal(remote, local)


def test_bad_requests_are_clear_errors_and_the_server_stays_up(stack, requests, tiny):
    _, url = stack
    x = _images(2, 32, seed=8)
    with pytest.raises(ValueError, match="valid"):  # caught before anything is sent
        rsi.capture(tiny, x, blocks=["9.9"], remote=url)
    assert requests[0] == []
    envoy = rsi.wrap(tiny)
    with pytest.raises(Exception) as info:  # fails on the server: channel 10_000 does not exist
        with envoy.trace(x, remote=url):
            envoy.layer1.output[:, 10_000].save()
    assert "index" in str(info.value).lower(), str(info.value)[:2000]
    after = rsi.capture(tiny, x, blocks=["1.0"], nodes=("post",), remote=url)
    _assert_equal(after, rsi.capture(tiny, x, blocks=["1.0"], nodes=("post",)))


def test_bench_remote_cases_match_their_references(stack, resnet18):
    from rsi_plugin.apps.bench import REMOTE_CASES, _unwrapped_copy, bench, make_cases

    _, url = stack
    cases = make_cases(resnet18, _unwrapped_copy(resnet18), block="3.1", cases=list(REMOTE_CASES), remote=url)
    assert list(cases) == list(REMOTE_CASES)
    x = _images(2, 64, seed=9)
    for name, case in cases.items():
        got, want = case.run(x), case.reference(x)
        if isinstance(want, dict):
            assert all(torch.equal(got[k], want[k]) for k in want), name
        else:
            assert torch.equal(got, want), name
    frame = bench(resnet18, batches=[2], repeats=2, warmup=1, cases=["plain", *REMOTE_CASES], image_size=64,
                  progress=False, remote=url)
    assert list(frame.case) == ["plain", *REMOTE_CASES] and (frame.median_s > 0).all()
    assert frame.attrs["environment"]["remote"] == url


def test_status_lists_the_deployed_models(stack, capsys):
    from rsi_plugin.cli import main

    config, url = stack
    state = serve.status(config)
    assert state["running"] and state["connected"] and state["url"] == url
    assert all(info["alive"] for info in state["services"].values())
    assert set(state["services"]) == {"redis", "store", "ray", "api"}
    text = str(state["models"])
    assert "torchvision:resnet18:random@0" in text and "rsi:tiny:bundled" in text
    assert main(["serve", "status", "--home", str(config.home), "--venv", str(config.venv)]) == 0
    assert "connected" in capsys.readouterr().out
