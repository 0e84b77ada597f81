r"""featureviz: feature visualisations (FZs) of a block's In / Pre / Post channels, batched,
seeded per channel and cached. Imports :mod:`rsi_plugin.core` and :mod:`rsi_plugin.access`.

======================  ====================================================================
:mod:`.optimize`        :func:`render` (FZs of many channels, cached, resumable),
                        :func:`visualize` (one call, no cache), :class:`FeatureVizResult`
:mod:`.config`          :class:`FeatureVizConfig` and the paper's rules it resolves per block
                        and node: :func:`paper_jitter`, :func:`scaled_jitter`,
                        :func:`channel_seed`
:mod:`.engine`          the running batch (per-row Adam, plateau stop, :func:`fz_status`) and
                        its server side for ``remote=``
:mod:`.param`           Lucent's image parameterisation and transform robustness, batched
:mod:`.cache`           the on-disk FZ records (:func:`model_fingerprint`, checksums, locks)
:mod:`.lucent`          Lucent objectives for the residual nodes (``render.render_vis``)
======================  ====================================================================
"""

from __future__ import annotations

from rsi_plugin._lazy import lazy_exports as _lazy_exports

_EXPORTS: dict[str, str] = {
    "render": "optimize", "visualize": "optimize", "FeatureVizResult": "optimize",
    "FeatureVizConfig": "config", "paper_jitter": "config",
    "fz_status": "engine", "STATUSES": "engine", "model_fingerprint": "cache",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = _lazy_exports(globals(), _EXPORTS)
