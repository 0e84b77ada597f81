"""Intervention overhead on resnet18 (224 px, CPU): plain forward vs a raw-hook Post ablation
vs ``rsi.ablate`` (nnsight), at batch 1 and 32; and ``capture`` of a layer-1 node with the
early stop vs a full forward. Ratios are measured in one run, cases interleaved; the plain forward
is timed twice, and when the second is not within 0.9-1.1 of the first the result carries a
warning (the machine was too noisy for the ratios).

    python benchmarks/bench_intervention.py [--quick] [--json PATH]
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.harness import environment, finish, parse, parser, time_cases  # noqa: E402

import rsi_plugin as rsi  # noqa: E402
from rsi_plugin.apps.bench import SANITY_RANGE  # noqa: E402

CHANNELS = [1, 9, 22, 29, 80, 113]


def hook_ablation(model, block, channels, values):
    def hook(module, args, out):
        out[:, channels] = values[None, :, None, None]
        return out
    return model.get_submodule(block).register_forward_hook(hook)


def run(quick: bool = False) -> dict:
    torch.manual_seed(0)
    plain_model = rsi.load_model("resnet18")
    model = copy.deepcopy(plain_model)      # this one gets nnsight's wrapper
    rsi.wrap(model)
    values = torch.randn(len(CHANNELS))
    rows, warnings = [], []
    batches = (1, 4) if quick else (1, 32)
    repeats = 2 if quick else (20, 5)
    for i, batch in enumerate(batches):
        x = torch.randn(batch, 3, 224, 224)
        n = repeats if isinstance(repeats, int) else repeats[i]

        def plain():
            with torch.no_grad():
                plain_model(x)

        def raw_hook():
            handle = hook_ablation(plain_model, "layer3.1", CHANNELS, values)
            try:
                with torch.no_grad():
                    plain_model(x)
            finally:
                handle.remove()

        def nnsight_ablate():
            rsi.ablate(model, x, block="3.1", channels=CHANNELS, values=values)

        def capture_early():
            rsi.capture(model, x, blocks=["1.1"], nodes=("pre",), stop_early=True)

        def capture_full():
            rsi.capture(model, x, blocks=["1.1"], nodes=("pre",), stop_early=False)

        cases = {"plain forward": plain, "plain forward (again)": plain, "raw-hook ablation": raw_hook,
                 "rsi.ablate (nnsight)": nnsight_ablate, "capture 1.1 pre, early stop": capture_early, "capture 1.1 pre, full forward": capture_full}
        timings = time_cases(cases, repeats=n, warmup=1)
        base = timings["plain forward"].median
        again = timings["plain forward (again)"].median / base
        if not SANITY_RANGE[0] <= again <= SANITY_RANGE[1]:
            warnings.append(f"batch {batch}: plain forward (again) is {again:.2f}x the first, outside "
                            f"{SANITY_RANGE[0]}-{SANITY_RANGE[1]}: the machine is too noisy for these ratios")
        for name, t in timings.items():
            rows.append({"batch": batch, "case": name, "median_ms": 1e3 * t.median, "iqr_ms": 1e3 * t.iqr,
                         "vs_plain": t.median / base, "images_per_s": batch / t.median})
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return {"environment": environment(), "rows": rows, "warnings": warnings}


def main(argv=None) -> int:
    args = parse(parser(__doc__.splitlines()[0]), argv)
    return finish(run(args.quick), args)


if __name__ == "__main__":
    sys.exit(main())
