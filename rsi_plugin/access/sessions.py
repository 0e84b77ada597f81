"""Whole experiments in one remote request, through nnsight sessions.

A remote trace is one round trip; a feature visualisation is thousands of forward and
backward passes, and a sweep many stacked traces per batch. Sending each step would cost
a round trip per step (2,560 per channel for the paper's FZs). Here the whole loop is sent
once: :func:`in_one_request` opens ``model.session(remote=...)`` and calls a module-level
function *inside* it, so the function runs on the server, next to the model, and only its
result comes back. The function is pickled by reference (the server imports ``rsi_plugin``;
:mod:`rsi_plugin.serve` gives the model workers the client's copy), its arguments by value.

The function belongs to the layer whose idea it is and is handed down here; this module
imports none of them. :func:`rsi_plugin.featureviz.optimize.render` hands
:func:`rsi_plugin.featureviz.engine.optimize_on_server` (one request per batch of channels:
the whole optimisation runs server-side), :func:`rsi_plugin.ablation.means.ablate_conditions`
its stacked traces (all stacks of a batch in one request), when they get ``remote=``.
"""

from __future__ import annotations

from typing import Any, Callable

from torch import nn

from rsi_plugin.errors import RSIError
from rsi_plugin.access.nnsight_api import save

__all__ = ["in_one_request", "is_remote"]


def is_remote(remote: Any) -> bool:
    """Whether a ``remote=`` value asks for a remote (or simulated remote) run."""
    return remote is not None and remote is not False


def in_one_request(model: nn.Module, function: Callable[..., Any], *args: Any, remote: Any, **kwargs: Any) -> Any:
    """``function(envoy, *args, **kwargs)`` run next to the model, in one remote request.

    Args:
        model (nn.Module or VisionModel): a model with a remote key (see
            :func:`rsi_plugin.access.remote.model_key`).
        function (callable): a module-level function of an importable module; it gets the
            server's wrapper of the model (its wrapped module is the server's ``nn.Module``)
            and may open traces on it.
        *args, **kwargs: its arguments (pickled and sent).
        remote: ``"local"``, ``True`` or a URL (see :mod:`rsi_plugin.access.remote`).

    Returns:
        what ``function`` returned, brought back from the server.

    Raises:
        RemoteConfigError, ValueError: as :func:`rsi_plugin.access.remote.check_remote` and
            :func:`rsi_plugin.access.remote.model_key`, before anything is sent.
    """
    from rsi_plugin.access.remote import check_remote, remote_ready

    if not is_remote(remote):
        raise RSIError("in_one_request needs remote='local', True or a URL")
    check_remote(remote)
    envoy = remote_ready(model)
    with envoy.session(remote=remote):
        result = save(function(envoy, *args, **kwargs))
    return result

