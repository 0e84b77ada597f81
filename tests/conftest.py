"""Shared fixtures: small random-init models (no network). Test helpers live in :mod:`rsi_plugin.testing`."""

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
