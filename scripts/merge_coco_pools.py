"""Merge COCO-format outlier pools into one pool root, for studies that widen the outlier-exposure pool with another
object set (e.g. the pre-training objects of ``dsa synth coco --families pretrain``) while keeping the first pool an
exact subset.

    python scripts/merge_coco_pools.py OUT_DIR POOL_ROOT [POOL_ROOT ...]

writes OUT_DIR/annotations/instances_train2017.json and OUT_DIR/train2017/, whose files are links to the pools'
images renamed ``p<k>_<name>`` (pool k, counted from 0). Image and annotation ids are renumbered; categories are
taken by id, and two pools that give one id different names are refused. Reads with ``CocoOutlierPool``.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def merge_pools(out: Path, roots: list[Path], split: str = "train2017") -> dict[str, int]:
    """Write the merged pool; returns its image and annotation counts."""
    images, annotations, categories = [], [], {}
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    (out / split).mkdir(parents=True, exist_ok=True)
    for k, root in enumerate(roots):
        data = json.loads((root / "annotations" / f"instances_{split}.json").read_text())
        for cat in data["categories"]:
            known = categories.setdefault(cat["id"], cat)
            if known["name"] != cat["name"]:
                raise SystemExit(f"category id {cat['id']} is {known['name']!r} in one pool, {cat['name']!r} in {root}")
        new_id = {}
        for im in data["images"]:
            new_id[im["id"]] = len(images) + 1
            name = f"p{k}_{im['file_name']}"
            link = out / split / name
            if not link.exists():
                link.symlink_to((root / split / im["file_name"]).resolve())
            images.append({**im, "id": new_id[im["id"]], "file_name": name})
        for ann in data["annotations"]:
            annotations.append({**ann, "id": len(annotations) + 1, "image_id": new_id[ann["image_id"]]})
    merged = {"images": images, "annotations": annotations, "categories": sorted(categories.values(), key=lambda c: c["id"])}
    (out / "annotations" / f"instances_{split}.json").write_text(json.dumps(merged))
    return {"images": len(images), "annotations": len(annotations)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("roots", type=Path, nargs="+", help="COCO-format pool roots (annotations/, train2017/)")
    args = parser.parse_args()
    print(json.dumps(merge_pools(args.out, args.roots)))


if __name__ == "__main__":
    main()
