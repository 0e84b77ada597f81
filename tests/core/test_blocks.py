"""Block ids are strings: a float like ``2.1`` is refused (``3.10`` would become ``3.1``)."""
from __future__ import annotations

import pytest
import torchvision

import rsi_plugin as rsi
from rsi_plugin.core.blocks import get_block, resolve_blocks
from rsi_plugin.errors import InputTypeError, RSIError


@pytest.mark.parametrize("bad, shown", [(2.1, "'2.1'"), (3.10, "'3.1'"), (2, "'2'")])
def test_non_string_block_id_is_a_type_error_showing_the_string(bad, shown):
    model = torchvision.models.resnet18()
    for call in (lambda: resolve_blocks(model, [bad]), lambda: resolve_blocks(model, bad),
                 lambda: get_block(model, bad)):
        with pytest.raises(TypeError, match="block ids are strings") as caught:
            call()
        assert isinstance(caught.value, InputTypeError) and isinstance(caught.value, RSIError)
        assert shown in str(caught.value), str(caught.value)
        assert "valid blocks" in str(caught.value)


def test_capture_refuses_float_block_id():
    import torch
    model = torchvision.models.resnet18()
    with pytest.raises(TypeError, match=r"use '2\.1', not 2\.1"):
        rsi.capture(model, torch.zeros(1, 3, 32, 32), blocks=[2.1])


def test_string_block_ids_still_work():
    model = torchvision.models.resnet18()
    assert [b.name for b in resolve_blocks(model, ["2.1", "1.0"])] == ["2.1", "1.0"]
    assert get_block(model, "2.1").name == "2.1"
