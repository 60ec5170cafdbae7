"""``dsa synth cityscapes``: synthetic Cityscapes in the official gtFine layout (dsa_core.data.synth.synthetic)."""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--train", type=int, default=24, help="number of train frames")
    parser.add_argument("--val", type=int, default=8, help="number of val frames")
    parser.add_argument("--test", type=int, default=0, help="number of test frames (labels included)")
    parser.add_argument("--height", type=int, default=256, help="image height")
    parser.add_argument("--width", type=int, default=512, help="image width")


def run(args: argparse.Namespace) -> int:
    from dsa_core.data.synth.synthetic import write_cityscapes

    write_cityscapes(args.out, args.train, args.val, height=args.height, width=args.width, seed=args.seed,
                     n_test=args.test, progress=not args.no_progress)
    return 0
