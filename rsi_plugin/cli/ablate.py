"""``rsi ablate``: the scale-robust ablation experiment (§4, Eq. 3, Fig. 2).

Mean-ablates a block's scale-invariant channels (from a scan CSV or a list) and as many
screened random channels, at every scale of the sweep, and writes to ``--out``:
``ablation.csv`` (one row per condition, trial and scale), ``eq3.csv`` and ``eq3.png`` (Fig. 2),
``accuracy.png``, ``draws.csv`` (screened random sets), ``means.csv`` and ``sweep.json``. A rerun
with the same settings resumes. A scan CSV is checked against the model ablated: a scan of
another model or other weights is refused unless ``--allow-model-mismatch``
(:func:`check_scan_model`). Under ``torchrun --nproc_per_node K -m rsi_plugin.cli ablate ...``
the data is split across the K processes.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from rsi_plugin.cli.args import (add_deprecated_alias, add_threads_argument, add_variant_argument, screen_tolerance,
                                 set_threads)
from rsi_plugin.cli.common import add_model_arguments, load_model_from_args
from rsi_plugin.core.runfolder import SweepFiles
from rsi_plugin.errors import ConfigError, MissingFileError, RSIError
from rsi_plugin.paper import SWEEP_SCALES, VARIANTS

logger = logging.getLogger(__name__)

#: columns of eq3.csv printed on the terminal (all are in the file)
SHOWN = ("scale", "ratio_mean", "ratio_se", "n_trials", "no_scale_ratio", "ratio_ci_low", "ratio_ci_high",
         "p_permutation", "p_sign", "deficit", "n_null", "null_share", "p_null")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("ablate", help="mean-ablate scale-invariant vs random channels across scales; "
                                           "writes ablation.csv, eq3.csv and Fig. 2")
    add_model_arguments(parser, default="tiny")
    parser.add_argument("--data", default=None,
                        help="ImageNet-layout validation folder (default for tiny: the generated centred "
                             "evaluation set of shapes)")
    parser.add_argument("--samples", type=int, default=1000, help="generated images for tiny without --data (default 1000)")
    parser.add_argument("--data-seed", type=int, default=0, help="seed of the generated tiny evaluation set (default 0)")
    parser.add_argument("--images", type=int, default=None, metavar="N",
                        help="use only N of the evaluation images, evenly spaced over them (default all; "
                             "rsi scan --limit takes the first N)")
    add_deprecated_alias(parser, "--limit", "--images", "images", type=int)
    parser.add_argument("--block", required=True, help="block name, e.g. 3.1")
    parser.add_argument("--channels", nargs="+", required=True,
                        help="a scan CSV (rows with block == --block and passes true) or channel numbers")
    parser.add_argument("--source", default=None,
                        help="rows of this source (fz, natural) when the scan CSV holds several")
    parser.add_argument("--allow-model-mismatch", action="store_true",
                        help="ablate even when the scan CSV records another model or other weights than "
                             "--model/--weights/--seed load (refused by default)")
    parser.add_argument("--channel-set", default="robust",
                        help="which passing channels of a multi-seed scan CSV: robust (pass in every seed, "
                             "default), any (pass in at least one seed) or seed:K (pass in seed K)")
    parser.add_argument("--out", required=True, help="output folder (rerun to resume)")
    parser.add_argument("--trials", type=int, default=10, help="random control sets (default 10)")
    parser.add_argument("--screen-tolerance", type=screen_tolerance, default=0.0,
                        help="screening slack, an accuracy difference in [0, 1]: keep a random set if its no-scale "
                             "accuracy <= the invariant set's + this (default 0; the paper used 0.01 for block 3.1); "
                             "'auto': 0 when that keeps --trials sets within --max-draws, else the smallest slack "
                             "that does (reported in eq3.csv); not Eq. 2's t, which is rsi scan --tolerance")
    add_deprecated_alias(parser, "--tolerance", "--screen-tolerance", "screen_tolerance", type=screen_tolerance)
    parser.add_argument("--max-draws", type=int, default=100, help="bound on random sets drawn (default 100)")
    parser.add_argument("--null-sets", type=int, default=200,
                        help="random same-size sets from all channels swept as the independent null of the "
                             "Eq. 3 test (default 200; 0: none)")
    parser.add_argument("--scales", nargs="+", type=float, default=list(SWEEP_SCALES),
                        help=f"scale fractions (default {' '.join(f'{p:g}' for p in SWEEP_SCALES)}; "
                             "0 is always included)")
    add_variant_argument(parser, "--node and --crop")
    parser.add_argument("--node", choices=("post", "sum"), default=None,
                        help="post: ablate Post (the paper's text); sum: the pre-ReLU sum (its code) "
                             "(default: --variant)")
    parser.add_argument("--crop", choices=VARIANTS, default=None,
                        help="text: crop R - floor(R p) of the resized image; code: int(S (1 - p)) "
                             "(default: --variant)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per batch (default 64)")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers (default 0)")
    parser.add_argument("--stack", type=int, default=None,
                        help="most conditions stacked in one trace (default all; lower to save memory)")
    parser.add_argument("--naive", action="store_true",
                        help="one full forward per condition (the reference path; slower)")
    parser.add_argument("--screen-batch", type=int, default=None,
                        help="random sets screened per pass over the data (default --trials)")
    parser.add_argument("--checkpoint-every", type=int, default=20, help="save partial counts every N batches")
    add_threads_argument(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)


def _is_table(values: list[str]) -> bool:
    """``--channels`` names a table (one ``.csv`` or existing file), not channel numbers."""
    return len(values) == 1 and (values[0].lower().endswith(".csv") or Path(values[0]).is_file())


def parse_channels(values: list[str], block: str, source: str | None = None,
                   channel_set: str = "robust") -> list[int]:
    """Channels from ``--channels``: one CSV path, or integers (``1 9 23`` or ``1,9,23``).

    A scan CSV needs columns ``block, channel, passes``; of the rows with ``block == block``
    (of ``source`` when the table has several sources) the channels of ``channel_set`` are
    taken (:func:`rsi_plugin.criteria.seeds.select_channels`: ``robust``, ``any`` or ``seed:K``;
    with one seed all three are the passing channels).

    Raises:
        FileNotFoundError: a ``.csv`` that does not exist.
        ValueError: neither a CSV nor integers; missing columns; no passing channel.
    """
    if _is_table(values):
        return _channels_from_csv(Path(values[0]), block, source, channel_set)
    items = [v for value in values for v in value.split(",") if v.strip()]
    try:
        return [int(v) for v in items]
    except ValueError:
        raise RSIError(f"--channels takes a scan CSV or channel numbers, got {' '.join(values)!r}") from None


def _block_order(name: str) -> list[tuple[int, int, str]]:
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in name.split(".")]


def _channels_from_csv(path: Path, block: str, source: str | None, channel_set: str = "robust") -> list[int]:
    import pandas as pd

    from rsi_plugin.core.frames import truthy
    from rsi_plugin.criteria.seeds import select_channels

    if not path.is_file():
        raise MissingFileError(f"channel table not found: {path}")
    try:
        table = pd.read_csv(path, dtype={"block": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise RSIError(f"{path} is not a scan CSV table ({' '.join(str(error).split())})") from None
    missing = [c for c in ("block", "channel", "passes") if c not in table.columns]
    if missing:
        raise RSIError(f"{path} lacks column(s) {missing}; a scan CSV has block, channel, passes")
    if "source" in table.columns:
        sources = sorted(set(table["source"].astype(str)))
        if source is not None:
            if source not in sources:
                raise RSIError(f"--source {source!r} not in {path}; it holds {', '.join(sources)}")
            table = table[table["source"].astype(str) == source]
        elif len(sources) > 1:
            raise RSIError(f"{path} holds several sources ({', '.join(sources)}); pick one with --source")
    scanned = sorted(set(table["block"].astype(str)), key=_block_order)
    if str(block) not in scanned:
        raise RSIError(f"block {block} was not scanned in {path}; scanned blocks: {', '.join(scanned) or 'none'}")
    found = select_channels(table, block, channel_set)
    if not found:
        blocks = sorted(set(table.loc[truthy(table["passes"]), "block"].astype(str)))
        raise RSIError(f"no passing channel ({channel_set}) of block {block} in {path}; blocks with passing "
                         f"channels: {', '.join(blocks) or 'none'}")
    return found


def recorded_model(path: Path) -> tuple[str, str] | None:
    """``(model, weights)`` a scan CSV was made with, as its folder records them:
    ``scan_settings.json`` beside ``scan.csv`` (every scan), else the
    attributes of ``scan.parquet`` beside it (``rsi scan``, with pyarrow), else the
    ``settings.json`` of the run folder above it (``rsi demo``). ``None`` when neither records it
    (a hand-made channel table)."""
    import json

    from rsi_plugin.cli.sensitivity import _parquet_attrs
    from rsi_plugin.core.runfolder import RunLayout, ScanFiles

    files = ScanFiles(path.parent)
    if path.name == files.table.name:
        if files.settings.is_file():  # every write_scan records its settings, pyarrow or not
            try:
                settings = json.loads(files.settings.read_text())
            except ValueError:
                settings = None
            if isinstance(settings, dict) and settings.get("model") and settings.get("weights"):
                return str(settings["model"]), str(settings["weights"])
        attrs = _parquet_attrs(files.parquet)
        if attrs.get("model") and attrs.get("weights"):
            return str(attrs["model"]), str(attrs["weights"])
        run = RunLayout(path.parent.parent)
        if run.scan.dir == path.parent and run.settings.is_file():
            try:
                settings = json.loads(run.settings.read_text())
            except ValueError:
                return None
            if isinstance(settings, dict) and settings.get("model") and settings.get("model_weights"):
                return str(settings["model"]), str(settings["model_weights"])
    return None


def _same_weights(a: str, b: str) -> bool:
    """Two ``rsi_info.weights`` strings name the same weights: equal, or files with equal bytes
    (the same ``.pth`` under two spellings, the bundled tiny file of two checkouts)."""
    if a == b:
        return True
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    if not (pa.is_file() and pb.is_file()):
        return False
    if pa.stat().st_size != pb.stat().st_size:
        return False
    import hashlib

    return hashlib.sha256(pa.read_bytes()).digest() == hashlib.sha256(pb.read_bytes()).digest()


def check_scan_model(path: Path, model, allow: bool = False) -> None:
    """Refuse to ablate the channels of a scan made on another model (issue 21 item 5).

    The channel numbers of a scan mean something only for the weights it scanned: another
    model, other weights or another random-init seed have other scale-invariant channels. The
    scan's recorded ``(model, weights)`` (:func:`recorded_model`) must equal the loaded model's
    ``rsi_info``; ``allow`` (``--allow-model-mismatch``) turns the refusal into a warning. A
    table that records no model is used with a log line saying it was not checked.

    Raises:
        ConfigError: a mismatch without ``allow``.
    """
    recorded = recorded_model(path)
    info = model.rsi_info
    if recorded is None:
        logger.info("%s records no model; the channels are taken as channels of %s (%s weights) unchecked",
                    path, info.name, info.weights)
        return
    name, weights = recorded
    if name == info.name and _same_weights(weights, str(info.weights)):
        return
    text = (f"{path} is a scan of {name} ({weights} weights) but this ablation loads {info.name} "
            f"({info.weights} weights)")
    if not allow:
        raise ConfigError(f"{text}; pass the scan's --model/--weights/--seed, or --allow-model-mismatch to "
                          "ablate these channel numbers anyway")
    print(f"WARNING: {text}; ablating its channel numbers anyway (--allow-model-mismatch)", file=sys.stderr)


def _default_data(args: argparse.Namespace, model):
    if args.data is not None:
        return args.data
    if args.model != "tiny":
        raise RSIError(f"--data is required for model {args.model} (an ImageNet-layout validation folder)")
    from rsi_plugin.zoo.data import default_data

    return default_data(model, "sweep", args.samples, args.data_seed)


def run(args: argparse.Namespace) -> int:
    from rsi_plugin.core.distributed import joined_process_group

    with joined_process_group():
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    import pandas as pd

    from rsi_plugin.core.distributed import is_main
    from rsi_plugin.outputs.plots import plot_sweep
    from rsi_plugin.ablation.experiment import SweepConfig, sweep

    channels = parse_channels(args.channels, args.block, args.source, args.channel_set)
    set_threads(args.threads)
    model = load_model_from_args(args)
    if _is_table(args.channels):
        check_scan_model(Path(args.channels[0]), model, allow=args.allow_model_mismatch)
    batch_conditions = False if args.naive else (args.stack if args.stack else True)
    config = SweepConfig(scales=tuple(args.scales), trials=args.trials, seed=args.seed, tolerance=args.screen_tolerance,
                         max_draws=args.max_draws, null_sets=args.null_sets, variant=args.variant,
                         node=args.node, crop=args.crop,
                         batch_conditions=batch_conditions, screen_batch=args.screen_batch,
                         batch_size=args.batch_size, workers=args.workers, limit=args.images,
                         checkpoint_every=args.checkpoint_every)
    data = _default_data(args, model)
    result = sweep(model, data, args.block, channels, config, out_dir=args.out, progress=not args.no_progress)
    if not is_main():
        return 0
    plot_sweep(result)  # eq3.png (Fig. 2) and accuracy.png beside eq3.csv
    kept = result.kept
    used = "" if args.screen_tolerance != "auto" else f" -> {result.tolerance:.4g}"
    print(f"{model.rsi_info.name} ({model.rsi_info.weights} weights), block {args.block}, {args.variant} variant, "
          f"node {config.resolved().node}, crop {config.resolved().crop}: "
          f"{len(channels)} scale-invariant channels vs {kept} of {args.trials} random sets "
          f"({len(result.draws)} drawn, screen tolerance {args.screen_tolerance}{used})")
    if result.starved:
        print(f"WARNING: screening kept only {kept} of the {args.trials} random sets asked within --max-draws "
              f"{args.max_draws} (screen tolerance {args.screen_tolerance}{used}): Eq. 3 and Fig. 2 rest on {kept} set(s)"
              f"{' and have no error bars' if kept < 2 else ''}. Use --screen-tolerance auto or raise --max-draws.",
              file=sys.stderr)
    n = int(result.results["n_images"].max()) if len(result.results) else 0
    print(f"{n} images; {result.skipped.summary()}")
    with pd.option_context("display.width", 200):
        shown = [c for c in SHOWN if c in result.summary.columns]
        print(result.summary[shown].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(result.verdict)
    files = SweepFiles(args.out)
    print(f"wrote {files.cells}, {files.eq3.name}, {files.eq3_plot.name}, {files.accuracy_plot.name}, "
          f"{files.draws.name}")
    return 0
