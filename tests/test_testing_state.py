"""rsi_plugin.testing.state: the snapshot check other tests rely on must fail on each kind of change."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rsi_plugin.testing.state import assert_same_state, model_state


def test_assert_same_state_names_what_changed():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    before = model_state(model)
    assert_same_state(before, model_state(model))  # nothing changed
    handle = model[0].register_forward_hook(lambda *a: None)
    with pytest.raises(AssertionError, match="hooks"):
        assert_same_state(before, model_state(model))
    handle.remove()
    model.train(not model.training)
    with pytest.raises(AssertionError, match="training"):
        assert_same_state(before, model_state(model))
    model.train(not model.training)
    with torch.no_grad():
        model[1].running_mean += 1
    with pytest.raises(AssertionError, match="1.running_mean"):
        assert_same_state(before, model_state(model))
