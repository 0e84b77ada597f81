"""What an intervention costs on *your* model, batch sizes and hardware (``rsi bench``).

Every case runs the real library path on the same input and is timed against the plain
forward of a never-wrapped copy of the model in the same run (cases interleaved, warm-up
excluded, CUDA synchronised; see :mod:`rsi_plugin.apps.timing`). A second plain-forward case,
``plain (again)``, is a sanity row: its overhead should be ≈ 1, and a harness that favours
one position in the round shows up there.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from rsi_plugin.core.modelinfo import model_info
from rsi_plugin.core.blocks import NODES, get_block, residual_blocks
from rsi_plugin.core.choices import BENCH_CASES as _BENCH_CASES
from rsi_plugin.apps.timing import environment, time_cases, write_json
from rsi_plugin.access.nnsight import ablate, capture, wrap
from rsi_plugin.errors import RSIError, UnknownNameError

__all__ = ["BENCH_CASES", "REMOTE_CASES", "BenchCase", "make_cases", "bench", "save_bench", "load_bench",
           "peak_memory_mb", "sanity_warnings", "SANITY_RANGE"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BenchCase:
    """One timed path: ``run(x)`` is what is timed, ``reference(x)`` what it must equal."""

    name: str
    description: str
    run: Callable[[torch.Tensor], Any]
    reference: Callable[[torch.Tensor], Any]


#: case names, in the order they run within a round (defined in rsi_plugin.core.choices,
#: which the CLI reads without importing this module)
BENCH_CASES: tuple[str, ...] = _BENCH_CASES
#: cases against a real NDIF server, added by ``remote=URL`` (``rsi bench --remote URL``)
REMOTE_CASES: tuple[str, ...] = ("remote_empty", "remote_capture", "remote_ablate")


def _hook_read(model: nn.Module, x: torch.Tensor, block_path: str, pre_path: str, in_path: str | None):
    """In/Pre/Post centre neurons of one block read with raw forward hooks (the reference)."""
    seen: dict[str, torch.Tensor] = {}

    def centre(t: torch.Tensor) -> torch.Tensor:
        return t[:, :, t.shape[2] // 2, t.shape[3] // 2].clone()

    block = model.get_submodule(block_path)
    handles = [model.get_submodule(pre_path).register_forward_hook(lambda m, a, o: seen.__setitem__("pre", centre(o))),
               block.register_forward_hook(lambda m, a, o: seen.__setitem__("post", centre(o)))]
    if in_path is None:
        handles.append(block.register_forward_pre_hook(lambda m, a: seen.__setitem__("in", centre(a[0]))))
    else:
        handles.append(model.get_submodule(in_path).register_forward_hook(lambda m, a, o: seen.__setitem__("in", centre(o))))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return seen


def _hook_ablate(model: nn.Module, x: torch.Tensor, block_path: str, channels: list[int], values: torch.Tensor):
    def hook(module, args, out):
        out[:, channels] = values[None, :, None, None].to(out.dtype)
        return out

    handle = model.get_submodule(block_path).register_forward_hook(hook)
    try:
        with torch.no_grad():
            return model(x)
    finally:
        handle.remove()


def make_cases(model: nn.Module, plain_model: nn.Module, block: str = "3.1",
               channels: Sequence[int] | None = None, cases: Sequence[str] | None = None,
               remote: str | None = None) -> dict[str, BenchCase]:
    r"""The benchmark cases on ``model`` (wrapped by nnsight) and ``plain_model`` (a copy that
    nnsight never touched), each with the reference its output must equal.

    Args:
        model (nn.Module): the model the library paths run on.
        plain_model (nn.Module): an unwrapped copy with the same weights.
        block (str): block the read and ablation cases use.
        channels (sequence of int, optional): channels to ablate (default the first 8).
        cases (sequence of str, optional): subset of :data:`BENCH_CASES` (and of
            :data:`REMOTE_CASES` with ``remote``).
        remote (str, optional): an NDIF server URL; adds :data:`REMOTE_CASES` (an empty
            trace, a capture, an ablation, each one request to it). The model needs a remote
            key (:func:`rsi_plugin.access.remote.model_key`) and the server must run it.

    Returns:
        dict name -> :class:`BenchCase`.

    Raises:
        ValueError: unknown case names (lists the valid ones).
    """
    valid = BENCH_CASES + (REMOTE_CASES if remote else ())
    cases = list(valid if cases is None else cases)
    unknown = [c for c in cases if c not in valid]
    if unknown:
        raise UnknownNameError(f"unknown case(s) {unknown}; valid: {', '.join(valid)}"
                         + ("" if remote else f" ({', '.join(REMOTE_CASES)} need remote=URL)"))
    target = get_block(residual_blocks(model), block)
    blocks = residual_blocks(model)
    channels = list(range(min(8, target.channels))) if channels is None else list(channels)
    generator = torch.Generator().manual_seed(0)
    values = torch.randn(len(channels), generator=generator).to(next(model.parameters()).device)
    envoy = wrap(model)
    in_site = target.site("in")
    in_path = in_site.path if in_site.attr == "output" else None

    def plain(x):
        with torch.no_grad():
            return plain_model(x)

    def nnsight_empty(x):
        with torch.no_grad():
            with envoy.trace(x):
                out = envoy.output.save()
        return out

    def hooks_read(x):
        return _hook_read(plain_model, x, target.path, target.pre_path, in_path)

    def capture_block(x, stop):
        acts = capture(model, x, blocks=[target.name], nodes=("in", "pre", "post"), stop_early=stop)
        return {node: acts[(target.name, node)] for node in ("in", "pre", "post")}

    def capture_all(x, stop):
        return capture(model, x, blocks="all", nodes=NODES, stop_early=stop)

    def capture_all_reference(x):
        out = {}
        for b in blocks:
            seen = _hook_read(plain_model, x, b.path, b.pre_path,
                              b.site("in").path if b.site("in").attr == "output" else None)
            out.update({(b.name, n): seen[n] for n in ("in", "pre", "post")})
            out[(b.name, "sum")] = seen["in"] + seen["pre"]
        return out

    first = blocks[0]
    table: dict[str, BenchCase] = {
        "plain": BenchCase("plain", "plain forward (never-wrapped copy)", plain, plain),
        "plain_again": BenchCase("plain_again", "plain forward again: sanity row, overhead should be ~1", plain, plain),
        "hooks_read": BenchCase("hooks_read", f"raw register_forward_hook read of In/Pre/Post at {target.name}",
                                hooks_read, hooks_read),
        "nnsight_empty": BenchCase("nnsight_empty", "nnsight trace with no intervention", nnsight_empty, plain),
        "capture_one": BenchCase("capture_one", f"capture {first.name} pre, early stop",
                                 lambda x: capture(model, x, blocks=[first.name], nodes=("pre",))[(first.name, "pre")],
                                 lambda x: _hook_read(plain_model, x, first.path, first.pre_path, None)["pre"]),
        "capture_one_full": BenchCase("capture_one_full", f"capture {first.name} pre, full forward",
                                      lambda x: capture(model, x, blocks=[first.name], nodes=("pre",),
                                                        stop_early=False)[(first.name, "pre")],
                                      lambda x: _hook_read(plain_model, x, first.path, first.pre_path, None)["pre"]),
        "capture_all": BenchCase("capture_all", "capture every node of every block, early stop",
                                 lambda x: capture_all(x, True), capture_all_reference),
        "capture_all_full": BenchCase("capture_all_full", "capture every node of every block, full forward",
                                      lambda x: capture_all(x, False), capture_all_reference),
        "ablate_post": BenchCase("ablate_post", f"rsi.ablate at {target.name} Post",
                                 lambda x: ablate(model, x, block=target.name, channels=channels, values=values),
                                 lambda x: _hook_ablate(plain_model, x, target.path, channels, values)),
        "ablate_sum": BenchCase("ablate_sum", f"rsi.ablate at {target.name} pre-ReLU sum",
                                lambda x: ablate(model, x, block=target.name, channels=channels, values=values, node="sum"),
                                lambda x: _hook_ablate(plain_model, x, target.path, channels, torch.relu(values))),
    }
    if "remote_local" in cases:
        local = _remote_local_case(model, target.name, channels, values)
        if local is not None:
            table["remote_local"] = BenchCase(
                "remote_local", f"rsi.ablate at {target.name} Post with remote='local' (serialisation)",
                local, table["ablate_post"].reference)
        else:
            logger.info("remote_local: this model has no remote-ready wrapper; case left out")
    if remote and any(name in cases for name in REMOTE_CASES):
        table.update(_remote_cases(model, target, channels, values, remote, table, plain))
    return {name: table[name] for name in cases if name in table}


def _remote_cases(model, target, channels, values, remote, table, plain) -> dict[str, BenchCase]:
    """An empty trace, a capture and an ablation, each one request to the server at ``remote``."""
    from rsi_plugin.access.remote import check_remote, remote_ready

    check_remote(remote)
    envoy = remote_ready(model)
    envoy.to_model_key()  # a ValueError now, naming why, if the server cannot know the model

    def empty(x):
        with torch.no_grad():
            with envoy.trace(x, remote=remote):
                out = envoy.output.save()
        return out

    def read(x):
        acts = capture(envoy, x, blocks=[target.name], nodes=("in", "pre", "post"), remote=remote)
        return {node: acts[(target.name, node)] for node in ("in", "pre", "post")}

    return {
        "remote_empty": BenchCase("remote_empty", f"empty nnsight trace on the NDIF server {remote}", empty, plain),
        "remote_capture": BenchCase("remote_capture", f"capture In/Pre/Post at {target.name} on {remote}", read,
                                    table["hooks_read"].reference),
        "remote_ablate": BenchCase("remote_ablate", f"rsi.ablate at {target.name} Post on {remote}",
                                   lambda x: ablate(envoy, x, block=target.name, channels=channels, values=values,
                                                    remote=remote),
                                   table["ablate_post"].reference),
    }


def _remote_local_case(model, block, channels, values):
    try:
        from rsi_plugin.access.remote import remote_ready  # issue 8; absent in older versions
    except ImportError:
        return None
    try:
        remote_model = remote_ready(model)
    except (TypeError, ValueError):
        return None
    return lambda x: ablate(remote_model, x, block=block, channels=channels, values=values, remote="local")


#: ``plain_again`` / ``plain`` outside this range: the machine was too noisy for the figures.
SANITY_RANGE: tuple[float, float] = (0.9, 1.1)


@contextlib.contextmanager
def _stderr_fd_silenced():
    """Point file descriptor 2 at /dev/null for the duration (the profiler's C++ side
    prints start/stop lines there that would break the progress bars)."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def peak_memory_mb(fn: Callable[[], Any], device: torch.device | str = "cpu") -> float:
    r"""Peak tensor memory a call allocates beyond what was live when it started, in MiB.

    On CUDA this is ``torch.cuda.max_memory_allocated`` after a reset, minus the memory
    allocated before the call. On CPU, torch keeps no allocator statistics and the process
    RSS is shared by every case (its maximum only grows), so the call is run once under
    ``torch.profiler`` with ``profile_memory=True`` and the peak of the running sum of its
    CPU allocations and frees is taken. Only torch tensors count (not Python objects).

    Args:
        fn (callable): the call, with no arguments; it is run once (not timed).
        device (torch.device or str): where its tensors live.

    Returns:
        float, MiB (>= 0); NaN on CPU when a torch profiler is already running (the
        caller's own profiling session is left alone).
    """
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        before = torch.cuda.memory_allocated(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        fn()
        torch.cuda.synchronize(dev)
        return max(0.0, (torch.cuda.max_memory_allocated(dev) - before) / 2**20)
    from torch.profiler import ProfilerActivity, profile

    if torch._C._autograd._profiler_enabled():
        logger.info("a torch profiler is already running: CPU peak memory not measured (NaN)")
        return float("nan")
    with _stderr_fd_silenced():
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            fn()
    from torch.autograd import DeviceType

    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                    if e.name() == "[memory]" and e.device_type() == DeviceType.CPU)
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return peak / 2**20


