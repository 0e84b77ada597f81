"""The few ``torch.distributed`` operations a sharded sweep needs, inert in one process.

A sweep started with ``torchrun --nproc_per_node K`` runs the same code on K processes; each
reads its share of the batches and the counts are summed across processes. Without an
initialised process group every function here is the one-process identity.
"""

from __future__ import annotations

import logging
import os

import torch
import torch.distributed as dist

__all__ = ["rank_and_world", "is_main", "all_reduce_sum", "barrier", "init_from_env"]

logger = logging.getLogger(__name__)


def _active() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank_and_world() -> tuple[int, int]:
    """``(rank, world_size)`` of this process; ``(0, 1)`` without a process group."""
    if _active():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    """True on rank 0 (and in a single process): the process that writes files."""
    return rank_and_world()[0] == 0


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over all processes (a copy; the input is untouched).

    With the NCCL backend the reduction runs on this process's CUDA device; the result
    comes back on ``tensor``'s device and dtype. Without a process group: a copy.

    Args:
        tensor (Tensor): any shape; integer sums are exact, float64 is advised for floats.

    Returns:
        Tensor, same shape, dtype and device.
    """
    out = tensor.detach().clone()
    if not _active() or dist.get_world_size() == 1:
        return out
    if dist.get_backend() == "nccl":
        work = out.to(torch.device("cuda", torch.cuda.current_device()))
        dist.all_reduce(work, op=dist.ReduceOp.SUM)
        return work.to(tensor.device)
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def barrier() -> None:
    """Wait for every process (no-op without a process group)."""
    if _active() and dist.get_world_size() > 1:
        dist.barrier()


def init_from_env(backend: str | None = None) -> bool:
    """Join the process group ``torchrun`` describes in the environment.

    Does nothing when ``WORLD_SIZE`` is unset or 1, or a group already exists. The backend
    defaults to ``"nccl"`` when CUDA is available, else ``"gloo"``; with NCCL the process
    uses CUDA device ``LOCAL_RANK``.

    Args:
        backend (str, optional): ``"gloo"`` or ``"nccl"``.

    Returns:
        bool: True when this call initialised a process group.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or _active():
        return False
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend)
    logger.info("joined process group: rank %d of %d (%s)", dist.get_rank(), dist.get_world_size(), backend)
    return True
