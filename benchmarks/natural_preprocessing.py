"""How much the natural-image preprocessing changes the top-k images (not a timed benchmark).

Before ``criteria.natural.natural_images`` existed, ``rsi scan`` centre-cropped a folder's
images to the input size (the standard evaluation crop) while ``rsi demo`` squashed the whole
resized image to it (the sweep's text crop at p = 0), so the two searched different images.
This script exports a generated folder for the bundled ``tiny`` model (larger than its resize
size, so both steps act), finds every channel's top-k images both ways and prints, per node,
how many channels' top-1 image differs and the mean overlap of the top-k sets::

    python benchmarks/natural_preprocessing.py --images 300 --blocks 2.1 3.1 --out benchmarks/results/natural_preprocessing.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

import rsi_plugin as rsi
from rsi_plugin.core.data import validation_loader
from rsi_plugin.core.transforms import scale_crop
from rsi_plugin.criteria.natural import natural_images, top_k_images
from rsi_plugin.zoo.shapes import export_imagefolder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--size", type=int, default=96, help="side of the exported images")
    parser.add_argument("--blocks", nargs="+", default=["2.1", "3.1"])
    parser.add_argument("--k", type=int, default=9)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="JSON file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = rsi.load_model("tiny")
    nodes = [(b, n) for b in args.blocks for n in ("in", "pre")]
    with tempfile.TemporaryDirectory() as tmp:
        folder = export_imagefolder(Path(tmp) / "val", args.images, args.seed, size=args.size)
        cropped = torch.cat(list(natural_images(model, folder)))
        loader = validation_loader(folder, model, map_classes=False)
        squashed = torch.cat([rsi.normalize(scale_crop(x, 0.0, output_size=model.rsi_info.input_size), model)
                              for x, _ in loader if len(x)])
    a = top_k_images(model, cropped, nodes, k=args.k, progress=False)
    b = top_k_images(model, squashed, nodes, k=args.k, progress=False)
    rows = []
    for key in nodes:
        ia, ib = a.indices[key], b.indices[key]
        top1 = int((ia[:, 0] != ib[:, 0]).sum())
        overlap = [len(set(x.tolist()) & set(y.tolist())) / args.k for x, y in zip(ia, ib)]
        mean = sum(overlap) / len(overlap)
        sd = (sum((o - mean) ** 2 for o in overlap) / max(1, len(overlap) - 1)) ** 0.5
        rows.append({"block": key[0], "node": key[1], "channels": int(ia.shape[0]), "top1_differs": top1,
                     "topk_overlap_mean": round(mean, 4), "topk_overlap_sd": round(sd, 4)})
        print(f"{key[0]} {key[1]:>4}: top-1 differs in {top1}/{ia.shape[0]} channels; "
              f"top-{args.k} overlap {mean:.3f} ± {sd:.3f} (sd over channels)")
    if args.out:
        Path(args.out).write_text(json.dumps({"settings": vars(args), "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
