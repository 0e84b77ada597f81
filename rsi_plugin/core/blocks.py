"""Residual blocks and their named nodes In, Pre, Sum and Post.

Blocks are found with block specs (:mod:`rsi_plugin.core.specs`): torchvision's ResNet family
and ConvNeXt by default, any other family by a spec attached to the model. For a
torchvision ``BasicBlock`` / ``Bottleneck`` (and subclasses) the paper's nodes are:

=======  =========================================================================
node     where it is read
=======  =========================================================================
``in``   the block's input; the ``downsample``'s output when the block has one
``pre``  the last BatchNorm of the residual branch (``bn2`` / ``bn3``), before the sum
``sum``  ``in + pre``, the pre-ReLU sum (the site the paper's *code* reads and ablates)
``post`` ``relu(in + pre)``, the block's output (a spec's ``post`` module, if it names one)
=======  =========================================================================

Blocks are named ``"<stage>.<index>"`` as in the paper (``layer2[1]`` is ``"2.1"``). In a
ConvNeXt ``CNBlock`` In is the block's input, Pre the output of ``stochastic_depth`` (the
branch before the in-place add), Post the block's output, and Sum = Post (no activation).
Nothing here imports nnsight: a :class:`ResidualBlock` is a plain description of where the
nodes live, turned into module paths by one method, :meth:`ResidualBlock.site`. How the nodes
are *read* (Pre cloned, Sum = In + Pre, execution order, the early stop) is decided once, in
:mod:`rsi_plugin.access.plan`, which every reader follows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Literal, Sequence

import torch
from torch import nn

from rsi_plugin.core.specs import BlockSpec, activation_fn, model_specs
from rsi_plugin.errors import InputTypeError, RSIError, UnknownNameError
from rsi_plugin.core.wrapped import unwrap

__all__ = [
    "NODES",
    "Node",
    "NodeSite",
    "ResidualBlock",
    "residual_blocks",
    "get_block",
    "resolve_blocks",
    "check_nodes",
    "get_module",
    "split_name",
]

Node = Literal["in", "pre", "sum", "post"]
NODES: tuple[str, ...] = ("in", "pre", "sum", "post")


@dataclass(frozen=True)
class NodeSite:
    """Where a node is read: the ``output`` (or ``input``) of the module at ``path``.

    ``path`` is a dotted module path relative to the model (``""`` is the model itself),
    exactly as ``model.get_submodule`` takes it.
    """

    path: str
    attr: Literal["input", "output"] = "output"


@dataclass(frozen=True)
class ResidualBlock:
    """One residual block and the module paths of its nodes.

    Attributes:
        name (str): the paper's name, e.g. ``"2.1"``.
        path (str): module path of the block, e.g. ``"layer2.1"``.
        kind (str): class name of the block (``"BasicBlock"``, ``"Bottleneck"``, ``"CNBlock"``).
        pre_path (str): module path of Pre, the branch's last value before the sum (the
            last BatchNorm in a ResNet block).
        downsample_path (str or None): module path of the shortcut module (the
            downsample), if the block has one; In is then its output.
        channels (int): number of channels of In, Pre and Post.
        index (int): position of the block in execution order (0 for the first block).
        family (str): the spec family, ``"resnet"`` or ``"convnext"``.
        activation (str): Post ``= activation(Sum)``: ``"relu"`` or ``"identity"``.
        post_path (str or None): module path of Post; ``None`` is the block's output.
        shortcut_after_branch (bool): the shortcut module runs after Pre (torchvision).
    """

    name: str
    path: str
    kind: str
    pre_path: str
    downsample_path: str | None
    channels: int
    index: int
    family: str = "resnet"
    activation: str = "relu"
    post_path: str | None = None
    shortcut_after_branch: bool = True

    def activate(self, value: torch.Tensor) -> torch.Tensor:
        """Post from Sum: ``relu(value)`` or ``value``, as the block computes it."""
        return activation_fn(self.activation)(value)

    def site(self, node: str) -> NodeSite:
        """The :class:`NodeSite` of ``node`` (``"in"``, ``"pre"`` or ``"post"``).

        ``"sum"`` has no module of its own (torchvision adds in place); it is computed as
        ``in + pre``, so it has no site.

        Raises:
            ValueError: for ``"sum"`` or an unknown node.
        """
        check_nodes([node])
        if node == "in":
            if self.downsample_path is not None:
                return NodeSite(self.downsample_path, "output")
            return NodeSite(self.path, "input")
        if node == "pre":
            return NodeSite(self.pre_path, "output")
        if node == "post":
            return NodeSite(self.post_path or self.path, "output")
        raise RSIError("node 'sum' has no module of its own: it is computed as in + pre")

    def order(self, node: str) -> tuple[int, int]:
        """Sort key of ``node`` in execution order across the whole model.

        Within a torchvision block the branch runs before the downsample, so In of a block
        with a downsample comes after Pre (nnsight raises ``OutOfOrderError`` otherwise).
        """
        check_nodes([node])
        if node == "in":
            rank = 2 if self.downsample_path is not None and self.shortcut_after_branch else 0
        else:
            rank = {"pre": 1, "sum": 3, "post": 4}[node]
        return (self.index, rank)


def split_name(block_name: str) -> tuple[int, int] | None:
    """``(stage, index)`` of a block named ``"<stage>.<index>"`` (``"2.1"``: ``(2, 1)``);
    ``None`` for any other name."""
    match = re.fullmatch(r"(\d+)\.(\d+)", str(block_name))
    return (int(match.group(1)), int(match.group(2))) if match else None


def check_nodes(nodes: Iterable[str]) -> tuple[str, ...]:
    """Validate node names.

    Raises:
        ValueError: naming the unknown node and listing the valid ones.
    """
    if isinstance(nodes, str):
        nodes = (nodes,)
    nodes = tuple(nodes)
    for node in nodes:
        if node not in NODES:
            raise UnknownNameError(f"unknown node {node!r}; valid nodes: {', '.join(NODES)}")
    if not nodes:
        raise RSIError(f"no node given; valid nodes: {', '.join(NODES)}")
    return nodes


def _join(path: str, sub: str) -> str:
    return f"{path}.{sub}" if path and sub else (path or sub)


def _find(module: nn.Module, specs: Sequence[BlockSpec]) -> list[tuple[str, nn.Module, BlockSpec]]:
    """Blocks in ``named_modules`` order (execution order for torchvision); a block's own
    submodules are not searched."""
    found: list[tuple[str, nn.Module, BlockSpec]] = []
    inside: str | None = None
    for path, sub in module.named_modules():
        if not path or (inside is not None and path.startswith(inside + ".")):
            continue
        spec = next((s for s in specs if s.matches(sub)), None)
        if spec is not None:
            found.append((path, sub, spec))
            inside = path
    return found


def _names(found: list[tuple[str, nn.Module, BlockSpec]]) -> list[str]:
    """``"<stage>.<index>"`` per block: by the spec's pattern, else by stage counting."""
    parents: dict[str, int] = {}
    for path, _, _ in found:
        parents.setdefault(path.rpartition(".")[0], len(parents) + 1)
    names = []
    for path, _, spec in found:
        if spec.name_pattern is not None:
            match = re.fullmatch(spec.name_pattern, path)
            names.append(f"{match.group(1)}.{match.group(2)}" if match else path)
        else:
            parent, _, last = path.rpartition(".")
            names.append(f"{parents[parent]}.{last}")
    return names


