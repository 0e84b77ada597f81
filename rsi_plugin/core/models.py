"""Load the models this library studies: torchvision's ResNet family, the bundled ``tiny`` and
the ``planted`` positive control (both registered by :mod:`rsi_plugin.zoo` in
:mod:`rsi_plugin.core.registry`).

Weights come from a torchvision weight enum (its download, or the torch hub cache when
offline), a local state-dict file, or a seeded random init. Every model comes back in eval
mode carrying a :class:`~rsi_plugin.core.modelinfo.ModelInfo` as ``model.rsi_info``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn

from rsi_plugin.core.modelinfo import ModelInfo
from rsi_plugin.core.registry import registered_model
from rsi_plugin.core.choices import MODEL_NAMES as _MODEL_NAMES
from rsi_plugin.core.choices import RESNET_FAMILY as _RESNET_FAMILY
from rsi_plugin.errors import MissingFileError, RSIError, UnknownNameError, WeightsError

__all__ = ["RESNET_FAMILY", "MODEL_NAMES", "load_model", "load_state_dict_file", "hub_cache_path", "check_device",
           "DeviceError", "WeightsFileError"]

logger = logging.getLogger(__name__)

# defined in rsi_plugin.core.choices, which the CLI reads without importing torch
RESNET_FAMILY: tuple[str, ...] = _RESNET_FAMILY
MODEL_NAMES: tuple[str, ...] = _MODEL_NAMES


class DeviceError(RSIError, RuntimeError):
    """A device that is not a valid torch device, or that this machine does not have."""


class WeightsFileError(WeightsError):
    """A weights file that cannot be read as a state dict (empty, truncated, not torch)."""


def check_device(device: str | torch.device) -> torch.device:
    """The ``torch.device`` for ``device``, checked to exist on this machine.

    Raises:
        DeviceError: not a device name, or a CUDA / MPS device this machine lacks.
    """
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as error:
        raise DeviceError(f"unknown device {device!r}; valid: cpu, cuda, cuda:N, mps") from error
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {str(device)!r} was asked for but no CUDA GPU is available "
                              "(torch.cuda.is_available() is False); use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(f"device {str(device)!r} does not exist: this machine has "
                              f"{torch.cuda.device_count()} CUDA device(s)")
    elif dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise DeviceError("device 'mps' was asked for but MPS is not available; use --device cpu")
    return dev


def _load_weights(path: Path) -> Any:
    """``torch.load`` of a weights file, its failures turned into one readable error."""
    if path.stat().st_size == 0:
        raise WeightsFileError(f"weights file {path} is empty")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated zip, text, a pickle of something else, ...
        detail = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise WeightsFileError(f"cannot read weights file {path} as a torch state dict (truncated, damaged or "
                               f"not a .pth file?): {type(error).__name__}{': ' + detail[:200] if detail else ''}") from None


def _looks_like_path(weights: str) -> bool:
    return os.sep in weights or "/" in weights or weights.endswith((".pth", ".pt", ".bin")) or Path(weights).exists()


def hub_cache_path(url: str) -> Path:
    """Where torch hub keeps a downloaded checkpoint: ``$TORCH_HOME/hub/checkpoints/<file>``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def load_state_dict_file(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Load a state dict from ``path`` into ``model`` strictly.

    Accepts a bare state dict or a checkpoint holding one under ``"state_dict"`` or
    ``"model"``.

    Raises:
        FileNotFoundError: no file at ``path``.
        WeightsFileError (a ValueError): the file is empty, truncated or not a torch file.
        ValueError: the keys or shapes do not match, naming the offending keys.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"weights file not found: {path}")
    state = _load_weights(path)
    if isinstance(state, dict):
        for key in ("state_dict", "model"):
            if key in state and isinstance(state[key], dict):
                state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsFileError(f"{path} does not hold a state dict of tensors (got {type(state).__name__})")
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or wrong:
        def head(keys: list[str]) -> str:
            return ", ".join(keys[:8]) + (f" (+{len(keys) - 8} more)" if len(keys) > 8 else "")
        parts = []
        if missing:
            parts.append(f"missing keys: {head(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {head(unexpected)}")
        if wrong:
            parts.append("shape mismatch: " + ", ".join(
                f"{k} {tuple(state[k].shape)} vs model {tuple(own[k].shape)}" for k in wrong[:8]))
        raise RSIError(f"weights file {path} does not match {type(model).__name__}: " + "; ".join(parts))
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()}, strict=True)
    return model


