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
    "load_model": "models",
    "MODEL_NAMES": "models",
    "RESNET_FAMILY": "models",
    "ResidualBlock": "nodes",
    "NodeSite": "nodes",
    "NODES": "nodes",
    "residual_blocks": "nodes",
    "get_block": "nodes",
    "capture": "trace",
    "ablate": "trace",
    "wrap": "trace",
    "normalize": "images",
    "denormalize": "images",
    "ModelInfo": "images",
    "model_info": "images",
    "S": "transforms",
    "scale_crop": "transforms",
    "get_transform": "transforms",
    "bench": "overhead",
    "ScaleInvariance": "criteria",
    "invariance_criteria": "criteria",
    "summarize": "criteria",
    "node_sites": "criteria",
    "scan": "scanning",
    "ScanConfig": "scanning",
    "top_k_images": "natural",
    "TopKImages": "natural",
    "paper_channels": "paper",
    "compare_to_paper": "paper",
    "FeatureVizConfig": "featureviz",
    "FeatureVizResult": "featureviz",
    "visualize": "featureviz",
    "render": "featureviz",
    "paper_jitter": "featureviz",
    "model_fingerprint": "featureviz",
    "node_gradient": "trace",
    "block_nodes": "intrace",
    "BlockNodes": "intrace",
    "NestedTraceError": "intrace",
    "VisionModel": "remote",
    "remote_ready": "remote",
    "ModelKey": "remote",
    "BlockSpec": "specs",
    "attach_specs": "specs",
    "DEFAULT_SPECS": "specs",
    "hooked": "lens",
    "hook_name": "lens",
    "validation_loader": "data",
    "SkippedFiles": "data",
    "channel_means": "ablation",
    "ablate_conditions": "ablation",
    "SweepConfig": "ablation",
    "SweepResult": "ablation",
    "sweep": "ablation",
    "eq3_summary": "ablation",
    "plot_eq3": "ablation",
    "scale_attacks": "ablation",
    "channel_grids": "figures",
    "channel_grid_images": "figures",
    "save_channel_grids": "figures",
    "plot_summary": "figures",
    "GridLayout": "figures",
    "write_report": "report",
    "DemoConfig": "demo",
    "run_demo": "demo",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


# submodules reachable as attributes without an import (``rsi.lucent.neuron(...)``)
_SUBMODULES: tuple[str, ...] = ("lucent", "lens", "intrace")


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'rsi_plugin' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
