"""Arguments shared by several subcommands."""

from __future__ import annotations

import argparse

from ..models import MODEL_NAMES


def add_model_arguments(parser: argparse.ArgumentParser, default: str = "tiny") -> None:
    parser.add_argument("--model", default=default,
                        help=f"model name ({', '.join(MODEL_NAMES)}); default {default}")
    parser.add_argument("--weights", default=None,
                        help="None (random init; the shipped weights for tiny), a torchvision enum "
                             "name such as IMAGENET1K_V1, or a path to a .pth state dict")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--seed", type=int, default=0, help="seed of random init and sampling")


def load_model_from_args(args: argparse.Namespace):
    from ..models import load_model

    return load_model(args.model, weights=args.weights, seed=args.seed, device=args.device)
