"""The pass share of an untrained network beside the paper's: reads a scan folder of
``rsi scan --model resnet18`` (random init: no ImageNet weights are reachable here), writes the
per-block shares with their Wilson 95 % intervals to JSON, and renders the README table from
that JSON (between ``<!-- random-init-share:start -->`` and ``<!-- random-init-share:end -->``;
``tests/benchmark_scripts/test_random_init_share.py`` fails when the two disagree).

    rsi scan --model resnet18 --blocks 2.1 3.1 --channels $(seq -s ' ' 0 8 120) --out r18 --threads 1
    python benchmarks/random_init_share.py r18 --json benchmarks/results/resnet18_random_init.json --update-readme README.md
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

START = "<!-- random-init-share:start -->"
END = "<!-- random-init-share:end -->"
#: the paper's counts per block of the trained ResNet18 (§3: 2.1 with 23 of 128, 3.1 with 46 of 256)
PAPER = {"1.1": (6, 64), "2.0": (2, 128), "2.1": (23, 128), "3.1": (46, 256)}


def shares(scan_dir: str | Path) -> dict:
    """Per block: channels scanned, passing, undetermined, share of all and of the determined, Wilson interval."""
    import pandas as pd

    from rsi_plugin.criteria.seeds import wilson_interval

    from rsi_plugin.core.runfolder import ScanFiles

    files = ScanFiles(Path(scan_dir))
    table = pd.read_csv(files.table, dtype={"block": str})
    settings = pd.read_parquet(files.parquet).attrs if files.parquet.is_file() else {}
    blocks = []
    for block, part in table.groupby("block", sort=True):
        determined = part["verdict"] != "undetermined"
        k, n = int(part["passes"].sum()), int(determined.sum())
        low, high = wilson_interval(k, n) if n else (float("nan"), float("nan"))
        paper = PAPER.get(block)
        blocks.append({"block": block, "channels": sorted(int(c) for c in part["channel"]), "scanned": len(part),
                       "passing": k, "undetermined": int((~determined).sum()), "determined": n,
                       "share_determined": k / n if n else None, "wilson_low": float(low), "wilson_high": float(high),
                       "paper_passing": paper[0] if paper else None, "paper_channels": paper[1] if paper else None})
    return {"model": str(settings.get("model", "resnet18")), "weights": str(settings.get("weights", "random@0")),
            "max_steps_used": int(max(table["in_steps_used"].max(), table["pre_steps_used"].max())), "blocks": blocks}


def markdown(result: dict) -> str:
    lines = [f"| block | channels scanned | pass ({result['model']}, {result['weights']}) | undetermined "
             "| share of determined (95 % CI) "
             "| paper, trained ImageNet resnet18 |", "|---|---|---|---|---|---|"]
    for b in result["blocks"]:
        share = ("–" if b["share_determined"] is None else
                 f"{100 * b['share_determined']:.0f} % ({100 * b['wilson_low']:.0f}–{100 * b['wilson_high']:.0f} %)")
        paper = ("–" if b["paper_passing"] is None else
                 f"{b['paper_passing']} of {b['paper_channels']} (~{100 * b['paper_passing'] / b['paper_channels']:.0f} %)")
        lines.append(f"| {b['block']} | {b['scanned']} | {b['passing']} | {b['undetermined']} | {share} | {paper} |")
    return "\n".join(lines) + "\n"


def block_text(result: dict) -> str:
    return f"{START}\n{markdown(result)}{END}"


def update_readme(readme: Path, result: dict) -> None:
    from rsi_plugin.outputs.summary import replace_readme_block

    replace_readme_block(readme, "random-init-share", markdown(result))


def main(argv=None) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("scan_dir", nargs="?", default=None, help="a scan folder (omit with --from-json)")
    p.add_argument("--json", default=None, help="write the shares here")
    p.add_argument("--from-json", default=None, help="render from a JSON written before instead of a scan folder")
    p.add_argument("--update-readme", default=None, help="rewrite the README's block")
    args = p.parse_args(argv)
    result = json.loads(Path(args.from_json).read_text()) if args.from_json else shares(args.scan_dir)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    if args.update_readme:
        update_readme(Path(args.update_readme), result)
    print(markdown(result), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
