"""A model or its nnsight wrapper: :func:`unwrap` gives the ``nn.Module``.

Every function of the library takes a plain ``nn.Module`` or its nnsight wrapper (an
``nnsight.NNsight`` / :class:`~rsi_plugin.access.remote.VisionModel`). nnsight documents the
wrapped module as the envoy's ``_module`` attribute; this is the one place that reads it
(:mod:`rsi_plugin.access.nnsight_api` re-exports it with the rest of what the library
relies on from nnsight). Nothing here imports nnsight, so ``core`` stays below ``access``.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from rsi_plugin.errors import InputTypeError

__all__ = ["unwrap"]

#: the attribute of an nnsight ``Envoy`` that holds the wrapped module
WRAPPED_ATTR = "_module"


def unwrap(model: Any, check: bool = False) -> Any:
    """The ``nn.Module`` behind ``model``: the wrapped module of an nnsight wrapper, else ``model``.

    Args:
        model (nn.Module or NNsight): a model or its nnsight wrapper.
        check (bool): raise if the result is not an ``nn.Module``.

    Returns:
        nn.Module (or ``model`` itself when it wraps nothing and ``check`` is False).

    Raises:
        TypeError: with ``check=True``, when ``model`` is neither a module nor a wrapper of one.
    """
    module = getattr(model, WRAPPED_ATTR, model)
    if check and not isinstance(module, nn.Module):
        raise InputTypeError(f"model must be a torch.nn.Module or nnsight.NNsight, got {type(model).__name__}")
    return module