def _enum_state_dict(name: str, weights: str, download: bool) -> tuple[dict[str, Any], str]:
    enum = torchvision.models.get_model_weights(name)
    valid = [w.name for w in enum]
    if weights == "DEFAULT":
        member = enum.DEFAULT
    elif weights in valid:
        member = enum[weights]
    else:
        raise UnknownNameError(f"unknown weights {weights!r} for {name}; valid: None, 'DEFAULT', "
                         f"{', '.join(repr(v) for v in valid)}, or a path to a .pth state dict")
    cached = hub_cache_path(member.url)
    if cached.is_file():
        logger.info("loading %s.%s from the torch hub cache %s", enum.__name__, member.name, cached)
        return _load_weights(cached), member.name
    hint = (f"{enum.__name__}.{member.name} is not in the torch hub cache. Put the file "
            f"{cached.name} (from {member.url}) at {cached} (set TORCH_HOME to move the cache), "
            "or pass weights='/path/to/state_dict.pth'")
    if not download:
        raise MissingFileError(hint)
    try:
        return member.get_state_dict(progress=False), member.name
    except Exception as error:  # no network, proxy, truncated download...
        raise MissingFileError(f"{hint}. The download failed: {error}") from error


def load_model(name: str = "tiny", weights: str | os.PathLike | None = None, seed: int = 0,
               device: str | torch.device = "cpu", download: bool = True) -> nn.Module:
    r"""Build a residual model with its weights, in eval mode.

    Args:
        name (str): ``"tiny"`` (the bundled, trained model; see :mod:`rsi_plugin.zoo`),
            ``"planted"`` (the positive control with scale-invariant channels planted by
            construction, :mod:`rsi_plugin.zoo.planted`) or a torchvision ResNet:
            ``resnet18/34/50/101/152``, ``wide_resnet50_2``, ``resnext50_32x4d``.
        weights (None, str or path): ``None`` — seeded random init (for ``"tiny"``: the
            shipped weights; for ``"planted"``: its constructed weights, ``seed`` unused);
            a torchvision enum name such as ``"IMAGENET1K_V1"`` or
            ``"DEFAULT"`` — from the torch hub cache, downloaded when allowed; a path — a
            state dict loaded strictly.
        seed (int): seed of the random init.
        device (str or torch.device): where the model goes.
        download (bool): allow torchvision to download enum weights missing from the cache.

    Returns:
        nn.Module in eval mode with ``rsi_info`` (:class:`~rsi_plugin.core.modelinfo.ModelInfo`).

    Raises:
        ValueError: unknown model or weights name, mismatched state dict; a weights file
            that cannot be read (:class:`WeightsFileError`); a device this machine does not
            have (:class:`DeviceError`).
        FileNotFoundError: a missing weights file, or enum weights neither cached nor
            downloadable (the message names the expected file and where to put it).
    """
    device = check_device(device)
    registered = registered_model(name)  # "tiny" and "planted", registered by rsi_plugin.zoo
    if registered is not None:
        if weights is None:
            return registered.build(device).eval()
        model = registered.build("cpu")
        load_state_dict_file(model, weights)
        model.rsi_info = ModelInfo(**{**model.rsi_info.__dict__, "weights": str(weights)})
        return model.to(device).eval()
    if name not in RESNET_FAMILY:
        raise UnknownNameError(f"unknown model {name!r}; valid: {', '.join(MODEL_NAMES)}")
    builder = getattr(torchvision.models, name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = builder(weights=None)
    source = f"random@{seed}"  # the seed makes the weights reproducible (and remote keys possible)
    if weights is not None:
        weights = os.fspath(weights)
        if _looks_like_path(weights):
            load_state_dict_file(model, weights)
            source = weights
        else:
            state, source = _enum_state_dict(name, weights, download)
            model.load_state_dict(state, strict=True)
    model.rsi_info = ModelInfo(name=name, weights=source, num_classes=model.fc.out_features)
    return model.to(device).eval()
