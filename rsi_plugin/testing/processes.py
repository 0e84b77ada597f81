r"""Two (or more) ranks of ``torchrun ... -m rsi_plugin.cli`` in one test: forked processes with
the environment ``torchrun`` sets, gloo on the CPU.

Forked, not spawned, so the package is not imported again and a ``monkeypatch`` set before the
call holds in every rank.
"""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path
from typing import Sequence

__all__ = ["free_port", "run_cli_ranks"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_rank(rank: int, argv: list[str], port: int, logs: Path, nprocs: int, per_node: int) -> None:
    from rsi_plugin.cli import main

    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank % per_node), WORLD_SIZE=str(nprocs),
                      LOCAL_WORLD_SIZE=str(per_node), GROUP_RANK=str(rank // per_node),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    with open(logs / f"stdout.rank{rank}", "w") as out, contextlib.redirect_stdout(out):
        code = main(argv)
    if code != 0:
        raise SystemExit(code)


def run_cli_ranks(argv: Sequence[str], logs: str | os.PathLike, nprocs: int = 2,
                  per_node: int | None = None) -> list[str]:
    """Run ``rsi ARGV`` as ``nprocs`` ranks of one process group, as ``torchrun
    --nproc_per_node nprocs -m rsi_plugin.cli ARGV`` would; with ``per_node`` as ``torchrun
    --nnodes nprocs/per_node --nproc_per_node per_node`` on each node would (``LOCAL_RANK``,
    ``LOCAL_WORLD_SIZE`` and ``GROUP_RANK`` per node; the nodes here share this machine's disk).

    Args:
        argv (sequence of str): the command line after ``rsi``.
        logs (str or path): a folder for each rank's stdout (created).
        nprocs (int): the number of ranks in all.
        per_node (int, optional): ranks per node (default: all on one node); must divide ``nprocs``.

    Returns:
        list of str: each rank's standard output, by rank.

    Raises:
        torch.multiprocessing.ProcessRaisedException: a rank failed (its traceback).
    """
    import torch.multiprocessing

    per_node = nprocs if per_node is None else int(per_node)
    if per_node < 1 or nprocs % per_node:
        raise ValueError(f"per_node must divide nprocs={nprocs}, got {per_node}")
    logs = Path(logs)
    logs.mkdir(parents=True, exist_ok=True)
    torch.multiprocessing.start_processes(_as_rank, args=(list(argv), free_port(), logs, nprocs, per_node),
                                          nprocs=nprocs,
                                          join=True, start_method="fork")
    return [(logs / f"stdout.rank{r}").read_text() for r in range(nprocs)]
