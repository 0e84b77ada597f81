"""Scaling of the FZ scan with processes (or GPUs) under ``torchrun``: the same scan with K = 1, 2,
... processes, wall time, speed-up and a check that every K wrote the same tables.

On a CPU machine: ``python benchmarks/scan_scaling.py --procs 1 2`` (1 process with every core vs
K processes sharing them: the honest CPU figure). On a GPU node:
``python benchmarks/scan_scaling.py --procs 1 2 4 8 --device cuda --model resnet18 --image-size 224
--steps 512 --blocks 2.1 3.1`` (process k on GPU k) produces the table for K GPUs.

Each K runs ``torchrun --standalone --nproc_per_node K -m rsi_plugin.cli scan ...`` into a fresh
folder (no cache shared between K, so each renders everything); the tables of every K must be
byte-identical to K = 1's at equal threads per process, which is checked only when the thread
count per process is the same (``--threads`` given), since the thread count is part of the FZ
cache key and can change results in the last bits. Writes ``--json`` and ``--markdown``;
``--update-readme README.md --readme-block NAME`` rewrites the README's block between
``<!-- NAME:start -->`` and ``<!-- NAME:end -->`` with the table (``--from-json`` renders a JSON
written before instead of timing again). The README's CPU tables are made this way:

    python benchmarks/scan_scaling.py --procs 1 2 --json benchmarks/results/scan_scaling_cpu.json \
        --markdown benchmarks/results/scan_scaling_cpu.md --update-readme README.md --readme-block scan-scaling-cpu
    python benchmarks/scan_scaling.py --procs 1 2 --threads 1 --json benchmarks/results/scan_scaling_cpu_1thread.json \
        --markdown benchmarks/results/scan_scaling_cpu_1thread.md --update-readme README.md \
        --readme-block scan-scaling-cpu-1thread
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rsi_plugin.core.runfolder import SCAN_CHANNELS, SCAN_SUMMARY, SCAN_TABLE  # noqa: E402

TABLES = (SCAN_TABLE, SCAN_SUMMARY, SCAN_CHANNELS)


def scan_command(procs: int, args: argparse.Namespace, out: Path) -> list[str]:
    """The torchrun command line of one K."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}",
               "-m", "rsi_plugin.cli", "scan", "--model", args.model, "--blocks", *args.blocks,
               "--steps", str(args.steps), "--image-size", str(args.image_size), "--seeds", str(args.seeds),
               "--out", str(out), "--no-progress"]
    if args.device:
        command += ["--device", args.device]
    if args.threads:
        command += ["--threads", str(args.threads)]
    return command


def table_digest(out: Path) -> str:
    """One sha256 over the tables' bytes, with the run folder's own path taken out of them."""
    digest = hashlib.sha256()
    for name in TABLES:
        digest.update((out / name).read_bytes().replace(str(out).encode(), b"OUT"))
    return digest.hexdigest()[:16]


def run(args: argparse.Namespace) -> dict:
    """Time the scan at every K of ``args.procs``.

    Returns:
        dict with ``environment`` (CPU count, load before/after, the command) and ``rows``:
        per K ``procs, seconds, speedup, digest, same_tables``.
    """
    from rsi_plugin.apps.timing import environment

    rows = []
    load_before = os.getloadavg()
    base = Path(tempfile.mkdtemp(prefix="rsi-scaling-"))
    try:
        for procs in args.procs:
            out = base / f"k{procs}"
            command = scan_command(procs, args, out)
            start = time.perf_counter()
            done = subprocess.run(command, capture_output=True, text=True)
            seconds = time.perf_counter() - start
            if done.returncode != 0:
                raise SystemExit(f"K={procs} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
            rows.append({"procs": procs, "seconds": round(seconds, 2), "digest": table_digest(out)})
            print(f"K={procs}: {seconds:.1f} s", flush=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    first = rows[0]
    for row in rows:
        row["speedup"] = round(first["seconds"] / row["seconds"], 3)
        row["same_tables"] = row["digest"] == first["digest"] if args.threads else None
    env = environment()
    env.update(load_before=load_before, load_after=os.getloadavg(), cpus=os.cpu_count(),
               command=" ".join(scan_command(1, args, Path("OUT"))[2:]))
    return {"environment": env, "rows": rows}


def markdown(result: dict) -> str:
    """The result as a Markdown table with the conditions it was measured under."""
    env = result["environment"]
    lines = [f"Scan scaling: `{env['command']}` with K processes "
             f"({env['cpus']} CPUs; load {env['load_before'][0]:.2f} before, {env['load_after'][0]:.2f} after).", "",
             "| K | wall s | speed-up | tables identical to K=1 |", "|---|---|---|---|"]
    for row in result["rows"]:
        same = {True: "yes", False: "NO", None: "not compared (threads differ)"}[row["same_tables"]]
        lines.append(f"| {row['procs']} | {row['seconds']:.1f} | {row['speedup']:.2f} | {same} |")
    return "\n".join(lines) + "\n"


def readme_block(name: str, result: dict) -> str:
    """The README block ``name`` holding ``result``'s table, markers included."""
    return f"<!-- {name}:start -->\n{markdown(result)}<!-- {name}:end -->"


def update_readme(readme: Path, name: str, result: dict) -> None:
    """Replace the README's block ``name`` (its marker lines must be there, once each) with
    ``result``'s table (:func:`rsi_plugin.outputs.summary.replace_readme_block`).

    Raises:
        SystemExit: the markers are missing or repeated (says which).
    """
    from rsi_plugin.errors import RSIError
    from rsi_plugin.outputs.summary import replace_readme_block

    try:
        replace_readme_block(readme, name, markdown(result))
    except RSIError as error:
        raise SystemExit(str(error)) from None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--procs", type=int, nargs="+", default=[1, 2], help="process counts K (default 1 2)")
    p.add_argument("--model", default="tiny")
    p.add_argument("--blocks", nargs="+", default=["2.1", "3.1"])
    p.add_argument("--steps", type=int, default=256)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--device", default=None, help="cuda: process k on GPU k (default: the CPU)")
    p.add_argument("--threads", type=int, default=None,
                   help="threads per process (default: cores / K each; give it to compare the tables)")
    p.add_argument("--json", default=None)
    p.add_argument("--markdown", default=None)
    p.add_argument("--from-json", default=None, help="render a result written before instead of timing")
    p.add_argument("--update-readme", default=None, help="a README whose --readme-block gets the table")
    p.add_argument("--readme-block", default="scan-scaling-cpu", help="the README block's marker name")
    args = p.parse_args(argv)
    if sorted(args.procs) != args.procs or args.procs[0] < 1:
        p.error("--procs: increasing counts >= 1, the first is the baseline")
    result = json.loads(Path(args.from_json).read_text()) if args.from_json else run(args)
    text = markdown(result)
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    if args.markdown:
        Path(args.markdown).write_text(text)
    if args.update_readme:
        update_readme(Path(args.update_readme), args.readme_block, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
