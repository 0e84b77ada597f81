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


def _as_rank(rank: int, argv: list[str], port: int, logs: Path, nprocs: int) -> None:
    from rsi_plugin.cli import main

    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(nprocs), LOCAL_WORLD_SIZE=str(nprocs),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    with open(logs / f"stdout.rank{rank}", "w") as out, contextlib.redirect_stdout(out):
        code = main(argv)
    if code != 0:
        raise SystemExit(code)


def run_cli_ranks(argv: Sequence[str], logs: str | os.PathLike, nprocs: int = 2) -> list[str]:
    """Run ``rsi ARGV`` as ``nprocs`` ranks of one process group, as ``torchrun
    --nproc_per_node nprocs -m rsi_plugin.cli ARGV`` would.

    Args:
        argv (sequence of str): the command line after ``rsi``.
        logs (str or path): a folder for each rank's stdout (created).
        nprocs (int): the number of ranks.

    Returns:
        list of str: each rank's standard output, by rank.

    Raises:
        torch.multiprocessing.ProcessRaisedException: a rank failed (its traceback).
    """
    import torch.multiprocessing

    logs = Path(logs)
    logs.mkdir(parents=True, exist_ok=True)
    torch.multiprocessing.start_processes(_as_rank, args=(list(argv), free_port(), logs, nprocs), nprocs=nprocs,
                                          join=True, start_method="fork")
    return [(logs / f"stdout.rank{r}").read_text() for r in range(nprocs)]
