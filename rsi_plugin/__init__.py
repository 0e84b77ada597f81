"""rsi_plugin: scale invariance in the residual stream, for nnsight and Captum users.

The public API is the ~25 names below, loaded on first use, so ``import rsi_plugin`` stays
light (no torch, nnsight or pandas until a function needs them)::

    import rsi_plugin as rsi
    model = rsi.load_model("tiny")
    acts = rsi.capture(model, rsi.normalize(images, model), blocks=["2.1"])
    scores = rsi.ScaleInvariance(model, "2.1").attribute((x_in, x_pre))

=======================================  =====================================================
models and blocks                        :func:`load_model`, :func:`residual_blocks`,
                                         :class:`BlockSpec`, :func:`normalize`, :func:`S`
reading and patching the nodes           :func:`wrap`, :func:`capture`, :func:`ablate`,
(In / Pre / Sum / Post)                  :func:`node_gradient`, :func:`block_nodes` (inside
                                         your own nnsight trace), :func:`hooked`
                                         (TransformerLens view)
the criteria (§3)                        :class:`ScaleInvariance` (Captum), :func:`scan`,
                                         :class:`ScanConfig`, :func:`top_k_images`
feature visualisations                   :func:`visualize`, :func:`render`,
                                         :class:`FeatureVizConfig`
the ablation experiment (§4)             :func:`channel_means`, :func:`sweep`,
                                         :class:`SweepConfig`, :func:`eq3_summary`
outputs                                  :func:`write_report`, :func:`compare_to_paper`
errors                                   :class:`RSIError` (every bad-input error)
=======================================  =====================================================

Everything else lives in the subpackages, each with its own table of contents:
:mod:`rsi_plugin.core`, :mod:`~rsi_plugin.access`, :mod:`~rsi_plugin.featureviz`,
:mod:`~rsi_plugin.criteria`, :mod:`~rsi_plugin.ablation`, :mod:`~rsi_plugin.outputs`,
:mod:`~rsi_plugin.apps`, :mod:`~rsi_plugin.zoo`, :mod:`~rsi_plugin.serve`. The names the
root exported before (``rsi.bench``, ``rsi.GridLayout``, ...) still resolve, to the same
objects, but are not listed; import them from their subpackage in new code.
"""

from __future__ import annotations

from rsi_plugin._lazy import lazy_exports as _lazy_exports

__version__ = "0.1.0"

#: the public API: name -> module (relative to this package) that defines or exports it
_EXPORTS: dict[str, str] = {
    "load_model": "core",
    "residual_blocks": "core",
    "BlockSpec": "core",
    "normalize": "core",
    "S": "core",
    "wrap": "access",
    "capture": "access",
    "ablate": "access",
    "node_gradient": "access",
    "block_nodes": "access",
    "hooked": "access",
    "ScaleInvariance": "criteria",
    "scan": "criteria",
    "ScanConfig": "criteria",
    "top_k_images": "criteria",
    "visualize": "featureviz",
    "render": "featureviz",
    "FeatureVizConfig": "featureviz",
    "channel_means": "ablation",
    "sweep": "ablation",
    "SweepConfig": "ablation",
    "eq3_summary": "ablation",
    "write_report": "outputs",
    "compare_to_paper": "criteria",
    "RSIError": "errors",
}

#: names the root exported before the API was cut to the list above: still ``rsi.<name>``,
#: the same object as in the subpackage, not listed in ``__all__`` / ``dir()``
_FORMER: dict[str, str] = {
    "MODEL_NAMES": "core",
    "RESNET_FAMILY": "core",
    "ResidualBlock": "core",
    "NodeSite": "core",
    "NODES": "core",
    "get_block": "core",
    "denormalize": "core",
    "ModelInfo": "core",
    "model_info": "core",
    "scale_crop": "core",
    "get_transform": "core",
    "attach_specs": "core",
    "DEFAULT_SPECS": "core",
    "validation_loader": "core",
    "SkippedFiles": "core",
    "BlockNodes": "access",
    "NestedTraceError": "access",
    "VisionModel": "access",
    "remote_ready": "access",
    "ModelKey": "access",
    "hook_name": "access",
    "FeatureVizResult": "featureviz",
    "paper_jitter": "featureviz",
    "model_fingerprint": "featureviz",
    "invariance_criteria": "criteria",
    "summarize": "criteria",
    "node_sites": "criteria",
    "TopKImages": "criteria",
    "paper_channels": "paper",
    "ablate_conditions": "ablation",
    "SweepResult": "ablation",
    "plot_eq3": "outputs",
    "scale_attacks": "ablation",
    "channel_grids": "apps.fig1",  # compute (criteria.fig1_data) + draw (outputs.grids)
    "channel_grid_images": "criteria.fig1_data",
    "save_channel_grids": "outputs",
    "plot_summary": "outputs",
    "GridLayout": "outputs",
    "bench": "apps.bench",  # apps.bench is the module
    "DemoConfig": "apps",
    "run_demo": "apps",
}

#: submodules reachable as attributes without an import (``rsi.lucent.neuron(...)``)
_SUBMODULES: dict[str, str] = {
    "lucent": "featureviz.lucent", "lens": "access.lens", "intrace": "access.intrace",
    **{name: name for name in ("core", "access", "featureviz", "criteria", "ablation", "outputs", "apps",
                               "zoo", "serve", "paper", "errors")},
}

__all__ = sorted(_EXPORTS) + ["__version__"]

__getattr__, __dir__ = _lazy_exports(globals(), _EXPORTS, deprecated=_FORMER, submodules=_SUBMODULES)

# the zoo registers the bundled models ("tiny", "planted") with core's registry, so that
# load_model finds them whichever module a process imports first; it imports nothing heavy
import rsi_plugin.zoo as _zoo  # noqa: E402,F401
