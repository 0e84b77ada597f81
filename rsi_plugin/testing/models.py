"""Small seeded models and data for tests: a ResNet-18-shaped ``small_resnet``, ``randomize_norms``,
``random_data``, and the bundled architecture with seeded random norms (``random_norm_tiny``,
``randomise_batchnorm``)."""

from __future__ import annotations

import torch
from torch import nn
from rsi_plugin.zoo.model import TinyResNet, build_tiny_resnet

from rsi_plugin.core.modelinfo import ModelInfo
from rsi_plugin.core.blocks import residual_blocks

INPUT_SIZE = 32
RESIZE_SIZE = 37


def randomize_norms(model: nn.Module, generator: torch.Generator) -> nn.Module:
    """Random BatchNorm affine parameters and running statistics (and ConvNeXt layer scales of
    order 1 instead of 1e-6), so that every node varies across images and takes both signs."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                c = module.num_features
                module.weight.copy_(torch.rand(c, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(c, generator=generator) * 0.3)
                module.running_mean.copy_(torch.randn(c, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(c, generator=generator) + 0.5)
            scale = getattr(module, "layer_scale", None)
            if isinstance(scale, nn.Parameter):
                scale.copy_(torch.rand(scale.shape, generator=generator) + 0.5)
    return model


def randomise_batchnorm(model: nn.Module, seed: int) -> nn.Module:
    """Every ``BatchNorm2d`` of ``model`` drawn from a generator seeded ``seed``, module by module:
    weight ``0.5 + U[0, 1)``, bias ``0.3 N(0, 1)``, running mean ``0.2 N(0, 1)``, running variance
    ``0.5 + U[0, 1)``. Returns ``model`` (changed in place)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                n = module.num_features
                module.weight.copy_(0.5 + torch.rand(n, generator=generator))
                module.bias.copy_(0.3 * torch.randn(n, generator=generator))
                module.running_mean.copy_(0.2 * torch.randn(n, generator=generator))
                module.running_var.copy_(0.5 + torch.rand(n, generator=generator))
    return model


def random_norm_tiny(seed: int = 0, width: int = 8) -> nn.Module:
    """The bundled ``tiny`` architecture at ``width`` (``build_tiny_resnet``, its init after
    ``torch.manual_seed(seed)``) with :func:`randomise_batchnorm` norms, in eval mode: a small
    untrained network whose nodes vary across images and take both signs."""
    torch.manual_seed(seed)
    return randomise_batchnorm(build_tiny_resnet(width=width), seed).eval()


def small_resnet(width: int = 8, num_classes: int = 10, seed: int = 0) -> nn.Module:
    """A seeded random ResNet18-layout model in eval mode, with BatchNorm affine parameters
    and running statistics randomised so that predictions vary across images and classes.
    Carries ``rsi_info`` with input size 32 and resize size 37."""
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = TinyResNet(width, num_classes, torchvision_init=False)  # resnet18's layout at width ``width``
    randomize_norms(model, generator)
    with torch.no_grad():
        # A random network maps every image to nearly the same pooled features; centring
        # them (on reference images of another seed) makes the logits follow what differs.
        reference = torch.rand(64, 3, INPUT_SIZE, INPUT_SIZE, generator=generator)
        reference = (reference - 0.45) / 0.25
        model.eval()
        features = torch.flatten(model.avgpool(model.layer4(model.layer3(model.layer2(model.layer1(
            model.maxpool(model.relu(model.bn1(model.conv1(reference))))))))), 1)
        model.fc.weight.mul_(1.0 / features.std(0).clamp_min(1e-6))
        model.fc.bias.copy_(-model.fc.weight @ features.mean(0))
    model.rsi_info = ModelInfo(name="small", weights=f"random seed {seed}", input_size=INPUT_SIZE,
                               resize_size=RESIZE_SIZE, num_classes=num_classes)
    return model.eval()


def random_data(n: int, seed: int = 0, size: int = RESIZE_SIZE, num_classes: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images [n, 3, size, size] in [0, 1], labels [n])``, seeded."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 3, size, size, generator=generator)
    labels = torch.randint(0, num_classes, (n,), generator=generator)
    return images, labels
