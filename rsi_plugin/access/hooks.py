r"""Reading residual nodes with plain PyTorch hooks, by the rules of :mod:`rsi_plugin.access.plan`.

The feature-visualisation loop reads one node thousands of times with autograd through it;
an nnsight trace would add its set-up to every step, so it reads with forward hooks instead
(:class:`NodeProbe`). The hooks follow the same :class:`~rsi_plugin.access.plan.ReadPlan` as
:func:`~rsi_plugin.capture`: the same sites (the block's spec, ``BlockSpec(post=...)``
included), Pre cloned, Sum ``= In + Pre``, execution order, and the forward stopped right
after the last read (a private exception raised by that hook), so nothing after the node is
computed. :func:`register_read` turns one :class:`~rsi_plugin.access.plan.Read` into a hook;
the TransformerLens view (:mod:`rsi_plugin.access.lens`) uses it too.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from torch import nn

from rsi_plugin.access.plan import Read, plan_reads
from rsi_plugin.core.blocks import ResidualBlock, check_nodes, get_block, get_module, residual_blocks, split_name
from rsi_plugin.core.wrapped import unwrap

__all__ = ["NodeProbe", "relu_source", "register_read"]


def register_read(model: nn.Module, read: Read, fn: Callable[[torch.Tensor], torch.Tensor | None]) -> Any:
    """Register a hook that hands the value of ``read`` to ``fn`` during a forward.

    A read of an ``"output"`` is a forward hook, of an ``"input"`` (the first positional
    input) a forward pre-hook. What ``fn`` returns, unless ``None``, replaces that value in
    the forward (what the model goes on with).

    Args:
        model (nn.Module): the model (unwrapped).
        read (Read): where to read.
        fn (callable): ``fn(value) -> Tensor or None``.

    Returns:
        the ``torch.utils.hooks.RemovableHandle``.
    """
    module = get_module(model, read.path)
    if read.attr == "output":
        return module.register_forward_hook(lambda m, args, output: fn(output))

    def pre_hook(m: nn.Module, args: tuple) -> tuple | None:
        new = fn(args[0])
        return None if new is None else (new,) + tuple(args[1:])

    return module.register_forward_pre_hook(pre_hook)


def relu_source(blocks: Sequence[ResidualBlock], block: ResidualBlock, node: str) -> ResidualBlock | None:
    r"""The block whose pre-ReLU sum ``In + Pre`` is the pre-activation of ``node``, if any.

    Post is ``ReLU(In + Pre)`` of its own block. In of a block without a downsample that
    follows another block of its stage (``"3.1"`` after ``"3.0"``) is that block's output,
    ``ReLU`` of its sum. In of a stage's first block without a downsample (resnet18's 1.0:
    the stem's max-pooled ReLU), In with a downsample (a BatchNorm output), In after a block
    whose spec reads Post elsewhere than at the block's output (``BlockSpec(post=...)``: the
    block's output is then not its Post), Pre and Sum have no such source (``None``). For blocks without a ReLU after the sum (ConvNeXt) the
    sum equals the node, so reading it changes nothing.

    Args:
        blocks (sequence of ResidualBlock): the model's blocks (:func:`residual_blocks`).
        block (ResidualBlock): the block of the node.
        node (str): ``"in"``, ``"pre"``, ``"sum"`` or ``"post"``.

    Returns:
        ResidualBlock or None.
    """
    if node == "post":
        return block
    if node != "in" or block.downsample_path is not None:
        return None
    split = split_name(block.name)
    if split is None or split[1] == 0 or block.index == 0:
        return None
    previous = blocks[block.index - 1]
    if previous.post_path is not None:  # BlockSpec(post=...): the block's output is not its Post
        return None
    return previous if split_name(previous.name) == (split[0], split[1] - 1) else None


class _StopForward(Exception):
    """Raised by the hook of a plan's last read, to skip the rest of the forward."""


