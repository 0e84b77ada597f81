"""What a model expects of its input: :class:`ModelInfo`, carried on a loaded model as
``rsi_info``.

A model loaded by :func:`rsi_plugin.load_model` carries one: its name and weights, its input
size, the size images are resized to before the centre crop (256 for ImageNet), its
normalisation statistics and its class count. A plain torchvision model without it is treated
as an ImageNet model. :mod:`rsi_plugin.core.images` normalises with it.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

__all__ = ["ModelInfo", "IMAGENET_MEAN", "IMAGENET_STD", "model_info"]

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ModelInfo:
    """What a model expects of its input.

    Attributes:
        name (str): model name, e.g. ``"resnet18"`` or ``"tiny"``.
        weights (str): where the weights came from (``"random@<seed>"``, an enum name, a path).
        input_size (int): side of the square input (224 for ImageNet models).
        resize_size (int): side images are resized to before the centre crop (256).
        mean (tuple): per-channel mean of the normalisation.
        std (tuple): per-channel standard deviation of the normalisation.
        num_classes (int): number of output classes.
    """

    name: str = "unknown"
    weights: str = "unknown"
    input_size: int = 224
    resize_size: int = 256
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    num_classes: int = 1000


def model_info(model: nn.Module) -> ModelInfo:
    """The :class:`ModelInfo` a model carries, or ImageNet defaults when it has none."""
    info = getattr(model, "rsi_info", None)
    if isinstance(info, ModelInfo):
        return info
    fc = getattr(model, "fc", None)
    num_classes = fc.out_features if isinstance(fc, nn.Linear) else 1000
    return ModelInfo(num_classes=num_classes)
