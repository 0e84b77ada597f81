r"""Mean ablation, the scale sweep, random controls and Eq. (3): the §4 experiment, in one place.

This module gathers the experiment's public API; each piece lives in a module of its own:

=================================  ==============================================================
:func:`channel_means`              the ablation value: each channel's centre-neuron mean at Post
                                   (or the pre-ReLU sum), no scale (:mod:`.mean_ablation`)
:func:`ablate_conditions`          many ablations of a batch in one nnsight trace, the network
                                   before the block run once (:mod:`.mean_ablation`)
:class:`SweepConfig`, :func:`sweep`  scales x conditions, screening, resume, many processes
                                   (:mod:`.sweep`)
:func:`random_sets`, :func:`keeps`   the random controls and the paper's screening rule
                                   (:mod:`.screening`)
:func:`eq3_summary`, :func:`plot_eq3`, :func:`plot_accuracy`  Eq. (3), Fig. 2 (:mod:`.eq3`)
:func:`scale_attacks`              the sweep as Captum ``AttackComparator`` attacks (:mod:`.attacks`)
:func:`validation_loader`          ImageNet-layout folders and datasets, bad files skipped (:mod:`.data`)
=================================  ==============================================================

Example::

    import rsi_plugin as rsi
    from rsi_plugin.ablation import SweepConfig, sweep

    model = rsi.load_model("resnet18", weights="IMAGENET1K_V1")
    result = sweep(model, "/data/imagenet/val", block="3.1", channels=passing,
                   config=SweepConfig(tolerance=0.01), out_dir="runs/3.1")
    print(result.summary[["scale", "ratio_mean", "ratio_se", "no_scale_ratio"]])
"""

from __future__ import annotations

from rsi_plugin.ablation.attacks import (
    ablated_forward,
    scale_attacks,
    scale_comparator,
    sweep_preprocessor,
    top1,
)
from rsi_plugin.core.data import SkippedFiles, ValidationLoader, validation_loader
from rsi_plugin.ablation.eq3 import eq3_summary, plot_accuracy, plot_eq3
from rsi_plugin.ablation.means import ablate_conditions, channel_means
from rsi_plugin.ablation.experiment import PAPER_SCALES, Condition, SweepConfig, SweepResult, sweep
from rsi_plugin.ablation.screening import Draw, keeps, random_sets

__all__ = [
    "PAPER_SCALES",
    "Condition",
    "Draw",
    "SkippedFiles",
    "SweepConfig",
    "SweepResult",
    "ValidationLoader",
    "ablate_conditions",
    "ablated_forward",
    "channel_means",
    "eq3_summary",
    "keeps",
    "plot_accuracy",
    "plot_eq3",
    "random_sets",
    "scale_attacks",
    "scale_comparator",
    "sweep",
    "sweep_preprocessor",
    "top1",
    "validation_loader",
]
