"""``rsi bench``: what reading and patching the residual stream costs on your model and hardware."""

from __future__ import annotations

import argparse
import sys

from rsi_plugin.cli.args import WEIGHTS_HELP, add_deprecated_alias, weights
from rsi_plugin.errors import RSIError


def register(sub: argparse._SubParsersAction) -> None:
    from rsi_plugin.core.choices import BENCH_CASES

    parser = sub.add_parser("bench", help="time plain forward vs hooks vs nnsight capture/ablate, per batch size")
    parser.add_argument("--model", default="resnet18", help="resnet18, resnet50, tiny, ... or a .pth path")
    parser.add_argument("--weights", type=weights, default=None, help=WEIGHTS_HELP)
    parser.add_argument("--batch-size", type=int, nargs="+", default=[1, 8, 32], metavar="N",
                        help="images per batch, one or several sizes to time (default 1 8 32)")
    add_deprecated_alias(parser, "--batch", "--batch-size", "batch_size", type=int, nargs="+", metavar="N")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per case and batch (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls first (default 1)")
    parser.add_argument("--cases", nargs="+", default=None, metavar="CASE",
                        help=f"subset of cases: {', '.join(BENCH_CASES)}")
    parser.add_argument("--block", default="3.1", help="block for the read/ablate cases (default 3.1)")
    parser.add_argument("--remote", default=None, metavar="URL",
                        help="an NDIF server (e.g. http://127.0.0.1:8001 from `rsi serve start`): adds remote "
                             "empty-trace, capture and ablate cases; the model must be deployable by key "
                             "(e.g. --model resnet18 for random@0, or --weights IMAGENET1K_V1)")
    parser.add_argument("--json", default=None, help="write the results here")
    parser.add_argument("--plot", default=None, help="write overhead vs batch size here (PNG)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads for the run (default: torch's own); recorded in the results")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from rsi_plugin.apps.bench import bench, save_bench
    from rsi_plugin.outputs.plots import plot_bench

    if args.threads is not None and args.threads < 1:
        raise RSIError(f"--threads must be >= 1, got {args.threads}")
    threads = torch.get_num_threads()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        frame = bench(args.model, batches=args.batch_size, device=args.device, repeats=args.repeats, warmup=args.warmup,
                      cases=args.cases, block=args.block, weights=args.weights, remote=args.remote)
    finally:
        torch.set_num_threads(threads)
    env = frame.attrs["environment"]
    print(f"{env['model']} on {env['device']}, {env['threads']} threads, torch {env['torch']}, "
          f"nnsight {env.get('nnsight')}, {env['image_size']} px")
    shown = frame.assign(median_ms=frame.median_s * 1e3, iqr_ms=frame.iqr_s * 1e3)
    print(shown[["case", "batch", "median_ms", "iqr_ms", "images_per_s", "overhead", "peak_mem_mb"]]
          .to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    print(f"peak_mem_mb: each case's own peak tensor memory above what was live before it ({frame.memory_kind.iloc[0]})")
    for warning in frame.attrs.get("warnings", []):
        print(f"warning: {warning}", file=sys.stderr)
    if args.json:
        print("wrote", save_bench(frame, args.json))
    if args.plot:
        print("wrote", plot_bench(frame, args.plot))
    return 0
