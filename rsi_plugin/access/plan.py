r"""The one rule set for reading residual nodes: which module gives which node, in what order.

Every reader of the library — :func:`~rsi_plugin.capture` and
:func:`~rsi_plugin.node_gradient` (nnsight traces, also with ``remote="local"``), the
feature-visualisation reader :class:`~rsi_plugin.access.hooks.NodeProbe` and the Lucent
objectives' :class:`~rsi_plugin.featureviz.lucent.NodeReader` (plain PyTorch hooks),
:func:`~rsi_plugin.block_nodes` in a user's trace (:func:`block_reads`) and the
TransformerLens view (:mod:`rsi_plugin.access.lens`) — builds a :class:`ReadPlan` for the
``(block, node)`` sites it needs and follows it; ``tests/access/test_contract.py`` checks each
against raw hooks. The rules live here and nowhere else:

* **Where.** In, Pre and Post are read at the :class:`~rsi_plugin.core.blocks.NodeSite` of
  the block's spec (:meth:`ResidualBlock.site`): In is the output of the shortcut module
  (``downsample``) or the block's *input*, Pre the output of the spec's ``pre`` module,
  Post the output of the spec's ``post`` module (``BlockSpec(post=...)``) or of the
  block itself. Sum has no module: it is ``In + Pre``.
* **Clone Pre.** torchvision's ResNet blocks and ConvNeXt's ``CNBlock`` add the identity
  into the Pre tensor *in place* (and ResNet's ReLU acts in place on it), so Pre is
  cloned when it is read (:attr:`Read.clone`); In and Post are kept as read.
* **Order.** Reads are made in execution order (:meth:`ResidualBlock.order`): in a
  torchvision block the downsample runs after the branch, so In comes after Pre there
  (nnsight raises ``OutOfOrderError`` otherwise, and a hook reader must not stop before
  it has both).
* **Stop early.** Nothing after the last read is needed (:attr:`ReadPlan.last`); readers
  stop the forward there (nnsight's ``tracer.stop()``, a private exception in a hook).

A plan is pure description: it imports neither nnsight nor any hook machinery, and each
reader turns a :class:`Read` into its own kind of access (an envoy's ``.output`` /
``.input``, ``register_forward_hook`` / ``register_forward_pre_hook``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Literal, Mapping, Sequence

import torch

from rsi_plugin.core.blocks import ResidualBlock, check_nodes
from rsi_plugin.errors import RSIError

__all__ = ["Read", "ReadPlan", "plan_reads", "block_reads", "READ_NODES"]

#: The nodes a module gives directly (Sum is computed).
READ_NODES: tuple[str, ...] = ("in", "pre", "post")

Key = tuple[str, str]


@dataclass(frozen=True)
class Read:
    """One value taken from the model: the ``attr`` (``"output"`` or ``"input"``) of the
    module at ``path``, for node ``node`` of ``block``.

    Attributes:
        block (ResidualBlock): the block.
        node (str): ``"in"``, ``"pre"`` or ``"post"``.
        path (str): module path relative to the model (``""``: the model).
        attr (str): ``"output"`` (a forward hook / ``envoy.output``) or ``"input"`` (the first
            positional input: a forward pre-hook / ``envoy.input``).
        clone (bool): whether the value must be cloned when read (Pre, which the block
            changes in place afterwards).
    """

    block: ResidualBlock
    node: str
    path: str
    attr: Literal["input", "output"]
    clone: bool

    @property
    def key(self) -> Key:
        """``(block name, node)``."""
        return (self.block.name, self.node)

    @property
    def order(self) -> tuple[int, int]:
        """Sort key in execution order across the model."""
        return self.block.order(self.node)

    def take(self, value: torch.Tensor) -> torch.Tensor:
        """The value to keep from what the module gave (a clone for Pre)."""
        return value.clone() if self.clone else value


def block_reads(block: ResidualBlock, clone_pre: bool = True) -> dict[str, Read]:
    """The :class:`Read` of In, Pre and Post of one block, from its spec.

    Args:
        block (ResidualBlock): the block.
        clone_pre (bool): clone Pre when it is read (``False`` only to reproduce Lucent's
            reading of a reference, see :class:`~rsi_plugin.access.hooks.NodeProbe`).

    Returns:
        dict ``node -> Read`` for ``"in"``, ``"pre"``, ``"post"``.
    """
    reads = {}
    for node in READ_NODES:
        site = block.site(node)
        reads[node] = Read(block, node, site.path, site.attr, clone=clone_pre and node == "pre")
    return reads


@dataclass(frozen=True)
class ReadPlan:
    """What to read for a set of ``(block, node)`` sites, in execution order.

    Attributes:
        wanted (tuple of (ResidualBlock, str)): the requested sites, in execution order,
            each once.
        reads (tuple of Read): the module values to take, in execution order, each once
            (Sum expands to In and Pre of its block).
    """

    wanted: tuple[tuple[ResidualBlock, str], ...]
    reads: tuple[Read, ...]

    @property
    def last(self) -> Read:
        """The last read: the forward may stop right after it."""
        return self.reads[-1]

    @property
    def keys(self) -> tuple[Key, ...]:
        """``(block name, node)`` of the requested sites, in execution order."""
        return tuple((block.name, node) for block, node in self.wanted)

    def values(self, got: Mapping[Key, torch.Tensor]) -> dict[Key, torch.Tensor]:
        """The requested nodes from the values read (``got[read.key]``): Sum is ``In + Pre``.

        Args:
            got (mapping): ``(block name, node) -> value`` for every read of the plan.

        Returns:
            dict ``(block name, node) -> value`` in execution order.
        """
        out = {}
        for block, node in self.wanted:
            if node == "sum":
                out[(block.name, node)] = got[(block.name, "in")] + got[(block.name, "pre")]
            else:
                out[(block.name, node)] = got[(block.name, node)]
        return out


def plan_reads(sites: Iterable[tuple[ResidualBlock, str]], clone_pre: bool = True) -> ReadPlan:
    """The :class:`ReadPlan` of a set of ``(block, node)`` sites.

    Args:
        sites (iterable of (ResidualBlock, str)): blocks and nodes (``"in"``, ``"pre"``,
            ``"sum"``, ``"post"``); duplicates are read once.
        clone_pre (bool): clone Pre when it is read (see :func:`block_reads`).

    Returns:
        ReadPlan.

    Raises:
        ValueError: an unknown node (listing the valid ones) or no site.
    """
    sites = list(dict.fromkeys((block, node) for block, node in sites))
    if not sites:
        raise RSIError("no (block, node) site to read")
    check_nodes([node for _, node in sites])
    wanted = tuple(sorted(sites, key=lambda bn: bn[0].order(bn[1])))
    reads: dict[Key, Read] = {}
    for block, node in wanted:
        per_block = block_reads(block, clone_pre)
        for need in (("in", "pre") if node == "sum" else (node,)):
            reads.setdefault((block.name, need), per_block[need])
    return ReadPlan(wanted, tuple(sorted(reads.values(), key=lambda r: r.order)))


def sites_of(blocks: Sequence[ResidualBlock], nodes: Sequence[str]) -> list[tuple[ResidualBlock, str]]:
    """Every ``(block, node)`` of some blocks and nodes (nodes validated)."""
    nodes = check_nodes(nodes)
    return [(block, node) for block in blocks for node in dict.fromkeys(nodes)]
