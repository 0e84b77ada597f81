"""A TransformerLens view of a residual model: canonical hook names per block.

:func:`hooked` returns a ``transformer_lens.HookedRootModule`` over a model found by
:func:`rsi_plugin.residual_blocks`, with four ``HookPoint`` s per block named by one
function, :func:`hook_name`::

    blocks.<stage>.<index>.hook_in     In (the downsample's output, or the block's input)
    blocks.<stage>.<index>.hook_pre    Pre (the branch's output before the sum)
    blocks.<stage>.<index>.hook_sum    Sum = In + Pre
    blocks.<stage>.<index>.hook_post   Post = activation(Sum), the block's output

plus TransformerLens-style aliases of the same hook points (:data:`HOOK_ALIASES`), for
readers who know ``hook_resid_pre`` as a block's input::

    blocks.<stage>.<index>.hook_resid_pre    = hook_in
    blocks.<stage>.<index>.hook_branch       = hook_pre   (the branch, not the stream)
    blocks.<stage>.<index>.hook_resid_post   = hook_post

``hook_resid_mid`` is deliberately not an alias: in TransformerLens it is a state of the
residual stream between two branches, and a ResNet block has one branch; its output is
``hook_branch`` and the stream after adding it is ``hook_sum`` (before the ReLU).
``run_with_hooks`` and ``names_filter`` take the aliases; ``run_with_cache`` returns a
TransformerLens ``ActivationCache`` (keys are the canonical names) whose ``cache[...]``
also takes an alias name or a ``(node, block)`` pair such as ``cache["resid_pre", "2.1"]``.
``run_with_cache`` / ``run_with_hooks`` work as on any TransformerLens model::

    view = rsi.lens.hooked(model)
    logits, cache = view.run_with_cache(x, names_filter=lambda n: n.endswith("hook_pre"))
    def ablate(value, hook):
        value[:, [1, 9]] = means
        return value
    logits = view.run_with_hooks(x, fwd_hooks=[(hook_name("3.1", "post"), ablate)])

The view does not copy or patch the model: it registers plain PyTorch hooks on the
model for the length of each forward and removes them in ``finally``. Pre is cloned
before the block adds the identity into it in place; Sum is computed as ``In + Pre``
(after the In / Pre hooks ran) and Post as ``activation(Sum)`` (after the Sum hook ran),
which is exactly what the block computes, so editing any hook point changes what
follows it as an nnsight patch of that node (:func:`rsi_plugin.ablate`) would. The
cache equals :func:`rsi_plugin.capture` with ``center=False``.

transformer-lens is an optional extra (``pip install "rsi_plugin[tl]"`` or
``pip install "transformer-lens>=2"``); it is imported when a view is first built, never
by ``import rsi_plugin`` or ``import rsi_plugin.access.lens``.
"""

from __future__ import annotations

import functools
import re
from typing import Any, Sequence

import torch
from torch import nn

from rsi_plugin.access.hooks import register_read
from rsi_plugin.access.plan import block_reads
from rsi_plugin.core.blocks import NODES, ResidualBlock, check_nodes, resolve_blocks
from rsi_plugin.errors import InputTypeError, RSIError
from rsi_plugin.core.wrapped import unwrap

__all__ = ["HOOK_NODES", "HOOK_ALIASES", "hook_name", "parse_hook_name", "canonical_hook_name", "hooked",
           "view_class"]

#: The nodes that get a hook point in every block, in execution order of a block.
HOOK_NODES: tuple[str, ...] = NODES

#: TransformerLens-style names of the same hook points: alias -> node.
HOOK_ALIASES: dict[str, str] = {"resid_pre": "in", "branch": "pre", "resid_post": "post"}

_HOOK_RE = re.compile(r"blocks\.(?P<block>.+)\.hook_(?P<node>[a-z_]+)")
_NOT_ALIASED = {"resid_mid": "hook_resid_mid is not an alias: a ResNet block has one branch, whose output is "
                             "hook_branch (= hook_pre); the stream after adding it is hook_sum (before the ReLU)"}


def _node_of(name: str) -> str:
    """A node or an alias (``"resid_pre"``) -> the node (``"in"``)."""
    if name in _NOT_ALIASED:
        raise RSIError(_NOT_ALIASED[name])
    return HOOK_ALIASES.get(name, name)


