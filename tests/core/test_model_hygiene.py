"""What rsi calls leave on the caller's model: it still pickles, saves and deep-copies after
every public call (and the copies work), and analyses of a model in train mode run in eval
mode and give the model back in its own mode with its BatchNorm buffers untouched."""

from __future__ import annotations

import copy
import io
import pickle

import pytest
import torch
from rsi_plugin.testing.state import assert_same_state, model_state
from rsi_plugin.testing.models import INPUT_SIZE, small_resnet

import rsi_plugin as rsi
from rsi_plugin.criteria.captum import ScaleInvariance
from rsi_plugin.featureviz.optimize import FeatureVizConfig

BLOCK = "2.1"
FZ = FeatureVizConfig(steps=2, image_size=32, jitter=0, channels_per_batch=4)


def _x(n=2, seed=0):
    return torch.randn(n, 3, INPUT_SIZE, INPUT_SIZE, generator=torch.Generator().manual_seed(seed))


def _lens(model, tmp_path):
    pytest.importorskip("transformer_lens")  # an optional extra: the others run without it
    return rsi.hooked(model).run_with_cache(_x())


CALLS = {
    "capture": lambda m, tmp: rsi.capture(m, _x(), blocks=[BLOCK]),
    "ablate": lambda m, tmp: rsi.ablate(m, _x(), BLOCK, [0, 3], 0.0),
    "node_gradient": lambda m, tmp: rsi.node_gradient(m, _x(), BLOCK, "pre", [0, 1]),
    "attribute": lambda m, tmp: ScaleInvariance(m, BLOCK).attribute((_x(16), _x(16, 1))),
    "scan": lambda m, tmp: rsi.scan(m, [BLOCK], rsi.ScanConfig(featureviz=FZ, channels=[0, 1], cache_dir=tmp),
                                     progress=False),
    "render": lambda m, tmp: rsi.render(m, BLOCK, "pre", [0, 1], FZ, cache_dir=tmp, progress=False),
    "capture_remote_local": lambda m, tmp: rsi.capture(m, _x(), blocks=[BLOCK], remote="local"),
    "lens": _lens,
}


def _round_trips(model):
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    yield "torch.save", torch.load(buffer, weights_only=False)
    yield "pickle", pickle.loads(pickle.dumps(model))
    yield "deepcopy", copy.deepcopy(model)


@pytest.mark.parametrize("call", list(CALLS))
def test_model_pickles_and_copies_after_each_public_call(call, tmp_path):
    model = small_resnet(seed=3)
    x = _x(3, seed=7)
    CALLS[call](model, tmp_path)
    expected = rsi.capture(model, x, blocks=[BLOCK], nodes=("in", "pre", "post"))
    for how, copied in _round_trips(model):
        assert copied is not model
        assert copied.__dict__.get("_rsi_nnsight") is None, how  # the wrapper is not carried over
        for key, value in model.state_dict().items():
            assert torch.equal(copied.state_dict()[key], value), (how, key)
        got = rsi.capture(copied, x, blocks=[BLOCK], nodes=("in", "pre", "post"))  # a copy gets its own wrapper
        for key in expected:
            assert torch.equal(got[key], expected[key]), (how, key)
        with torch.no_grad():
            assert torch.equal(copied(x), model(x)), how
    # the original still works and still reuses its own wrapper
    assert rsi.wrap(model) is rsi.wrap(model)
    assert torch.equal(rsi.capture(model, x, blocks=[BLOCK])[(BLOCK, "post")], expected[(BLOCK, "post")])


def test_deep_copy_then_both_used_alternately():
    model = small_resnet(seed=4)
    x = _x(2, seed=2)
    first = rsi.capture(model, x, blocks=[BLOCK])
    twin = copy.deepcopy(model)
    with torch.no_grad():
        twin.layer2[1].bn2.bias.add_(1.0)  # the copy is independent of the original
    changed = rsi.capture(twin, x, blocks=[BLOCK])
    again = rsi.capture(model, x, blocks=[BLOCK])
    assert torch.equal(again[(BLOCK, "post")], first[(BLOCK, "post")])
    assert not torch.equal(changed[(BLOCK, "post")], first[(BLOCK, "post")])
    assert rsi.wrap(twin) is not rsi.wrap(model) and rsi.wrap(twin)._module is twin


# ------------------------------------------------------------------ train mode

def _train_mode_model():
    model = small_resnet(seed=5)
    model.train()
    model.layer1[0].bn1.eval()  # a mixed model: each submodule's own flag must come back
    return model


def test_scale_invariance_on_a_train_mode_model_equals_eval_and_restores_mode():
    model = _train_mode_model()
    before = model_state(model)
    x_in, x_pre = _x(16), _x(16, 1)
    scores = ScaleInvariance(model, BLOCK).attribute((x_in, x_pre))
    assert_same_state(before, model_state(model))  # BatchNorm buffers and every .training flag
    reference = copy.deepcopy(model).eval()
    torch.testing.assert_close(scores, ScaleInvariance(reference, BLOCK).attribute((x_in, x_pre)), rtol=0, atol=0)


def test_scan_on_a_train_mode_model_equals_eval_and_restores_mode(tmp_path):
    model = _train_mode_model()
    before = model_state(model)
    config = rsi.ScanConfig(featureviz=FZ, channels=[0, 2])
    table = rsi.scan(model, [BLOCK], config, progress=False)
    assert_same_state(before, model_state(model))
    reference = rsi.scan(copy.deepcopy(model).eval(), [BLOCK], config, progress=False)
    for column in ("pre_in", "pre_scaled", "post_in", "post_pre"):
        assert table[column].tolist() == reference[column].tolist(), column


def test_train_mode_is_restored_when_the_call_raises():
    model = _train_mode_model()
    before = model_state(model)
    with pytest.raises(ValueError):
        ScaleInvariance(model, BLOCK).attribute((_x(3), _x(3)))  # 3 images for 16 channels
    assert_same_state(before, model_state(model))
