"""Mean ablation of residual channels: the channels' means, and many ablations in one pass.

:func:`channel_means` is the paper's ablation value: each channel's centre-neuron mean at
Post (or at the pre-ReLU sum) over the validation set, read with :func:`rsi_plugin.capture`.

:func:`ablate_conditions` runs several ablation *conditions* (sets of channels) on one batch
in a single nnsight trace. Everything before the block is the same for every condition, so
the trace runs the prefix of the network once; at the block it replaces the block's output
``[B, C, H, W]`` by a stacked tensor ``[n * B, C, H, W]``, copy ``i`` holding the output with
condition ``i``'s channels set to their values at every position, and the rest of the
network (later blocks, pooling, ``fc``) runs once on the stack. Each copy goes through
exactly the computation a separate :func:`rsi_plugin.ablate` call would run, so the logits are
those of ``n`` separate ablations.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import torch
from torch import nn

from rsi_plugin.core.data import ValidationLoader, validation_loader
from rsi_plugin.core.evalmode import runs_in_eval_mode
from rsi_plugin.core.distributed import all_reduce_sum
from rsi_plugin.core.modelinfo import model_info
from rsi_plugin.core.images import normalize
from rsi_plugin.core.blocks import ResidualBlock, get_block, residual_blocks
from rsi_plugin.access.nnsight import capture, channel_values, check_images, envoy_at, wrap
from rsi_plugin.core.transforms import scale_crop
from rsi_plugin.errors import RSIError
from rsi_plugin.core.tensors import model_device
from rsi_plugin.core.wrapped import unwrap

__all__ = ["SWEEP_NODES", "prepare_batch", "channel_means", "ablate_conditions", "condition_masks"]

logger = logging.getLogger(__name__)

SWEEP_NODES: tuple[str, ...] = ("post", "sum")
"""Nodes a condition stack can ablate: Post (the paper's text) and the pre-ReLU sum (its code)."""


def prepare_batch(images: torch.Tensor, model: nn.Module, p: float = 0.0, variant: str = "text",
                  input_size: int | None = None) -> torch.Tensor:
    r"""[0, 1] images at the resize size to model input at scale ``p``.

    ``scale_crop(images, p, input_size, variant)`` (the §4 crop and bilinear resize), then
    :func:`rsi_plugin.normalize` with the model's statistics, on the model's device.

    Args:
        images (Tensor): ``[N, 3, R, R]`` in [0, 1].
        model (nn.Module): the model (device, statistics, input size).
        p (float): scale fraction in [0, 1).
        variant (str): ``"text"`` or ``"code"`` (see :func:`rsi_plugin.core.transforms.sweep_crop_size`).
        input_size (int, optional): output side; the model's ``rsi_info.input_size`` by default.

    Returns:
        Tensor ``[N, 3, input_size, input_size]``.
    """
    module = unwrap(model)
    size = input_size or model_info(module).input_size
    images = images.to(model_device(module), non_blocking=True)
    return normalize(scale_crop(images, p, output_size=size, variant=variant), module)


@runs_in_eval_mode
def channel_means(
    model: nn.Module,
    loader: Any,
    block: str | ResidualBlock,
    channels: Sequence[int] | None = None,
    node: str = "post",
    variant: str = "text",
    batch_size: int = 64,
    **trace_kwargs: Any,
) -> torch.Tensor:
    r"""Each channel's centre-neuron mean over the data, the paper's mean-ablation value.

    One pass over ``loader`` with no scale transform: every batch goes through the sweep's
    own preprocessing at ``p = 0`` (:func:`prepare_batch`; with the text variant the whole
    resized image is resized to the input size, with the code variant it is the standard
    centre crop), and the centre neuron ``(H // 2, W // 2)`` of every channel of ``node`` is
    read with :func:`rsi_plugin.capture` (the forward stops after the block).

    Sums are kept per batch in float64 and added in batch order, so a loader sharded
    across processes (:meth:`ValidationLoader.shard` under ``torchrun``) gives bit for bit
    the means of one process.

    Args:
        model (nn.Module): a model with residual blocks, evaluated in eval mode and given
            back in its own mode, buffers unchanged.
        loader: a :class:`~rsi_plugin.core.data.ValidationLoader` or anything
            :func:`~rsi_plugin.core.data.validation_loader` takes (a folder, a Dataset, a pair
            ``(images, labels)``), yielding [0, 1] images at the resize size.
        block (str): block name, e.g. ``"3.1"``.
        channels (sequence of int, optional): return only these channels' means.
        node (str): ``"post"`` (default, the paper's text) or ``"sum"`` (its code), or
            ``"in"`` / ``"pre"``.
        variant (str): crop variant of the ``p = 0`` preprocessing.
        batch_size (int): batch size when ``loader`` is not a ValidationLoader yet.
        **trace_kwargs: passed to ``model.trace``.

    Returns:
        Tensor ``[C]`` (or ``[K]`` for ``channels``), float32 on the CPU.

    Raises:
        ValueError: unknown block or node; no readable image.
        IndexError: a channel out of range.
    """
    target = block if isinstance(block, ResidualBlock) else get_block(residual_blocks(model), block)
    if not isinstance(loader, ValidationLoader):
        loader = validation_loader(loader, model, batch_size=batch_size)
    sums = torch.zeros(loader.num_batches, target.channels, dtype=torch.float64)
    counts = torch.zeros(loader.num_batches, dtype=torch.float64)
    for b, images, _ in loader.batches():
        if images.shape[0] == 0:
            continue
        x = prepare_batch(images, model, 0.0, variant, loader.input_size)
        acts = capture(model, x, blocks=[target.name], nodes=(node,), center=True, **trace_kwargs)
        value = acts[(target.name, node)]
        sums[b] = value.double().sum(0).cpu()
        counts[b] = value.shape[0]
    if loader.world_size > 1:
        sums, counts = all_reduce_sum(sums), all_reduce_sum(counts)
    total = counts.sum()
    if total == 0:
        raise RSIError("no image could be read to compute the channel means (see the loader's skipped report)")
    means = (sums.sum(0) / total).float()
    if channels is None:
        return means
    index, _ = channel_values(channels, 0.0, target.channels)
    return means[index]


def condition_masks(conditions: Sequence[Sequence[int]], num_channels: int) -> torch.Tensor:
    """Boolean ``[n, C]``: row ``i`` marks the channels of condition ``i``.

    Raises:
        IndexError: a channel out of range. ValueError: duplicate channels in a condition.
    """
    masks = torch.zeros(len(conditions), num_channels, dtype=torch.bool)
    for i, channels in enumerate(conditions):
        index, _ = channel_values(list(channels), 0.0, num_channels)
        masks[i, index] = True
    return masks


@runs_in_eval_mode
def ablate_conditions(
    model: nn.Module,
    images: torch.Tensor,
    block: str | ResidualBlock,
    conditions: Sequence[Sequence[int]],
    values: torch.Tensor | Sequence[float],
    node: str = "post",
    max_stack: int | None = None,
    **trace_kwargs: Any,
) -> torch.Tensor:
    r"""Logits of ``n`` mean ablations of one batch, the prefix of the network run once.

    One nnsight trace per stack of up to ``max_stack`` conditions. In the trace the block's
    output is replaced by ``[k * B, C, H, W]``: copy ``i`` is the block's output with the
    channels of condition ``i`` set to ``values[c]`` at every spatial position (an empty
    condition is the unablated output). ``node="sum"`` ablates the pre-ReLU sum, written as
    Post ``= relu(values)`` on those channels (the same network, as in
    :func:`rsi_plugin.ablate`). The layers after the block run once on the stack.

    This is the sweep's batched form of :func:`rsi_plugin.ablate` (one condition per call,
    for users): ``ablate_conditions(m, x, b, [chs], values)[0]`` equals
    ``rsi.ablate(m, x, b, chs, values[chs])``.

    Args:
        model (nn.Module or NNsight): a model with residual blocks, evaluated in eval mode
            and given back in its own mode, buffers unchanged.
        images (Tensor): model-ready batch ``[B, 3, H, W]``.
        block (str): block name, e.g. ``"3.1"``.
        conditions (sequence of sequences of int): the channels of each condition.
        values (Tensor or sequence): ``[C]``, the value of every channel of the block
            (e.g. :func:`channel_means` with ``channels=None``).
        node (str): ``"post"`` (default) or ``"sum"``.
        max_stack (int, optional): most conditions per trace (memory bound); all by default.
            With more than one stack the prefix runs once per stack.
        **trace_kwargs: passed to ``model.trace``.

    Returns:
        Tensor ``[n, B, num_classes]``: logits of condition ``i`` at ``[i]``.

    Raises:
        ValueError: unknown block, node not in :data:`SWEEP_NODES`, ``values`` not ``[C]``,
            no condition, bad ``max_stack``.
        IndexError: a channel out of range.
    """
    envoy = wrap(model)
    if node not in SWEEP_NODES:
        raise RSIError(f"node must be one of {', '.join(SWEEP_NODES)} to ablate conditions, got {node!r}")
    target = block if isinstance(block, ResidualBlock) else get_block(residual_blocks(unwrap(envoy)), block)
    check_images(unwrap(envoy), images)
    if not conditions:
        raise RSIError("no condition given")
    if max_stack is not None and (isinstance(max_stack, bool) or int(max_stack) < 1):
        raise RSIError(f"max_stack must be a positive integer or None, got {max_stack!r}")
    values = torch.as_tensor(values, dtype=images.dtype).flatten()
    if values.numel() != target.channels:
        raise RSIError(f"values must hold one value per channel of block {target.name} "
                         f"({target.channels}), got {values.numel()}")
    masks = condition_masks(conditions, target.channels).to(images.device)
    fill = (target.activate(values) if node == "sum" else values).to(images.device)[None, None, :, None, None]
    stack = len(conditions) if max_stack is None else int(max_stack)
    if len(conditions) > stack and trace_kwargs.get("remote") not in (None, False):
        from rsi_plugin.access.sessions import in_one_request  # every stack of the batch in one request

        kwargs = {k: v for k, v in trace_kwargs.items() if k != "remote"}
        return in_one_request(envoy, _stacked_logits, images, target.path, masks, fill, stack,
                              remote=trace_kwargs["remote"], **kwargs)
    return _stacked_logits(envoy, images, target.path, masks, fill, stack, **trace_kwargs)


def _stacked_logits(envoy, images: torch.Tensor, path: str, masks: torch.Tensor, fill: torch.Tensor, stack: int,
                    **trace_kwargs: Any) -> torch.Tensor:
    """The traces of :func:`ablate_conditions`, ``stack`` conditions each: ``[n, B, classes]``."""
    batch = images.shape[0]
    out = []
    for start in range(0, len(masks), stack):
        mask = masks[start:start + stack][:, None, :, None, None]
        with torch.no_grad():
            with envoy.trace(images, **trace_kwargs):
                site = envoy_at(envoy, path)
                stacked = torch.where(mask, fill, site.output[None]).flatten(0, 1)
                site.output = stacked
                logits = envoy.output.save()
        out.append(logits.reshape(mask.shape[0], batch, -1))
    return torch.cat(out)
