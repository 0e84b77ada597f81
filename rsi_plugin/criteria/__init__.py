r"""criteria: the paper's scale-invariance criteria (§3) and the scan of whole blocks.
Imports :mod:`rsi_plugin.core`, :mod:`rsi_plugin.access` and :mod:`rsi_plugin.featureviz`.

======================  ====================================================================
:mod:`.equations`       Eq. (1) and Eq. (2) as pure functions of the activations
                        (:func:`invariance_criteria`, :func:`eq1`, :func:`eq2`, margins),
                        which nodes they read (:func:`node_sites`), :func:`summarize`
:mod:`.captum`          :class:`ScaleInvariance`: the criteria as a Captum attribution
                        (``attribute`` returns the margins and keeps nothing;
                        ``evaluate`` returns a :class:`CriteriaResult` with ``.table()``)
:mod:`.natural`         :func:`top_k_images`: each channel's top-k natural images
:mod:`.channel_scan`    :func:`scan`, :class:`ScanConfig`: every channel of the chosen blocks,
                        from FZs or natural images, over seeds; :func:`read_table`
:mod:`.shards`          the scan's FZ work in units, shared among ``torchrun`` processes, and
                        its one progress bar
:mod:`.seeds`           seeds as a dimension: pass rates, robust sets, seed agreement
:mod:`.paper_comparison` :func:`compare_to_paper`: a scan's agreement with the paper's published
                        channels (:func:`rsi_plugin.paper.paper_channels`), block by block
:mod:`.fig1_data`       :func:`channel_grid_images`: the content of the paper's Fig. 1 for
                        some channels (In/Pre/Post FZs and top-k natural images; drawn by
                        :mod:`rsi_plugin.outputs.grids`)
:mod:`.geometry`        where a block's centre neuron looks (its receptive-field centre, found
                        by a gradient through the FZ reader) and ``S`` zoomed about it
:mod:`.sensitivity`     :func:`choice_sensitivity`: a finished scan re-evaluated on its cached
                        FZs under analysis choices (zoom centre, 8-bit PNG); flips per block
:mod:`.controls`        model randomisation as a control of the scan: control specs
                        (``random-init:K``, ``cascade:B``), :func:`compare_to_controls` (trained
                        vs untrained copies per block: counts, exact test, verdict)
======================  ====================================================================
"""

from __future__ import annotations

from rsi_plugin._lazy import lazy_exports as _lazy_exports

_EXPORTS: dict[str, str] = {
    "TOLERANCE": "equations", "Criteria": "equations", "invariance_criteria": "equations",
    "eq1": "equations", "eq2": "equations", "eq1_margin": "equations", "eq2_margin": "equations",
    "node_sites": "equations", "summarize": "equations", "add_fz_verdict": "equations",
    "TABLE_COLUMNS": "equations",
    "ScaleInvariance": "captum", "CriteriaResult": "captum",
    "top_k_images": "natural", "TopKImages": "natural",
    "scan": "channel_scan", "ScanConfig": "channel_scan", "read_table": "channel_scan",
    "scan_controls": "channel_scan", "compare_to_controls": "controls",
    "channel_table": "seeds", "block_summary": "seeds", "robust_count": "seeds",
    "channel_grid_images": "fig1_data",
    "compare_to_paper": "paper_comparison",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = _lazy_exports(globals(), _EXPORTS)
