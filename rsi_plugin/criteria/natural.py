r"""Each channel's top-k activating images of a dataset, at the centre neuron, in one pass.

The paper's criteria look only at feature visualisations, and its §5 names this as a
limitation: "future work must incorporate responses to a wider range of natural images".
:func:`top_k_images` finds, for every channel of the nodes asked for, the ``k`` dataset
images that drive its centre neuron ``(H // 2, W // 2)`` hardest — the third row of the
paper's Fig. 1 — in a single pass of :func:`rsi_plugin.capture` over the data. The images
can then stand in for the FZs in :class:`rsi_plugin.criteria.captum.ScaleInvariance`
(``source="natural"`` of :func:`rsi_plugin.criteria.channel_scan.scan`).

Only the images that are in some channel's current top-k are kept (on the CPU), so memory
is bounded by ``channels x k x nodes`` images, whatever the dataset's size.

:func:`natural_images` is the one place where the searched images are made: the bundled
``"tiny"`` model's generated set, or an ImageNet-layout folder preprocessed as the model's
standard evaluation (``Resize(R)`` of the short side, centre crop to the input size, as
torchvision's ImageNet weights' ``transforms()``), normalised. ``rsi scan``, ``rsi demo``
and :func:`rsi_plugin.criteria.channel_scan.scan` all use it, so they search the same images.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Sequence

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from rsi_plugin.core.channels import check_channels
from rsi_plugin.access.nnsight import capture, iter_batches, wrap
from rsi_plugin.errors import RSIError, UnknownNameError
from rsi_plugin.core.wrapped import unwrap

__all__ = ["TopKImages", "top_k_images", "natural_images"]

logger = logging.getLogger(__name__)

NodeKey = tuple[str, str]


@dataclass
class TopKImages:
    r"""Each channel's top-k images for some nodes, and the images themselves.

    Attributes:
        k (int): images per channel.
        values (dict): ``(block, node)`` -> Tensor ``[C, k]``, the centre-neuron
            activations, highest first.
        indices (dict): ``(block, node)`` -> LongTensor ``[C, k]``, the images' positions
            in the data (counted across batches from 0).
        bank (Tensor): ``[M, 3, H, W]``, every image that is in some top-k, as the data
            gave it (model-ready), on the CPU.
        bank_index (Tensor): LongTensor ``[M]``, the data position of each bank row.
        num_images (int): images seen.
    """

    k: int
    values: dict[NodeKey, Tensor]
    indices: dict[NodeKey, Tensor]
    bank: Tensor
    bank_index: Tensor
    num_images: int

    def images(self, key: NodeKey, channels: Sequence[int] | Tensor | None = None, k: int | None = None) -> Tensor:
        r"""The top images of some channels of a node.

        Args:
            key (tuple): ``(block, node)``, as given to :func:`top_k_images`.
            channels (sequence of int, optional): channels; all by default.
            k (int, optional): the first ``k`` images of each (all ``self.k`` by default).

        Returns:
            Tensor ``[K, k, 3, H, W]``, the images of channel ``channels[i]`` in row ``i``,
            highest activation first.

        Raises:
            KeyError: for a node that was not searched. ValueError: a bad ``k``.
        """
        if key not in self.indices:
            raise UnknownNameError(f"no top-k images for {key}; searched: {sorted(self.indices)}")
        k = self.k if k is None else int(k)
        if not 1 <= k <= self.k:
            raise RSIError(f"k must be in 1..{self.k}, got {k}")
        index = self.indices[key]
        if channels is not None:
            index = index[torch.tensor(check_channels(channels, index.shape[0], where=f"node {key}"),
                                       dtype=torch.long)]
        index = index[:, :k]
        row = {int(p): i for i, p in enumerate(self.bank_index.tolist())}
        rows = torch.tensor([[row[int(p)] for p in r] for r in index.tolist()], dtype=torch.long)
        return self.bank[rows]


def _top(values: Tensor, positions: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The ``k`` largest per row, ties to the earlier data position (post-ReLU nodes are
    often 0 for many images, so ties are common)."""
    by_position = positions.argsort(dim=1, stable=True)
    values, positions = values.gather(1, by_position), positions.gather(1, by_position)
    order = values.argsort(dim=1, descending=True, stable=True)[:, :k]
    return values.gather(1, order), positions.gather(1, order)


