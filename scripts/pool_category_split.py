"""Split a COCO-format outlier pool by category into two pool roots, for studies that need pool objects a model
has not seen (e.g. a backbone pre-trained on some pool categories, validated on the others).

    python scripts/pool_category_split.py POOL_ROOT OUT_DIR --held-out handbag kite "teddy bear"

writes OUT_DIR/seen and OUT_DIR/held_out: each an ``annotations/instances_train2017.json`` holding only the images
whose every instance is of that side's categories (an image mixing both sides is in neither), and a ``train2017``
link to the pool's images. Both read with ``CocoOutlierPool`` like the full pool.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def split_pool(root: Path, out: Path, held_out: list[str], split: str = "train2017") -> dict[str, int]:
    """Write the two category-restricted pools; returns the number of images on each side."""
    data = json.loads((root / "annotations" / f"instances_{split}.json").read_text())
    by_name = {c["name"]: c["id"] for c in data["categories"]}
    unknown = [n for n in held_out if n not in by_name]
    if unknown:
        raise SystemExit(f"unknown category names {unknown}; the pool has {sorted(by_name)}")
    held_ids = {by_name[n] for n in held_out}
    cats_of: dict[int, set[int]] = {}
    for ann in data["annotations"]:
        cats_of.setdefault(ann["image_id"], set()).add(ann["category_id"])
    sides = {"held_out": lambda cats: cats <= held_ids, "seen": lambda cats: not cats & held_ids}
    counts = {}
    for side, keep in sides.items():
        ids = {i for i, cats in cats_of.items() if keep(cats)}
        sub = {**data, "images": [im for im in data["images"] if im["id"] in ids],
               "annotations": [a for a in data["annotations"] if a["image_id"] in ids]}
        (out / side / "annotations").mkdir(parents=True, exist_ok=True)
        (out / side / "annotations" / f"instances_{split}.json").write_text(json.dumps(sub))
        link = out / side / split
        if not link.exists():
            link.symlink_to((root / split).resolve(), target_is_directory=True)
        counts[side] = len(ids)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="COCO-format pool root (annotations/, train2017/)")
    parser.add_argument("out", type=Path)
    parser.add_argument("--held-out", nargs="+", required=True, metavar="NAME", help="category names held out")
    args = parser.parse_args()
    print(json.dumps(split_pool(args.root, args.out, args.held_out)))


if __name__ == "__main__":
    main()
