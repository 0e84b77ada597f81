"""Read and patch the residual nodes In / Pre / Sum / Post through nnsight traces.

Both :func:`capture` and :func:`ablate` take what the model takes (normalised image tensors,
see :func:`rsi_plugin.normalize`) and run the model through an ``nnsight.NNsight`` wrapper
that is built once per model and reused (:func:`wrap`). Extra keyword arguments reach
``model.trace(...)``, so a backend that nnsight offers plugs in: the wrapper is a
:class:`rsi_plugin.access.remote.VisionModel`, so ``remote="local"`` (nnsight's serverless
simulation of a remote run), ``remote=True`` or ``remote="http://host:port"`` work for
every trace here (see :mod:`rsi_plugin.access.remote`).
"""

from __future__ import annotations

import logging
from typing import Any, Iterable, Iterator, Sequence

import nnsight
import torch
from nnsight import NNsight
from nnsight.intervention.envoy import Envoy
from nnsight.modeling.mixins.remotable import Remotable
from torch import nn

from rsi_plugin.core.channels import check_channels
from rsi_plugin.access.intrace import check_not_in_trace
from rsi_plugin.core.blocks import (
    ResidualBlock,
    check_nodes,
    get_block,
    residual_blocks,
    resolve_blocks,
)
from rsi_plugin.errors import InputTypeError, RSIError, ShapeError, UnknownNameError

__all__ = ["wrap", "capture", "ablate", "node_gradient", "iter_batches", "check_images", "channel_values",
           "envoy_at"]

logger = logging.getLogger(__name__)

NodeKey = tuple[str, str]
Images = torch.Tensor | Sequence[torch.Tensor] | Iterable[Any]


def wrap(model: nn.Module | NNsight) -> NNsight:
    """The ``nnsight.NNsight`` wrapper of ``model``, built on first use and reused.

    nnsight instruments every submodule once, when the wrapper is built (it installs
    its own ``forward`` controllers, inert outside a trace, and no hooks); building a
    wrapper per call would redo that work. The wrapper is kept on the model itself, so
    it lives exactly as long as the model does, in a slot that ``pickle``,
    ``torch.save`` and ``copy.deepcopy`` leave out (a copy gets its own wrapper on first
    use; see :class:`_WrapperSlot`). An nnsight wrapper (any ``Envoy``, e.g.
    ``NNsight`` or a :class:`~rsi_plugin.access.remote.VisionModel`) passed in is returned as is.

    The wrapper built here is a :class:`rsi_plugin.access.remote.VisionModel`: an ``NNsight``
    whose ``trace`` also takes nnsight's ``remote=``.

    Args:
        model (nn.Module or NNsight): the model.

    Returns:
        NNsight: the wrapper; its ``._module`` is ``model``.
    """
    if isinstance(model, Envoy):
        return model
    if not isinstance(model, nn.Module):
        raise InputTypeError(f"model must be a torch.nn.Module or nnsight.NNsight, got {type(model).__name__}")
    from rsi_plugin.access.remote import (
        VisionModel,  # remote imports models and this module's users; import on use
    )

    slot = model.__dict__.get(_SLOT)
    if isinstance(slot, _WrapperSlot) and isinstance(slot.envoy, VisionModel) and slot.envoy._module is model:
        return slot.envoy
    envoy = VisionModel(model)
    model.__dict__[_SLOT] = _WrapperSlot(envoy)
    return envoy


_SLOT = "_rsi_nnsight"


class _WrapperSlot:
    """Holds a model's nnsight wrapper in the model's ``__dict__``, invisible to copies.

    ``pickle``, ``torch.save`` and ``copy.deepcopy`` of the model store ``None`` in its
    place (an nnsight wrapper holds weak references and its interleaver, which cannot be
    pickled, and a copy must get its own wrapper), so the model pickles as it did before
    it was wrapped; :func:`wrap` builds a new wrapper for the copy on first use. The
    wrapper is not kept in a global ``weakref.WeakKeyDictionary`` because it references
    its model strongly: such a cache would keep every model ever wrapped alive.
    """

    __slots__ = ("envoy",)

    def __init__(self, envoy: NNsight) -> None:
        self.envoy = envoy

    def __reduce__(self) -> tuple:
        return type(None), ()

    def __deepcopy__(self, memo: dict) -> None:
        return None


