"""Snapshots of a model's state, to check that a call leaves the model as it found it."""

from __future__ import annotations

import torch
from torch import nn


def model_state(model: nn.Module) -> dict:
    """Everything a call must leave as it found it: registered hooks (module and global),
    the state dict (BatchNorm buffers included), .training and requires_grad."""
    hooks = {}
    for name, module in model.named_modules():
        hooks[name] = tuple(
            tuple(getattr(module, attr).items())
            for attr in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks",
                         "_backward_pre_hooks", "_state_dict_hooks", "_load_state_dict_pre_hooks")
        )
    global_hooks = tuple(len(d) for d in (
        nn.modules.module._global_forward_hooks, nn.modules.module._global_forward_pre_hooks,
        nn.modules.module._global_backward_hooks))
    return {
        "hooks": hooks,
        "global_hooks": global_hooks,
        "state": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "training": {n: m.training for n, m in model.named_modules()},
        "requires_grad": {n: p.requires_grad for n, p in model.named_parameters()},
        "grads": {n: p.grad is None for n, p in model.named_parameters()},
    }


def assert_same_state(before: dict, after: dict) -> None:
    """Raise ``AssertionError`` naming what differs between two :func:`model_state` snapshots
    (an explicit raise, not ``assert``, so ``python -O`` does not skip the check)."""
    for part in ("hooks", "global_hooks", "training", "requires_grad", "grads"):
        if before[part] != after[part]:
            raise AssertionError(f"the model's {part} changed")
    if before["state"].keys() != after["state"].keys():
        raise AssertionError("the model's state dict keys changed")
    for key, value in before["state"].items():
        if not torch.equal(value, after["state"][key]):
            raise AssertionError(f"the model's state changed at {key}")
