"""The ``rsi`` command. Each subcommand lives in its own module of this package and
defines ``register(subparsers)``; :func:`main` dispatches to the ``run`` it sets."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import sys

__all__ = ["main", "build_parser", "COMMANDS"]

#: subcommand modules, in the order ``rsi --help`` lists them
COMMANDS: tuple[str, ...] = ("inspect", "demo", "scan", "ablate", "report", "bench", "featureviz")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rsi", description="Scale invariance in the residual stream of ResNets.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        if importlib.util.find_spec(f"{__name__}.{name}") is not None:
            importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    try:
        return int(args.run(args) or 0)
    except (ValueError, IndexError, TypeError, FileNotFoundError) as error:
        print(f"rsi {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"rsi {args.command}: interrupted; finished results are kept, rerun to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
