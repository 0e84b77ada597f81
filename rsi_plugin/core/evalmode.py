"""Run an analysis in eval mode and give the caller's model back in the mode it was in.

A model in train mode computes BatchNorm with the batch's statistics and updates its
running buffers on every forward: criteria computed that way are not the model's, and the
model comes back changed. :func:`eval_mode` switches every submodule to eval for the
duration of a call and restores each one's own ``training`` flag afterwards (also when
the call raises), as :func:`rsi_plugin.render` does.
"""

from __future__ import annotations

import functools
from contextlib import contextmanager
from typing import Any, Callable, Iterator, TypeVar

from torch import nn

from rsi_plugin.core.wrapped import unwrap

__all__ = ["eval_mode", "runs_in_eval_mode"]

F = TypeVar("F", bound=Callable[..., Any])


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode inside the block; every submodule's ``training`` flag restored on exit.

    Args:
        model (nn.Module): the model (an nnsight wrapper is unwrapped).

    Yields:
        the model.
    """
    module = unwrap(model)
    modes = [(m, m.training) for m in module.modules()] if isinstance(module, nn.Module) else []
    try:
        for m, _ in modes:
            m.training = False
        yield model
    finally:
        for m, mode in modes:
            m.training = mode


def runs_in_eval_mode(fn: F) -> F:
    """Decorate a function whose first argument is the model (or an object with a
    ``.model``, such as :class:`~rsi_plugin.criteria.captum.ScaleInvariance`) to run it under
    :func:`eval_mode`."""

    @functools.wraps(fn)
    def wrapper(first: Any, *args: Any, **kwargs: Any) -> Any:
        model = first if isinstance(unwrap(first), nn.Module) else getattr(first, "model", None)
        if model is None:
            return fn(first, *args, **kwargs)
        with eval_mode(model):
            return fn(first, *args, **kwargs)

    return wrapper  # type: ignore[return-value]