def hook_name(block: str | ResidualBlock, node: str) -> str:
    """The TransformerLens name of a node: ``hook_name("2.1", "pre") == "blocks.2.1.hook_pre"``.

    An alias gives the canonical name: ``hook_name("2.1", "resid_pre") == "blocks.2.1.hook_in"``.

    Raises:
        ValueError: for an unknown node.
    """
    name = block.name if isinstance(block, ResidualBlock) else str(block)
    node = check_nodes([_node_of(node)])[0]
    return f"blocks.{name}.hook_{node}"


def parse_hook_name(name: str) -> tuple[str, str]:
    """The ``(block, node)`` of a hook name (or of an alias), the inverse of :func:`hook_name`.

    Raises:
        ValueError: if ``name`` is not ``blocks.<block>.hook_<node>`` (or an alias).
    """
    match = _HOOK_RE.fullmatch(name) if isinstance(name, str) else None
    if match is not None and match.group("node") in _NOT_ALIASED:
        raise RSIError(f"{name!r}: {_NOT_ALIASED[match.group('node')]}")
    if match is None or _node_of(match.group("node")) not in NODES:
        raise RSIError(f"{name!r} is not a hook name; expected blocks.<block>.hook_<node> with node in "
                         f"{', '.join(NODES)} (or an alias: {', '.join(HOOK_ALIASES)}), e.g. 'blocks.2.1.hook_pre'")
    return match.group("block"), _node_of(match.group("node"))


def canonical_hook_name(name: str) -> str:
    """``"blocks.2.1.hook_resid_pre"`` -> ``"blocks.2.1.hook_in"``; canonical names are returned as is.

    Raises:
        ValueError: if ``name`` is not a hook name.
    """
    return hook_name(*parse_hook_name(name))


def _canonical_filter(names_filter: Any) -> Any:
    """A TransformerLens ``names_filter`` that also accepts the aliases."""
    if isinstance(names_filter, str):
        return _canonical_or_same(names_filter)
    if isinstance(names_filter, list):
        return [_canonical_or_same(n) for n in names_filter]
    if callable(names_filter):
        def accepts(name: str) -> bool:
            block, node = parse_hook_name(name)
            return bool(names_filter(name)) or any(
                names_filter(f"blocks.{block}.hook_{alias}") for alias, of in HOOK_ALIASES.items() if of == node)
        return accepts
    return names_filter


def _canonical_or_same(name: Any) -> Any:
    try:
        return canonical_hook_name(name)
    except ValueError:
        return name


def _transformer_lens():
    try:
        from transformer_lens.ActivationCache import ActivationCache
        from transformer_lens.hook_points import HookPoint
        from transformer_lens.HookedRootModule import HookedRootModule
    except ImportError as error:
        raise ImportError(
            "the TransformerLens view needs transformer-lens: pip install 'rsi_plugin[tl]' "
            "(or pip install 'transformer-lens>=2')") from error
    return HookedRootModule, HookPoint, ActivationCache


