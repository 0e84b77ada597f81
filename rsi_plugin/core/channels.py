"""The one validator of channel indices, used by every function that takes ``channels``.

Channels are integers: Python ``int``, NumPy integers, or an integer ``Tensor`` / array.
Nothing is coerced: a ``bool``, a float (``1.5``, and also ``2.0``), a string (``"12"``,
which would otherwise read as channels 1 and 2) or a float tensor is a ``TypeError``; a
channel outside ``[0, num_channels)`` is an ``IndexError``; a repeated channel or an empty
selection is a ``ValueError``. Each message says what was wrong and what is valid.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from rsi_plugin.errors import ChannelError, InputTypeError, RSIError

__all__ = ["check_channels", "channel_values"]


def _is_integer(value: Any) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, (int, np.integer)):
        return True
    if isinstance(value, torch.Tensor):
        return value.dim() == 0 and not value.is_floating_point() and not value.is_complex() \
            and value.dtype != torch.bool
    return False


def _items(channels: Any, what: str) -> list[Any]:
    if isinstance(channels, torch.Tensor):
        if channels.dtype == torch.bool or channels.is_floating_point() or channels.is_complex():
            raise InputTypeError(f"{what} must be integer channel indices, got a {channels.dtype} tensor")
        return [int(c) for c in channels.flatten().tolist()]
    if isinstance(channels, np.ndarray):
        if not np.issubdtype(channels.dtype, np.integer):
            raise InputTypeError(f"{what} must be integer channel indices, got an array of {channels.dtype}")
        return [int(c) for c in channels.reshape(-1).tolist()]
    if _is_integer(channels):
        return [channels]
    if isinstance(channels, (str, bytes)) or not hasattr(channels, "__iter__"):
        raise InputTypeError(f"{what} must be a sequence of integer channel indices (e.g. [1, 9, 23]), "
                        f"got {type(channels).__name__} {channels!r}")
    return list(channels)


def check_channels(channels: Any, num_channels: int | None = None, *, what: str = "channels",
                   where: str = "the node", allow_empty: bool = False, allow_duplicates: bool = False,
                   default_all: bool = True) -> list[int]:
    r"""Validated channel indices, in the order given.

    Args:
        channels (int, sequence of int, integer Tensor / array, or None): the channels.
            ``None`` means all ``num_channels`` channels when ``default_all``.
        num_channels (int, optional): channels of the node; ``None`` skips the range check
            (e.g. a config validated before its model is known).
        what (str): the argument's name, for messages (``"channels"``, ``"--channels"``).
        where (str): what the channels belong to, for messages (``"block 3.1"``).
        allow_empty (bool): accept an empty selection (e.g. "no intervention").
        allow_duplicates (bool): accept repeats (e.g. one channel per image).
        default_all (bool): ``None`` gives every channel; otherwise ``None`` is a TypeError.

    Returns:
        list of int.

    Raises:
        TypeError: not integers (bool, float, str, float tensor), or ``None`` when not allowed.
        IndexError: a channel outside ``[0, num_channels)``.
        ValueError: duplicates, or an empty selection.
    """
    if channels is None:
        if default_all and num_channels is not None:
            return list(range(int(num_channels)))
        raise InputTypeError(f"{what} must be a sequence of integer channel indices, got None")
    out = []
    for item in _items(channels, what):
        if not _is_integer(item):
            raise InputTypeError(f"{what} must be integers (not bool, float or str); got {item!r} "
                            f"of type {type(item).__name__}")
        out.append(int(item))
    if num_channels is not None:
        bad = [c for c in out if not 0 <= c < num_channels]
        if bad:
            raise ChannelError(f"{what}: channel(s) {bad} out of range: {where} has {num_channels} channels "
                             f"(0..{num_channels - 1})")
    if not allow_duplicates and len(set(out)) != len(out):
        repeated = sorted({c for c in out if out.count(c) > 1})
        raise RSIError(f"{what} contain duplicates {repeated}: give each channel once")
    if not out and not allow_empty:
        valid = f"0..{num_channels - 1}" if num_channels is not None else "integer indices"
        raise RSIError(f"{what} is empty: give at least one channel ({valid}) or None for all")
    return out


def channel_values(channels: Sequence[int], values: Any, num_channels: int,
                   device: torch.device | None = None, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate channels and per-channel values.

    Args:
        channels (sequence of int): channel indices in ``[0, num_channels)``.
        values (float, sequence or Tensor): one value for all, or one per channel (``[K]``).
        num_channels (int): channels of the node.

    Returns:
        (index LongTensor ``[K]``, values Tensor ``[K]``).

    Raises:
        TypeError: channels that are not integers (see :func:`check_channels`).
        IndexError: a channel out of range. ValueError: duplicates, values of the wrong length.
    """
    channels = check_channels(channels, num_channels, allow_empty=True)
    vals = torch.as_tensor(values, dtype=dtype, device=device).flatten()
    if vals.numel() == 1:
        vals = vals.expand(len(channels)).clone()
    if vals.numel() != len(channels):
        raise RSIError(f"values must be one number or one per channel ({len(channels)}), got {vals.numel()}")
    return torch.tensor(channels, dtype=torch.long, device=device), vals
