"""rsi_plugin: scale invariance in the residual stream, for nnsight and Captum users.

The public API is re-exported here and loaded on first use, so ``import rsi_plugin`` stays
light (no nnsight, pandas or transformer-lens until a function needs them)::

    import rsi_plugin as rsi
    model = rsi.load_model("tiny")
    acts = rsi.capture(model, rsi.normalize(images, model), blocks=["2.1"])
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> submodule that defines it
_EXPORTS: dict[str, str] = {
    "load_model": "core.models",
    "MODEL_NAMES": "core.models",
    "RESNET_FAMILY": "core.models",
    "ResidualBlock": "core.blocks",
    "NodeSite": "core.blocks",
    "NODES": "core.blocks",
    "residual_blocks": "core.blocks",
    "get_block": "core.blocks",
    "capture": "access.nnsight",
    "ablate": "access.nnsight",
    "wrap": "access.nnsight",
    "normalize": "core.images",
    "denormalize": "core.images",
    "ModelInfo": "core.images",
    "model_info": "core.images",
    "S": "core.transforms",
    "scale_crop": "core.transforms",
    "get_transform": "core.transforms",
    "bench": "apps.bench",
    "ScaleInvariance": "criteria.equations",
    "invariance_criteria": "criteria.equations",
    "summarize": "criteria.equations",
    "node_sites": "criteria.equations",
    "scan": "criteria.channel_scan",
    "ScanConfig": "criteria.channel_scan",
    "top_k_images": "criteria.natural",
    "TopKImages": "criteria.natural",
    "paper_channels": "paper",
    "compare_to_paper": "paper",
    "FeatureVizConfig": "featureviz.optimize",
    "FeatureVizResult": "featureviz.optimize",
    "visualize": "featureviz.optimize",
    "render": "featureviz.optimize",
    "paper_jitter": "featureviz.optimize",
    "model_fingerprint": "featureviz.optimize",
    "node_gradient": "access.nnsight",
    "block_nodes": "access.intrace",
    "BlockNodes": "access.intrace",
    "NestedTraceError": "access.intrace",
    "VisionModel": "access.remote",
    "remote_ready": "access.remote",
    "ModelKey": "access.remote",
    "BlockSpec": "core.specs",
    "attach_specs": "core.specs",
    "DEFAULT_SPECS": "core.specs",
    "hooked": "access.lens",
    "hook_name": "access.lens",
    "validation_loader": "core.data",
    "SkippedFiles": "core.data",
    "channel_means": "ablation",
    "ablate_conditions": "ablation",
    "SweepConfig": "ablation",
    "SweepResult": "ablation",
    "sweep": "ablation",
    "eq3_summary": "ablation",
    "plot_eq3": "ablation",
    "scale_attacks": "ablation",
    "channel_grids": "outputs.figures",
    "channel_grid_images": "outputs.figures",
    "save_channel_grids": "outputs.figures",
    "plot_summary": "outputs.figures",
    "GridLayout": "outputs.figures",
    "write_report": "outputs.report",
    "DemoConfig": "apps.demo",
    "run_demo": "apps.demo",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


# submodules reachable as attributes without an import (``rsi.lucent.neuron(...)``)
_SUBMODULES: dict[str, str] = {"lucent": "featureviz.lucent", "lens": "access.lens", "intrace": "access.intrace"}


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f".{_SUBMODULES[name]}", __name__)
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'rsi_plugin' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
