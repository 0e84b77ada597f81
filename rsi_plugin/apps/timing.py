"""Sound wall-clock timing of several cases in one run: warm-up excluded, cases interleaved
(A B C A B C ...) so that drift hits them alike, CUDA synchronised, environment recorded.

Used by ``benchmarks/`` and by :func:`rsi_plugin.apps.bench.bench` (``rsi bench``)."""

from __future__ import annotations

import os
import platform
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from rsi_plugin.errors import RSIError

__all__ = ["TimingResult", "time_cases", "environment", "write_json", "format_table"]


@dataclass
class TimingResult:
    """Per-call wall times of one case, in seconds."""

    name: str
    times: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def iqr(self) -> float:
        if len(self.times) < 2:
            return 0.0
        q = statistics.quantiles(self.times, n=4, method="inclusive")
        return q[2] - q[0]


def _sync(device: torch.device | str | None) -> None:
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def time_cases(cases: Mapping[str, Callable[[], Any]], repeats: int = 5, warmup: int = 1,
               device: torch.device | str | None = None, progress: bool = False) -> dict[str, TimingResult]:
    r"""Time each case ``repeats`` times, interleaved, after ``warmup`` untimed rounds.

    Args:
        cases (mapping): name -> zero-argument callable.
        repeats (int): timed rounds (>= 1).
        warmup (int): untimed rounds first (>= 0).
        device: synchronise CUDA around every call when this is a CUDA device.
        progress (bool): show a tqdm bar over rounds.

    Returns:
        dict name -> :class:`TimingResult`.
    """
    if repeats < 1:
        raise RSIError(f"repeats must be >= 1, got {repeats}")
    if warmup < 0:
        raise RSIError(f"warmup must be >= 0, got {warmup}")
    results = {name: TimingResult(name) for name in cases}
    rounds = range(warmup + repeats)
    if progress:
        from tqdm.auto import tqdm
        rounds = tqdm(rounds, desc="timing", unit="round")
    for round_index in rounds:
        for name, fn in cases.items():
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            elapsed = time.perf_counter() - start
            if round_index >= warmup:
                results[name].times.append(elapsed)
    return results


def environment(device: torch.device | str = "cpu") -> dict[str, Any]:
    """What a result depends on: versions, threads, device, machine."""
    info: dict[str, Any] = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": str(device),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    try:
        import nnsight
        info["nnsight"] = getattr(nnsight, "__version__", "unknown")
    except ImportError:  # pragma: no cover - nnsight is a dependency
        pass
    if torch.device(device).type == "cuda" and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def write_json(path: str | os.PathLike, payload: Any) -> Path:
    """Write JSON atomically (temporary file, then rename)."""
    from rsi_plugin.core.atomic import atomic_write_json

    return atomic_write_json(path, payload)


def format_table(rows: list[Mapping[str, Any]], floatfmt: str = "{:.4g}") -> str:
    """A plain-text table of dict rows (same keys)."""
    if not rows:
        return "(no rows)"
    keys = list(rows[0])
    cells = [[floatfmt.format(r[k]) if isinstance(r[k], float) else str(r[k]) for k in keys] for r in rows]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    line = lambda values: "  ".join(v.rjust(w) for v, w in zip(values, widths))  # noqa: E731
    return "\n".join([line(keys), line(["-" * w for w in widths])] + [line(c) for c in cells])
