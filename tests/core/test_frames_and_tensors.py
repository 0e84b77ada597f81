"""Small core helpers: flag columns read back as booleans (core.frames.truthy) and where a
model lives (core.tensors.model_device)."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import torch

from rsi_plugin.core.frames import is_true, truthy
from rsi_plugin.core.tensors import model_device


def test_truthy_reads_flags_back():
    column = pd.Series(["True", " yes", "0", "false", 1, 0, None, np.nan, True], dtype=object)
    assert truthy(column).tolist() == [True, True, False, False, True, False, False, False, True]
    assert truthy(pd.Series([True, False])).tolist() == [True, False]
    assert [is_true(v) for v in ("1", "no", pd.NA, 2.0)] == [True, False, False, True]
    # a CSV with a missing flag reads it back as False (before, bool(nan) made it True)
    table = pd.read_csv(io.StringIO("block,channel,passes\n2.1,0,True\n2.1,1,\n2.1,2,False\n"))
    assert truthy(table["passes"]).tolist() == [True, False, False]


def test_model_device():
    assert model_device(torch.nn.Linear(2, 2)) == torch.device("cpu")
    assert model_device(torch.nn.BatchNorm2d(2, affine=False)) == torch.device("cpu")  # buffers only
    assert model_device(torch.nn.ReLU()) == torch.device("cpu")
    meta = torch.nn.Linear(2, 2, device="meta")
    assert model_device(meta) == torch.device("meta")
    assert model_device(type("Wrapped", (), {"_module": meta})()) == torch.device("meta")  # as nnsight's wrapper