def _check_trace_kwargs(envoy: Envoy, trace_kwargs: dict[str, Any]) -> None:
    """``remote=`` needs a remote-ready wrapper (a plain NNsight hands it to ``forward``);
    a bad ``remote=`` value or a missing API key is reported before anything runs."""
    remote = trace_kwargs.get("remote")
    if remote is None or remote is False:
        return
    if not isinstance(envoy, Remotable):
        raise InputTypeError(
            f"remote={remote!r} needs a remote-ready wrapper, but the model is a {type(envoy).__name__} "
            "(nnsight would pass remote= into the model's forward); pass the plain model, which "
            "rsi_plugin wraps in a rsi_plugin.access.remote.VisionModel")
    from rsi_plugin.access.remote import check_remote

    check_remote(remote)


def envoy_at(envoy: NNsight, path: str):
    """The nnsight envoy of the submodule at a dotted ``path`` (``""``: the model)."""
    node = envoy
    for part in filter(None, path.split(".")):
        node = node[int(part)] if part.isdigit() else getattr(node, part)
    return node


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
        ValueError: if it is not ``[N, C, H, W]`` with the model's ``C``.
    """
    if not isinstance(images, torch.Tensor):
        raise InputTypeError(f"images must be a torch.Tensor [N, 3, H, W], got {type(images).__name__}")
    if not images.is_floating_point():
        raise InputTypeError(
            f"images must be floating point (normalised model input), got {images.dtype}; "
            "convert uint8 images with images.float() / 255 and rsi.normalize"
        )
    module = getattr(model, "_module", model)
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


def _read(envoy: NNsight, block: ResidualBlock, node: str):
    site = block.site(node)
    module = envoy_at(envoy, site.path)
    return module.output if site.attr == "output" else module.input


def capture(
    model: nn.Module | NNsight,
    images: Images,
    blocks: str | Sequence[str] | None = "all",
    nodes: str | Sequence[str] = ("in", "pre", "post"),
    center: bool = True,
    stop_early: bool = True,
    batch_size: int | None = None,
    **trace_kwargs: Any,
) -> dict[NodeKey, torch.Tensor]:
    r"""Read residual nodes in one nnsight trace per batch.

    The nodes are requested in execution order (in a block with a downsample, In is the
    downsample's output and runs after Pre), Pre is cloned before it is saved (torchvision
    adds the identity into it in place), ``"sum"`` is computed as ``in + pre``, and the
    forward is stopped after the deepest node asked for unless ``stop_early=False``.
    Runs under ``torch.no_grad()``.

    Args:
        model (nn.Module or NNsight): a model with residual blocks, in the mode you want
            (``load_model`` returns eval mode).
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
    nodes = check_nodes(nodes)
    chosen = resolve_blocks(envoy._module, blocks)
    wanted = sorted(((b, n) for b in chosen for n in dict.fromkeys(nodes)), key=lambda bn: bn[0].order(bn[1]))
    # What the trace must read: "sum" needs both In and Pre of its block.
    reads = []
    for block, node in wanted:
        needs = ("in", "pre") if node == "sum" else (node,)
        for need in needs:
            if (block, need) not in reads:
                reads.append((block, need))
    reads.sort(key=lambda bn: bn[0].order(bn[1]))

    parts: dict[NodeKey, list[torch.Tensor]] = {(b.name, n): [] for b, n in wanted}
    for batch in iter_batches(images, batch_size):
        check_images(envoy._module, batch)
        with torch.no_grad():
            with envoy.trace(batch, **trace_kwargs) as tracer:
                got = {}
                for block, node in reads:
                    value = _read(envoy, block, node)
                    value = _centre(value).clone() if center else value.clone() if node == "pre" else value
                    got[(block.name, node)] = value
                out = {}
                for block, node in wanted:
                    key = (block.name, node)
                    out[key] = got[(block.name, "in")] + got[(block.name, "pre")] if node == "sum" else got[key]
                nnsight.save(out)
                if stop_early:
                    tracer.stop()
        for key, value in out.items():
            parts[key].append(value)
    if not any(parts.values()):
        raise RSIError("images held no batch")
    return {key: torch.cat(values) for key, values in parts.items()}


