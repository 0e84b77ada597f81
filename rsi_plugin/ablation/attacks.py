r"""The scale sweep through Captum's own robustness API (``captum.robust.AttackComparator``).

A Captum user measures accuracy per scale, with and without an ablation, like this::

    from captum.robust import AttackComparator
    import rsi_plugin as rsi
    from rsi_plugin.ablation import channel_means, validation_loader
    from rsi_plugin.ablation.attacks import scale_attacks, sweep_preprocessor, ablated_forward, top1

    model = rsi.load_model("tiny")
    loader = validation_loader(data, model)              # [0, 1] images at the resize size
    means = channel_means(model, loader, "3.1")
    forwards = {"none": ablated_forward(model, "3.1", [], 0.0),
                "invariant": ablated_forward(model, "3.1", channels, means[channels])}
    for name, forward in forwards.items():
        comparator = AttackComparator(forward, top1, preproc_fn=sweep_preprocessor(model))
        for attack in scale_attacks(model):
            comparator.add_attack(**attack)
        for images, labels in loader:
            comparator.evaluate(images, targets=labels)
        print(name, {k: float(v["mean"]) for k, v in comparator.summary().items()})

The README runs this recipe as written on the bundled model (its section "Does ablating them
hurt scale-robust recognition?", checked by ``tests/ablation/test_readme_attacks.py``): there ``data`` is
``export_imagefolder(dir, n, eval_seed(0), size=73, centered=True)``, the centred set the model's
scale-sweep table was measured on; uncentred images lose their object under a 50 % crop.

Each attack is :func:`rsi_plugin.core.transforms.scale_crop` with the scale in ``attack_kwargs``,
applied before preprocessing to the [0, 1] image at the resize size. The preprocessing
(:func:`sweep_preprocessor`) normalises; an image still at the resize size (Captum's
``"Original"``) is first given the ``p = 0`` crop, so ``"Original"`` is the sweep's no-scale
condition and every input has the model's input size (``perturbations_per_eval > 1`` works).
Captum averages the metric per batch and then over batches: with unequal batches the summary
is a mean of batch means, not the overall accuracy :func:`rsi_plugin.ablation.experiment` reports.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from torch import nn

from rsi_plugin.core.channels import check_channels
from rsi_plugin.core.modelinfo import model_info
from rsi_plugin.core.images import normalize
from rsi_plugin.access.nnsight import ablate
from rsi_plugin.core.transforms import scale_crop
from rsi_plugin.paper import SWEEP_SCALES
from rsi_plugin.core.wrapped import unwrap

__all__ = ["scale_attacks", "sweep_preprocessor", "ablated_forward", "top1", "scale_comparator"]

#: the sweep's scales but 0 (:data:`rsi_plugin.paper.SWEEP_SCALES`; 0 is Captum's ``"Original"``)
DEFAULT_ATTACK_SCALES: tuple[float, ...] = tuple(p for p in SWEEP_SCALES if p > 0)


def top1(model_out: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Captum metric: 1.0 where the top class is the target, per example (``[N]``)."""
    return (model_out.argmax(dim=1) == targets.to(model_out.device)).float()


def scale_attacks(model: nn.Module | None = None, scales: Sequence[float] = DEFAULT_ATTACK_SCALES,
                  variant: str = "text", input_size: int | None = None) -> list[dict[str, Any]]:
    r"""The sweep's scales as ``AttackComparator.add_attack`` keyword arguments.

    Args:
        model (nn.Module, optional): its ``rsi_info.input_size`` is the output size.
        scales (sequence of float): scale fractions (10 % .. 50 % by default; 0 % is
            Captum's ``"Original"`` with :func:`sweep_preprocessor`).
        variant (str): ``"text"`` or ``"code"`` crop.
        input_size (int, optional): output size when no model is given (224 by default).

    Returns:
        list of dicts with keys ``attack`` (:func:`~rsi_plugin.core.transforms.scale_crop`),
        ``name`` (``"scale 10%"``), ``num_attempts`` (1: the crop is deterministic),
        ``apply_before_preproc`` (True), ``attack_kwargs`` (``p``, ``output_size``,
        ``variant``), ``additional_attack_arg_names`` (``[]``):
        ``comparator.add_attack(**attack)`` for each.

    Raises:
        ValueError: a scale outside [0, 1) or an unknown variant.
    """
    from rsi_plugin.core.transforms import sweep_crop_size

    size = input_size or (model_info(model).input_size if model is not None else 224)
    attacks = []
    for p in scales:
        sweep_crop_size(float(p), size + 1, size, variant)  # validates p and variant
        attacks.append({
            "attack": scale_crop,
            "name": f"scale {100 * float(p):g}%",
            "num_attempts": 1,
            "apply_before_preproc": True,
            "attack_kwargs": {"p": float(p), "output_size": int(size), "variant": variant},
            "additional_attack_arg_names": [],
        })
    return attacks


