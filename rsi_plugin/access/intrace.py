"""Residual nodes inside your own nnsight trace.

:func:`rsi_plugin.capture` and :func:`rsi_plugin.ablate` run their own trace. Inside a
trace of your own, :func:`block_nodes` gives a block's In / Pre / Sum / Post as nnsight values,
with the pitfalls handled: Pre is cloned before torchvision adds the identity into it in
place, In is the downsample's output where the block has one, Sum is ``In + Pre`` read in
execution order::

    model = rsi.load_model("resnet18")
    env = rsi.wrap(model)                      # or your own nnsight.NNsight(model)
    with env.trace(x):
        b = rsi.block_nodes(env, "2.1")
        pre = b.pre.save()                     # [N, C, H, W], the branch before the sum
        total = b.sum.save()                   # In + Pre (reuses the Pre read above)
        b.patch("post", [1, 9], 0.0)           # overwrite Post's channels 1 and 9 everywhere
        logits = env.output.save()

Read nodes in execution order, as in any nnsight trace: In, Pre and Sum (in any order
among them: reading one of In and Pre takes both, in the block's order) before Post.
Reading a node twice in one invoke returns the first read.

The library's own traces cannot run inside yours (nnsight has one trace at a time);
:func:`check_not_in_trace` turns that mistake into a :class:`NestedTraceError`.
"""

from __future__ import annotations

import warnings
import weakref
from typing import Any, Sequence

import torch
from torch import nn

from rsi_plugin.access.nnsight_api import (
    current_mediator,
    envoy_path,
    is_envoy,
    is_root_envoy,
    read_site,
    write_input,
)
from rsi_plugin.access.plan import block_reads
from rsi_plugin.core.blocks import ResidualBlock, check_nodes, get_block, residual_blocks
from rsi_plugin.core.channels import channel_values
from rsi_plugin.core.wrapped import unwrap
from rsi_plugin.errors import InputTypeError, RSIError

__all__ = ["NestedTraceError", "BlockNodes", "block_nodes", "in_trace", "check_not_in_trace", "TRACE_OPTIONS",
           "check_trace_options"]

#: Keyword arguments an nnsight trace of a :class:`rsi_plugin.access.remote.VisionModel` takes
#: for itself (any other keyword reaches the model's ``forward``).
TRACE_OPTIONS: tuple[str, ...] = ("remote", "backend", "blocking", "job_id", "verbose")


_WARNED_TRAIN: "weakref.WeakSet[nn.Module]" = weakref.WeakSet()


def _warn_if_training(module: Any) -> None:
    """Warn once per model when a user's own trace runs a model in train mode: the library's
    own calls evaluate in eval mode, but a trace of yours runs the model as you left it."""
    if isinstance(module, nn.Module) and any(m.training for m in module.modules()) and module not in _WARNED_TRAIN:
        _WARNED_TRAIN.add(module)
        warnings.warn(
            "rsi.block_nodes: the model is in train mode, so your trace computes BatchNorm with the batch's "
            "statistics and updates its running buffers; call model.eval() first (rsi.capture / rsi.ablate "
            "do so themselves). This warning is shown once per model.", UserWarning, stacklevel=3)


class NestedTraceError(RuntimeError):
    """A library call that runs its own nnsight trace was made inside a user's trace."""


def _mediator() -> Any:
    """The nnsight mediator running the current intervention code, or ``None``."""
    return current_mediator()


def in_trace() -> bool:
    """Whether the caller runs inside the body of an nnsight ``with model.trace(...)``."""
    return _mediator() is not None


def check_not_in_trace(what: str) -> None:
    """Raise :class:`NestedTraceError` if called from inside an nnsight trace.

    Args:
        what (str): the name of the call, for the message (``"capture"``).

    Raises:
        NestedTraceError: saying what to use inside a trace instead.
    """
    if in_trace():
        raise NestedTraceError(
            f"rsi.{what} runs its own nnsight trace, so it cannot be called inside a `with model.trace(...)` "
            f"block; inside your trace read a block's nodes with rsi.block_nodes(model, '2.1').pre / .in_ / .sum / "
            f".post (and overwrite channels with .patch(node, channels, values)), or call rsi.{what} "
            "outside the block")


