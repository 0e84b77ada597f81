"""A bundled model zoo: a procedural ten-class shapes image set and a tiny ResNet trained
on it (``weights/tiny_resnet.pt``), for fast, offline experiments.

* :mod:`~rsi_plugin.zoo.shapes` — :data:`CLASSES`, :func:`generate`,
  :class:`ShapesDataset`, :func:`export_imagefolder`.
* :mod:`~rsi_plugin.zoo.model` — :func:`build_tiny_resnet`.
* :mod:`~rsi_plugin.zoo.pretrained` — :func:`load_tiny`, :data:`TINY_WEIGHTS`,
  :data:`TINY_METADATA`.
* :mod:`~rsi_plugin.zoo.evaluate` — accuracy, validation set and scale sweep.
* :mod:`~rsi_plugin.zoo.train` — ``python -m rsi_plugin.zoo.train``.
"""

from rsi_plugin.zoo.model import build_tiny_resnet
from rsi_plugin.zoo.pretrained import TINY_METADATA, TINY_WEIGHTS, load_tiny
from rsi_plugin.zoo.shapes import CLASSES, ShapesDataset, export_imagefolder, generate

__all__ = [
    "CLASSES",
    "generate",
    "ShapesDataset",
    "export_imagefolder",
    "build_tiny_resnet",
    "load_tiny",
    "TINY_WEIGHTS",
    "TINY_METADATA",
]
