"""``rsi inspect``: the residual blocks of a model, their node paths and the identity check."""

from __future__ import annotations

import argparse

from rsi_plugin.cli.args import add_threads_argument, set_threads
from rsi_plugin.cli.common import add_model_arguments, load_model_from_args


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("inspect", help="table of every residual block: In/Pre/Post paths, sizes, Post == activation(In + Pre)")
    add_model_arguments(parser, default="tiny")  # as every other subcommand
    parser.add_argument("--csv", default=None, help="also write the table to this CSV file")
    add_threads_argument(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from rsi_plugin.apps.inspect import IDENTITY_COLUMN, block_table

    set_threads(args.threads)
    model = load_model_from_args(args)
    table = block_table(model)
    print(f"{args.model} ({model.rsi_info.weights} weights), {len(table)} residual blocks")
    print(table.to_string(index=False))
    if args.csv:
        table.to_csv(args.csv, index=False)
    ok = bool(table[IDENTITY_COLUMN].all())
    print("Post == activation(In + Pre) at every block:", "yes" if ok else "NO")
    return 0 if ok else 1