def channel_values(channels: Sequence[int], values: Any, num_channels: int,
                   device: torch.device | None = None, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate channels and per-channel values.

    Args:
        channels (sequence of int): channel indices in ``[0, num_channels)``.
        values (float, sequence or Tensor): one value for all, or one per channel (``[K]``).
        num_channels (int): channels of the node.

    Returns:
        (index LongTensor ``[K]``, values Tensor ``[K]``).

    Raises:
        TypeError: channels that are not integers (see :mod:`rsi_plugin.core.channels`).
        IndexError: a channel out of range. ValueError: duplicates, values of the wrong length.
    """
    channels = check_channels(channels, num_channels, allow_empty=True)
    vals = torch.as_tensor(values, dtype=dtype, device=device).flatten()
    if vals.numel() == 1:
        vals = vals.expand(len(channels)).clone()
    if vals.numel() != len(channels):
        raise RSIError(f"values must be one number or one per channel ({len(channels)}), got {vals.numel()}")
    return torch.tensor(channels, dtype=torch.long, device=device), vals


def ablate(
    model: nn.Module | NNsight,
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
        model (nn.Module or NNsight): a model with residual blocks.
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
    target = get_block(residual_blocks(envoy._module), block)
    index, vals = channel_values(channels, values, target.channels)
    logits = []
    for batch in iter_batches(images, batch_size):
        check_images(envoy._module, batch)
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


def _patch(envoy: NNsight, block: ResidualBlock, node: str, index: torch.Tensor, vals: torch.Tensor) -> None:
    """Inside a trace: overwrite ``index`` channels of ``node`` with ``vals`` everywhere."""
    fill = vals[None, :, None, None]
    if node == "sum":
        envoy_at(envoy, block.site("post").path).output[:, index] = block.activate(fill)
        return
    site = block.site(node)
    module = envoy_at(envoy, site.path)
    if site.attr == "output":
        module.output[:, index] = fill
    else:  # the block's input feeds the branch and the identity: patch a copy
        patched = module.input.clone()
        patched[:, index] = fill
        module.input = patched


GRADIENT_OBJECTIVES: tuple[str, ...] = ("neuron", "channel")


def _objective_of(act: torch.Tensor, index: torch.Tensor, objective: str) -> torch.Tensor:
    rows = torch.arange(act.shape[0], device=act.device)
    maps = act[rows, index]  # [N, h, w]
    if objective == "neuron":
        return maps[:, maps.shape[1] // 2, maps.shape[2] // 2]
    return maps.mean(dim=(1, 2))


def node_gradient(
    model: nn.Module | NNsight,
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
    target = get_block(residual_blocks(envoy._module), block)
    check_images(envoy._module, images)
    index = torch.tensor(check_channels(channels, target.channels, where=f"block {target.name}",
                                        allow_empty=True, allow_duplicates=True), dtype=torch.long)
    if index.numel() != images.shape[0]:
        raise ShapeError(f"channels must hold one channel per image ({images.shape[0]}), got {index.numel()}")
    index = index.to(images.device)
    reads = sorted(("in", "pre") if node == "sum" else (node,), key=target.order)
    x = images.detach()
    with torch.enable_grad():
        with envoy.trace(x, **trace_kwargs) as tracer:
            start = envoy.input.detach().requires_grad_(True)
            envoy.input = start
            got = {}
            for need in reads:
                value = _read(envoy, target, need)
                got[need] = value.clone() if need == "pre" else value
            act = got["in"] + got["pre"] if node == "sum" else got[node]
            score = _objective_of(act, index, objective)
            (grad,) = torch.autograd.grad(score.sum(), start)
            result = nnsight.save((score.detach(), grad.detach()))
            tracer.stop()
    return result