def sweep_preprocessor(model: nn.Module, variant: str = "text") -> Callable[[torch.Tensor], torch.Tensor]:
    r"""Captum ``preproc_fn``: [0, 1] images to model input, on the model's device.

    Images at the model's input size are normalised; larger ones (the resize size) get the
    ``p = 0`` crop of ``variant`` first, as the sweep's no-scale condition.

    Args:
        model (nn.Module): statistics, input size and device come from it.
        variant (str): crop variant for images at the resize size.

    Returns:
        callable ``images [N, 3, H, W] -> [N, 3, S, S]``.
    """
    module = unwrap(model)
    size = model_info(module).input_size
    param = next(iter(module.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")

    def preprocess(images: torch.Tensor) -> torch.Tensor:
        images = images.to(device)
        if tuple(images.shape[-2:]) != (size, size):
            images = scale_crop(images, 0.0, output_size=size, variant=variant)
        return normalize(images, module)

    return preprocess


def ablated_forward(model: nn.Module, block: str, channels: Sequence[int],
                    values: float | Sequence[float] | torch.Tensor, node: str = "post",
                    **trace_kwargs: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    r"""A Captum ``forward_func``: the model with channels mean-ablated by an nnsight
    intervention (:func:`rsi_plugin.ablate`).

    Args:
        model (nn.Module): the model.
        block (str): block name.
        channels (sequence of int): ablated channels.
        values (float, sequence or Tensor ``[K]``): their values (e.g. the channel means).
        node (str): ``"post"`` or ``"sum"``.
        **trace_kwargs: passed to ``model.trace``.

    Returns:
        callable ``inputs [N, 3, S, S] -> logits [N, classes]``.
    """
    channels = check_channels(channels, allow_empty=True)

    def forward(inputs: torch.Tensor) -> torch.Tensor:
        return ablate(model, inputs, block, channels, values, node=node, **trace_kwargs)

    return forward


def scale_comparator(model: nn.Module, block: str | None = None, channels: Sequence[int] = (),
                     values: float | Sequence[float] | torch.Tensor = 0.0, node: str = "post",
                     scales: Sequence[float] = DEFAULT_ATTACK_SCALES, variant: str = "text"):
    r"""An ``AttackComparator`` holding the sweep: the top-1 metric, the sweep's
    preprocessing and one attack per scale, over the plain model or (with ``block`` and
    ``channels``) the ablated one.

    Args:
        model (nn.Module): the model.
        block (str, optional): block to ablate; None for the plain model.
        channels, values, node: the ablation (see :func:`ablated_forward`).
        scales (sequence of float): attack scales.
        variant (str): crop variant.

    Returns:
        ``captum.robust.AttackComparator``; call ``evaluate(images, targets=labels)`` per
        batch of [0, 1] images at the resize size, then ``summary()``.
    """
    from captum.robust import AttackComparator

    if block is None or not len(channels):
        def forward(inputs: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return model(inputs)
    else:
        forward = ablated_forward(model, block, channels, values, node)
    comparator = AttackComparator(forward, top1, preproc_fn=sweep_preprocessor(model, variant))
    for attack in scale_attacks(model, scales, variant):
        comparator.add_attack(**attack)
    return comparator
