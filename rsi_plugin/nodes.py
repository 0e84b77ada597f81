"""Residual blocks and their named nodes In, Pre, Sum and Post.

For a torchvision ``BasicBlock`` / ``Bottleneck`` (and subclasses) the paper's nodes are:

=======  =========================================================================
node     where it is read
=======  =========================================================================
``in``   the block's input; the ``downsample``'s output when the block has one
``pre``  the last BatchNorm of the residual branch (``bn2`` / ``bn3``), before the sum
``sum``  ``in + pre``, the pre-ReLU sum (the site the paper's *code* reads and ablates)
``post`` ``relu(in + pre)``, the block's output
=======  =========================================================================

Blocks are named ``"<stage>.<index>"`` as in the paper (``layer2[1]`` is ``"2.1"``).
Nothing here imports nnsight: a :class:`ResidualBlock` is a plain description of where the
nodes live, turned into module paths by one method, :meth:`ResidualBlock.site`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Literal, Sequence

from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck

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
        kind (str): class name of the block (``"BasicBlock"``, ``"Bottleneck"``, ...).
        pre_path (str): module path of Pre, the branch's last BatchNorm.
        downsample_path (str or None): module path of the downsample, if the block has one.
        channels (int): number of channels of In, Pre and Post.
        index (int): position of the block in execution order (0 for the first block).
    """

    name: str
    path: str
    kind: str
    pre_path: str
    downsample_path: str | None
    channels: int
    index: int

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
            return NodeSite(self.path, "output")
        raise ValueError("node 'sum' has no module of its own: it is computed as in + pre")

    def order(self, node: str) -> tuple[int, int]:
        """Sort key of ``node`` in execution order across the whole model.

        Within a torchvision block the branch runs before the downsample, so In of a block
        with a downsample comes after Pre (nnsight raises ``OutOfOrderError`` otherwise).
        """
        check_nodes([node])
        if node == "in":
            rank = 2 if self.downsample_path is not None else 0
        else:
            rank = {"pre": 1, "sum": 3, "post": 4}[node]
        return (self.index, rank)


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
            raise ValueError(f"unknown node {node!r}; valid nodes: {', '.join(NODES)}")
    if not nodes:
        raise ValueError(f"no node given; valid nodes: {', '.join(NODES)}")
    return nodes


def _last_batchnorm(block: nn.Module) -> str:
    for attr in ("bn3", "bn2"):
        if isinstance(getattr(block, attr, None), nn.BatchNorm2d):
            return attr
    raise ValueError(f"block {type(block).__name__} has no bn2/bn3 BatchNorm2d to read Pre from")


def _stage_names(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules()
            if isinstance(m, (BasicBlock, Bottleneck)) and n]


def residual_blocks(model: nn.Module) -> list[ResidualBlock]:
    """All residual blocks of a model, in execution order.

    Blocks are found by type (torchvision ``BasicBlock`` / ``Bottleneck`` and their
    subclasses), so any width or depth of the ResNet family works. A block at
    ``layer<S>.<I>`` is named ``"<S>.<I>"``; a block anywhere else keeps its module path
    as its name.

    Args:
        model (nn.Module): a ResNet-like model (plain module or ``nnsight.NNsight``).

    Returns:
        list of :class:`ResidualBlock`.

    Raises:
        ValueError: if the model has no residual block.
    """
    module = getattr(model, "_module", model)
    found = _stage_names(module)
    if not found:
        raise ValueError(
            f"{type(module).__name__} has no residual block: expected torchvision BasicBlock or "
            "Bottleneck modules (resnet18/34/50/101/152, wide_resnet50_2, resnext50_32x4d, 'tiny')"
        )
    blocks = []
    for index, (path, block) in enumerate(found):
        match = re.fullmatch(r"layer(\d+)\.(\d+)", path)
        name = f"{match.group(1)}.{match.group(2)}" if match else path
        bn = _last_batchnorm(block)
        downsample = getattr(block, "downsample", None)
        blocks.append(ResidualBlock(
            name=name,
            path=path,
            kind=type(block).__name__,
            pre_path=f"{path}.{bn}",
            downsample_path=f"{path}.downsample" if downsample is not None else None,
            channels=getattr(block, bn).num_features,
            index=index,
        ))
    return blocks


def get_block(model_or_blocks: nn.Module | Sequence[ResidualBlock], name: str | ResidualBlock) -> ResidualBlock:
    """Look a block up by its name (``"2.1"``).

    Raises:
        ValueError: for an unknown name, listing the valid ones.
    """
    if isinstance(name, ResidualBlock):
        return name
    blocks = model_or_blocks if isinstance(model_or_blocks, (list, tuple)) else residual_blocks(model_or_blocks)
    for block in blocks:
        if block.name == str(name):
            return block
    raise ValueError(f"unknown block {name!r}; valid blocks: {', '.join(b.name for b in blocks)}")


def resolve_blocks(model: nn.Module, blocks: str | Sequence[str] | None = "all") -> list[ResidualBlock]:
    """Blocks selected by name: ``"all"`` / ``None`` for every block, one name, or a list.

    Raises:
        ValueError: for an unknown name, listing the valid ones.
    """
    every = residual_blocks(model)
    if blocks is None or blocks == "all":
        return every
    if isinstance(blocks, (str, ResidualBlock)):
        blocks = [blocks]
    chosen = [get_block(every, b) for b in blocks]
    if not chosen:
        raise ValueError(f"no block given; valid blocks: {', '.join(b.name for b in every)}")
    return chosen


def get_module(model: nn.Module, path: str) -> nn.Module:
    """The submodule at a dotted ``path`` (``""`` is the model itself)."""
    module = getattr(model, "_module", model)
    return module.get_submodule(path) if path else module
