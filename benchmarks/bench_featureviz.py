"""Feature visualisation speed on resnet18 (random init, 224 px): channel-steps per second of
``rsi_plugin.featureviz.optimize.visualize`` vs Lucent's ``render_vis`` (one channel per call, the
paper's transforms at the node's jitter) vs the limit — a plain forward+backward of the
network truncated at the node (an explicit ``nn.Sequential`` up to bn2), same batch, no
image parameterisation, transforms or optimiser. Blocks 1.1, 2.1 and 3.1, node Pre. Cases
are interleaved in one run; the first (warm-up) round is not timed.

    python benchmarks/bench_featureviz.py [--quick] [--json PATH]
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.harness import environment, finish, parse, parser, time_cases  # noqa: E402

import rsi_plugin as rsi  # noqa: E402
from rsi_plugin.featureviz.optimize import FeatureVizConfig, paper_jitter, visualize  # noqa: E402
from rsi_plugin.featureviz.param import PAPER_ANGLES, PAPER_SCALES  # noqa: E402

BLOCKS = ("1.1", "2.1", "3.1")
SIZE = 224


def truncated_at_pre(model: nn.Module, block_name: str) -> nn.Sequential:
    """The network up to block ``block_name``'s bn2, as a plain Sequential (BasicBlock)."""
    stage, index = (int(p) for p in block_name.split("."))
    parts: list[nn.Module] = [model.conv1, model.bn1, model.relu, model.maxpool]
    for s in range(1, stage + 1):
        layer = getattr(model, f"layer{s}")
        parts.extend(layer[:index] if s == stage else layer)
    target = getattr(model, f"layer{stage}")[index]
    parts.extend([target.conv1, target.bn1, target.relu, target.conv2, target.bn2])
    return nn.Sequential(*parts)


def lucent_transforms(jitter: int):
    """The paper's code's transforms (center_lucent_optimize.py), with its crop as a centre crop."""
    from lucent.optvis import transform

    def crop(x):
        o = (x.shape[-1] - SIZE) // 2
        return x[..., o:o + SIZE, o:o + SIZE]

    if jitter < 4:
        return [transform.random_scale(list(PAPER_SCALES)), transform.random_rotate(list(PAPER_ANGLES))]
    return [transform.pad(jitter), transform.jitter(jitter), transform.random_scale(list(PAPER_SCALES)),
            transform.random_rotate(list(PAPER_ANGLES)), transform.jitter(jitter // 2), crop]


def _drop_hooks(model: nn.Module) -> None:
    """Lucent's render_vis hooks every module and never removes its hooks; drop them between calls."""
    for module in model.modules():
        module._forward_hooks.clear()


def run(quick: bool = False, batch: int | None = None, steps: int | None = None, repeats: int | None = None) -> dict:
    """Time the three cases at each block; ``batch``/``steps``/``repeats`` override the presets
    (quick: 4 channels, 2 steps, 1 round; full: 16 channels, 16 steps, 3 rounds)."""
    from lucent.optvis import objectives, param, render

    torch.manual_seed(0)
    model = rsi.load_model("resnet18")
    lucent_model = copy.deepcopy(model)
    for p in lucent_model.parameters():
        p.requires_grad_(False)
    preset = (4, 2, 1) if quick else (16, 16, 3)
    batch, steps, repeats = (given or default for given, default in zip((batch, steps, repeats), preset))
    rows = []
    for block in BLOCKS:
        jitter = paper_jitter(block, "pre")
        cfg = FeatureVizConfig(image_size=SIZE, steps=steps, channels_per_batch=batch, jitter=jitter)
        channels = list(range(batch))
        plain = truncated_at_pre(model, block)
        stage, index = (int(p) for p in block.split("."))
        layer = f"layer{stage}_{index}_bn2"

        def ours():
            visualize(model, block, "pre", channels, cfg)

        def limit():
            flags = [p.requires_grad for p in model.parameters()]
            for p in model.parameters():
                p.requires_grad_(False)
            try:
                x = torch.randn(batch, 3, SIZE, SIZE, requires_grad=True)
                rows_ = torch.arange(batch)
                for _ in range(steps):
                    x.grad = None
                    act = plain(x)
                    (-act[rows_, rows_, act.shape[2] // 2, act.shape[3] // 2].sum()).backward()
            finally:
                for p, f in zip(model.parameters(), flags):
                    p.requires_grad_(f)

        def lucent():
            try:
                render.render_vis(lucent_model, objectives.neuron(layer, 0), param_f=lambda: param.image(SIZE),
                                  transforms=lucent_transforms(jitter), thresholds=(steps,), show_image=False,
                                  progress=False)
            finally:
                _drop_hooks(lucent_model)

        timings = time_cases({"limit (truncated fwd+bwd)": limit, "rsi visualize": ours,
                              "lucent render_vis": lucent}, repeats=repeats, warmup=1)
        work = {"limit (truncated fwd+bwd)": batch * steps, "rsi visualize": batch * steps,
                "lucent render_vis": steps}
        base = work["limit (truncated fwd+bwd)"] / timings["limit (truncated fwd+bwd)"].median
        ours_rate = work["rsi visualize"] / timings["rsi visualize"].median
        for name, t in timings.items():
            rate = work[name] / t.median
            rows.append({"block": block, "node": "pre", "jitter": jitter, "batch": batch if name != "lucent render_vis"
                         else 1, "steps": steps, "case": name, "median_s": t.median, "iqr_s": t.iqr,
                         "channel_steps_per_s": rate, "vs_limit": rate / base, "rsi_speedup": ours_rate / rate})
    return {"environment": environment(), "rows": rows, "goal": "rsi visualize >= 0.8x the limit at every node"}


def main(argv=None) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=None, help="channels per batch (default 16; quick 4)")
    p.add_argument("--steps", type=int, default=None, help="optimisation steps per call (default 16; quick 2)")
    p.add_argument("--repeats", type=int, default=None, help="timed rounds (default 3; quick 1)")
    args = parse(p, argv)
    return finish(run(args.quick, args.batch, args.steps, args.repeats), args)


if __name__ == "__main__":
    sys.exit(main())
