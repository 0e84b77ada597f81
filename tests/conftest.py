"""Shared fixtures: small random-init models (no network) and model-state snapshots."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import rsi_plugin as rsi


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """One intra-op thread for the whole session (module-scoped fixtures included): the
    models here are small, and OpenMP threads that find their core busy spin-wait (a
    2-thread convolution measured 13x slower than a 1-thread one on a loaded 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def resnet18() -> nn.Module:
    return rsi.load_model("resnet18", weights=None, seed=0)


@pytest.fixture(scope="session")
def resnet50() -> nn.Module:
    return rsi.load_model("resnet50", weights=None, seed=0)


@pytest.fixture()
def images() -> torch.Tensor:
    """Two seeded model-ready images at 64 px (ResNets accept any size >= 32)."""
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))


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
