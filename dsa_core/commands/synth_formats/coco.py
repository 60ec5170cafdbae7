"""``dsa synth coco``: synthetic COCO instances (outlier pool + Cityscapes-overlapping classes)."""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--images", type=int, default=24, help="number of images")
    parser.add_argument("--height", type=int, default=480, help="image height (real prep keeps >= 480 px)")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--excluded-fraction", type=float, default=0.3,
                        help="fraction of images that also contain a Cityscapes-overlapping class")
    parser.add_argument("--crowd-fraction", type=float, default=0.15, help="fraction with a crowd (RLE) annotation")


def generate(args: argparse.Namespace) -> None:
    from dsa_core.data.synthetic import write_coco

    write_coco(args.out, args.images, height=args.height, width=args.width, seed=args.seed,
               excluded_fraction=args.excluded_fraction, crowd_fraction=args.crowd_fraction,
               progress=not args.no_progress)
