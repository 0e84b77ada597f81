"""Run every ``benchmarks/bench_*.py`` script: ``python -m benchmarks [--quick] [--json PATH]``.

Each script prints its own table; with ``--json`` the results of all go into one file,
keyed by script name, with the environment they were measured in."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.harness import environment, format_table, parse, parser, write_json  # noqa: E402


def main(argv=None) -> int:
    p = parser("Run all rsi_plugin benchmarks")
    p.add_argument("--only", nargs="*", default=None, help="names of bench scripts to run (e.g. intervention)")
    args = parse(p, argv)
    scripts = sorted(Path(__file__).parent.glob("bench_*.py"))
    results = {"environment": environment()}
    for script in scripts:
        name = script.stem.removeprefix("bench_")
        if args.only and name not in args.only:
            continue
        module = importlib.import_module(f"benchmarks.{script.stem}")
        print(f"\n== {name} ==", flush=True)
        result = module.run(args.quick)
        print(format_table(result["rows"]), flush=True)
        results[name] = result
    if args.json:
        write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
