r"""access: read and patch the residual nodes, through nnsight (local or ``remote=``),
inside your own trace, or as a TransformerLens view. Imports :mod:`rsi_plugin.core` and
:mod:`rsi_plugin.zoo` (the bundled model's remote key), never a layer above: a server-side
function of a higher layer is handed to :mod:`.sessions`, not imported by it.

======================  ====================================================================
:mod:`.plan`            :func:`plan_reads`: the one rule set for reading (block, node) sites
                        (where, Pre cloned, Sum = In + Pre, order, early stop)
:mod:`.nnsight`         :func:`wrap`, :func:`capture` (read nodes), :func:`ablate` (replace
                        channels of a node, one condition), :func:`node_gradient`
:mod:`.hooks`           :class:`NodeProbe`: the FZ reader, plain PyTorch hooks on the same plan
                        (:func:`register_read` turns a read into a hook)
:mod:`.intrace`         :func:`block_nodes`: the nodes inside your own ``model.trace()``
:mod:`.remote`          :class:`VisionModel`, :func:`remote_ready`, :func:`wrap`: model keys and
                        the wrapper for ``remote=`` (NDIF)
:mod:`.nnsight_api`     everything taken from nnsight (its internals are touched here only)
:mod:`.lens`            :func:`hooked`: a TransformerLens-style view (``hook_name``)
:mod:`.sessions`        whole experiments in one remote request (:func:`in_one_request`)
======================  ====================================================================

Several ablation *conditions* of one batch in one trace (the sweep's mean ablation) are
:func:`rsi_plugin.ablation.ablate_conditions`, built on the same node reads.
"""

from __future__ import annotations

from rsi_plugin._lazy import lazy_exports as _lazy_exports

_EXPORTS: dict[str, str] = {
    "wrap": "nnsight", "capture": "nnsight", "ablate": "nnsight", "node_gradient": "nnsight",
    "block_nodes": "intrace", "BlockNodes": "intrace", "NestedTraceError": "intrace",
    "VisionModel": "remote", "remote_ready": "remote", "ModelKey": "remote",
    "hooked": "lens", "hook_name": "lens",
    "plan_reads": "plan", "ReadPlan": "plan", "NodeProbe": "hooks",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = _lazy_exports(globals(), _EXPORTS)
