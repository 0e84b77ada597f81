r"""outputs: what a run leaves behind, drawn and written from tables: Fig.-1 grids, charts, the
results summary and the HTML report. Reads run folders (the names in
:mod:`rsi_plugin.core.runfolder`); computes no criteria and renders no FZ of its own.

======================  ====================================================================
:mod:`.grids`           :func:`save_channel_grids`, :class:`GridLayout`: draws the paper's
                        Fig. 1 from grid content (:mod:`rsi_plugin.criteria.fig1_data`;
                        :func:`rsi_plugin.apps.fig1.channel_grids` does both for a scan)
:mod:`.plots`           :func:`plot_eq3` (Fig. 2), :func:`plot_accuracy`, :func:`plot_summary`
                        (per-block chart)
:mod:`.contents`        :func:`discover`: the scan and sweep folders below a directory, read back
                        (:class:`RunContents`)
:mod:`.html`            escaping, cell formats, tables and the page of sections
:mod:`.report`          :func:`write_report`: a self-contained HTML page of a run folder
:mod:`.summary`         :func:`summarize_run`: a run's headline numbers as one JSON file, and
                        the README block generated from it
:mod:`.method_card`     :func:`method_card`: per block one pass / inconclusive / fail mark per
                        check (untrained copies, planted control, seeds, Eq. 3 vs null, analysis
                        choices), the rule of each stated once
======================  ====================================================================
"""

from __future__ import annotations

from rsi_plugin._lazy import lazy_exports as _lazy_exports

_EXPORTS: dict[str, str] = {
    "save_channel_grids": "grids", "GridLayout": "grids",
    "plot_eq3": "plots", "plot_accuracy": "plots", "plot_summary": "plots",
    "discover": "contents", "RunContents": "contents",
    "write_report": "report",
    "summarize_run": "summary", "write_summary": "summary", "read_summary": "summary",
}

#: importable from here for code written against the first layout (outputs.figures computed
#: and drew the grids; the computing half now lives in criteria, the composition in
#: :func:`rsi_plugin.apps.fig1.channel_grids`, which this layer cannot name)
_FORMER: dict[str, str] = {"channel_grid_images": "rsi_plugin.criteria.fig1_data"}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = _lazy_exports(globals(), _EXPORTS, deprecated=_FORMER)
