r"""outputs: what a run leaves behind: Fig.-1 grids, charts, the results summary and the HTML
report. Reads run folders; computes no criteria of its own.

======================  ====================================================================
:mod:`.figures`         :func:`channel_grids` / :func:`save_channel_grids` (the paper's Fig. 1,
                        :class:`GridLayout`), :func:`plot_summary` (per-block chart)
:mod:`.report`          :func:`write_report`: a self-contained HTML page of a run folder
:mod:`.summary`         :func:`summarize_run`: a run's headline numbers as one JSON file, and
                        the README block generated from it
======================  ====================================================================
"""

from __future__ import annotations

from rsi_plugin._lazy import lazy_exports as _lazy_exports

_EXPORTS: dict[str, str] = {
    "channel_grids": "figures", "channel_grid_images": "figures", "save_channel_grids": "figures",
    "plot_summary": "figures", "GridLayout": "figures",
    "write_report": "report", "discover": "report",
    "summarize_run": "summary", "write_summary": "summary", "read_summary": "summary",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = _lazy_exports(globals(), _EXPORTS)