def residual_blocks(model: nn.Module, specs: Sequence[BlockSpec] | None = None) -> list[ResidualBlock]:
    """All residual blocks of a model, in execution order.

    Blocks are found by type with block specs (:mod:`rsi_plugin.core.specs`): torchvision's
    ``BasicBlock`` / ``Bottleneck`` (and subclasses, so any width or depth of the ResNet
    family) and ConvNeXt's ``CNBlock`` by default, or the specs attached to the model with
    :func:`rsi_plugin.core.specs.attach_specs`. A ResNet block at ``layer<S>.<I>`` is named
    ``"<S>.<I>"`` (a ResNet block anywhere else keeps its module path as its name); a
    ConvNeXt block is named ``"<stage>.<index>"`` with stages counted from 1.

    Args:
        model (nn.Module): a residual model (plain module or ``nnsight.NNsight``).
        specs (sequence of BlockSpec, optional): the specs to search with; by default the
            model's own (:func:`~rsi_plugin.core.specs.model_specs`).

    Returns:
        list of :class:`ResidualBlock`.

    Raises:
        ValueError: if the model has no residual block, or a block lacks a module its spec
            names.
    """
    module = unwrap(model)
    specs = model_specs(module) if specs is None else tuple(specs)
    found = _find(module, specs)
    if not found:
        families = ", ".join(sorted({s.family for s in specs}))
        raise RSIError(
            f"{type(module).__name__} has no residual block: expected modules described by the "
            f"block specs ({families}): torchvision BasicBlock or Bottleneck (resnet18/34/50/101/152, "
            "wide_resnet50_2, resnext50_32x4d, 'tiny'), ConvNeXt CNBlock (convnext_tiny, ...), or "
            "a BlockSpec attached with rsi_plugin.core.specs.attach_specs"
        )
    blocks = []
    for index, ((path, block, spec), name) in enumerate(zip(found, _names(found))):
        spec.check(block)
        shortcut = spec.shortcut_of(block)
        blocks.append(ResidualBlock(
            name=name,
            path=path,
            kind=type(block).__name__,
            pre_path=_join(path, spec.pre),
            downsample_path=_join(path, shortcut) if shortcut is not None else None,
            channels=spec.channels_of(block),
            index=index,
            family=spec.family,
            activation=spec.activation,
            post_path=_join(path, spec.post) if spec.post else None,
            shortcut_after_branch=spec.shortcut_after_branch,
        ))
    return blocks


