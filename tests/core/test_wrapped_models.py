"""Models wrapped by ``nn.DataParallel``, ``DistributedDataParallel`` or ``torch.compile``
(issue 21 item 13): the library uses the module they wrap, so block names are the model's
own ("2.1", not "module.layer1.0") and the answers are those of the plain model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import rsi_plugin as rsi
from rsi_plugin.core.blocks import residual_blocks
from rsi_plugin.core.wrapped import unwrap


@pytest.fixture(scope="module")
def tiny():
    return rsi.load_model("tiny")


COMPILED: list[int] = []


def _compiled(model):
    # torch.compile wraps at once and compiles only on the first call of the wrapper, which
    # the library must never make (it runs the module inside): the backend counts compilations
    def backend(graph_module, example_inputs):
        COMPILED.append(1)
        return graph_module.forward

    return torch.compile(model, backend=backend)


@pytest.mark.parametrize("wrapper", [nn.DataParallel, _compiled], ids=["DataParallel", "compile"])
def test_wrapped_model_unwraps_to_the_model(tiny, wrapper):
    wrapped = wrapper(tiny)
    assert unwrap(wrapped) is tiny
    assert unwrap(wrapper(nn.DataParallel(tiny))) is tiny  # wrappers of wrappers
    assert [b.name for b in residual_blocks(wrapped)] == [b.name for b in residual_blocks(tiny)]


def test_render_on_a_compiled_model_uses_the_model(tiny):
    from rsi_plugin.featureviz.optimize import FeatureVizConfig

    config = FeatureVizConfig(steps=2, image_size=32, jitter=0, channels_per_batch=2)
    plain = rsi.render(tiny, "2.1", "pre", [0, 1], config, progress=False)
    wrapped = rsi.render(_compiled(nn.DataParallel(tiny)), "2.1", "pre", [0, 1], config, progress=False)
    torch.testing.assert_close(wrapped.images, plain.images)
    assert COMPILED == []


@pytest.mark.parametrize("wrapper", [nn.DataParallel, _compiled], ids=["DataParallel", "compile"])
def test_capture_on_a_wrapped_model_reads_the_models_blocks(tiny, wrapper):
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    x = rsi.normalize(x, tiny)
    expected = rsi.capture(tiny, x, blocks=["2.1"], nodes=["pre", "post"])
    got = rsi.capture(wrapper(tiny), x, blocks=["2.1"], nodes=["pre", "post"])
    assert got.keys() == expected.keys()
    for key in expected:
        torch.testing.assert_close(got[key], expected[key])
    assert COMPILED == []


def test_distributed_data_parallel_is_unwrapped_by_type(tiny):
    # a DDP needs a process group to build; what unwrap reads is its type and .module
    ddp = nn.parallel.DistributedDataParallel.__new__(nn.parallel.DistributedDataParallel)
    nn.Module.__init__(ddp)
    ddp.module = tiny
    assert unwrap(ddp) is tiny
