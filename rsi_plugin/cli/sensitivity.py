"""``rsi sensitivity DIR``: how many of a finished scan's verdicts flip under analysis choices
that only change evaluation (S about the image vs the receptive-field centre; the 8-bit PNG vs
the float FZ), re-evaluated on the cached FZs; nothing is rendered
(:mod:`rsi_plugin.criteria.sensitivity`).

``DIR`` is a scan folder (``rsi scan --out``) or a run folder (``rsi demo --out``, whose scan
is ``DIR/scan``). The model is loaded again from what the folder records (``settings.json`` of
a demo run, else the attributes of ``scan.parquet``), or from ``--model/--weights/--seed``;
the records' fingerprint must match it. Writes ``sensitivity.csv`` and
``sensitivity_summary.csv`` into the scan folder (or ``--out``) and prints the summary.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rsi_plugin.cli.args import THREADS_HELP, set_threads
from rsi_plugin.errors import ConfigError, MissingFileError, PathError

HELP = "verdict flips of a finished scan under analysis choices (zoom centre, 8-bit PNG), from its FZ cache"


def register(sub: argparse._SubParsersAction) -> None:
    from rsi_plugin.core.choices import MODEL_NAMES
    from rsi_plugin.core.choices import SENSITIVITY_CHOICES as CHOICES

    parser = sub.add_parser("sensitivity", help=HELP)
    parser.add_argument("dir", metavar="RUN_DIR_OR_SCAN_DIR",
                        help="a scan folder (rsi scan --out) or a run folder (rsi demo --out)")
    parser.add_argument("--choices", nargs="+", choices=CHOICES, default=list(CHOICES),
                        help="analysis choices to switch (default: all)")
    parser.add_argument("--model", default=None,
                        help=f"model name ({', '.join(MODEL_NAMES)}); default: what the folder records")
    parser.add_argument("--weights", default=None,
                        help="the scan's weights (None/random init, an enum name or a .pth path); "
                             "default: what the folder records")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed of the scan model's random init; default: what the folder records, else 0")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--batch-size", type=int, default=64,
                        help="images per forward pass (default 64, as rsi scan and rsi demo)")
    parser.add_argument("--threads", type=int, default=None,
                        help=THREADS_HELP + "; default: the demo run's recorded count, else torch's")
    parser.add_argument("--out", default=None, help="folder for the two CSV files (default: the scan folder)")
    parser.set_defaults(run=run)


def _scan_folder(path: Path):
    """The scan folder under ``path`` and the run's settings (``{}`` without ``settings.json``)."""
    from rsi_plugin.core.runfolder import RunLayout, ScanFiles

    if not path.is_dir():
        raise PathError(f"{path} is not a folder; give a scan folder (rsi scan --out) or a run folder "
                        "(rsi demo --out)")
    candidates = [(RunLayout(path).scan, RunLayout(path).settings), (ScanFiles(path), RunLayout(path.parent).settings)]
    for files, settings_path in candidates:
        if files.table.is_file():
            settings: dict[str, Any] = {}
            if settings_path.is_file():
                try:
                    loaded = json.loads(settings_path.read_text())
                    settings = loaded if isinstance(loaded, dict) else {}
                except ValueError:
                    raise ConfigError(f"{settings_path} is not valid JSON") from None
            return files, settings
    raise MissingFileError(f"{path} holds no scan table (neither {path}/scan.csv nor {path}/scan/scan.csv); give a "
                           "folder written by rsi scan --out or rsi demo --out")


def _parquet_attrs(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        import pyarrow.parquet as pq

        raw = (pq.read_schema(path).metadata or {}).get(b"PANDAS_ATTRS")
        return dict(json.loads(raw)) if raw else {}
    except (ImportError, OSError, ValueError):
        return {}


def _bundled(name: str, weights: str) -> bool:
    """``weights`` is the bundled tiny model's own file (loaded by ``weights=None``)."""
    if name != "tiny":
        return False
    from rsi_plugin.zoo.pretrained import TINY_WEIGHTS

    return Path(weights).name == Path(TINY_WEIGHTS).name


def _model_spec(args: argparse.Namespace, settings: dict[str, Any], attrs: dict[str, Any]) -> tuple[str, Any, int]:
    """(name, weights, seed) of the scan's model: the arguments, else settings.json, else the
    scan's attributes (``weights`` ``"random@N"`` is a random init with seed ``N``)."""
    name = args.model or settings.get("model") or attrs.get("model")
    if not name:
        raise ConfigError("the folder does not record the scan's model (no settings.json, no scan.parquet "
                          "attributes); pass --model (and --weights/--seed as the scan had them)")
    weights, seed = args.weights, args.seed
    if weights is None and "model" in settings:
        weights = settings.get("weights")
        seed = seed if seed is not None else settings.get("seed")
    elif weights is None and attrs.get("model") == name:
        recorded = str(attrs.get("weights") or "")
        if recorded.startswith("random@") and recorded[len("random@"):].isdigit():
            seed = seed if seed is not None else int(recorded[len("random@"):])
        elif recorded and recorded != "unknown" and not _bundled(name, recorded):
            weights = recorded
    if isinstance(weights, str) and weights.lower() == "none":
        weights = None
    return str(name), weights, int(seed or 0)


def run(args: argparse.Namespace) -> int:
    import pandas as pd

    from rsi_plugin.core.atomic import atomic_write_csv
    from rsi_plugin.core.models import load_model
    from rsi_plugin.core.runfolder import ScanFiles
    from rsi_plugin.criteria.channel_scan import read_table
    from rsi_plugin.criteria.sensitivity import choice_sensitivity, config_from_table, sensitivity_summary

    files, settings = _scan_folder(Path(args.dir))
    if not files.fz_cache.is_dir():
        raise MissingFileError(f"{files.dir} has no feature-visualisation cache ({files.fz_cache}): the sensitivity "
                               "re-evaluates cached FZs only; rerun the scan (it writes the cache) and then this")
    threads = args.threads if args.threads is not None else settings.get("threads")
    set_threads(int(threads) if threads is not None else None)
    table = read_table(files.table)
    name, weights, seed = _model_spec(args, settings, _parquet_attrs(files.parquet))
    model = load_model(name, weights=weights, seed=seed, device=args.device)
    config = config_from_table(table, batch_size=args.batch_size)
    frame = choice_sensitivity(model, table, config, args.choices, cache_dir=files.fz_cache)
    summary = sensitivity_summary(frame)
    out = ScanFiles(Path(args.out) if args.out else files.dir)
    out.dir.mkdir(parents=True, exist_ok=True)
    written = [atomic_write_csv(out.sensitivity, frame), atomic_write_csv(out.sensitivity_summary, summary)]
    print(f"{model.rsi_info.name} ({model.rsi_info.weights} weights), scan in {files.dir}: verdicts "
          "re-evaluated on the cached FZs, baseline S about "
          f"{'the image centre' if config.zoom_center == 'image' else 'the receptive-field centre'}, float images")
    for choice, reason in frame.attrs.get("skipped", {}).items():
        print(f"skipped {choice}: {reason}")
    with pd.option_context("display.width", 200):
        print(summary.to_string(index=False))
    missed = int(summary.loc[summary["block"] == "all", "not_reproduced"].max()) if len(summary) else 0
    if missed:
        print(f"note: {missed} row(s) of the re-evaluated baseline differ from scan.csv (another thread count or "
              "machine?); flips are counted against the re-evaluation")
    for path in written:
        print("wrote", path)
    return 0
