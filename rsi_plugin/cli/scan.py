"""``rsi scan``: the scale-invariance criteria (§3) for every channel of some blocks.

Writes ``OUT/scan.csv`` (and ``OUT/scan.parquet`` when pyarrow is installed), one row per
(source, block, channel); ``OUT/summary.csv``, the count and share of passing channels per
block; the feature visualisations under ``OUT/fz`` (PNG and a record per channel); for
resnet18 also ``OUT/paper_comparison.csv``. A rerun with the same settings reuses every
cached FZ, so an interrupted scan resumes where it stopped.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import add_model_arguments, load_model_from_args


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("scan", help="find scale-invariant channels (Eq. 1 and 2) from feature visualisations "
                                         "or natural images; writes scan.csv and summary.csv")
    add_model_arguments(parser, default="tiny")
    parser.add_argument("--blocks", nargs="+", default=["all"], help="block names, e.g. 2.1 3.1 (default all)")
    parser.add_argument("--channels", nargs="+", type=int, default=None,
                        help="only these channels of each block (default all)")
    parser.add_argument("--out", required=True, help="output folder (created; rerun to resume)")
    parser.add_argument("--source", choices=("fz", "natural", "both"), default="fz",
                        help="images that drive In and Pre: feature visualisations (the paper), "
                             "top-k natural images, or both (default fz)")
    parser.add_argument("--transform", default="scale",
                        help="transform of Eq. (1): scale (the paper's S), rotate, hflip, rotate:DEG, scale:F")
    parser.add_argument("--tolerance", type=float, default=1.5, help="t of Eq. (2): 1/t < ratio < t (default 1.5)")
    parser.add_argument("--node-variant", choices=("text", "code"), default="text",
                        help="text: nodes as the paper defines them (default); code: Post and In at the "
                             "pre-ReLU sum, as the paper's code reads them")
    fz = parser.add_argument_group("feature visualisation")
    fz.add_argument("--steps", type=int, default=2560, help="optimisation steps (default 2560, the paper's)")
    fz.add_argument("--image-size", type=int, default=None, help="FZ side (default: the model's input size)")
    fz.add_argument("--jitter", type=int, default=None, help="fixed jitter (default: the paper's per block)")
    fz.add_argument("--jitter-schedule", choices=("text", "code"), default="text",
                    help="the paper's jitter per block from its appendix (text, default) or its script (code)")
    fz.add_argument("--channels-per-batch", type=int, default=32, help="channels optimised together (default 32)")
    fz.add_argument("--paper-compat", action="store_true",
                    help="render Pre as Lucent did in the paper (its bn2 reading is Post)")
    fz.add_argument("--force", action="store_true", help="recompute cached feature visualisations")
    nat = parser.add_argument_group("natural images")
    nat.add_argument("--data", default=None,
                     help="ImageNet-layout folder of natural images (default for tiny: generated shapes)")
    nat.add_argument("--limit", type=int, default=None, help="use only this many images of --data")
    nat.add_argument("--samples", type=int, default=1000, help="generated images for tiny (default 1000)")
    nat.add_argument("--top-k", type=int, default=9, help="top images per channel (default 9)")
    nat.add_argument("--natural-reduce", choices=("top1", "mean"), default="top1",
                     help="top1: the top image drives the criteria (default); mean: average over the top-k")
    parser.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default 64)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(run=run)


def _folder_batches(path: str, model, batch_size: int, limit: int | None):
    """Normalised, centre-cropped batches of an ImageNet-layout folder."""
    import torchvision.transforms.v2.functional as TF

    from ..data import validation_loader
    from ..images import model_info, normalize

    loader = validation_loader(path, model, batch_size=batch_size, limit=limit, map_classes=False)  # labels unused
    size = model_info(model).input_size
    device = next(model.parameters()).device
    for images, _ in loader:
        if len(images):
            yield normalize(TF.center_crop(images, [size, size]), model).to(device)


def run(args: argparse.Namespace) -> int:

    import pandas as pd

    from ..featureviz import FeatureVizConfig
    from ..scanning import ScanConfig, scan, write_scan

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = load_model_from_args(args)
    featureviz = FeatureVizConfig(image_size=args.image_size, steps=args.steps, jitter=args.jitter,
                                  jitter_schedule=args.jitter_schedule, seed=args.seed,
                                  channels_per_batch=args.channels_per_batch, paper_compat=args.paper_compat)
    config = ScanConfig(featureviz=featureviz, transform=args.transform, tolerance=args.tolerance,
                        source=args.source, top_k=args.top_k, natural_reduce=args.natural_reduce,
                        natural_samples=args.samples, node_variant=args.node_variant, channels=args.channels,
                        cache_dir=str(out / "fz"), force=args.force, batch_size=args.batch_size, seed=args.seed)
    data = None
    if args.source != "fz" and args.data is not None:
        data = _folder_batches(args.data, model, args.batch_size, args.limit)
    blocks = "all" if args.blocks == ["all"] else args.blocks
    table = scan(model, blocks, config, data=data, progress=not args.no_progress)

    written = write_scan(table, out)
    summary = pd.read_csv(out / "summary.csv", dtype={"block": str})
    print(f"{model.rsi_info.name} ({model.rsi_info.weights} weights), transform {args.transform}, "
          f"tolerance {args.tolerance}, nodes: {args.node_variant}")
    with pd.option_context("display.width", 200):
        print(summary.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if (out / "paper_comparison.csv").exists() and model.rsi_info.name == "resnet18":
        print("agreement with the paper's channels (Fig. 1, 3, 4):")
        print(pd.read_csv(out / "paper_comparison.csv", dtype={"block": str})
              .to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    for path in written:
        print("wrote", path)
    print("feature visualisations in", out / "fz")
    return 0
