"""Merge COCO-format outlier pools into one pool root (dsa_core.data.coco_merge), e.g. the recipe's stage-2 pool:

    python scripts/merge_coco_pools.py OUT_DIR POOL_ROOT [POOL_ROOT ...]

writes OUT_DIR/annotations/instances_train2017.json and OUT_DIR/train2017/ (links to the pools' images) and prints
the image and annotation counts.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from dsa_core.data.coco_merge import merge_pools


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("roots", type=Path, nargs="+", help="COCO-format pool roots (annotations/, train2017/)")
    args = parser.parse_args()
    try:
        print(json.dumps(merge_pools(args.out, args.roots)))
    except ValueError as err:
        raise SystemExit(f"merge_coco_pools: {err}") from None


if __name__ == "__main__":
    main()
