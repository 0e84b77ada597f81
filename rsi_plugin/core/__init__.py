r"""core: models, residual blocks and their nodes, images and transforms. Imports no other layer.

======================  ====================================================================
:mod:`.specs`           :class:`BlockSpec`: where In, Pre and Post live in one kind of block;
                        :data:`DEFAULT_SPECS`, :func:`attach_specs`
:mod:`.blocks`          :class:`ResidualBlock`, :func:`residual_blocks`, :func:`get_block`, the
                        node names :data:`NODES` (In, Pre, Sum, Post) and :class:`NodeSite`
:mod:`.models`          :func:`load_model`: torchvision's ResNet family and the registered models
:mod:`.registry`        :func:`register_model`: models built by name (the zoo registers ``tiny``
                        and ``planted`` when the package is imported; core never imports it)
:mod:`.modelinfo`       :class:`ModelInfo`: what a model expects of its input (``rsi_info``)
:mod:`.choices`         the names the CLI offers (:data:`MODEL_NAMES`, bench cases, ...),
                        importable without torch so that ``rsi <cmd> --help`` stays fast
:mod:`.images`          :func:`normalize` / :func:`denormalize` with the model's statistics
:mod:`.transforms`      the paper's ``S``, the sweep crop :func:`scale_crop`, :func:`get_transform`
:mod:`.channels`        :func:`check_channels`, the one validator of ``channels=``
:mod:`.evalmode`        :func:`eval_mode` / :func:`runs_in_eval_mode`
:mod:`.data`            :func:`validation_loader`: ImageNet-layout folders, bad files skipped
:mod:`.atomic`          whole-or-nothing file writes
:mod:`.runfolder`       :class:`RunLayout`, :class:`ScanFiles`, :class:`SweepFiles`: every file
                        name a run writes or reads, defined once
:mod:`.tensors`         :func:`model_device`: where a model (or its nnsight wrapper) lives
:mod:`.frames`          :func:`truthy`: flag columns of tables read back as booleans
:mod:`.wrapped`         :func:`unwrap`: the module behind a model or its nnsight wrapper
:mod:`.distributed`     the few ``torch.distributed`` operations a ``torchrun`` run needs (rank,
                        sums, barrier), the one-process identity without a process group
:mod:`.randomize`       :func:`randomized_copy`: an untrained copy of a model, initialised as its
                        constructor does (whole, or cascading from the top down to a block)
======================  ====================================================================
"""

from __future__ import annotations

from rsi_plugin._lazy import lazy_exports as _lazy_exports

_EXPORTS: dict[str, str] = {
    "BlockSpec": "specs", "DEFAULT_SPECS": "specs", "attach_specs": "specs", "model_specs": "specs",
    "ResidualBlock": "blocks", "NodeSite": "blocks", "NODES": "blocks", "residual_blocks": "blocks",
    "get_block": "blocks",
    "load_model": "models", "MODEL_NAMES": "models", "RESNET_FAMILY": "models",
    "ModelInfo": "modelinfo", "model_info": "modelinfo", "normalize": "images", "denormalize": "images",
    "S": "transforms", "scale_crop": "transforms", "get_transform": "transforms",
    "TRANSFORM_FAMILIES": "transforms",
    "check_channels": "channels",
    "eval_mode": "evalmode", "runs_in_eval_mode": "evalmode",
    "validation_loader": "data", "ValidationLoader": "data", "SkippedFiles": "data",
    "RunLayout": "runfolder", "ScanFiles": "runfolder", "SweepFiles": "runfolder",
    "unwrap": "wrapped",
    "randomized_copy": "randomize",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = _lazy_exports(globals(), _EXPORTS)