class NodeProbe:
    r"""Read one node of a residual block with forward hooks, stopping the forward there.

    A context manager: hooks are registered on entry and removed on exit (also on error).
    Calling it runs ``model(x)`` up to the node and returns the node's value, with autograd.
    The reads are those of :func:`~rsi_plugin.access.plan.plan_reads`, as in
    :func:`~rsi_plugin.capture`:

    ======== ===================================================================
    node     read as
    ======== ===================================================================
    in       the shortcut's output (``downsample``), or the block's input
    pre      a clone of the output of the spec's ``pre`` module, before the in-place sum
    sum      ``in + pre``
    post     the output of the spec's ``post`` module (the block's output by default)
    ======== ===================================================================

    With ``paper_compat=True``, Pre is what Lucent's ``ModuleHook`` records: a reference
    to bn's output, returned after the block's Post has been computed (its in-place
    ``out += identity`` and ``relu`` ran) — for a torchvision block that is Post.

    With ``pre_activation=True`` (and not ``paper_compat``), the sum behind the node's ReLU
    (:func:`relu_source`) is read in the same forward, as Sum of that block, and kept in
    :attr:`pre_activation` after each call.

    Args:
        model (nn.Module): the model (an ``nnsight.NNsight`` is unwrapped).
        block (str or ResidualBlock): the block, e.g. ``"2.1"``.
        node (str): ``"in"``, ``"pre"``, ``"sum"`` or ``"post"``.
        paper_compat (bool): read Pre as Lucent does.
        pre_activation (bool): also read the pre-ReLU sum of the node.

    Shapes:
        ``probe(x)``: input ``[K, 3, H, W]`` (normalised) to ``[K, C, h, w]``.
    """

    def __init__(self, model: nn.Module, block: str | ResidualBlock, node: str, paper_compat: bool = False,
                 pre_activation: bool = False) -> None:
        check_nodes([node])
        self.model = unwrap(model, check=True)
        blocks = residual_blocks(self.model)
        self.block = get_block(blocks, block)
        self.node = node
        self.paper_compat = bool(paper_compat)
        #: the block whose pre-ReLU sum feeds the node's ReLU (``None``: not read)
        self.relu_source = relu_source(blocks, self.block, node) if pre_activation and not paper_compat else None
        #: the pre-ReLU value of the last call (``None`` when not read)
        self.pre_activation: torch.Tensor | None = None
        lucent_pre = self.paper_compat and node == "pre"
        sites = [(self.block, node)]
        if self.relu_source is not None:
            sites.append((self.relu_source, "sum"))
        if lucent_pre:  # the reference is returned once the block's Post is computed
            sites.append((self.block, "post"))
        #: the reads, in execution order (:func:`~rsi_plugin.access.plan.plan_reads`)
        self.plan = plan_reads(sites, clone_pre=not lucent_pre)
        self._handles: list[Any] = []
        self._seen: dict[tuple[str, str], torch.Tensor] = {}
        self._done = False

    def _hook(self, read: Read) -> Callable[[torch.Tensor], None]:
        last = read is self.plan.last

        def keep(value: torch.Tensor) -> None:
            self._seen[read.key] = read.take(value)
            if last:
                self._done = True
                raise _StopForward

        return keep

    def __enter__(self) -> "NodeProbe":
        try:
            for read in self.plan.reads:
                self._handles.append(register_read(self.model, read, self._hook(read)))
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        while self._handles:
            self._handles.pop().remove()
        self._seen = {}

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not self._handles:
            raise RuntimeError("NodeProbe is not active: use it as `with NodeProbe(...) as probe: probe(x)`")
        self._seen, self._done = {}, False
        try:
            self.model(x)
        except _StopForward:
            pass
        seen, self._seen = self._seen, {}
        if not self._done:
            raise RuntimeError(f"the forward never reached node {self.node!r} of block {self.block.name}")
        values = self.plan.values(seen)
        source = self.relu_source
        self.pre_activation = values[(source.name, "sum")] if source is not None else None
        return values[(self.block.name, self.node)]
