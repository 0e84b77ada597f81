"""The names the command line offers (models, sensitivity choices, bench cases, the control
seed), importable without torch, pandas or nnsight so that ``rsi <subcommand> --help`` and
argument parsing stay fast (issue 21 item 17).

The modules that use them re-export them under their old names
(:data:`rsi_plugin.core.models.MODEL_NAMES`, :data:`rsi_plugin.criteria.sensitivity.CHOICES`,
:data:`rsi_plugin.apps.bench.BENCH_CASES`, :data:`rsi_plugin.criteria.controls.CONTROL_SEED`).
This module imports nothing.
"""
from __future__ import annotations

__all__ = ["RESNET_FAMILY", "MODEL_NAMES", "SENSITIVITY_CHOICES", "BENCH_CASES", "CONTROL_SEED"]

#: the torchvision ResNets :func:`rsi_plugin.core.models.load_model` builds by name
RESNET_FAMILY: tuple[str, ...] = (
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "wide_resnet50_2", "resnext50_32x4d",
)
#: every model name ``load_model`` accepts
MODEL_NAMES: tuple[str, ...] = ("tiny",) + RESNET_FAMILY + ("planted",)
#: the analysis choices ``rsi sensitivity`` can flip
SENSITIVITY_CHOICES: tuple[str, ...] = ("zoom_center", "png")
#: the local cases ``rsi bench`` times
BENCH_CASES: tuple[str, ...] = (
    "plain", "plain_again", "hooks_read", "nnsight_empty", "capture_one", "capture_one_full",
    "capture_all", "capture_all_full", "ablate_post", "ablate_sum", "remote_local",
)
#: seed of the first untrained control copy of a scan; copy k gets this + k
CONTROL_SEED: int = 1000