@functools.lru_cache(maxsize=None)
def view_class() -> type:
    """The view class (a ``HookedRootModule`` subclass), built on first use.

    Raises:
        ImportError: if transformer-lens is not installed, saying how to install it.
    """
    HookedRootModule, HookPoint, ActivationCache = _transformer_lens()

    class ResidualActivationCache(ActivationCache):
        """TransformerLens's ``ActivationCache`` of a residual view: keys are canonical hook
        names; ``cache[...]`` also takes an alias (``"blocks.2.1.hook_resid_pre"``) or a
        ``(node, block)`` / ``(block, node)`` pair of strings (``cache["resid_pre", "2.1"]``).
        Its transformer-only helpers (``accumulated_resid``, ``decompose_resid``, ...) need a
        transformer's ``cfg`` and do not apply."""

        def __getitem__(self, key: Any) -> torch.Tensor:
            if isinstance(key, str) and key not in self.cache_dict and _HOOK_RE.fullmatch(key):
                key = canonical_hook_name(key)
            elif isinstance(key, tuple) and len(key) == 2 and all(isinstance(k, str) for k in key):
                first, second = key
                node_first = first in NODES or first in HOOK_ALIASES or first in _NOT_ALIASED
                key = hook_name(second, first) if node_first else hook_name(first, second)
            return super().__getitem__(key)

    class HookedResidualModel(HookedRootModule):
        """A ``HookedRootModule`` over a residual model, with hook points per block node.

        Args:
            model (nn.Module): the model (an nnsight wrapper is unwrapped). It is
                not a submodule of the view (``view.to`` / ``setup`` leave it alone).
            blocks (str or list of str): the blocks that get hook points (``"all"``).
        """

        def __init__(self, model: nn.Module, blocks: str | Sequence[str] | None = "all") -> None:
            super().__init__()
            module = unwrap(model)
            if not isinstance(module, nn.Module):
                raise InputTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
            self.__dict__["model"] = module  # kept out of the module tree on purpose
            self.rsi_blocks: tuple[ResidualBlock, ...] = tuple(resolve_blocks(module, blocks))
            self.blocks = nn.ModuleDict()
            for block in self.rsi_blocks:
                container = self.blocks
                for part in block.name.split("."):
                    if part not in container:
                        container[part] = nn.ModuleDict()
                    container = container[part]
                for node in HOOK_NODES:
                    container[f"hook_{node}"] = HookPoint()
            self.setup()
            for block in self.rsi_blocks:  # the aliases name the same hook points (not cached twice)
                for alias, node in HOOK_ALIASES.items():
                    self.mod_dict[f"blocks.{block.name}.hook_{alias}"] = self.hook_dict[hook_name(block, node)]

        def run_with_cache(self, *model_args: Any, names_filter: Any = None, return_cache_object: bool = True,
                           remove_batch_dim: bool = False, **kwargs: Any):
            """TransformerLens's ``run_with_cache``; ``names_filter`` may use the aliases.

            Returns:
                (logits, cache): the cache is a TransformerLens ``ActivationCache`` of
                ``[N, C, H, W]`` values keyed by canonical hook names (a dict when
                ``return_cache_object=False``).
            """
            out, cache = super().run_with_cache(*model_args, names_filter=_canonical_filter(names_filter),
                                                remove_batch_dim=remove_batch_dim, **kwargs)
            if return_cache_object:
                cache = ResidualActivationCache(cache, self, has_batch_dim=not remove_batch_dim)
            return out, cache

        def hook_point(self, block: str | ResidualBlock, node: str):
            """The ``HookPoint`` of ``(block, node)``.

            Raises:
                ValueError: for a block without hook points or an unknown node.
            """
            name = hook_name(block, node)
            if name not in self.hook_dict:
                raise RSIError(f"no hook point {name!r}; blocks with hook points: "
                                 f"{', '.join(b.name for b in self.rsi_blocks)}")
            return self.hook_dict[name]

        def forward(self, images: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
            """``model(images)`` with every block's nodes routed through its hook points."""
            handles = []
            try:
                for block in self.rsi_blocks:
                    handles.extend(self._install(block))
                return self.model(images, *args, **kwargs)
            finally:
                for handle in handles:
                    handle.remove()

        def _install(self, block: ResidualBlock) -> list:
            """Register the PyTorch hooks that route one block through its hook points, at the
            sites of :func:`~rsi_plugin.access.plan.block_reads` (the block's spec)."""
            points = {node: self.hook_point(block, node) for node in HOOK_NODES}
            seen: dict[str, torch.Tensor] = {}

            def on_in(value: torch.Tensor) -> torch.Tensor:
                seen["in"] = points["in"](value)
                return seen["in"]

            def on_pre(value: torch.Tensor) -> torch.Tensor:
                seen["pre"] = points["pre"](value)
                return seen["pre"].clone()  # the block adds the identity into it in place

            def on_post(value: torch.Tensor) -> torch.Tensor:
                total = points["sum"](seen.pop("in") + seen.pop("pre"))
                post = block.activate(total)
                return points["post"](post.clone() if post is total else post)

            reads = block_reads(block, clone_pre=False)  # Pre: the clone goes to the model, above
            return [register_read(self.model, reads[node], fn)
                    for node, fn in (("in", on_in), ("pre", on_pre), ("post", on_post))]

    return HookedResidualModel


def hooked(model: nn.Module, blocks: str | Sequence[str] | None = "all"):
    """A TransformerLens ``HookedRootModule`` view of ``model`` with a hook point per node.

    Args:
        model (nn.Module or NNsight): a model with residual blocks (see
            :func:`rsi_plugin.residual_blocks`).
        blocks (str or list of str): blocks that get hook points, ``"all"`` by default.

    Returns:
        HookedResidualModel: call it, ``run_with_cache`` or ``run_with_hooks`` it with
        model-ready images ``[N, 3, H, W]``; cached values are ``[N, C, H, W]``.

    Raises:
        ImportError: transformer-lens is not installed.
        ValueError: unknown block names (listing the valid ones), or no residual block.
    """
    return view_class()(model, blocks)
