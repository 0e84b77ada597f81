r"""apps: whole workflows composed from the layers below; each backs one ``rsi`` subcommand
(the CLI parses arguments and calls these).

======================  ====================================================================
:mod:`.demo`            :func:`run_demo` (``rsi demo``): scan every block, Fig.-1 grids, the
                        sweep on two blocks, the report; :class:`DemoConfig`
:mod:`.fig1`            :func:`channel_grids`: the Fig.-1 grid PNG of every passing channel of
                        a scan (computed by :mod:`rsi_plugin.criteria.fig1_data`, drawn by
                        :mod:`rsi_plugin.outputs.grids`), resumable
:mod:`.bench`           ``bench.bench`` (``rsi bench``): what an intervention costs on your
                        model, batch sizes and hardware (not exported here: the module is
                        ``apps.bench``; ``from rsi_plugin.apps.bench import bench``)
:mod:`.inspect`         :func:`block_table` (``rsi inspect``): a model's residual blocks, node
                        paths and shapes, the ``Post == act(In + Pre)`` check
:mod:`.planted`         :func:`run_planted_control`: the planted positive control of a run (the
                        same scan of ``load_model("planted")`` and its untrained copies, its
                        Eq. 3 positive control; ``rsi demo`` runs it)
:mod:`.timing`          sound wall-clock timing of interleaved cases (for bench, benchmarks/)
:mod:`.estimate`        :func:`estimate_scan`, :func:`estimate_demo` (``rsi scan/demo --estimate``):
                        expected FZ channel-steps, wall time and disk, from a short calibration
======================  ====================================================================
"""

from __future__ import annotations

from rsi_plugin._lazy import lazy_exports as _lazy_exports

_EXPORTS: dict[str, str] = {
    "run_demo": "demo", "DemoConfig": "demo",
    "channel_grids": "fig1",
    "block_table": "inspect",
    "time_cases": "timing",
    "run_planted_control": "planted", "PlantedControlConfig": "planted",
    "estimate_scan": "estimate", "estimate_demo": "estimate", "ScanEstimate": "estimate", "DemoEstimate": "estimate",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = _lazy_exports(globals(), _EXPORTS)
