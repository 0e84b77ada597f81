"""Loading the bundled, trained tiny ResNet (``weights/tiny_resnet.pt``)."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rsi_plugin.core.modelinfo import ModelInfo
from rsi_plugin.zoo.model import build_tiny_resnet
from rsi_plugin.errors import MissingFileError

__all__ = ["TINY_WEIGHTS", "TINY_METADATA", "ChecksumError", "load_metadata", "load_tiny"]

logger = logging.getLogger(__name__)

TINY_WEIGHTS: Path = Path(__file__).resolve().parent / "weights" / "tiny_resnet.pt"
"""The shipped float16 state dict."""

TINY_METADATA: Path = TINY_WEIGHTS.with_suffix(".json")
"""Its metadata: training configuration, normalisation, accuracies, sha256."""


class ChecksumError(RuntimeError):
    """The weights file's sha256 differs from the one recorded in the metadata."""


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_metadata(path: str | Path | None = None) -> dict[str, Any]:
    """The JSON metadata of the tiny model (:data:`TINY_METADATA` by default) as a dict."""
    with open(TINY_METADATA if path is None else path) as f:
        return json.load(f)


def load_tiny(device: str | torch.device = "cpu", weights_path: str | Path | None = None,
              metadata_path: str | Path | None = None) -> nn.Module:
    r"""Load the trained tiny ResNet (10 shape classes, 64 px input).

    The file's sha256 is checked against the metadata before loading; the float16 state
    dict is loaded strictly and cast to float32.

    Args:
        device (str or torch.device): where to put the model. Default ``"cpu"``.
        weights_path (str or Path, optional): a state dict other than :data:`TINY_WEIGHTS`.
        metadata_path (str or Path, optional): its metadata; by default the ``.json`` next
            to ``weights_path`` with the same stem if there is one, else
            :data:`TINY_METADATA`.

    Returns:
        :class:`torchvision.models.ResNet` in eval mode (parameters still require grad),
        with ``rsi_info`` a :class:`~rsi_plugin.core.modelinfo.ModelInfo` (name ``"tiny"``,
        input 64, resize 73, the training normalisation, 10 classes).

    Raises:
        FileNotFoundError: the weights or metadata are missing.
        ChecksumError: the weights' sha256 differs from the metadata's.
    """
    weights = TINY_WEIGHTS if weights_path is None else Path(weights_path)
    if metadata_path is None:
        sibling = weights.with_suffix(".json")
        metadata_path = sibling if sibling.is_file() else TINY_METADATA
    if not weights.is_file():
        raise MissingFileError(f"tiny model weights not found: {weights}")
    meta = load_metadata(metadata_path)
    digest = sha256_file(weights)
    if digest != meta["sha256"]:
        raise ChecksumError(
            f"sha256 of {weights} is {digest}, but {metadata_path} records {meta['sha256']}: "
            "the weights file is corrupt or does not belong to this metadata")
    state = torch.load(weights, map_location="cpu", weights_only=True)
    model = build_tiny_resnet(width=int(meta["width"]), num_classes=int(meta["num_classes"]))
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()},
                          strict=True)
    model.rsi_info = ModelInfo(
        name="tiny", weights=str(weights), input_size=int(meta["input_size"]),
        resize_size=int(meta["resize_size"]), mean=tuple(float(v) for v in meta["mean"]),
        std=tuple(float(v) for v in meta["std"]), num_classes=int(meta["num_classes"]))
    logger.debug("loaded %s (sha256 %s)", weights, digest)
    return model.to(device).eval()
