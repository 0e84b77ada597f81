"""The few ``torch.distributed`` operations a sharded sweep needs, inert in one process.

They live in :mod:`rsi_plugin.core.distributed` (the scan shards its FZ work with them too);
this module keeps their former ablation-side names importable (import them from
:mod:`rsi_plugin.core.distributed`).
"""

from __future__ import annotations

from rsi_plugin.core.distributed import all_reduce_sum, barrier, init_from_env, is_main, rank_and_world  # noqa: F401

__all__: list[str] = []  # the names are core.distributed's
