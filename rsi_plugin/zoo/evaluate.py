"""Evaluation of a shapes classifier: plain accuracy, the validation set, the scale sweep.

The same functions produce the numbers recorded in ``tiny_resnet.json`` (by
:mod:`rsi_plugin.zoo.train`) and re-check them in the tests.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from rsi_plugin.core.images import normalize
from rsi_plugin.core.transforms import scale_crop
from rsi_plugin.errors import RSIError
from rsi_plugin.paper import SWEEP_SCALES
from rsi_plugin.zoo.data import recipe
from rsi_plugin.zoo.shapes import eval_seed, generate, val_seed  # noqa: F401 (eval_seed: imported from here in the README)

__all__ = ["SWEEP_PS", "predict", "accuracy", "validation_set", "validation_accuracy",
           "scale_sweep"]

SWEEP_PS: tuple[float, ...] = SWEEP_SCALES
"""Scale fractions p of the §4 sweep (:data:`rsi_plugin.paper.SWEEP_SCALES`)."""


@torch.no_grad()
def predict(model: nn.Module, images: Tensor, mean: Sequence[float] | None = None,
            std: Sequence[float] | None = None, batch_size: int = 250) -> Tensor:
    r"""Predicted classes of [0, 1] images, in eval mode (the mode is restored after).

    Args:
        model (nn.Module): classifier taking normalised images.
        images (Tensor): ``[N, 3, H, W]`` in [0, 1].
        mean, std (sequence of 3 floats, optional): normalisation; by default the
            statistics the model carries (``model.rsi_info``), else ImageNet's.
        batch_size (int): images per forward pass.

    Returns:
        Tensor ``[N]`` int64.
    """
    was_training = model.training
    model.eval()
    try:
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        out = []
        for start in range(0, images.shape[0], batch_size):
            x = normalize(images[start:start + batch_size].to(device), model=model, mean=mean, std=std)
            out.append(model(x).argmax(dim=1).cpu())
        return torch.cat(out) if out else torch.zeros(0, dtype=torch.int64)
    finally:
        model.train(was_training)


def accuracy(model: nn.Module, images: Tensor, labels: Tensor,
             mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
             batch_size: int = 250) -> float:
    r"""Top-1 accuracy of ``model`` on [0, 1] images (see :func:`predict`).

    Args:
        model (nn.Module): classifier.
        images (Tensor): ``[N, 3, H, W]`` in [0, 1].
        labels (Tensor): ``[N]`` int64.
        mean, std: normalisation, as in :func:`predict`.
        batch_size (int): images per forward pass.

    Returns:
        float in [0, 1].
    """
    if images.shape[0] == 0:
        raise RSIError("no images")
    pred = predict(model, images, mean, std, batch_size)
    return float((pred == labels.cpu()).double().mean())


def validation_set(seed: int, n: int = 1000, size: int = 64) -> tuple[Tensor, Tensor]:
    r"""The validation set of training run ``seed``: ``generate(n, val_seed(seed), size)``.

    Args:
        seed (int): the training run's seed.
        n (int): number of images. Default 1000.
        size (int): image side. Default 64.

    Returns:
        ``(images [n, 3, size, size], labels [n])``.
    """
    return generate(n, val_seed(seed), size=size)


def validation_accuracy(model: nn.Module, seed: int, n: int = 1000, size: int = 64,
                        mean: Sequence[float] | None = None,
                        std: Sequence[float] | None = None) -> float:
    """Accuracy on :func:`validation_set` ``(seed, n, size)``."""
    images, labels = validation_set(seed, n, size)
    return accuracy(model, images, labels, mean, std)


def scale_sweep(model: nn.Module, seed: int, n: int = 1000, input_size: int = 64,
                resize_size: int = 73, ps: Sequence[float] = SWEEP_PS,
                mean: Sequence[float] | None = None,
                std: Sequence[float] | None = None) -> dict[str, float]:
    r"""Accuracy under the §4 scale sweep, on centred objects.

    A centred evaluation set ``generate(n, eval_seed(seed), size=resize_size,
    centered=True)`` is drawn at the resize size (73 for 64 px input, as 256 is to 224;
    the ``"sweep"`` set of :func:`rsi_plugin.zoo.data.default_data`);
    for each p, :func:`rsi_plugin.core.transforms.scale_crop` centre-crops
    ``resize_size - floor(resize_size * p)`` pixels and resizes to ``input_size``. The
    ``"standard"`` entry is the same objects drawn directly at ``input_size``, uncropped.

    Args:
        model (nn.Module): classifier.
        seed (int): the training run's seed.
        n (int): number of images. Default 1000.
        input_size (int): model input side. Default 64.
        resize_size (int): side the set is drawn at. Default 73.
        ps (sequence of float): scale fractions. Default :data:`SWEEP_PS`.
        mean, std: normalisation, as in :func:`predict`.

    Returns:
        dict: ``{"standard": acc, "0.0": acc, "0.1": acc, ...}`` (keys ``f"{p:.1f}"``).
    """
    sweep_set = recipe("sweep", seed, input_size, resize_size)
    images, labels = generate(n, sweep_set.seed, size=input_size, centered=sweep_set.centered)
    out = {"standard": accuracy(model, images, labels, mean, std)}
    big, big_labels = generate(n, sweep_set.seed, size=sweep_set.size, centered=sweep_set.centered)
    for p in ps:
        out[f"{p:.1f}"] = accuracy(model, scale_crop(big, p, output_size=input_size),
                                   big_labels, mean, std)
    return out
