"""Models ``load_model`` builds by a name other than torchvision's: a registry that the layers
above fill, as timm's ``register_model`` does.

:mod:`rsi_plugin.zoo` registers ``"tiny"`` and ``"planted"`` when it is imported, and the root
package imports the zoo (it imports nothing heavy), so every process that imports
``rsi_plugin`` knows them. Core never imports the zoo. This module imports nothing.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

__all__ = ["RegisteredModel", "register_model", "registered_model", "registered_class_names"]


@dataclass(frozen=True)
class RegisteredModel:
    """A model ``load_model`` builds by name.

    Attributes:
        name (str): the name ``load_model`` takes.
        build (callable): ``build(device)`` -> the model on ``device``, in eval mode, carrying
            ``rsi_info`` (:class:`~rsi_plugin.core.modelinfo.ModelInfo`).
        class_names (callable, optional): ``class_names()`` -> its class names in label order.
    """

    name: str
    build: Callable[[Any], Any]
    class_names: Callable[[], tuple[str, ...]] | None = None


_MODELS: dict[str, RegisteredModel] = {}


def register_model(name: str, build: Callable[[Any], Any],
                   class_names: Callable[[], tuple[str, ...]] | None = None) -> RegisteredModel:
    """Register a model builder under ``name`` (a second registration replaces the first)."""
    entry = RegisteredModel(name, build, class_names)
    _MODELS[name] = entry
    return entry


def registered_model(name: str) -> RegisteredModel | None:
    """The registered model of this name, or ``None``."""
    return _MODELS.get(name)


def registered_class_names(name: str) -> tuple[str, ...] | None:
    """The class names a registered model declares, or ``None``."""
    entry = _MODELS.get(name)
    return tuple(entry.class_names()) if entry is not None and entry.class_names is not None else None