def top_k_images(
    model: nn.Module,
    data: Tensor | Iterable[Any],
    nodes: Sequence[NodeKey],
    k: int = 9,
    batch_size: int | None = None,
    progress: bool = True,
    **trace_kwargs: Any,
) -> TopKImages:
    r"""Each channel's ``k`` most activating images at the centre neuron, in one pass.

    Ties go to the image that comes first in ``data``, so the result does not depend on
    the batching.

    Args:
        model (nn.Module): a model with residual blocks.
        data (Tensor, list or DataLoader): model-ready (normalised) images ``[N, 3, H, W]``,
            a list of batches, or an iterable of ``images`` or ``(images, labels)``
            batches (as :func:`rsi_plugin.capture` takes).
        nodes (sequence of tuple): ``(block, node)`` pairs, e.g. ``[("2.1", "in"),
            ("2.1", "pre")]``.
        k (int): images per channel (the paper's Fig. 1 shows 9).
        batch_size (int, optional): split a tensor ``data`` into batches of this size.
        progress (bool): a tqdm bar over batches.
        **trace_kwargs: passed on to :func:`rsi_plugin.capture`.

    Returns:
        :class:`TopKImages`.

    Raises:
        ValueError: ``k < 1``, no node, or fewer than ``k`` images in ``data``.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise RSIError(f"k must be an integer >= 1, got {k!r}")
    keys = list(dict.fromkeys((str(b), str(n)) for b, n in nodes))
    if not keys:
        raise RSIError("no node given: pass (block, node) pairs such as ('2.1', 'in')")
    module = unwrap(model)
    envoy = wrap(module)
    blocks = list(dict.fromkeys(b for b, _ in keys))
    names = list(dict.fromkeys(n for _, n in keys))
    values: dict[NodeKey, Tensor] = {}
    indices: dict[NodeKey, Tensor] = {}
    kept: dict[int, Tensor] = {}
    seen = 0
    for batch in tqdm(iter_batches(data, batch_size), disable=not progress, desc="top-k images", unit="batch"):
        acts = capture(envoy, batch, blocks=blocks, nodes=names, center=True, **trace_kwargs)
        positions = torch.arange(seen, seen + batch.shape[0])
        for key in keys:
            batch_vals = acts[key].detach().float().cpu().T  # [C, B]
            batch_idx = positions.expand_as(batch_vals)
            if key in values:
                batch_vals = torch.cat([values[key], batch_vals], dim=1)
                batch_idx = torch.cat([indices[key], batch_idx], dim=1)
            values[key], indices[key] = _top(batch_vals, batch_idx, k)
        needed = set(torch.cat([i.flatten() for i in indices.values()]).tolist())
        cpu = batch.detach().cpu()
        for j, p in enumerate(positions.tolist()):
            if p in needed:
                kept[p] = cpu[j].clone()
        for p in [p for p in kept if p not in needed]:
            del kept[p]
        seen += batch.shape[0]
    if seen < k:
        raise RSIError(f"data holds {seen} image(s), fewer than k={k}")
    order = sorted(kept)
    logger.info("top-%d images of %d node(s) over %d images: %d distinct images kept", k, len(keys), seen, len(order))
    return TopKImages(k=k, values=values, indices=indices, bank=torch.stack([kept[p] for p in order]),
                      bank_index=torch.tensor(order, dtype=torch.long), num_images=seen)


def _folder_batches(path: str | os.PathLike, model: nn.Module, batch_size: int,
                    limit: int | None) -> Iterator[Tensor]:
    from torchvision.transforms.v2.functional import center_crop

    from rsi_plugin.core.data import validation_loader
    from rsi_plugin.core.modelinfo import model_info
    from rsi_plugin.core.images import normalize

    module = unwrap(model)
    loader = validation_loader(path, module, batch_size=batch_size, limit=limit, map_classes=False)  # no labels
    size = model_info(module).input_size
    param = next(iter(module.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    for images, _ in loader:
        if len(images):
            yield normalize(center_crop(images, [size, size]), module).to(device)


def natural_images(model: nn.Module, data: str | os.PathLike | Tensor | Iterable[Any] | None = None,
                   n: int = 1000, seed: int = 0, batch_size: int = 64,
                   limit: int | None = None) -> Tensor | Iterable[Any]:
    r"""The model-ready images searched for each channel's top-k natural images.

    Args:
        model (nn.Module): the model (sizes, statistics, device).
        data (path, Tensor or iterable, optional): ``None``: the bundled ``"tiny"`` model's
            generated set (the ``"natural"`` set of :func:`rsi_plugin.zoo.data.default_data`,
            ``n`` images of ``seed``); a path: an ImageNet-layout folder, read at the model's
            resize size (:func:`rsi_plugin.validation_loader`) and centre-cropped to its
            input size (the standard evaluation crop), normalised, batch by batch on the
            model's device; anything else (model-ready images or batches) is returned as is.
        n (int): generated images (``data=None``).
        seed (int): seed of the generated images.
        batch_size (int): images per batch of a folder.
        limit (int, optional): use only this many images of a folder (evenly spaced).

    Returns:
        Tensor ``[n, 3, S, S]`` (generated) or a one-pass iterator of batches (a folder).

    Raises:
        ValueError: ``data=None`` for a model other than ``"tiny"``.
    """
    if data is None:
        from rsi_plugin.core.images import normalize
        from rsi_plugin.zoo.data import default_data

        images, _ = default_data(model, "natural", n, seed).tensors()
        return normalize(images, unwrap(model))
    if isinstance(data, (str, os.PathLike)):
        return _folder_batches(data, model, batch_size, limit)
    return data
