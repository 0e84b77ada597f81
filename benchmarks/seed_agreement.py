"""Seed agreement of two independent multi-seed scans (not a timed benchmark).

Run two scans of the same model and blocks with disjoint seeds, then compare them::

    rsi scan --model tiny --blocks 3.0 3.1 4.0 --channels 0 1 ... 19 --steps 128 --seeds 3 --seed 0 --out A
    rsi scan --model tiny --blocks 3.0 3.1 4.0 --channels 0 1 ... 19 --steps 128 --seeds 3 --seed 3 --out B
    python benchmarks/seed_agreement.py A B

Prints, per scan and for both pooled: the per-block summary (robust / any-seed /
undetermined counts, seed Jaccard, permutation null); per block the Jaccard of the two
robust sets and of the two any-seed sets; and the adaptive rule's error and savings against
each full scan (:func:`rsi_plugin.criteria.seeds.adaptive_error`).
"""

from __future__ import annotations

import argparse

import pandas as pd

from rsi_plugin.core.runfolder import ScanFiles
from rsi_plugin.criteria.channel_scan import read_table
from rsi_plugin.criteria.seeds import adaptive_error, block_summary, channel_table

COLUMNS = ["block", "channels", "seeds", "robust", "any_seed", "undetermined", "passing_mean", "passing_min",
           "passing_max", "undetermined_mean", "jaccard_mean", "jaccard_min", "jaccard_max", "null_expected",
           "null_high", "null_p"]


def _jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a | b else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first", help="folder of the first scan (holds scan.csv)")
    parser.add_argument("second", help="folder of the second scan, other seeds")
    args = parser.parse_args()
    a, b = read_table(ScanFiles(args.first).table), read_table(ScanFiles(args.second).table)
    pd.set_option("display.width", 250)
    for name, table in (("first", a), ("second", b), ("pooled", pd.concat([a, b], ignore_index=True))):
        print(f"--- {name}: seeds {sorted(set(table['seed']))}")
        print(block_summary(table)[COLUMNS].round(3).to_string(index=False))
    ca, cb = channel_table(a), channel_table(b)
    print("--- robust (and any-seed) sets of the two scans")
    for block in dict.fromkeys(ca["block"]):
        pa, pb = ca[ca.block == block], cb[cb.block == block]
        ra, rb = set(pa.loc[pa.robust, "channel"]), set(pb.loc[pb.robust, "channel"])
        aa, ab = set(pa.loc[pa.any_seed, "channel"]), set(pb.loc[pb.any_seed, "channel"])
        print(f"{block}: robust {sorted(ra)} vs {sorted(rb)} Jaccard {_jaccard(ra, rb):.3f}; "
              f"any-seed {sorted(aa)} vs {sorted(ab)} Jaccard {_jaccard(aa, ab):.3f}")
    print("--- adaptive rule against each full scan")
    for name, table in (("first", a), ("second", b), ("pooled", pd.concat([a, b], ignore_index=True))):
        print(name, adaptive_error(table))
        for block, part in table.groupby("block", sort=False):
            print("   ", block, adaptive_error(part))


if __name__ == "__main__":
    main()
