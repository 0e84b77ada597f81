"""``rsi featureviz``: render (and cache) feature visualisations of one node's channels."""

from __future__ import annotations

import argparse

from rsi_plugin.cli.args import add_deprecated_alias, add_threads_argument, add_variant_argument, set_threads
from rsi_plugin.cli.common import add_model_arguments, load_model_from_args
from rsi_plugin.paper import FZ_LR, FZ_STEPS, VARIANTS


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "featureviz",
        help="feature visualisations of a block's In/Pre/Post channels (cached, resumable)",
        description="Optimise one image per channel to excite its centre neuron, as the paper does with "
                    "Lucent, many channels per batch. PNGs and records go to --out; rerunning resumes.",
    )
    add_model_arguments(parser, default="tiny")
    parser.add_argument("--block", required=True, help="block name, e.g. 2.1")
    parser.add_argument("--node", default="pre", choices=("in", "pre", "sum", "post"), help="node (default pre)")
    parser.add_argument("--channels", type=int, nargs="+", default=None,
                        help="channels to render, e.g. 0 5 9 (default, without the flag: all of the node's)")
    parser.add_argument("--steps", type=int, default=FZ_STEPS,
                        help=f"optimisation steps: the cap of the plateau stop (default {FZ_STEPS}, the paper's count)")
    parser.add_argument("--no-early-stop", action="store_true",
                        help="run exactly --steps steps (the paper's fixed count) instead of stopping at the plateau")
    parser.add_argument("--no-scale-jitter", action="store_true",
                        help="use the paper's jitter in pixels at any image size (default: scaled from 224 px)")
    parser.add_argument("--no-pre-activation", action="store_true",
                        help="optimise a ReLU node's target even while it is 0 (Lucent's behaviour)")
    parser.add_argument("--size", type=int, default=None, help="image size (default: the model's input size)")
    parser.add_argument("--lr", type=float, default=FZ_LR, help=f"Adam learning rate (default {FZ_LR})")
    parser.add_argument("--objective", default="neuron", choices=("neuron", "channel"),
                        help="centre neuron (default) or whole-channel mean")
    parser.add_argument("--jitter", type=int, default=None,
                        help="jitter in pixels (default: the paper's per block and node)")
    add_variant_argument(parser, "--jitter-schedule and --paper-compat")
    parser.add_argument("--jitter-schedule", default=None, choices=VARIANTS,
                        help="the paper's jitter from its text or its code (default: --variant)")
    parser.add_argument("--channels-per-batch", type=int, default=32,
                        help="channels optimised together (default 32), as rsi scan")
    add_deprecated_alias(parser, "--batch", "--channels-per-batch", "channels_per_batch", type=int)
    parser.add_argument("--fz-seed", type=int, default=0, help="seed of the visualisations (default 0)")
    parser.add_argument("--paper-compat", action=argparse.BooleanOptionalAction, default=None,
                        help="read Pre as Lucent does (aliased to Post), to compare with the paper's FZs "
                             "(default: with --variant code)")
    parser.add_argument("--out", required=True, help="cache directory for PNGs and records")
    parser.add_argument("--force", action="store_true", help="recompute cached channels")
    add_threads_argument(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from rsi_plugin.featureviz.optimize import FeatureVizConfig, render

    config = FeatureVizConfig(
        image_size=args.size, steps=args.steps, lr=args.lr, objective=args.objective, jitter=args.jitter,
        variant=args.variant, jitter_schedule=args.jitter_schedule, seed=args.fz_seed, channels_per_batch=args.channels_per_batch,
        paper_compat=args.paper_compat, early_stop=not args.no_early_stop, scale_jitter=not args.no_scale_jitter,
        pre_activation=not args.no_pre_activation,
    )
    set_threads(args.threads)
    model = load_model_from_args(args)
    result = render(model, args.block, args.node, channels=args.channels, config=config, cache_dir=args.out,
                    force=args.force, progress=not args.no_progress)
    cfg = result.config
    print(f"{args.model} block {result.block} node {result.node}: {len(result.channels)} channel(s), "
          f"{len(result.computed)} computed, {len(result.channels) - len(result.computed)} from cache "
          f"({cfg.image_size} px, {cfg.steps} steps, jitter {cfg.jitter}, objective {cfg.objective})")
    print(f"{'channel':>7}  {'activation':>11}  {'status':>11}  {'steps':>5}  png")
    for channel, value, status, used, path in zip(result.channels, result.activations.tolist(), result.status,
                                                  result.steps_used, result.paths):
        print(f"{channel:>7}  {value:>11.4f}  {status:>11}  {used:>5}  {path}")
    return 0