def get_block(model_or_blocks: nn.Module | Sequence[ResidualBlock], name: str | ResidualBlock) -> ResidualBlock:
    """Look a block up by its name (``"2.1"``).

    Block ids are strings, never numbers: ``2.1`` is refused rather than read as ``"2.1"``,
    because a float cannot tell ``"3.1"`` from ``"3.10"`` (resnet101 has both).

    Raises:
        TypeError: (:class:`~rsi_plugin.errors.InputTypeError`) for a name that is not a string,
            showing the string to write instead.
        ValueError: for an unknown name, listing the valid ones.
    """
    if isinstance(name, ResidualBlock):
        return name
    blocks = model_or_blocks if isinstance(model_or_blocks, (list, tuple)) else residual_blocks(model_or_blocks)
    _check_block_id(name, blocks)
    for block in blocks:
        if block.name == name:
            return block
    raise UnknownNameError(f"unknown block {name!r}; valid blocks: {', '.join(b.name for b in blocks)}")


def _check_block_id(name: object, blocks: Sequence[ResidualBlock]) -> None:
    """Refuse a block id that is not a string (``2.1``, ``3``), showing its string form."""
    if isinstance(name, str):
        return
    raise InputTypeError(
        f"block ids are strings: use {str(name)!r}, not {name!r} (a number cannot tell '3.1' from "
        f"'3.10'); valid blocks: {', '.join(b.name for b in blocks)}")


def resolve_blocks(model: nn.Module, blocks: str | Sequence[str] | None = "all") -> list[ResidualBlock]:
    """Blocks selected by name: ``"all"`` / ``None`` for every block, one name, or a list.

    Names are strings (``"2.1"``); numbers such as ``2.1`` are refused (see :func:`get_block`).

    Raises:
        TypeError: (:class:`~rsi_plugin.errors.InputTypeError`) for a block id that is not a string.
        ValueError: for an unknown name, listing the valid ones.
    """
    every = residual_blocks(model)
    if blocks is None or blocks == "all":
        return every
    if isinstance(blocks, (str, ResidualBlock)):
        blocks = [blocks]
    elif not isinstance(blocks, Iterable):
        _check_block_id(blocks, every)
    chosen = [get_block(every, b) for b in blocks]
    if not chosen:
        raise UnknownNameError(f"no block given; valid blocks: {', '.join(b.name for b in every)}")
    return chosen


def get_module(model: nn.Module, path: str) -> nn.Module:
    """The submodule at a dotted ``path`` (``""`` is the model itself)."""
    module = unwrap(model)
    return module.get_submodule(path) if path else module
