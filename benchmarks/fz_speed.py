"""Feature-visualisation cost on CPU: this tree against an older checkout, interleaved in one
process, and ``torch.compile`` of the FZ step against eager.

    python benchmarks/fz_speed.py --before /tmp/before [--mode fixed|stop] [--rounds 2] [--json PATH]
    python benchmarks/fz_speed.py --compile [--json PATH]

``--before DIR``: a checkout of an older commit (``git worktree add /tmp/before <commit>``); both
packages are imported into this process and each case runs once per tree per round, the order
alternating, so both see the same machine load. ``--mode fixed``: a fixed step count on the
bundled tiny model (64 px), ms per channel-step per node; ``--mode stop``: the demo's settings
(plateau stop, 512-step cap, 32 channels per batch), whole nodes, where continuous batching
drops finished channels. Wall and process CPU time are both recorded (on a shared machine the
CPU time of a one-thread run is the steadier figure). ``--compile``: the FZ step (image parameterisation, transforms, the
network truncated at the node, backward to the parameters) eager vs ``torch.compile`` on the
tiny model at 64 px and resnet18 (random init) at 224 px: compile time, step times and the
relative difference of the gradients.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent


def _load(path: Path):
    for name in [k for k in sys.modules if k == "rsi_plugin" or k.startswith("rsi_plugin.")]:
        del sys.modules[name]
    sys.path.insert(0, str(path))
    try:
        try:  # the package layout of issue 15, or the flat one before it
            fv = importlib.import_module("rsi_plugin.featureviz.optimize")
        except ModuleNotFoundError:
            fv = importlib.import_module("rsi_plugin.featureviz")
        model = importlib.import_module("rsi_plugin").load_model("tiny")
    finally:
        sys.path.remove(str(path))
    return fv, model


def compare(before: Path, mode: str, rounds: int) -> list[dict]:
    trees = {"before": _load(before), "after": _load(ROOT)}
    if mode == "fixed":
        cases = [("1.0", "pre", 16, 32), ("2.1", "in", 32, 32), ("3.1", "pre", 32, 32), ("4.1", "in", 32, 32)]
    else:
        cases = [("1.0", "pre", 16, 512), ("2.1", "in", 32, 512)]
    rows = []
    for r in range(rounds):
        for block, node, k, steps in cases:
            for name in (["before", "after"] if r % 2 == 0 else ["after", "before"]):
                fv, model = trees[name]
                cfg = fv.FeatureVizConfig(steps=steps, early_stop=mode == "stop", channels_per_batch=32)
                fv.visualize(model, block, node, [0, 1], fv.FeatureVizConfig(steps=2))  # warm-up
                t, cpu = time.perf_counter(), time.process_time()
                vis = fv.visualize(model, block, node, list(range(k)), cfg)
                dt, dcpu = time.perf_counter() - t, time.process_time() - cpu
                rows.append(dict(round=r, block=block, node=node, channels=k, cap=steps, tree=name, seconds=dt,
                                 cpu_seconds=dcpu, steps_used=int(vis.steps_used.sum()),
                                 ms_per_channel_step=dt / (k * steps) * 1e3,
                                 cpu_ms_per_channel_step=dcpu / (k * steps) * 1e3))
                print(rows[-1], flush=True)
    return rows


def _step(name: str, size: int, block: str, k: int):
    sys.path.insert(0, str(ROOT))
    import rsi_plugin as rsi
    from benchmarks.bench_featureviz import truncated_at_pre
    from rsi_plugin.featureviz.param import ImageParam, TransformSpec, draw_transforms, init_params, \
        transform_images, transform_thetas

    torch.manual_seed(0)
    model = rsi.load_model(name).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    net = truncated_at_pre(model, block)
    spec = TransformSpec(jitter=16 if size == 224 else 5)
    gens = [torch.Generator().manual_seed(i) for i in range(k)]
    params = init_params(gens, size).requires_grad_(True)
    thetas = transform_thetas(torch.stack([draw_transforms(g, 8, spec) for g in gens]), size, spec).float()
    image_of, rows = ImageParam(size), torch.arange(k)

    def step(params, theta):
        act = net((transform_images(image_of(params), theta, spec) - 0.5) / 0.25)
        value = act[rows, rows, act.shape[2] // 2, act.shape[3] // 2]
        return torch.autograd.grad(-value.sum(), params)[0]
    return step, params, thetas


def compile_cases(rounds: int) -> list[dict]:
    out = []
    for name, size, block, k, n in [("tiny", 64, "4.1", 32, 10), ("resnet18", 224, "3.1", 8, 3)]:
        step, params, thetas = _step(name, size, block, k)
        t0 = time.perf_counter()
        compiled = torch.compile(step)
        compiled(params, thetas[:, 0])
        compile_s = time.perf_counter() - t0
        compiled(params, thetas[:, 1])
        times: dict[str, list[float]] = {"eager": [], "compiled": []}
        for r in range(rounds):
            order = [("eager", step), ("compiled", compiled)]
            for which, f in (order if r % 2 == 0 else order[::-1]):
                t = time.perf_counter()
                for i in range(n):
                    f(params, thetas[:, i % 8])
                times[which].append((time.perf_counter() - t) / n)
        g1, g2 = step(params, thetas[:, 0]), compiled(params, thetas[:, 0])
        med = {w: sorted(v)[len(v) // 2] for w, v in times.items()}
        row = dict(model=name, size=size, block=block, batch=k, threads=torch.get_num_threads(), compile_s=compile_s,
                   eager_step_s=sorted(times["eager"]), compiled_step_s=sorted(times["compiled"]),
                   speedup_median=med["eager"] / med["compiled"],
                   max_rel_grad_diff=float((g1 - g2).abs().max() / g1.abs().max()))
        print(row, flush=True)
        out.append(row)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--before", type=Path, default=None, help="an older checkout to compare with")
    p.add_argument("--mode", choices=("fixed", "stop"), default="fixed")
    p.add_argument("--compile", action="store_true", help="torch.compile vs eager instead")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.compile:
        rows = compile_cases(max(args.rounds, 3))
    elif args.before is not None:
        rows = compare(args.before, args.mode, args.rounds)
    else:
        p.error("give --before DIR or --compile")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                               "torch": torch.__version__, "load_average": list(
                                                   __import__("os").getloadavg()), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
