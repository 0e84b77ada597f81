r"""zoo: a bundled model zoo: a procedural ten-class shapes image set and a tiny ResNet
trained on it (``weights/tiny_resnet.pt``), for fast, offline experiments, and a planted
positive control built by code. Imports :mod:`rsi_plugin.core` only.

======================  ====================================================================
:mod:`.shapes`          :data:`CLASSES`, :func:`generate`, :class:`ShapesDataset`,
                        :func:`export_imagefolder`
:mod:`.model`           :func:`build_tiny_resnet`
:mod:`.pretrained`      :func:`load_tiny`, :data:`TINY_WEIGHTS`, :data:`TINY_METADATA`
:mod:`.evaluate`        accuracy, validation set and scale sweep of the bundled model
:mod:`.data`            :func:`default_data`: the bundled model's default data per purpose
                        (natural top-k search set, scale-sweep set), built in one place
:mod:`.planted`         :func:`build_planted` (``load_model("planted")``): the positive control,
                        scale-invariant channels planted by construction
                        (:data:`PLANTED_BLOCK`, :data:`PLANTED_CHANNELS`), its classifier's
                        data :func:`planted_data` and scan settings :data:`PLANTED_FZ`
:mod:`.train`           ``python -m rsi_plugin.zoo.train``
======================  ====================================================================
"""

from __future__ import annotations

from rsi_plugin._lazy import lazy_exports as _lazy_exports
from rsi_plugin.core.registry import register_model as _register_model

_EXPORTS: dict[str, str] = {
    "CLASSES": "shapes", "generate": "shapes", "ShapesDataset": "shapes", "export_imagefolder": "shapes",
    "build_tiny_resnet": "model",
    "load_tiny": "pretrained", "TINY_WEIGHTS": "pretrained", "TINY_METADATA": "pretrained",
    "default_data": "data",
    "build_planted": "planted", "planted_data": "planted", "PlantedDataset": "planted",
    "PLANTED_BLOCK": "planted", "PLANTED_CHANNELS": "planted", "PLANTED_FZ": "planted",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = _lazy_exports(globals(), _EXPORTS)


def _build_tiny(device):
    from rsi_plugin.zoo.pretrained import load_tiny

    return load_tiny(device=device)


def _tiny_classes() -> tuple[str, ...]:
    from rsi_plugin.zoo.shapes import CLASSES

    return tuple(CLASSES)


def _build_planted(device):
    from rsi_plugin.zoo.planted import build_planted

    return build_planted().to(device)


# load_model("tiny") / load_model("planted") find them here (the root package imports the zoo)
_register_model("tiny", _build_tiny, _tiny_classes)
_register_model("planted", _build_planted)
