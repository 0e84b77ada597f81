"""``rsi scan``: the scale-invariance criteria (§3) for every channel of some blocks.

Writes ``OUT/scan.csv`` (and ``OUT/scan.parquet`` when pyarrow is installed), one row per
(source, seed, block, channel); ``OUT/scan_channels.csv``, per channel its pass rate over
the seeds (Wilson interval), ``robust`` and ``status``; ``OUT/summary.csv``, per block the
robust / any-seed / undetermined counts, the seed Jaccard and the permutation null (columns
in :mod:`rsi_plugin.criteria.seeds`); the feature visualisations under ``OUT/fz`` (PNG and a record
per channel and seed); for resnet18 also ``OUT/paper_comparison.csv``. With ``--control`` the same scan runs on untrained
copies of the model (:mod:`rsi_plugin.criteria.controls`): their rows go to
``OUT/scan_controls.csv``, the comparison per block to new columns of ``summary.csv`` and the
channels that also pass in a copy to new columns of ``scan_channels.csv``. The tables are
rewritten after each seed, and a rerun with the same settings reuses every cached FZ, so an
interrupted scan resumes where it stopped.

Under ``torchrun --nproc_per_node K -m rsi_plugin.cli scan ...`` the K processes share the FZ
work (units of block, node, seed and a chunk of channels; :mod:`rsi_plugin.criteria.shards`)
through ``OUT/fz``, each on its own device (``--device cuda``: GPU ``LOCAL_RANK``; on the CPU
the machine's cores divided among the processes unless ``--threads`` is given); rank 0 shows one
progress bar for the whole run and writes the tables, which equal a one-process run's at the
same thread count. Several nodes: the same command on each (``--nnodes``, a rendezvous), with
``--out`` on a filesystem they share. A rerun after a killed process renders only the
missing records.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rsi_plugin.cli.args import THREADS_HELP, add_variant_argument, set_threads
from rsi_plugin.cli.common import add_model_arguments, load_model_from_args
from rsi_plugin.errors import RSIError
from rsi_plugin.paper import FZ_STEPS, TOLERANCE, VARIANTS


def register(sub: argparse._SubParsersAction) -> None:
    from rsi_plugin.core.choices import CONTROL_SEED

    parser = sub.add_parser("scan", help="find scale-invariant channels (Eq. 1 and 2) from feature visualisations "
                                         "or natural images; writes scan.csv and summary.csv")
    add_model_arguments(parser, default="tiny")
    parser.set_defaults(device=None)  # cpu; under torchrun with GPUs: GPU LOCAL_RANK per process (rank_device)
    parser.add_argument("--blocks", nargs="+", default=["all"], help="block names, e.g. 2.1 3.1 (default all)")
    parser.add_argument("--channels", nargs="+", type=int, default=None,
                        help="only these channels of each block (default all)")
    parser.add_argument("--out", required=True, help="output folder (created; rerun to resume)")
    parser.add_argument("--source", choices=("fz", "natural", "both"), default="fz",
                        help="images that drive In and Pre: feature visualisations (the paper), "
                             "top-k natural images, or both (default fz)")
    parser.add_argument("--transform", default="scale",
                        help="transform of Eq. (1): scale (the paper's S), rotate, hflip, rotate:DEG, scale:F")
    parser.add_argument("--tolerance", type=float, default=TOLERANCE,
                        help=f"t of Eq. (2): 1/t < ratio < t (default {TOLERANCE})")
    add_variant_argument(parser, "--node-variant, --jitter-schedule and --paper-compat")
    parser.add_argument("--node-variant", choices=VARIANTS, default=None,
                        help="text: nodes as the paper defines them; code: Post and In at the "
                             "pre-ReLU sum, as the paper's code reads them (default: --variant)")
    fz = parser.add_argument_group("feature visualisation")
    fz.add_argument("--steps", type=int, default=FZ_STEPS, help=f"optimisation steps (default {FZ_STEPS}, the paper's)")
    fz.add_argument("--image-size", type=int, default=None, help="FZ side (default: the model's input size)")
    fz.add_argument("--jitter", type=int, default=None, help="fixed jitter (default: the paper's per block)")
    fz.add_argument("--jitter-schedule", choices=VARIANTS, default=None,
                    help="the paper's jitter per block from its appendix (text) or its script (code) "
                         "(default: --variant)")
    fz.add_argument("--channels-per-batch", type=int, default=32, help="channels optimised together (default 32)")
    fz.add_argument("--paper-compat", action=argparse.BooleanOptionalAction, default=None,
                    help="render Pre as Lucent did in the paper (its bn2 reading is Post) "
                         "(default: with --variant code)")
    fz.add_argument("--unit-channels", type=int, default=None, metavar="N",
                    help="channels per FZ unit, the work one process of a torchrun scan takes (default 4 x "
                         "--channels-per-batch); every scan renders in these units")
    fz.add_argument("--autocast", choices=("bfloat16",), default=None,
                    help="run the network of each FZ step in bfloat16 (torch.autocast; image and Adam stay "
                         "float32); other FZs, cached apart (default: float32; see "
                         "benchmarks/results/fz_step_speed.md for its speed and verdict agreement)")
    fz.add_argument("--force", action="store_true", help="recompute cached feature visualisations")
    nat = parser.add_argument_group("natural images")
    nat.add_argument("--data", default=None,
                     help="ImageNet-layout folder of natural images (default for tiny: generated shapes)")
    nat.add_argument("--limit", type=int, default=None, metavar="N",
                     help="use only the first N images of --data (rsi ablate --images takes N evenly spaced)")
    nat.add_argument("--samples", type=int, default=1000, help="generated images for tiny (default 1000)")
    nat.add_argument("--top-k", type=int, default=9, help="top images per channel (default 9)")
    nat.add_argument("--natural-reduce", choices=("top1", "mean"), default="top1",
                     help="top1: the top image drives the criteria (default); mean: average over the top-k")
    sd = parser.add_argument_group("seeds")
    sd.add_argument("--seeds", nargs="+", type=int, default=None, metavar="N",
                    help="FZ seeds: one number N runs seeds --seed .. --seed+N-1; several numbers are the seeds "
                         "themselves (default: --seed only)")
    sd.add_argument("--robust-share", type=float, default=1.0,
                    help="a channel is robust when it passes in at least this share of its seeds "
                         "(default 1: every seed)")
    sd.add_argument("--adaptive", action=argparse.BooleanOptionalAction, default=False,
                    help="after the first seed, render further seeds only for channels near a threshold "
                         "(rsi_plugin.criteria.seeds.adaptive_stop) (default: off here, on in rsi demo)")
    ct = parser.add_argument_group("controls (model randomisation)")
    ct.add_argument("--control", action="extend", nargs="+", default=None, metavar="SPEC",
                    help="also scan untrained copies of the model the same way and compare: random-init:K (K copies "
                         "re-initialised as the model's constructor does), cascade:BLOCK or cascade:BLOCK:K "
                         "(randomised from the top down to BLOCK, the rest kept trained); repeatable, e.g. "
                         "--control random-init:2 cascade:2.1")
    ct.add_argument("--control-seed", type=int, default=CONTROL_SEED,
                    help=f"seed of the first control copy; copy k gets this + k (default {CONTROL_SEED})")
    ct.add_argument("--control-seeds", type=int, default=None, metavar="N",
                    help="render the copies with the first N FZ seeds only (cheaper); the trained model is then "
                         "compared on those seeds too (default: every seed)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default 64)")
    parser.add_argument("--threads", type=int, default=None,
                        help=THREADS_HELP)
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--estimate", action="store_true",
                        help="print the expected channel-steps, wall time and disk of this scan per block, with the "
                             "assumptions, after a short calibration (a few FZ steps per block and node on this "
                             "machine), and stop: renders and writes nothing (rsi_plugin.apps.estimate)")
    parser.set_defaults(run=run)


def seeds_from_args(values: list[int] | None, first: int) -> tuple[int, ...] | None:
    """``--seeds``: one number ``N`` -> ``first .. first + N - 1``; several -> themselves.

    Raises:
        ValueError: a count below 1 or a negative seed.
    """
    if values is None:
        return None
    if len(values) == 1:
        if values[0] < 1:
            raise RSIError(f"--seeds N needs N >= 1 (the number of seeds), got {values[0]}")
        return tuple(range(first, first + values[0]))
    return tuple(values)


#: how long a process of a torchrun scan waits at a barrier for the others' units
BARRIER_TIMEOUT_HOURS: float = 72.0


def run(args: argparse.Namespace) -> int:
    """``rsi scan``; under ``torchrun`` it joins the process group first and leaves it at the end."""
    import datetime

    from rsi_plugin.core.distributed import joined_process_group

    with joined_process_group(timeout=datetime.timedelta(hours=BARRIER_TIMEOUT_HOURS)):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    import pandas as pd

    from rsi_plugin.core.distributed import is_main, rank_device, rank_threads

    from rsi_plugin.core.runfolder import ScanFiles
    from rsi_plugin.criteria.channel_scan import check_scan_folder, read_table, scan, write_scan
    from rsi_plugin.criteria.controls import plan_controls
    from rsi_plugin.criteria.natural import natural_images

    seeds = seeds_from_args(args.seeds, args.seed)
    controls = tuple(args.control or ())
    plan_controls(controls, args.control_seed)  # a bad spec fails before any work
    set_threads(rank_threads(args.threads))
    args.device = str(rank_device(args.device))
    if getattr(args, "estimate", False):  # before the folder is made: an estimate writes nothing
        return run_estimate(args, seeds, controls) if is_main() else 0  # under torchrun: rank 0 alone
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    files = ScanFiles(out)
    model = load_model_from_args(args)
    config = scan_config(args, seeds, controls, files.fz_cache)
    data = None
    if args.source != "fz" and args.data is not None:  # the images rsi demo searches too
        data = natural_images(model, args.data, batch_size=args.batch_size, limit=args.limit)
    blocks = "all" if args.blocks == ["all"] else args.blocks
    check_scan_folder(out, model, blocks, config)  # other settings than the folder's: refused before any FZ
    written: list[Path] = []

    def finished_seed(seed: int, rows: pd.DataFrame) -> None:  # the files after every seed: resumable
        written[:] = write_scan(rows, out)

    table = scan(model, blocks, config, data=data, progress=not args.no_progress, on_seed=finished_seed)
    if not is_main():  # rank 0 writes and reports
        return 0
    if controls:  # the copies ran after the trained model's last seed: the files again, with them
        written[:] = write_scan(table, out)
    summary = read_table(files.summary)
    print(f"{model.rsi_info.name} ({model.rsi_info.weights} weights), transform {args.transform}, "
          f"tolerance {args.tolerance}, {args.variant} variant, nodes: {config.resolved().node_variant}, seeds {' '.join(map(str, config.seeds))}"
          f"{' (adaptive)' if args.adaptive else ''}")
    shown = [c for c in ("source", "block", "channels", "seeds", "robust", "any_seed", "undetermined",
                         "passing_mean", "jaccard_mean", "jaccard_min", "jaccard_max", "null_expected", "null_p")
             if c in summary.columns]
    with pd.option_context("display.width", 200):
        print(summary[shown].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if controls:
        print("against untrained copies (robust counts; control_p: one-sided Fisher exact over channels, "
              "control_rank_p: rank among the copies):")
        compared = [c for c in ("source", "block", "robust", "control_counts", "control_p", "control_rank_p",
                                "control_verdict") if c in summary.columns]
        with pd.option_context("display.width", 200):
            print(summary[compared].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if files.comparison.exists() and model.rsi_info.name == "resnet18":
        print("agreement with the paper's channels (Fig. 1, 3, 4):")
        print(read_table(files.comparison).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    for path in written:
        print("wrote", path)
    if args.source != "natural" and files.fz_cache.is_dir():  # a natural-image scan renders no FZ
        print("feature visualisations in", files.fz_cache)
    return 0


def scan_config(args: argparse.Namespace, seeds: tuple[int, ...] | None, controls: tuple[str, ...],
                cache_dir: Path):
    """The :class:`~rsi_plugin.criteria.channel_scan.ScanConfig` of ``rsi scan``'s arguments (the
    scan and its ``--estimate`` read the same one)."""
    from rsi_plugin.criteria.channel_scan import ScanConfig
    from rsi_plugin.featureviz.optimize import FeatureVizConfig

    featureviz = FeatureVizConfig(image_size=args.image_size, steps=args.steps, jitter=args.jitter,
                                  jitter_schedule=args.jitter_schedule, seed=args.seed,
                                  channels_per_batch=args.channels_per_batch, paper_compat=args.paper_compat,
                                  autocast=getattr(args, "autocast", None))
    return ScanConfig(featureviz=featureviz, variant=args.variant, transform=args.transform, tolerance=args.tolerance,
                      source=args.source, top_k=args.top_k, natural_reduce=args.natural_reduce,
                      natural_samples=args.samples, node_variant=args.node_variant, channels=args.channels,
                      cache_dir=str(cache_dir), force=args.force, batch_size=args.batch_size, seed=args.seed,
                      seeds=seeds, robust_share=args.robust_share, adaptive=args.adaptive,
                      controls=controls, control_seed=args.control_seed, control_seeds=args.control_seeds,
                      unit_channels=args.unit_channels)


def run_estimate(args: argparse.Namespace, seeds: tuple[int, ...] | None, controls: tuple[str, ...]) -> int:
    """``rsi scan --estimate``: the scan's expected cost (:func:`rsi_plugin.apps.estimate.estimate_scan`),
    printed; nothing is rendered or written (the FZ cache under ``--out`` is only looked at)."""
    from rsi_plugin.apps.estimate import estimate_scan, format_estimate
    from rsi_plugin.core.runfolder import ScanFiles

    model = load_model_from_args(args)
    config = scan_config(args, seeds, controls, ScanFiles(Path(args.out)).fz_cache)
    blocks = "all" if args.blocks == ["all"] else args.blocks
    print(format_estimate(estimate_scan(model, blocks, config, progress=not args.no_progress)))
    return 0
