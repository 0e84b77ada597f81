"""Read and patch the residual nodes In / Pre / Sum / Post through nnsight traces.

Both :func:`capture` and :func:`ablate` take what the model takes (normalised image tensors,
see :func:`rsi_plugin.normalize`) and run the model through an ``nnsight.NNsight`` wrapper
that is built once per model and reused (:func:`wrap`). Extra keyword arguments reach
``model.trace(...)``, so a backend that nnsight offers plugs in: the wrapper is a
:class:`rsi_plugin.access.remote.VisionModel`, so ``remote="local"`` (nnsight's serverless
simulation of a remote run), ``remote=True`` or ``remote="http://host:port"`` work for
every trace here (see :mod:`rsi_plugin.access.remote`).

What a trace reads is planned by :mod:`rsi_plugin.access.plan` (the same plan the hook
readers follow); this module only turns each planned read into an envoy's ``.output`` /
``.input`` (:func:`rsi_plugin.access.nnsight_api.read_site`). Imports go one way:
``nnsight_api`` <- ``remote`` (the wrapper class and :func:`wrap`) <- this module.
"""

from __future__ import annotations

import logging
from typing import Any, Iterable, Iterator, Sequence

import torch
from torch import nn

from rsi_plugin.access.intrace import check_not_in_trace
from rsi_plugin.access.nnsight_api import Envoy, envoy_at, is_remotable, read_site, save, unwrap, write_input
from rsi_plugin.access.plan import ReadPlan, plan_reads, sites_of
from rsi_plugin.access.remote import check_remote, wrap
from rsi_plugin.core.blocks import (
    ResidualBlock,
    check_nodes,
    get_block,
    residual_blocks,
    resolve_blocks,
)
from rsi_plugin.errors import InputTypeError, RSIError, ShapeError, UnknownNameError
from rsi_plugin.core.channels import channel_values, check_channels
from rsi_plugin.core.evalmode import runs_in_eval_mode

__all__ = ["capture", "ablate", "node_gradient", "iter_batches", "check_images"]

logger = logging.getLogger(__name__)

NodeKey = tuple[str, str]
Images = torch.Tensor | Sequence[torch.Tensor] | Iterable[Any]


def _check_trace_kwargs(envoy: Any, trace_kwargs: dict[str, Any]) -> None:
    """``remote=`` needs a remote-ready wrapper (a plain NNsight hands it to ``forward``);
    a bad ``remote=`` value or a missing API key is reported before anything runs."""
    remote = trace_kwargs.get("remote")
    if remote is None or remote is False:
        return
    if not is_remotable(envoy):
        raise InputTypeError(
            f"remote={remote!r} needs a remote-ready wrapper, but the model is a {type(envoy).__name__} "
            "(nnsight would pass remote= into the model's forward); pass the plain model, which "
            "rsi_plugin wraps in a rsi_plugin.access.remote.VisionModel")
    check_remote(remote)


def _expected_channels(model: nn.Module) -> int | None:
    conv = getattr(model, "conv1", None)
    if isinstance(conv, nn.Conv2d):
        return conv.in_channels
    first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    return first.in_channels if first is not None else None


