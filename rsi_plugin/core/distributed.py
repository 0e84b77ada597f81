"""The few ``torch.distributed`` operations a sharded run needs, inert in one process.

A run started with ``torchrun --nproc_per_node K`` runs the same code on K processes: the
ablation sweep reads every K-th batch and sums the counts (:mod:`rsi_plugin.ablation`), the
scan renders its share of the FZ units into the shared cache
(:mod:`rsi_plugin.criteria.shards`). Without an initialised process group every function
here is the one-process identity.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["joined_process_group", "rank_and_world", "is_main", "all_reduce_sum", "all_gather_object", "broadcast_object", "barrier",
           "init_from_env", "local_rank_and_world", "rank_device", "rank_threads"]

logger = logging.getLogger(__name__)


def _active() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank_and_world() -> tuple[int, int]:
    """``(rank, world_size)`` of this process; ``(0, 1)`` without a process group."""
    if _active():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def local_rank_and_world() -> tuple[int, int]:
    """``(LOCAL_RANK, LOCAL_WORLD_SIZE)`` that ``torchrun`` sets (this node's processes);
    ``(0, 1)`` when they are not set."""
    return int(os.environ.get("LOCAL_RANK", "0")), max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


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


def all_gather_object(value: Any) -> list[Any]:
    """Every process's ``value`` (picklable), in rank order; ``[value]`` without a process group.

    Args:
        value: any picklable object.

    Returns:
        list, one entry per rank.
    """
    if not _active() or dist.get_world_size() == 1:
        return [value]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, value)
    return out


def broadcast_object(value: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``value`` on every process (picklable); ``value`` without a process group.

    Args:
        value: any picklable object (only ``src``'s is used).
        src (int): the rank that decides.

    Returns:
        rank ``src``'s value.
    """
    if not _active() or dist.get_world_size() == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def barrier() -> None:
    """Wait for every process (no-op without a process group)."""
    if _active() and dist.get_world_size() > 1:
        dist.barrier()


def init_from_env(backend: str | None = None, timeout: datetime.timedelta | None = None) -> bool:
    """Join the process group ``torchrun`` describes in the environment.

    Does nothing when ``WORLD_SIZE`` is unset or 1, or a group already exists. The backend
    defaults to ``"nccl"`` when CUDA is available, else ``"gloo"``; with NCCL the process
    uses CUDA device ``LOCAL_RANK``.

    Args:
        backend (str, optional): ``"gloo"`` or ``"nccl"``.
        timeout (timedelta, optional): how long a collective (a barrier) waits for the other
            processes; torch's default (30 minutes) when ``None``. A scan waits at a barrier
            while the other ranks render their units, so it passes a long one.

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
    if timeout is None:
        dist.init_process_group(backend=backend)
    else:
        dist.init_process_group(backend=backend, timeout=timeout)
    logger.info("joined process group: rank %d of %d (%s)", dist.get_rank(), dist.get_world_size(), backend)
    return True


def rank_device(device: str | torch.device | None) -> torch.device:
    """The device of this process: ``cuda:LOCAL_RANK`` for a CUDA ``device`` (``"cuda"`` or
    any ``"cuda:N"``) under a process group of several processes, else ``device`` itself.
    ``None`` (nothing asked): ``cuda:LOCAL_RANK`` under a process group of several processes
    when CUDA is available (one GPU per process, as torchrun users expect), else the CPU.

    Args:
        device (str or torch.device, optional): what the user asked for.

    Returns:
        torch.device.
    """
    if device is None:
        several = rank_and_world()[1] > 1
        device = "cuda" if several and torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda" and rank_and_world()[1] > 1:
        return torch.device("cuda", local_rank_and_world()[0])
    return device


def rank_threads(threads: int | None) -> int | None:
    """Torch threads for this process: ``threads`` when given, else (under a process group
    of several processes) this machine's CPUs divided among its processes,
    ``max(1, cpus // LOCAL_WORLD_SIZE)``; ``None`` (torch's default) in one process.

    Args:
        threads (int, optional): what the user asked for.

    Returns:
        int or None.
    """
    if threads is not None or rank_and_world()[1] <= 1:
        return threads
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, cpus // local_rank_and_world()[1])


@contextlib.contextmanager
def joined_process_group(backend: str | None = None, timeout: datetime.timedelta | None = None):
    """``with joined_process_group(): ...``: join the group ``torchrun`` describes
    (:func:`init_from_env`) for the block and leave it after, also on an error; inert in one
    process or when a group already exists (it is then left as it was).

    Args:
        backend (str, optional): as :func:`init_from_env`.
        timeout (timedelta, optional): as :func:`init_from_env`.

    Yields:
        bool: True when this call joined a group.
    """
    joined = init_from_env(backend=backend, timeout=timeout)
    try:
        yield joined
    finally:
        if joined:
            dist.destroy_process_group()
