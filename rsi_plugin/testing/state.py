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
    assert before["hooks"] == after["hooks"]
    assert before["global_hooks"] == after["global_hooks"]
    assert before["training"] == after["training"]
    assert before["requires_grad"] == after["requires_grad"]
    assert before["grads"] == after["grads"]
    assert before["state"].keys() == after["state"].keys()
    for key, value in before["state"].items():
        assert torch.equal(value, after["state"][key]), key
