"""Where a model lives."""

from __future__ import annotations

import torch
from torch import nn
from rsi_plugin.core.wrapped import unwrap

__all__ = ["model_device"]


def model_device(model: nn.Module) -> torch.device:
    """Device of the model's first parameter, else of its first buffer, else the CPU.

    Args:
        model (nn.Module): a module or an nnsight wrapper of one.

    Returns:
        torch.device.
    """
    module = unwrap(model)
    for tensor in module.parameters():
        return tensor.device
    for tensor in module.buffers():
        return tensor.device
    return torch.device("cpu")
