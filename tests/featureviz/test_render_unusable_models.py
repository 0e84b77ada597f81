"""Models and inputs render and capture cannot run (issue 21 item 12): one RSIError each,
whose message says what to do, never the raw dtype or meta-device RuntimeError of torch."""

from __future__ import annotations

import copy

import pytest
import torch

import rsi_plugin as rsi
from rsi_plugin.errors import InputTypeError, RSIError
from rsi_plugin.featureviz.optimize import FeatureVizConfig

CONFIG = FeatureVizConfig(steps=2, image_size=32, jitter=0, channels_per_batch=2)


@pytest.fixture(scope="module")
def tiny():
    return rsi.load_model("tiny")


@pytest.mark.parametrize("dtype", [torch.float16, torch.float64, torch.bfloat16])
def test_render_on_a_model_of_another_dtype_says_how_to_convert_it(tiny, dtype, tmp_path):
    model = copy.deepcopy(tiny).to(dtype)
    for call in (lambda: rsi.render(model, "2.1", "pre", [0], CONFIG, progress=False, cache_dir=tmp_path),
                 lambda: rsi.visualize(model, "2.1", "pre", [0], CONFIG)):
        with pytest.raises(InputTypeError) as caught:
            call()
        message = str(caught.value)
        assert f"the model's weights are {dtype}" in message and "model.float()" in message, message
        assert "torch.float32" in message and "\n" not in message, message
    assert list(tmp_path.rglob("*.pt")) == []


def test_render_on_a_model_on_the_meta_device_says_it_has_no_weights(tiny):
    model = copy.deepcopy(tiny).to("meta")
    with pytest.raises(RSIError, match=r"the model is on the meta device \(it holds no weights\)"):
        rsi.render(model, "2.1", "pre", [0], CONFIG, progress=False)


@pytest.mark.parametrize("entry", ["capture", "ablate"])
def test_images_on_the_meta_device_are_refused(tiny, entry):
    x = torch.rand(2, 3, 32, 32).to("meta")
    with pytest.raises(RSIError, match=r"images are on the meta device \(they hold no data\)"):
        if entry == "capture":
            rsi.capture(tiny, x, blocks=["2.1"])
        else:
            rsi.ablate(tiny, x, "2.1", [0])
