"""Lucent objectives for the residual nodes, for Lucent's own ``render.render_vis``.

Lucent reads a layer through a forward hook that keeps the module's output tensor. In a
torchvision block that tensor is changed in place after the hook ran (``out += identity``,
then an in-place ReLU), so Lucent's ``"layer3_1_bn2"`` is Post, not Pre. The objectives
here read the node itself, with Pre cloned before the in-place sum::

    from lucent.optvis import render
    import rsi_plugin as rsi

    model = rsi.load_model("resnet18", weights="IMAGENET1K_V1")
    objective = rsi.lucent.neuron(model, "3.1", "pre", 5)       # centre neuron of Pre, channel 5
    images = render.render_vis(model, objective, show_image=False)
    objective.remove()                                          # or: with rsi.lucent.neuron(...) as obj:

They are Lucent ``Objective`` s: ``a + b``, ``-a`` and ``2 * a`` compose as Lucent's do
(Lucent's sign: the loss is minus the activation). An objective keeps PyTorch hooks on the
node's modules while it lives (they only copy the node's value of each forward, at the sites of
the one read plan, :func:`rsi_plugin.access.plan.plan_reads`); they are removed by
``.remove()``, at the end of a ``with`` block, or when the objective and every objective
composed from it are garbage-collected.

Lucent can also optimise the TransformerLens view (:func:`rsi_plugin.hooked`), whose hook
points Lucent names ``blocks_<stage>_<index>_hook_<node>``:
``render_vis(rsi.hooked(model), "blocks_3_1_hook_pre:5")`` optimises channel 5 of Pre.
"""

from __future__ import annotations

import weakref
from typing import Any, Callable

import torch
from lucent.optvis.objectives import Objective
from torch import nn

from rsi_plugin.access.hooks import register_read
from rsi_plugin.access.plan import Read, plan_reads
from rsi_plugin.core.blocks import ResidualBlock, check_nodes, get_block, residual_blocks
from rsi_plugin.errors import InputTypeError
from rsi_plugin.core.wrapped import unwrap

__all__ = ["NodeReader", "NodeObjective", "neuron", "channel"]


class NodeReader:
    """PyTorch hooks that keep one node's value of the model's last forward.

    The reads are those of :func:`~rsi_plugin.access.plan.plan_reads`, as in
    :func:`~rsi_plugin.capture` and the FZ reader (:class:`~rsi_plugin.access.hooks.NodeProbe`):
    the sites of the block's spec, Pre cloned before the block's in-place sum, Sum = In + Pre.
    Unlike the FZ reader it never stops the forward (``render_vis`` runs the whole model).

    Args:
        model (nn.Module or NNsight): a model with residual blocks.
        block (str or ResidualBlock): the block, e.g. ``"3.1"``.
        node (str): ``"in"``, ``"pre"``, ``"sum"`` or ``"post"``.

    Raises:
        ValueError: an unknown block or node.
    """

    def __init__(self, model: nn.Module, block: str | ResidualBlock, node: str) -> None:
        module = unwrap(model)
        if not isinstance(module, nn.Module):
            raise InputTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.node = check_nodes([node])[0]
        self.block = get_block(residual_blocks(module), block)
        #: the reads, in execution order (:func:`~rsi_plugin.access.plan.plan_reads`)
        self.plan = plan_reads([(self.block, self.node)])
        self._values: dict[tuple[str, str], torch.Tensor] = {}
        ref = weakref.ref(self)  # the model's hooks must not keep the reader alive
        handles = [register_read(module, read, _keep(ref, read)) for read in self.plan.reads]
        self._finalizer = weakref.finalize(self, _remove, handles)

    def value(self) -> torch.Tensor:
        """The node ``[N, C, H, W]`` in the last forward (with its autograd graph).

        Raises:
            RuntimeError: before a forward, or after :meth:`remove`.
        """
        if not self._finalizer.alive:
            raise RuntimeError(f"the hooks of {self.block.name} {self.node} were removed")
        if any(read.key not in self._values for read in self.plan.reads):
            raise RuntimeError(f"no forward has run through block {self.block.name} since the objective was "
                               "built; run the model (render_vis does) before evaluating it")
        return self.plan.values(self._values)[(self.block.name, self.node)]

    def remove(self) -> None:
        """Remove the hooks (idempotent)."""
        self._finalizer()
        self._values.clear()