def check_trace_options(kwargs: dict[str, Any], what: str) -> None:
    """Reject keyword arguments that are not nnsight trace options (:data:`TRACE_OPTIONS`).

    Raises:
        TypeError: naming the unexpected keywords and listing the valid ones.
    """
    unknown = sorted(set(kwargs) - set(TRACE_OPTIONS))
    if unknown:
        hint = ""
        if "target" in unknown:
            hint = (" (target= does not apply: the criteria score the channels of a block on their own "
                    "images, not an output class)")
        raise InputTypeError(f"{what} got unexpected keyword argument(s) {', '.join(map(repr, unknown))}{hint}; "
                        f"extra keywords must be nnsight trace options: {', '.join(TRACE_OPTIONS)}")


def _envoy(model: Any):
    from rsi_plugin.access.remote import wrap  # remote's wrapper class imports core and nnsight_api only

    if is_envoy(model):
        if not is_root_envoy(model):
            raise RSIError(f"rsi.block_nodes needs the model's root envoy (the wrapper you trace), got the envoy "
                           f"of the submodule {envoy_path(model)!r}")
        return model
    if not isinstance(model, nn.Module):
        raise InputTypeError(f"model must be a torch.nn.Module or its nnsight wrapper, got {type(model).__name__}")
    return wrap(model)


