"""Where a model lives, and whether it can run here."""

from __future__ import annotations

import torch
from torch import nn
from rsi_plugin.core.wrapped import unwrap
from rsi_plugin.errors import InputTypeError, RSIError

__all__ = ["model_device", "check_runnable"]


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


def check_runnable(model: nn.Module, dtype: torch.dtype = torch.float32, what: str = "feature visualisation") -> None:
    """Refuse a model that ``what`` cannot run here: one on the meta device (no weights), or
    one whose floating-point weights are not ``dtype`` (``what`` makes its own ``dtype``
    input, so the model must match it; :func:`rsi_plugin.capture` says the same of images).

    Args:
        model (nn.Module): a module or a wrapper of one.
        dtype (torch.dtype): the dtype the caller feeds the model.
        what (str): the caller, for the message.

    Raises:
        RSIError: the model is on the meta device.
        InputTypeError: its weights are of another dtype (e.g. after ``model.half()``).
    """
    module = unwrap(model)
    weight = next((t for t in list(module.parameters()) + list(module.buffers()) if t.is_floating_point()), None)
    if weight is None:
        return
    if weight.device.type == "meta":
        raise RSIError(f"the model is on the meta device (it holds no weights), so {what} cannot run it; load its "
                       "weights first (model.to_empty(device='cpu') then model.load_state_dict(...)), or run it "
                       "remotely")
    if weight.dtype != dtype:
        raise InputTypeError(f"{what} feeds the model {dtype} images but the model's weights are {weight.dtype}; "
                             f"convert the model with model.float() (or use a float32 copy: "
                             "copy.deepcopy(model).float())")
