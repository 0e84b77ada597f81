"""The §4 ablation sweep on resnet18 (CPU, 224 px from 256): naive (a full forward per
condition) vs prefix reuse with batched conditions (one stacked nnsight trace per batch and
scale), for blocks 2.1 and 3.1, in one run after a warm-up.

Reported per block and path: images per second of the whole sweep (means pass, screening and
every scale), the cost of one (image, scale, condition) cell relative to one plain forward of
an image (the goal at 3.1 is <= 0.5), and the speed-up over naive. Engine rows time one batch
of all conditions (``ablate_conditions``) against a plain forward of the batch.

    python benchmarks/bench_ablation.py [--quick] [--json PATH] [--threads N]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.harness import environment, finish, parse, parser, time_cases  # noqa: E402

import rsi_plugin as rsi  # noqa: E402
from rsi_plugin.ablation import SweepConfig, ablate_conditions, sweep  # noqa: E402
from rsi_plugin.ablation.means import prepare_batch  # noqa: E402

# blocks 2.1 and 3.1 with about the paper's share of passing channels (18 %)
CHANNELS = {"2.1": list(range(0, 128, 6))[:23], "3.1": list(range(1, 256, 5))[:46]}


def _settings(quick: bool) -> dict:
    if quick:
        return dict(n=4, batch=4, trials=2, scales=(0.0, 0.5), forward_repeats=2)
    return dict(n=32, batch=16, trials=10, scales=(0.0, 0.1, 0.2, 0.3, 0.4, 0.5), forward_repeats=5)


def run(quick: bool = False) -> dict:
    s = _settings(quick)
    model = rsi.load_model("resnet18")
    rsi.wrap(model)
    info = model.rsi_info
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(s["n"], 3, info.resize_size, info.resize_size, generator=generator)
    labels = torch.randint(0, info.num_classes, (s["n"],), generator=generator)
    data = (images, labels)
    conditions = 2 + s["trials"]
    cells_per_image = len(s["scales"]) * conditions

    def config(batch_conditions, **kw):
        # tolerance 1: every draw is kept, so both paths run exactly 2 + trials conditions
        base = dict(scales=s["scales"], trials=s["trials"], tolerance=1.0, batch_size=s["batch"],
                    batch_conditions=batch_conditions, screen_batch=s["trials"])
        base.update(kw)
        return SweepConfig(**base)

    # warm-up: nnsight compiles each trace site once; BLAS/oneDNN pick their kernels
    for block, channels in CHANNELS.items():
        for mode in (False, True):
            sweep(model, (images[:2], labels[:2]), block, channels,
                  config(mode, scales=(0.0,), trials=1, batch_size=2), progress=False)

    x = prepare_batch(images[:s["batch"]], model, 0.0)

    def forward():
        with torch.no_grad():
            model(x)

    timings = time_cases({"forward": forward}, repeats=s["forward_repeats"], warmup=1)
    forward_per_image = timings["forward"].median / x.shape[0]
    rows = [{"block": "-", "path": "plain forward", "seconds": timings["forward"].median,
             "images_per_s": 1.0 / forward_per_image, "cell_vs_forward": 1.0, "speedup_vs_naive": float("nan")}]

    for block, channels in CHANNELS.items():
        results = {}
        for name, mode in (("naive", False), ("prefix reuse + batched", True)):
            start = time.perf_counter()
            out = sweep(model, data, block, channels, config(mode), progress=False)
            results[name] = (time.perf_counter() - start, out)
        naive_time, naive_out = results["naive"]
        fast_time, fast_out = results["prefix reuse + batched"]
        if not naive_out.results.equals(fast_out.results):
            raise RuntimeError(f"block {block}: the two paths disagree")
        for name, (seconds, _) in results.items():
            rows.append({
                "block": block, "path": f"sweep, {name}", "seconds": seconds,
                "images_per_s": s["n"] / seconds,
                "cell_vs_forward": seconds / (s["n"] * cells_per_image) / forward_per_image,
                "speedup_vs_naive": naive_time / seconds,
            })
        # engine: one batch, every condition of one scale, vs a plain forward of the batch
        means = fast_out.means
        sets = [()] + [tuple(channels)] + [tuple(r) for r in _random_sets(channels, means.numel(), s["trials"])]

        def stacked():
            ablate_conditions(model, x, block, sets, means)

        engine = time_cases({"stacked": stacked, "forward": forward}, repeats=s["forward_repeats"], warmup=1)
        per_condition = engine["stacked"].median / len(sets)
        rows.append({"block": block, "path": f"engine, {len(sets)} conditions stacked",
                     "seconds": engine["stacked"].median, "images_per_s": x.shape[0] * len(sets) / engine["stacked"].median,
                     "cell_vs_forward": per_condition / engine["forward"].median,
                     "speedup_vs_naive": engine["forward"].median * len(sets) / engine["stacked"].median})
    settings = {**s, "conditions": conditions, "cells_per_image": cells_per_image,
                "channels": {k: len(v) for k, v in CHANNELS.items()}, "model": "resnet18 (random init)",
                "input": f"{info.resize_size} -> {info.input_size}"}
    return {"environment": environment(), "settings": settings, "rows": rows}


def _random_sets(channels, num_channels, count):
    pool = [c for c in range(num_channels) if c not in set(channels)]
    generator = torch.Generator().manual_seed(1)
    return [sorted(pool[i] for i in torch.randperm(len(pool), generator=generator)[:len(channels)].tolist())
            for _ in range(count)]


def main(argv=None) -> int:
    args = parse(parser(__doc__.splitlines()[0]), argv)
    return finish(run(args.quick), args)


if __name__ == "__main__":
    sys.exit(main())