class BlockNodes:
    """The nodes of one residual block as nnsight values, for use inside a trace.

    Built by :func:`block_nodes`. Each property reads its node in the running trace
    (``[N, C, H, W]``, the rows of the current invoke); outside a trace they raise
    :class:`RuntimeError`.

    Attributes:
        block (ResidualBlock): the block.
        envoy (NNsight): the wrapper whose modules are read.
    """

    def __init__(self, envoy: Any, block: ResidualBlock) -> None:
        self.envoy = envoy
        self.block = block
        self._seen: dict[str, Any] = {}
        self._owner: weakref.ref | None = None

    def __repr__(self) -> str:
        return f"BlockNodes({self.block.name!r}, {self.block.kind})"

    def _cache(self) -> dict[str, Any]:
        mediator = _mediator()
        if mediator is None:
            raise RuntimeError(f"rsi.block_nodes(model, {self.block.name!r}) reads nodes inside a "
                               "`with model.trace(...)` block; outside a trace use rsi.capture")
        if self._owner is None or self._owner() is not mediator:  # a new trace or invoke: forget
            self._owner, self._seen = weakref.ref(mediator), {}
        return self._seen

    def _read(self, node: str) -> Any:
        seen = self._cache()
        if node in ("in", "pre") and node not in seen:
            # take In and Pre together, in execution order, so .in_, .pre and .sum may come in any order
            for need in sorted(("in", "pre"), key=self.block.order):
                if need not in seen:
                    self._take(need)
        if node not in seen:
            self._take(node)
        return seen[node]

    def _take(self, node: str) -> None:
        read = block_reads(self.block)[node]  # the plan's rules: where, and Pre cloned
        raw = read_site(self.envoy, read.path, read.attr)
        self._seen[("raw", node)] = raw  # the model's own tensor, for patches
        self._seen[node] = read.take(raw)  # the block adds into Pre in place

    def get(self, node: str) -> Any:
        """The value of ``node`` (``"in"``, ``"pre"``, ``"sum"`` or ``"post"``) in this trace.

        Raises:
            ValueError: an unknown node. RuntimeError: outside a trace.
        """
        node = check_nodes([node])[0]
        seen = self._cache()
        if node == "sum" and "sum" not in seen:
            seen["sum"] = self._read("in") + self._read("pre")
        return self._read(node)

    @property
    def in_(self) -> Any:
        """In ``[N, C, H, W]``: the block's input, or its downsample's output."""
        return self.get("in")

    @property
    def pre(self) -> Any:
        """Pre ``[N, C, H, W]``: the branch's output, cloned before the in-place sum."""
        return self.get("pre")

    @property
    def sum(self) -> Any:
        """Sum ``[N, C, H, W]``: ``In + Pre``, the pre-activation sum."""
        return self.get("sum")

    @property
    def post(self) -> Any:
        """Post ``[N, C, H, W]``: the block's output, ``activation(In + Pre)``."""
        return self.get("post")

    def patch(self, node: str, channels: Sequence[int], values: float | Sequence[float] | torch.Tensor = 0.0) -> None:
        """Overwrite ``channels`` of ``node`` with ``values`` at every position, in this trace
        (what :func:`rsi_plugin.ablate` does; ``"sum"`` is written as Post ``= activation(values)``).
        Nodes read afterwards (this one included) show the patch. In of a block without a
        downsample (its input) must be patched before any of the block's nodes is read.

        Args:
            node (str): ``"in"``, ``"pre"``, ``"sum"`` or ``"post"``.
            channels (sequence of int): channels in ``[0, C)``.
            values (float, sequence or Tensor): one value for all or one per channel.

        Raises:
            ValueError: an unknown node or bad values. IndexError: a channel out of range.
            RuntimeError: outside a trace, or In patched after the block's nodes were read.
        """

        node = check_nodes([node])[0]
        seen = self._cache()
        index, vals = channel_values(channels, values, self.block.channels)
        if not len(index):
            return

        def fill(like: torch.Tensor) -> torch.Tensor:
            return vals.to(like.device, like.dtype)[None, :, None, None]

        site = None if node == "sum" else self.block.site(node)
        if node == "in" and site.attr == "input":  # the block's input feeds branch and identity: a copy
            if "in" in seen:
                raise RuntimeError(f"patch In of block {self.block.name} before reading its nodes (In is the "
                                   "block's input, which the trace has already passed)")
            patched = read_site(self.envoy, site.path, "input").clone()
            patched[:, index.to(patched.device)] = fill(patched)
            write_input(self.envoy, site.path, patched)
            seen["in"] = seen[("raw", "in")] = patched
        elif node in ("in", "pre"):  # a module's output, changed in place before the block uses it
            self._read(node)
            raw = seen[("raw", node)]
            raw[:, index.to(raw.device)] = fill(raw)
            if seen[node] is not raw:
                seen[node][:, index.to(raw.device)] = fill(raw)
        elif node == "sum":
            total = self.get("sum").clone()
            total[:, index.to(total.device)] = fill(total)
            self._read("post")
            raw = seen[("raw", "post")]
            raw[:, index.to(raw.device)] = self.block.activate(fill(raw))
            seen["sum"] = total
            return
        else:
            self._read("post")
            raw = seen[("raw", "post")]
            raw[:, index.to(raw.device)] = fill(raw)
            return
        seen.pop("sum", None)


def block_nodes(model: nn.Module | Any, block: str | ResidualBlock) -> BlockNodes:
    """A block's residual nodes for use inside your own ``with model.trace(...)``.

    Args:
        model (nn.Module or NNsight): the model (its wrapper from :func:`rsi_plugin.wrap` is
            used) or the nnsight wrapper you trace.
        block (str or ResidualBlock): the block, e.g. ``"2.1"``.

    Returns:
        :class:`BlockNodes` with ``.in_``, ``.pre``, ``.sum``, ``.post`` and ``.patch(...)``.

    Raises:
        ValueError: an unknown block (listing the valid ones), or a submodule's envoy.
        TypeError: neither a module nor an nnsight wrapper.

    Warns:
        UserWarning: once per model, when the model is in train mode (your trace runs it as
            you left it: BatchNorm on the batch's statistics, its buffers updated), unlike
            :func:`rsi_plugin.capture` and :func:`rsi_plugin.ablate`, which evaluate in eval mode.
    """
    envoy = _envoy(model)
    _warn_if_training(unwrap(envoy))
    return BlockNodes(envoy, get_block(residual_blocks(unwrap(envoy)), block))