def check_images(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Validate one batch of model input.

    Raises:
        TypeError: if ``images`` is not a floating-point tensor, or not of the dtype of the
            model's weights (e.g. float64 images for a float32 model).
        ValueError: if it is not ``[N, C, H, W]`` with the model's ``C``, or is on the meta
            device (no data).
    """
    if not isinstance(images, torch.Tensor):
        raise InputTypeError(f"images must be a torch.Tensor [N, 3, H, W], got {type(images).__name__}")
    if not images.is_floating_point():
        raise InputTypeError(
            f"images must be floating point (normalised model input), got {images.dtype}; "
            "convert uint8 images with images.float() / 255 and rsi.normalize"
        )
    if images.device.type == "meta":
        raise RSIError("images are on the meta device (they hold no data); pass real images, on the model's device")
    module = unwrap(model)
    weight = next((p for p in module.parameters() if p.is_floating_point()), None) if isinstance(module, nn.Module) else None
    if weight is not None and images.dtype != weight.dtype and weight.device.type != "meta":
        raise InputTypeError(f"images are {images.dtype} but the model's weights are {weight.dtype}; "
                        f"convert the images with images.to({weight.dtype}) (or the model with model.to(...))")
    if images.dim() != 4:
        raise ShapeError(f"images must have shape [N, C, H, W], got {tuple(images.shape)}")
    expected = _expected_channels(module)
    if expected is not None and images.shape[1] != expected:
        raise ShapeError(f"images must have {expected} channels, got shape {tuple(images.shape)}")
    if images.shape[0] == 0:
        raise RSIError("images is an empty batch")
    return images


def iter_batches(images: Images, batch_size: int | None = None) -> Iterator[torch.Tensor]:
    """Batches from a tensor, a list of tensors or a DataLoader.

    A tensor ``[N, C, H, W]`` is split into ``batch_size`` chunks (one batch if ``None``);
    a list holds batches ``[n, C, H, W]`` or single images ``[C, H, W]`` (stacked into
    ``batch_size`` chunks); a DataLoader yields tensors or ``(images, labels, ...)``.
    """
    if batch_size is not None and batch_size <= 0:
        raise RSIError(f"batch_size must be > 0, got {batch_size}")
    if isinstance(images, torch.Tensor):
        if batch_size is None or images.dim() != 4:
            yield images
        else:
            yield from images.split(batch_size)
        return
    if isinstance(images, (list, tuple)) and images and all(isinstance(i, torch.Tensor) and i.dim() == 3 for i in images):
        stacked = torch.stack(list(images))
        yield from iter_batches(stacked, batch_size)
        return
    if not isinstance(images, Iterable) or type(images).__module__.startswith("numpy"):
        raise InputTypeError(f"images must be a torch.Tensor [N, 3, H, W], a list of tensors or a DataLoader, "
                        f"got {type(images).__name__}")
    for item in images:
        batch = item[0] if isinstance(item, (list, tuple)) else item
        if not isinstance(batch, torch.Tensor):
            raise InputTypeError(f"each batch must be a torch.Tensor [N, 3, H, W] or (images, labels), "
                            f"got {type(batch).__name__}")
        yield from iter_batches(batch, batch_size)


def _centre(value: torch.Tensor) -> torch.Tensor:
    return value[:, :, value.shape[2] // 2, value.shape[3] // 2]


def _take(envoy: Any, plan: ReadPlan, center: bool) -> dict[tuple[str, str], Any]:
    """Inside a trace: every read of ``plan``, in its order (Pre cloned; centre neurons when
    ``center``), keyed ``(block name, node)``."""
    got = {}
    for read in plan.reads:
        value = read_site(envoy, read.path, read.attr)
        got[read.key] = _centre(value).clone() if center else read.take(value)
    return got


@runs_in_eval_mode
def capture(
    model: nn.Module | Envoy,
    images: Images,
    blocks: str | Sequence[str] | None = "all",
    nodes: str | Sequence[str] = ("in", "pre", "post"),
    center: bool = True,
    stop_early: bool = True,
    batch_size: int | None = None,
    **trace_kwargs: Any,
) -> dict[NodeKey, torch.Tensor]:
    r"""Read residual nodes in one nnsight trace per batch.

    The reads follow :func:`rsi_plugin.access.plan.plan_reads`: in execution order (in a
    block with a downsample, In is the downsample's output and runs after Pre), Pre cloned
    before it is saved (torchvision adds the identity into it in place), ``"sum"`` computed
    as ``in + pre``, Post at the spec's site, and the forward stopped after the last read
    unless ``stop_early=False``.
    Runs under ``torch.no_grad()``.

    Args:
        model (nn.Module or NNsight): a model with residual blocks. It is evaluated in eval
            mode (BatchNorm with its running statistics, as in ``model.eval()``) whatever its
            mode, and given back in its own mode with its buffers unchanged.
        images (Tensor, list or DataLoader): model-ready input ``[N, 3, H, W]``, a list of
            batches or single images, or a DataLoader of ``images`` or ``(images, labels)``.
        blocks (str or list of str): block names (``"2.1"``) or ``"all"``.
        nodes (str or list of str): any of ``"in"``, ``"pre"``, ``"sum"``, ``"post"``.
        center (bool): if True return the centre neuron ``[N, C]`` at
            ``(H // 2, W // 2)`` (the convention of Lucent's ``neuron()``); else the whole
            map ``[N, C, H, W]``.
        stop_early (bool): stop the forward after the deepest requested node.
        batch_size (int, optional): split a tensor input into batches of this size.
        **trace_kwargs: passed to ``model.trace`` (e.g. a backend).

    Returns:
        dict mapping ``(block_name, node)`` to a tensor ``[N, C]`` (``center=True``) or
        ``[N, C, H, W]``, batches concatenated along dim 0, on the model's device.

    Raises:
        ValueError: unknown block (lists the valid names) or node, or bad image shape.
        TypeError: images not a floating-point tensor.
        NestedTraceError: called inside a ``with model.trace(...)`` block (use
            :func:`rsi_plugin.block_nodes` there).
    """
    check_not_in_trace("capture")
    envoy = wrap(model)
    _check_trace_kwargs(envoy, trace_kwargs)
    plan = plan_reads(sites_of(resolve_blocks(unwrap(envoy), blocks), nodes))
    parts: dict[NodeKey, list[torch.Tensor]] = {key: [] for key in plan.keys}
    for batch in iter_batches(images, batch_size):
        check_images(envoy, batch)
        with torch.no_grad():
            with envoy.trace(batch, **trace_kwargs) as tracer:
                out = save(plan.values(_take(envoy, plan, center)))
                if stop_early:
                    tracer.stop()
        for key, value in out.items():
            parts[key].append(value)
    if not any(parts.values()):
        raise RSIError("images held no batch")
    return {key: torch.cat(values) for key, values in parts.items()}


@runs_in_eval_mode
def ablate(
    model: nn.Module | Envoy,
    images: Images,
    block: str | ResidualBlock,
    channels: Sequence[int],
    values: float | Sequence[float] | torch.Tensor = 0.0,
    node: str = "post",
    batch_size: int | None = None,
    **trace_kwargs: Any,
) -> torch.Tensor:
    r"""Logits with the chosen channels of one node overwritten, as an nnsight intervention.

    Each chosen channel ``c`` is set to ``values[c]`` at every spatial position (the
    paper's mean ablation when ``values`` are the channels' means). ``node="sum"`` patches
    the pre-ReLU sum as the paper's code does; since Post is ``relu(sum)`` channel by
    channel this is written as Post ``= relu(values)``, which is exactly the same network
    (Post ``= values`` in a block without activation, such as ConvNeXt's).
    Runs under ``torch.no_grad()``.

    Args:
        model (nn.Module or NNsight): a model with residual blocks, evaluated in eval mode
            and given back in its own mode, buffers unchanged (as in :func:`capture`).
        images (Tensor, list or DataLoader): model-ready input, as in :func:`capture`.
        block (str): block name, e.g. ``"3.1"``.
        channels (sequence of int): channels to overwrite; empty means no intervention.
        values (float, sequence or Tensor): one value for all or one per channel ``[K]``.
        node (str): ``"post"`` (default), ``"sum"``, ``"pre"`` or ``"in"``.
        batch_size (int, optional): split a tensor input into batches of this size.
        **trace_kwargs: passed to ``model.trace``.

    Returns:
        Tensor ``[N, num_classes]``, the logits.

    Raises:
        ValueError: unknown block or node, bad values. IndexError: channel out of range.
        NestedTraceError: called inside a ``with model.trace(...)`` block (use
            ``rsi.block_nodes(model, block).patch(...)`` there).
    """
    check_not_in_trace("ablate")
    envoy = wrap(model)
    _check_trace_kwargs(envoy, trace_kwargs)
    check_nodes([node])
    target = get_block(residual_blocks(unwrap(envoy)), block)
    index, vals = channel_values(channels, values, target.channels)
    logits = []
    for batch in iter_batches(images, batch_size):
        check_images(envoy, batch)
        # on the images' device, not the wrapper's: a keyed model may sit on meta until used
        index_b, vals_b = index.to(batch.device), vals.to(batch.device, batch.dtype)
        with torch.no_grad():
            with envoy.trace(batch, **trace_kwargs):
                if len(index_b):
                    _patch(envoy, target, node, index_b, vals_b)
                out = envoy.output.save()
        logits.append(out)
    if not logits:
        raise RSIError("images held no batch")
    return torch.cat(logits)


def _patch(envoy: Envoy, block: ResidualBlock, node: str, index: torch.Tensor, vals: torch.Tensor) -> None:
    """Inside a trace: overwrite ``index`` channels of ``node`` with ``vals`` everywhere."""
    fill = vals[None, :, None, None]
    if node == "sum":  # Post = activation(Sum) channel by channel: write Post
        post = block.site("post")
        read_site(envoy, post.path, post.attr)[:, index] = block.activate(fill)
        return
    site = block.site(node)
    if site.attr == "output":
        read_site(envoy, site.path, "output")[:, index] = fill
    else:  # the block's input feeds the branch and the identity: patch a copy
        patched = read_site(envoy, site.path, "input").clone()
        patched[:, index] = fill
        write_input(envoy, site.path, patched)


GRADIENT_OBJECTIVES: tuple[str, ...] = ("neuron", "channel")


def _objective_of(act: torch.Tensor, index: torch.Tensor, objective: str) -> torch.Tensor:
    rows = torch.arange(act.shape[0], device=act.device)
    maps = act[rows, index]  # [N, h, w]
    if objective == "neuron":
        return maps[:, maps.shape[1] // 2, maps.shape[2] // 2]
    return maps.mean(dim=(1, 2))


def node_gradient(
    model: nn.Module | Envoy,
    images: torch.Tensor,
    block: str | ResidualBlock,
    node: str,
    channels: Sequence[int] | torch.Tensor,
    objective: str = "neuron",
    **trace_kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""One feature-visualisation step as an nnsight trace: objectives and their input gradient.

    Image ``i`` is scored by channel ``channels[i]`` of ``node`` in ``block`` (the centre
    neuron ``(H // 2, W // 2)`` for ``"neuron"``, the spatial mean for ``"channel"``) and
    the gradient of the sum of the scores with respect to the images is computed inside
    the trace (``torch.autograd.grad``, so no parameter's ``.grad`` is touched) and the
    forward stopped there. The caller keeps its own graph from its image parameters to
    ``images`` and finishes the step with ``images.backward(-grad)`` (ascent), so the
    optimisation runs here while the model may run elsewhere (``remote=``).

    Args:
        model (nn.Module or NNsight): a model with residual blocks.
        images (Tensor): model-ready input ``[N, 3, H, W]`` (its own graph is not used).
        block (str): block name, e.g. ``"2.1"``.
        node (str): ``"in"``, ``"pre"``, ``"sum"`` or ``"post"``.
        channels (sequence of int or Tensor): ``N`` channels, one per image.
        objective (str): ``"neuron"`` or ``"channel"``.
        **trace_kwargs: passed to ``model.trace`` (e.g. ``remote="local"``).

    Returns:
        (Tensor ``[N]`` objectives, Tensor ``[N, 3, H, W]`` gradient of their sum).

    Raises:
        ValueError: unknown block, node or objective, or not one channel per image.
        IndexError: a channel out of range.
        NestedTraceError: called inside a ``with model.trace(...)`` block.
    """
    check_not_in_trace("node_gradient")
    envoy = wrap(model)
    _check_trace_kwargs(envoy, trace_kwargs)
    node = check_nodes([node])[0]
    if objective not in GRADIENT_OBJECTIVES:
        raise UnknownNameError(f"unknown objective {objective!r}; valid: {', '.join(GRADIENT_OBJECTIVES)}")
    target = get_block(residual_blocks(unwrap(envoy)), block)
    check_images(envoy, images)
    index = torch.tensor(check_channels(channels, target.channels, where=f"block {target.name}",
                                        allow_empty=True, allow_duplicates=True), dtype=torch.long)
    if index.numel() != images.shape[0]:
        raise ShapeError(f"channels must hold one channel per image ({images.shape[0]}), got {index.numel()}")
    index = index.to(images.device)
    plan = plan_reads([(target, node)])
    x = images.detach()
    with torch.enable_grad():
        with envoy.trace(x, **trace_kwargs) as tracer:
            start = envoy.input.detach().requires_grad_(True)
            envoy.input = start
            act = plan.values(_take(envoy, plan, center=False))[(target.name, node)]
            score = _objective_of(act, index, objective)
            (grad,) = torch.autograd.grad(score.sum(), start)
            result = save((score.detach(), grad.detach()))
            tracer.stop()
    return result
