"""FZ validity on the bundled tiny model: statuses, steps used, passing sets, geometry.

Measures, on a subset of channels of some blocks (one seed), and writes one JSON:

* ``centers``: the gradient-centroid receptive-field centre of each block's centre neuron;
* ``status_fix``: status counts per block and node at a fixed step count, without and with
  the pre-activation objective (everything else equal: paper jitter unscaled);
* ``nomaxpool``: layer-4 maps of 4x4 instead of 2x2, two ways: the trained weights with the
  stem's max-pool replaced by the identity, and the model on 128-px images; accuracy,
  centres and verdicts of blocks 4.0 and 4.1 (``--fixed`` steps), against the 2x2 model;
* ``default_vs_long``: scans at the default (plateau stop, ``--cap`` steps) and at a fixed
  ``--long`` steps: steps used per node, statuses, verdicts, Jaccard of the passing sets,
  and the verdicts with S about the image centre instead of the receptive-field centre.

    python benchmarks/fz_validity.py --json benchmarks/results/fz_validity.json \
        [--blocks 2.1 3.1 4.0] [--channels 12] [--cap 1024] [--long 1024] [--fixed 128]
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import rsi_plugin as rsi  # noqa: E402
from rsi_plugin.featureviz.optimize import FeatureVizConfig, render  # noqa: E402
from rsi_plugin.criteria.geometry import receptive_field_center  # noqa: E402
from rsi_plugin.criteria.channel_scan import ScanConfig, scan  # noqa: E402


def jaccard(a: set, b: set) -> float | None:
    return len(a & b) / len(a | b) if (a | b) else None


def passing(table) -> dict[str, list[int]]:
    return {b: sorted(int(c) for c in part.loc[part["passes"].astype(bool), "channel"])
            for b, part in table.groupby("block")}


def eq_passing(table) -> dict[str, list[int]]:
    """Channels where both equations hold, whatever their FZs' status."""
    return {b: sorted(int(c) for c in part.loc[part["eq1"].astype(bool) & part["eq2"].astype(bool), "channel"])
            for b, part in table.groupby("block")}


def verdicts(table) -> dict[str, dict[str, int]]:
    return {b: dict(Counter(part["verdict"])) for b, part in table.groupby("block")}


def accuracy(model: nn.Module, n: int = 500, size: int = 64) -> float:
    from rsi_plugin.zoo import generate

    images, labels = generate(n, 12345, size=size)
    with torch.no_grad():
        return float((model(rsi.normalize(images, model)).argmax(1) == labels).float().mean())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--blocks", nargs="+", default=["2.1", "3.1", "4.0"])
    p.add_argument("--channels", type=int, default=12, help="channels 0..N-1 of every block")
    p.add_argument("--channel-list", type=int, nargs="+", default=None, help="these channels instead of 0..N-1")
    p.add_argument("--fixed", type=int, default=128, help="steps of the status-fix comparison")
    p.add_argument("--cap", type=int, default=1024, help="step cap of the default (plateau) run")
    p.add_argument("--long", type=int, default=1024, help="steps of the long fixed run")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--cache", default=None, help="FZ cache (default: a temporary folder)")
    p.add_argument("--skip", nargs="*", default=[], help="parts to skip: fix nomaxpool long")
    p.add_argument("--json", required=True)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    cache = args.cache or tempfile.mkdtemp(prefix="fzvalid-")
    out: dict = {"args": vars(args), "torch": torch.__version__}

    def save() -> None:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=1, default=str))

    model = rsi.load_model("tiny")
    chans = sorted(set(args.channel_list)) if args.channel_list else list(range(args.channels))
    blocks = [b.name for b in rsi.residual_blocks(model)]
    out["centers"] = {b: receptive_field_center(model, b, "pre") for b in blocks}
    save()

    if "fix" not in args.skip:
        fix = {}
        for label, pre_act in (("before", False), ("after", True)):
            cfg = FeatureVizConfig(steps=args.fixed, early_stop=False, scale_jitter=False, pre_activation=pre_act,
                                   seed=args.seed)
            for b in args.blocks:
                for node in ("in", "pre", "post"):
                    r = render(model, b, node, chans, cfg, cache_dir=cache, progress=False)
                    fix.setdefault(label, {}).setdefault(b, {})[node] = dict(Counter(r.status))
                    print(label, b, node, fix[label][b][node], flush=True)
        out["status_fix"] = fix
        save()

    if "nomaxpool" not in args.skip:
        variant = copy.deepcopy(model)
        variant.maxpool = nn.Identity()
        res = {"accuracy_2x2": accuracy(model), "accuracy_4x4_nomaxpool": accuracy(variant),
               "accuracy_4x4_input128": accuracy(model, size=128)}
        for name, m, size in (("2x2", model, 64), ("4x4_nomaxpool", variant, 64), ("4x4_input128", model, 128)):
            t = time.time()
            cfg = FeatureVizConfig(steps=args.fixed, seed=args.seed, image_size=size)
            table = scan(m, ["4.0", "4.1"], ScanConfig(featureviz=cfg, channels=chans, cache_dir=cache), progress=False)
            image = scan(m, ["4.0", "4.1"], ScanConfig(featureviz=cfg, channels=chans, cache_dir=cache,
                                                       zoom_center="image"), progress=False)
            res[name] = {"centers": {b: receptive_field_center(m, b, "pre", image_size=size) for b in ("4.0", "4.1")},
                         "verdicts": verdicts(table), "passing": passing(table),
                         "passing_zoom_image": passing(image), "seconds": time.time() - t,
                         "passing_ignoring_status": eq_passing(table),
                         "passing_ignoring_status_zoom_image": eq_passing(image)}
            print(name, res[name], flush=True)
        out["nomaxpool"] = res
        save()

    if "long" not in args.skip:
        runs = {}
        tables = {}
        for name, cfg in (("default", FeatureVizConfig(steps=args.cap, seed=args.seed)),
                          ("long", FeatureVizConfig(steps=args.long, early_stop=False, seed=args.seed))):
            t = time.time()
            for zoom in ("rf", "image"):
                tables[(name, zoom)] = scan(model, args.blocks, ScanConfig(featureviz=cfg, channels=chans,
                                                                          cache_dir=cache, zoom_center=zoom),
                                            progress=False)
            table = tables[(name, "rf")]
            runs[name] = {
                "seconds": time.time() - t,
                "verdicts": verdicts(table),
                "status": {b: {"in": dict(Counter(part["in_status"])), "pre": dict(Counter(part["pre_status"]))}
                           for b, part in table.groupby("block")},
                "steps_used": {b: {"in": part["in_steps_used"].describe().round(1).to_dict(),
                                   "pre": part["pre_steps_used"].describe().round(1).to_dict()}
                               for b, part in table.groupby("block")},
                "passing": passing(table),
                "passing_zoom_image": passing(tables[(name, "image")]),
                "passing_ignoring_status": eq_passing(table),
                "passing_ignoring_status_zoom_image": eq_passing(tables[(name, "image")]),
            }
            print(name, runs[name], flush=True)
        a, b = runs["default"], runs["long"]
        runs["jaccard_default_vs_long"] = {blk: jaccard(set(a["passing"][blk]), set(b["passing"][blk]))
                                           for blk in args.blocks}
        runs["jaccard_rf_vs_image_zoom"] = {blk: jaccard(set(a["passing"][blk]), set(a["passing_zoom_image"][blk]))
                                            for blk in args.blocks}
        out["default_vs_long"] = runs
        save()
    print(json.dumps(out, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