def _keep(ref: weakref.ref, read: Read) -> Callable[[torch.Tensor], None]:
    def keep(value: torch.Tensor) -> None:
        reader = ref()
        if reader is not None:  # read.take clones Pre, which the block changes in place afterwards
            reader._values[read.key] = read.take(value)
    return keep


def _remove(handles: list) -> None:
    for handle in handles:
        handle.remove()


class NodeObjective(Objective):
    """A Lucent ``Objective`` that reads a residual node through a :class:`NodeReader`.

    Attributes:
        reader (NodeReader): the hooks it reads through.
    """

    def __init__(self, objective_func: Callable, reader: NodeReader, name: str, description: str) -> None:
        super().__init__(objective_func, name=name, description=description)
        self.reader = reader

    def remove(self) -> None:
        """Remove the objective's hooks from the model."""
        self.reader.remove()

    def __enter__(self) -> "NodeObjective":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.remove()


def _rows(value: torch.Tensor, batch: int | None) -> torch.Tensor:
    return value if batch is None else value[batch:batch + 1]


def _check_channel(reader: NodeReader, channel: int) -> int:
    from rsi_plugin.core.channels import check_channels

    if isinstance(channel, (list, tuple, str, bytes)) or (isinstance(channel, torch.Tensor) and channel.dim()):
        raise InputTypeError(f"channel must be one integer, got {type(channel).__name__} {channel!r}")
    return check_channels(channel, reader.block.channels, what="channel", where=f"block {reader.block.name}")[0]


def neuron(model: nn.Module, block: str | ResidualBlock, node: str, channel: int, x: int | None = None,
           y: int | None = None, batch: int | None = None) -> NodeObjective:
    """Lucent objective: one neuron of a residual node (the centre ``(H // 2, W // 2)`` by default).

    Args:
        model (nn.Module): the model passed to ``render_vis``.
        block (str): block name, e.g. ``"3.1"``.
        node (str): ``"in"``, ``"pre"``, ``"sum"`` or ``"post"``.
        channel (int): the channel.
        x, y (int, optional): column and row of the neuron; ``W // 2`` and ``H // 2`` by
            default (Lucent's centre for a square map).
        batch (int, optional): only this image of the batch.

    Returns:
        NodeObjective: ``-node[:, channel, y, x].mean()`` after each forward.

    Raises:
        ValueError: unknown block or node. IndexError: channel out of range.
    """
    reader = NodeReader(model, block, node)
    _check_channel(reader, channel)

    def inner(T: Any) -> torch.Tensor:
        act = _rows(reader.value(), batch)
        row = act.shape[2] // 2 if y is None else y
        col = act.shape[3] // 2 if x is None else x
        return -act[:, channel, row, col].mean()

    return NodeObjective(inner, reader, "neuron", f"Neuron [{reader.block.name} {reader.node}, {channel}]")


def channel(model: nn.Module, block: str | ResidualBlock, node: str, channel: int,
            batch: int | None = None) -> NodeObjective:
    """Lucent objective: the mean of one channel of a residual node over all positions.

    Args:
        model (nn.Module): the model passed to ``render_vis``.
        block (str): block name, e.g. ``"3.1"``.
        node (str): ``"in"``, ``"pre"``, ``"sum"`` or ``"post"``.
        channel (int): the channel.
        batch (int, optional): only this image of the batch.

    Returns:
        NodeObjective: ``-node[:, channel].mean()`` after each forward.

    Raises:
        ValueError: unknown block or node. IndexError: channel out of range.
    """
    reader = NodeReader(model, block, node)
    index = _check_channel(reader, channel)

    def inner(T: Any) -> torch.Tensor:
        return -_rows(reader.value(), batch)[:, index].mean()

    return NodeObjective(inner, reader, "channel", f"Channel [{reader.block.name} {reader.node}, {index}]")