def sanity_warnings(frame) -> list[str]:
    """Warnings about a bench table: ``plain_again`` (the same plain forward timed twice)
    should cost ~1x ``plain``; outside :data:`SANITY_RANGE` the machine was too noisy (or
    busy) for the overheads to be trusted.

    Args:
        frame (DataFrame): as returned by :func:`bench`.

    Returns:
        list of str, one per batch size whose sanity row is off (empty when all are fine or
        ``plain_again`` was not run).
    """
    low, high = SANITY_RANGE
    rows = frame[frame["case"] == "plain_again"]
    return [f"batch {int(row.batch)}: plain_again is {row.overhead:.2f}x plain, outside {low}-{high}: the "
            "machine is too noisy for these figures (close other work, pin --threads, raise --repeats)"
            for row in rows.itertuples() if not low <= row.overhead <= high]


def bench(model: str | nn.Module = "resnet18", batches: Sequence[int] = (1, 8, 32), device: str = "cpu",
          repeats: int = 5, warmup: int = 1, cases: Sequence[str] | None = None, block: str = "3.1",
          weights: str | None = None, image_size: int | None = None, progress: bool = True,
          remote: str | None = None):
    r"""Measure the wall time of each case per forward, per batch size.

    Args:
        model (str or nn.Module): a name for :func:`rsi_plugin.load_model`
            (``resnet18``, ``resnet50``, ``tiny``, a ``.pth`` path) or a model.
        batches (sequence of int): batch sizes (> 0).
        device (str): ``"cpu"`` or ``"cuda"``.
        repeats (int): timed calls per case and batch.
        warmup (int): untimed calls first.
        cases (sequence of str, optional): subset of :data:`BENCH_CASES` (``"plain"`` is
            always measured: it is the baseline).
        block (str): block used by the read and ablation cases.
        weights (str, optional): weights for a model given by name.
        image_size (int, optional): input side; the model's own by default.
        progress (bool): tqdm bar over (batch, case).
        remote (str, optional): an NDIF server URL: adds :data:`REMOTE_CASES` (see
            :func:`make_cases`), timed against the same local plain forward.

    Returns:
        DataFrame, one row per (case, batch): ``case, description, batch, median_s, iqr_s,
        images_per_s, overhead, peak_mem_mb, memory_kind, repeats`` with ``attrs["environment"]``
        and ``attrs["warnings"]`` (:func:`sanity_warnings`, also logged). ``peak_mem_mb`` is
        each case's own peak tensor memory above what was live before it
        (:func:`peak_memory_mb`, measured on one extra untimed call).

    Raises:
        ValueError: unknown case, batch <= 0, repeats < 1. RuntimeError: CUDA asked for
        without a GPU.
    """
    import pandas as pd

    batches = [int(b) for b in batches]
    if not batches or any(b <= 0 for b in batches):
        raise RSIError(f"batch sizes must be positive integers, got {batches}")
    if repeats < 1:
        raise RSIError(f"repeats must be >= 1, got {repeats}")
    if str(device).split(":")[0] not in ("cpu", "cuda"):
        raise UnknownNameError(f"unknown device {device!r}; valid: cpu, cuda")
    from rsi_plugin.core.models import check_device

    dev = check_device(device)  # a DeviceError (ValueError and RuntimeError) names what is missing
    names = list(BENCH_CASES if cases is None else cases)
    if remote and cases is None:
        names += list(REMOTE_CASES)
    if "plain" not in names:
        names.insert(0, "plain")
    if isinstance(model, str):
        from rsi_plugin.core.models import load_model
        model = load_model(model, weights=weights, device=dev)
    model = model.to(dev).eval()
    plain_model = _unwrapped_copy(model)
    table = make_cases(model, plain_model, block=block, cases=names, **({"remote": remote} if remote else {}))
    size = image_size or model_info(model).input_size
    rows = []
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(batches) * len(table), desc="rsi bench", unit="case")
    for batch in batches:
        x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(batch)).to(dev)
        timings = time_cases({n: (lambda c=c: c.run(x)) for n, c in table.items()}, repeats=repeats,
                             warmup=warmup, device=dev)
        # one more, untimed call per case measures its own memory (profiling would skew the times)
        memory = {n: peak_memory_mb(lambda c=c: c.run(x), dev) for n, c in table.items()}
        base = timings["plain"].median
        for name, timing in timings.items():
            rows.append({
                "case": name, "description": table[name].description, "batch": batch,
                "median_s": timing.median, "iqr_s": timing.iqr, "images_per_s": batch / timing.median,
                "overhead": timing.median / base, "peak_mem_mb": memory.get(name, float("nan")),
                "memory_kind": "cuda_allocated_peak" if dev.type == "cuda" else "cpu_profiler_peak",
                "repeats": repeats,
            })
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    frame = pd.DataFrame(rows)
    frame.attrs["environment"] = {**environment(dev), "model": model_info(model).name, "block": block,
                                  "image_size": size, "remote": remote}
    frame.attrs["warnings"] = sanity_warnings(frame)
    for warning in frame.attrs["warnings"]:
        logger.warning(warning)
    return frame


def _unwrapped_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` without nnsight's instrumentation (the plain-forward baseline).

    nnsight instruments a wrapped model by giving each submodule an instance-level
    ``forward``; they are set aside while the copy is made and put back afterwards."""
    stashed = {}
    for module in model.modules():
        for key in ("forward", "_rsi_nnsight"):
            if key in module.__dict__:
                stashed[(id(module), key)] = (module, module.__dict__.pop(key))
    try:
        return copy.deepcopy(model)
    finally:
        for (_, key), (module, value) in stashed.items():
            module.__dict__[key] = value


def save_bench(frame, path: str | os.PathLike) -> Path:
    """Write a bench DataFrame and its environment as JSON (atomically)."""
    return write_json(path, {"environment": frame.attrs.get("environment", {}),
                             "warnings": list(frame.attrs.get("warnings", [])),
                             "rows": json.loads(frame.to_json(orient="records"))})


def load_bench(path: str | os.PathLike):
    """Read a file written by :func:`save_bench` back into a DataFrame."""
    import pandas as pd

    payload = json.loads(Path(path).read_text())
    frame = pd.DataFrame(payload["rows"])
    frame.attrs["environment"] = payload.get("environment", {})
    frame.attrs["warnings"] = payload.get("warnings", [])
    return frame
