"""randomized_copy: an untrained copy initialised exactly as the constructor initialises it
(torchvision's ResNet / ConvNeXt loops, reset_parameters otherwise), whole or cascading from
the top down to a block; the input model, the global RNG and the FZ cache stay apart."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.models import resnet18
from torchvision.models.convnext import CNBlockConfig, ConvNeXt

from rsi_plugin.core.modelinfo import ModelInfo
from rsi_plugin.core.randomize import init_rule, randomized_copy, randomized_modules
from rsi_plugin.errors import RSIError, UnknownNameError
from rsi_plugin.featureviz.cache import model_fingerprint
from rsi_plugin.testing.models import small_resnet
from rsi_plugin.testing.state import assert_same_state, model_state
from rsi_plugin.zoo.model import TinyResNet


def _tiny_convnext() -> ConvNeXt:
    return ConvNeXt([CNBlockConfig(8, 16, 1), CNBlockConfig(16, None, 1)], num_classes=5)


def _assert_same_weights(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    different = [k for k in sa if not torch.equal(sa[k], sb[k])]
    assert not different, different


@pytest.mark.parametrize("build", [resnet18, lambda: TinyResNet(8, 10), _tiny_convnext],
                         ids=["resnet18", "tiny", "convnext"])
def test_equals_the_constructors_own_init_for_the_same_seed(build):
    torch.manual_seed(1234)
    reference = build()  # the constructor, under torch.manual_seed: the independent reference
    torch.manual_seed(7)
    trained = build()
    with torch.no_grad():  # "training": every parameter and running statistic moved
        for tensor in trained.state_dict().values():
            if tensor.is_floating_point():
                tensor.add_(0.5)
    before = model_state(trained)
    rng = torch.get_rng_state()
    copy = randomized_copy(trained, 1234)
    assert torch.equal(torch.get_rng_state(), rng)  # no global RNG side effect
    assert_same_state(before, model_state(trained))  # the input model untouched
    _assert_same_weights(copy, reference)
    assert not copy.training and all(not m.training for m in copy.modules())


def test_every_conv_bn_and_linear_is_reinitialised():
    model = small_resnet(width=8, seed=0)  # random BatchNorm statistics, rescaled fc: a "trained" state
    before = model_state(model)
    copy = randomized_copy(model, 1000)
    assert_same_state(before, model_state(model))
    assert init_rule(model) == "torchvision-resnet"
    trained = dict(model.named_modules())
    for name, m in copy.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            assert not torch.equal(m.weight, trained[name].weight), name
            assert m.weight.data_ptr() != trained[name].weight.data_ptr()
        if isinstance(m, nn.Conv2d):  # kaiming_normal_(fan_out, relu): std sqrt(2 / fan_out)
            fan_out = m.out_channels * m.kernel_size[0] * m.kernel_size[1]
            assert m.weight.std().item() == pytest.approx((2 / fan_out) ** 0.5, rel=0.35)
        if isinstance(m, nn.BatchNorm2d):
            assert torch.equal(m.weight, torch.ones_like(m.weight)) and torch.equal(m.bias, torch.zeros_like(m.bias))
            assert torch.equal(m.running_mean, torch.zeros_like(m.running_mean))
            assert torch.equal(m.running_var, torch.ones_like(m.running_var))
            assert int(m.num_batches_tracked) == 0
    # rsi_info kept (input size, statistics, classes), weights describing the init
    assert copy.rsi_info == ModelInfo(name="small", weights="random-init@seed=1000", input_size=32, resize_size=37,
                                      num_classes=10)
    # a different FZ-cache fingerprint than the trained model's; the same seed gives the same copy
    assert model_fingerprint(copy) != model_fingerprint(model)
    assert model_fingerprint(randomized_copy(model, 1000)) == model_fingerprint(copy)
    assert model_fingerprint(randomized_copy(model, 1001)) != model_fingerprint(copy)


def test_cascade_randomises_from_the_top_down_to_the_block_and_keeps_the_rest():
    model = small_resnet(width=8, seed=0)
    before = model_state(model)
    copy = randomized_copy(model, 5, cascade_to="3.0")
    assert_same_state(before, model_state(model))
    trained = model.state_dict()
    kept = ("conv1.", "bn1.", "layer1.", "layer2.")
    randomised = ("layer3.", "layer4.", "fc.")
    for key, value in copy.state_dict().items():
        if key.startswith(kept):
            assert torch.equal(value, trained[key]), key
        else:
            assert key.startswith(randomised), key
            if key.endswith(("weight", "running_mean", "running_var")):
                assert not torch.equal(value, trained[key]), key
    assert copy.rsi_info.weights == "cascade:3.0@seed=5 over random seed 0"
    assert model_fingerprint(copy) != model_fingerprint(model)
    names = randomized_modules(model, "3.0")
    assert names[0] == "layer3.0" and names[-1] == "fc" and "layer2.1.conv2" not in names
    assert randomized_modules(model) == [n for n, _ in model.named_modules()]
    # cascading to the first block keeps only the stem
    stem = randomized_copy(model, 5, cascade_to="1.0")
    assert torch.equal(stem.conv1.weight, model.conv1.weight) and not torch.equal(stem.fc.weight, model.fc.weight)


def test_other_models_use_each_modules_reset_parameters():
    torch.manual_seed(3)
    reference = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Linear(4, 2))
    trained = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Linear(4, 2))
    with torch.no_grad():
        trained[1].running_mean.fill_(3.0)
        trained[1].weight.fill_(2.0)
    assert init_rule(trained) == "reset_parameters"
    copy = randomized_copy(trained, 3)
    _assert_same_weights(copy, reference)
    assert copy.rsi_info.weights == "random-init@seed=3" and copy.rsi_info.name == "unknown"
    assert not hasattr(trained, "rsi_info")


def test_errors_name_what_is_valid():
    model = small_resnet(width=8, seed=0)
    with pytest.raises(UnknownNameError, match=r"unknown block '9\.9'; valid blocks: 1\.0, 1\.1, 2\.0"):
        randomized_copy(model, 1, cascade_to="9.9")
    for bad in (-1, 1.5, True, "1"):
        with pytest.raises(RSIError, match="seed must be an integer >= 0"):
            randomized_copy(model, bad)
    with pytest.raises(TypeError, match="block name"):
        randomized_copy(model, 1, cascade_to=2)

    class Scaled(nn.Module):  # a parameter no reset_parameters() covers
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 1)
            self.gain = nn.Parameter(torch.ones(3))

    with pytest.raises(RSIError, match=r"cannot re-initialise parameter\(s\) gain"):
        randomized_copy(Scaled(), 1)
