"""``rsi demo``: the whole paper on the bundled model, offline, with a report to look at.

Under ``torchrun --nproc_per_node K -m rsi_plugin.cli demo ...`` every process runs the demo:
the scans (the model's, its untrained copies', the planted control's) share their FZ units
through the run folder's caches (:mod:`rsi_plugin.criteria.shards`) and the ablation sweeps
their batches; rank 0 alone writes the tables, draws the grids and plots, writes the report
and prints (:func:`rsi_plugin.apps.demo.run_demo`).
"""

from __future__ import annotations

import argparse

from rsi_plugin.cli.args import (WEIGHTS_HELP, add_deprecated_alias, add_threads_argument, add_variant_argument,
                                 screen_tolerance, set_threads, weights)


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("demo", help="scan blocks (tiny: 1.1 2.0 2.1 3.1 by default) with untrained and planted controls, draw Fig.-1 grids, run the "
                                         "scale-ablation sweep on the two blocks with the most passing channels, "
                                         "write report.html")
    parser.add_argument("--out", default="rsi-demo", help="run folder (default rsi-demo; rerun to resume)")
    parser.add_argument("--model", default="tiny", help="model (default tiny, the bundled one)")
    parser.add_argument("--weights", type=weights, default=None, help=WEIGHTS_HELP)
    parser.add_argument("--device", default=None,
                        help="cpu or cuda (default: cpu; under torchrun with GPUs, GPU LOCAL_RANK per process)")
    parser.add_argument("--data", default=None,
                        help="ImageNet-layout validation folder (needed for models other than tiny)")
    parser.add_argument("--blocks", nargs="+", default=None,
                        help="blocks to scan, or 'all' (default for tiny: 1.1 2.0 2.1 3.1, the blocks where the paper "
                             "reports invariant channels, with the controls 12-20 min on 2 CPU cores (rsi demo --estimate "
                             "predicts it on this machine); other models: all)")
    parser.add_argument("--steps", type=int, default=None,
                        help="cap on the feature-visualisation steps, each FZ stops at its plateau (default 2560, the paper's count; quick 8)")
    parser.add_argument("--seeds", nargs="+", type=int, default=None, metavar="N",
                        help="FZ seeds: one number N runs seeds --seed .. --seed+N-1; several numbers are the seeds "
                             "themselves, as in rsi scan (default 3; quick 2)")
    parser.add_argument("--adaptive", action=argparse.BooleanOptionalAction, default=True,
                        help="after the first seed, render further seeds only for channels near a threshold "
                             "(default: on here, off in rsi scan; --no-adaptive renders every seed for every channel)")
    parser.add_argument("--channel-set", default="robust",
                        help="channels ablated: robust (pass in every seed, default), any, or seed:K")
    parser.add_argument("--trials", type=int, default=None, help="random control sets per block (default 10; quick 2)")
    parser.add_argument("--screen-tolerance", type=screen_tolerance, default="auto",
                        help="screening slack of the random sets, an accuracy difference in [0, 1] (0: the paper's "
                             "rule) or auto (default: 0 when that keeps --trials sets, else the smallest slack that "
                             "does); not Eq. 2's t, which is rsi scan --tolerance")
    add_deprecated_alias(parser, "--tolerance", "--screen-tolerance", "screen_tolerance", type=screen_tolerance)
    parser.add_argument("--ablate", nargs="+", default=None, metavar="BLOCK",
                        help="blocks to ablate (default: the two with the most passing channels)")
    parser.add_argument("--samples", type=int, default=None, help="generated evaluation images (default 1000)")
    parser.add_argument("--null-sets", type=int, default=None,
                        help="random same-size sets from all channels swept as the Eq. 3 null (default 200; quick 20)")
    parser.add_argument("--controls", type=int, default=None, metavar="K",
                        help="untrained copies of the model scanned the same way, the model-randomisation "
                             "control (default 2; quick 1; 0: none)")
    parser.add_argument("--control-seeds", type=int, default=None, metavar="N",
                        help="FZ seeds the untrained copies are rendered with; the trained model is compared on "
                             "the same seeds (default 1, the first)")
    parser.add_argument("--no-planted", action="store_true",
                        help="skip the planted positive control (a model with known scale-invariant channels)")
    parser.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    add_variant_argument(parser, "the scan's nodes, the FZ jitter and Pre reading, the ablated node and the crop")
    add_threads_argument(parser)
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run of every stage, not a result (~2.5 min on 2 cores: few steps, images, trials; "
                             "forced channels where none passes; every block unless --blocks)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--estimate", action="store_true",
                        help="print the expected channel-steps, wall time and disk of this demo (its scan per block, "
                             "the planted control, an allowance for the other stages), with the assumptions, after "
                             "a short calibration on this machine, and stop: renders and writes nothing")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """``rsi demo``; under ``torchrun`` it joins the process group first and leaves it at the end."""
    import datetime

    from rsi_plugin.cli.scan import BARRIER_TIMEOUT_HOURS
    from rsi_plugin.core.distributed import joined_process_group

    with joined_process_group(timeout=datetime.timedelta(hours=BARRIER_TIMEOUT_HOURS)):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from rsi_plugin.apps.demo import DemoConfig, run_demo
    from rsi_plugin.core.distributed import is_main, rank_device, rank_threads

    set_threads(rank_threads(args.threads))
    args.device = str(rank_device(args.device))

    blocks = None if args.blocks is None else "all" if args.blocks == ["all"] else args.blocks
    seeds = None if args.seeds is None else args.seeds[0] if len(args.seeds) == 1 else tuple(args.seeds)
    overrides = {k: v for k, v in {"steps": args.steps, "seeds": seeds, "trials": args.trials,
                                   "samples": args.samples, "null_sets": args.null_sets,
                                   "blocks": blocks, "controls": args.controls,
                                   "control_seeds": args.control_seeds}.items() if v is not None}
    common = dict(model=args.model, weights=args.weights, data=args.data, tolerance=args.screen_tolerance, seed=args.seed,
                  adaptive=args.adaptive, device=args.device, channel_set=args.channel_set, variant=args.variant,
                  planted=not args.no_planted,
                  ablation_blocks=args.ablate if args.ablate else 2)
    config = (DemoConfig.quick_run(args.out, **common, **overrides) if args.quick
              else DemoConfig(out=args.out, **common, **overrides))
    if getattr(args, "estimate", False):  # nothing rendered, nothing written
        from rsi_plugin.apps.estimate import estimate_demo, format_estimate

        if not is_main():
            return 0

        print(format_estimate(estimate_demo(config, progress=not args.no_progress)))
        return 0
    result = run_demo(config, progress=not args.no_progress)
    if not is_main():  # rank 0 reports
        return 0
    print(result["summary"].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    for block, summary in result["eq3"].items():
        print(f"\nEq. 3 at block {block}:")
        print(summary.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    times = result["settings"]["wall_time_s"]
    print("\nwall time: " + ", ".join(f"{k} {v:.0f} s" for k, v in times.items()))
    print("report:", result["report"])
    return 0
