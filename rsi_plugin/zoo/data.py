r"""The default data of the bundled ``"tiny"`` model, built in one place.

Two sets are drawn from the procedural shapes (:mod:`rsi_plugin.zoo.shapes`), one per purpose:

* ``"natural"``: the images searched for each channel's top-k natural images (the third
  row of Fig. 1; ``source="natural"`` of :func:`rsi_plugin.criteria.channel_scan.scan`):
  ``generate(n, seed, size=input_size)``, objects anywhere in the frame, at the model's
  input size, so no crop or resize touches them.
* ``"sweep"``: the evaluation set of the §4 scale sweep (``rsi ablate``, ``rsi demo``,
  :func:`rsi_plugin.zoo.evaluate.scale_sweep`): ``generate(n, eval_seed(seed),
  size=resize_size, centered=True)``, objects at the centre (a centre crop enlarges them
  rather than cutting them out), drawn at the resize size (73 for 64 px, as 256 is to 224)
  for :func:`rsi_plugin.core.transforms.scale_crop` to crop at every scale.

``rsi scan``, ``rsi demo``, ``rsi ablate`` and the zoo's own evaluation all take their
default data from :func:`default_data`. The ``"planted"`` control (:mod:`rsi_plugin.zoo.planted`)
has its own generated set, :func:`rsi_plugin.zoo.planted.planted_data` (blobs at the centre),
drawn with the same seeds per purpose.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import nn
from torch.utils.data import Dataset

from rsi_plugin.core.modelinfo import model_info
from rsi_plugin.errors import DataError, UnknownNameError
from rsi_plugin.zoo.shapes import ShapesDataset, eval_seed
from rsi_plugin.core.wrapped import unwrap

__all__ = ["PURPOSES", "ShapesRecipe", "recipe", "default_data"]

Purpose = Literal["natural", "sweep"]
#: what the default data is for
PURPOSES: tuple[str, ...] = ("natural", "sweep")


@dataclass(frozen=True)
class ShapesRecipe:
    """How one default set is drawn: ``generate(n, seed, size, centered)``.

    Attributes:
        seed (int): the generator seed (the sweep's is ``eval_seed(seed)``).
        size (int): image side.
        centered (bool): objects at the centre.
    """

    seed: int
    size: int
    centered: bool


def recipe(purpose: Purpose, seed: int, input_size: int, resize_size: int) -> ShapesRecipe:
    """The recipe of a default set (see the module docstring).

    Args:
        purpose (str): ``"natural"`` or ``"sweep"``.
        seed (int): the run's seed.
        input_size (int): the model's input side.
        resize_size (int): the sweep's resize side.

    Returns:
        :class:`ShapesRecipe`.

    Raises:
        ValueError: an unknown purpose, naming the valid ones.
    """
    if purpose == "natural":
        return ShapesRecipe(int(seed), int(input_size), False)
    if purpose == "sweep":
        return ShapesRecipe(eval_seed(int(seed)), int(resize_size), True)
    raise UnknownNameError(f"unknown purpose {purpose!r}; valid: {', '.join(PURPOSES)}")


def default_data(model: nn.Module, purpose: Purpose, n: int, seed: int = 0) -> Dataset:
    r"""The default data of a model for a purpose: ``n`` shapes images, drawn lazily (for the
    ``"planted"`` control: ``n`` images of :func:`rsi_plugin.zoo.planted.planted_data`).

    Args:
        model (nn.Module): the bundled ``"tiny"`` model (its ``rsi_info`` gives the sizes), or
            the ``"planted"`` control.
        purpose (str): ``"natural"`` (top-k search set) or ``"sweep"`` (scale-sweep set).
        n (int): number of images.
        seed (int): the run's seed.

    Returns:
        :class:`~rsi_plugin.zoo.shapes.ShapesDataset` of ``(image [3, S, S] in [0, 1],
        label)``; :meth:`~rsi_plugin.zoo.shapes.ShapesDataset.tensors` stacks it (for
        ``"planted"``: a :class:`~rsi_plugin.zoo.planted.PlantedDataset`, the same interface).

    Raises:
        ValueError: a model other than ``"tiny"`` and ``"planted"`` (only they have bundled
            data: pass an ImageNet-layout folder instead), or an unknown purpose.
    """
    info = model_info(unwrap(model))
    if info.name == "planted":
        from rsi_plugin.zoo.planted import PlantedDataset

        r = recipe(purpose, seed, info.input_size, info.resize_size)
        return PlantedDataset(int(n), r.seed, size=r.size)
    if info.name != "tiny":
        raise DataError(f"no bundled dataset for model {info.name!r}: pass data= (an ImageNet-layout "
                         "folder, or images / batches of them); only 'tiny' has generated data")
    r = recipe(purpose, seed, info.input_size, info.resize_size)
    return ShapesDataset(int(n), r.seed, size=r.size, centered=r.centered)
