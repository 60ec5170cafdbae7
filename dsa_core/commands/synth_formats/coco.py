"""``dsa synth coco``: synthetic COCO instances (outlier pool + Cityscapes-overlapping classes)."""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--images", type=int, default=24, help="number of images")
    parser.add_argument("--height", type=int, default=480, help="image height (real prep keeps >= 480 px)")
    parser.add_argument("--width", type=int, default=640, help="image width")
    parser.add_argument("--excluded-fraction", type=float, default=0.3,
                        help="fraction of images that also contain a Cityscapes-overlapping class")
    parser.add_argument("--crowd-fraction", type=float, default=0.15, help="fraction with a crowd (RLE) annotation")
    parser.add_argument("--families", choices=("outlier_pool", "pretrain", "validation"), default="outlier_pool",
                        help="object set: the outlier-exposure pool, the disjoint objects for backbone "
                             "pre-training (dsa train --stage pretrain --pretrain-outlier-prob), or the disjoint "
                             "objects for model selection that no training stage sees (scripts/pool_val_sizes.py)")
    parser.add_argument("--ood-masks", action="store_true",
                        help="also write annotations/ood_seg_train2017/*.png (0/254) as the meta-ood preparation does")


def run(args: argparse.Namespace) -> int:
    from dsa_core.data.synth.synthetic import write_coco

    write_coco(args.out, args.images, height=args.height, width=args.width, seed=args.seed,
               excluded_fraction=args.excluded_fraction, crowd_fraction=args.crowd_fraction,
               progress=not args.no_progress, families=args.families)
    if args.ood_masks:
        from dsa_core.data.coco_mix import CocoOutlierPool, write_ood_masks

        write_ood_masks(CocoOutlierPool(args.out, min_size=min(480, args.height, args.width)),
                        progress=not args.no_progress)
    return 0
