"""A model or its nnsight, parallel or compiled wrapper: :func:`unwrap` gives the ``nn.Module``.

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


#: the attribute of ``torch.compile``'s wrapper (``OptimizedModule``) that holds the compiled module
COMPILED_ATTR = "_orig_mod"


def _inner(module: Any) -> Any:
    """The module a parallel or compiled wrapper holds, else ``None``."""
    if isinstance(module, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        return module.module
    if isinstance(module, nn.Module) and type(module).__name__ == "OptimizedModule" \
            and isinstance(getattr(module, COMPILED_ATTR, None), nn.Module):
        return getattr(module, COMPILED_ATTR)
    return None


def unwrap(model: Any, check: bool = False) -> Any:
    """The ``nn.Module`` behind ``model``: the wrapped module of an nnsight wrapper, of
    ``nn.DataParallel`` / ``DistributedDataParallel`` (``.module``) and of ``torch.compile``
    (``._orig_mod``), any number of them nested, else ``model``.

    As in nnsight and Captum, the library works on the model's own modules: block names are
    the model's (``"2.1"``, not ``"module.layer1.0"``), hooks go on the wrapped module (which
    a parallel or compiled wrapper shares), and it runs that module directly, uncompiled and
    on its own device (a compiled wrapper's compilation is never triggered).

    Args:
        model (nn.Module or NNsight): a model, its nnsight wrapper, or a parallel or compiled
            wrapper of it.
        check (bool): raise if the result is not an ``nn.Module``.

    Returns:
        nn.Module (or ``model`` itself when it wraps nothing and ``check`` is False).

    Raises:
        TypeError: with ``check=True``, when ``model`` is neither a module nor a wrapper of one.
    """
    module = getattr(model, WRAPPED_ATTR, model)
    inner = _inner(module)
    while inner is not None:
        module, inner = inner, _inner(inner)
    if check and not isinstance(module, nn.Module):
        raise InputTypeError(f"model must be a torch.nn.Module or nnsight.NNsight, got {type(model).__name__}")
    return module
