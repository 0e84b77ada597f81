r"""ablation: mean ablation, the scale sweep, random controls and Eq. (3): the §4 experiment.
Imports :mod:`rsi_plugin.core` and :mod:`rsi_plugin.access`.

====================  ========================================================================
:mod:`.means`         :func:`channel_means` (the ablation value: each channel's centre-neuron
                      mean at Post, or at the pre-ReLU sum), :func:`ablate_conditions` (many
                      ablation conditions of one batch in one nnsight trace, the network before
                      the block run once; :func:`rsi_plugin.ablate` is the single-condition
                      case, for users)
:mod:`.experiment`    :func:`sweep`, :class:`SweepConfig`, :class:`SweepResult`: scales x
                      conditions, screening, resume, many processes
:mod:`.screening`     :func:`random_sets`, :func:`keeps`: random controls, the screening rule
:mod:`.store`         what a sweep has finished, so a killed sweep resumes
:mod:`.eq3`           :func:`eq3_summary` (Eq. (3)); its figures (Fig. 2) are drawn in the
                      layer above, :func:`rsi_plugin.outputs.plots.plot_eq3`
:mod:`.eq3_stats`     is the Eq. (3) effect real: sign / permutation tests, bootstrap CIs
:mod:`.attacks`       :func:`scale_attacks`: the sweep as Captum ``AttackComparator`` attacks
:mod:`.distributed`   the few ``torch.distributed`` operations a sharded sweep needs
====================  ========================================================================

Example::

    import rsi_plugin as rsi
    from rsi_plugin.ablation import SweepConfig, sweep

    model = rsi.load_model("resnet18", weights="IMAGENET1K_V1")
    result = sweep(model, "/data/imagenet/val", block="3.1", channels=passing,
                   config=SweepConfig(tolerance=0.01), out_dir="runs/3.1")
    print(result.summary[["scale", "ratio_mean", "ratio_se", "no_scale_ratio"]])

(:func:`validation_loader` and :class:`SkippedFiles` live in :mod:`rsi_plugin.core.data`;
they stay importable from here.)
"""

from __future__ import annotations

from rsi_plugin._lazy import lazy_exports as _lazy_exports

_EXPORTS: dict[str, str] = {
    "channel_means": "means", "ablate_conditions": "means",
    "sweep": "experiment", "SweepConfig": "experiment", "SweepResult": "experiment",
    "PAPER_SCALES": "experiment", "Condition": "experiment",
    "random_sets": "screening", "keeps": "screening", "Draw": "screening",
    "eq3_summary": "eq3",
    "scale_attacks": "attacks", "scale_comparator": "attacks", "sweep_preprocessor": "attacks",
    "ablated_forward": "attacks", "top1": "attacks",
}

#: importable from here for code written before the data loader moved to core
_FORMER: dict[str, str] = {name: "rsi_plugin.core" for name in ("validation_loader", "ValidationLoader", "SkippedFiles")}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = _lazy_exports(globals(), _EXPORTS, deprecated=_FORMER)
