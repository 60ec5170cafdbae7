"""Merge COCO-format outlier pools into one pool root: the recipe's stage-2 pool is the outlier-exposure pool plus
the pre-training object set, with the first pool kept an exact subset so studies can compare the two.

The merged root holds annotations/instances_<split>.json and <split>/, whose files are links to the pools' images
renamed ``p<k>_<name>`` (pool k, counted from 0). Image and annotation ids are renumbered; categories are taken by
id, and two pools that give one id different names are refused. Reads with ``CocoOutlierPool``.
"""
from __future__ import annotations

import json
from pathlib import Path


def merge_pools(out: Path, roots: list[Path], split: str = "train2017") -> dict[str, int]:
    """Write the merged pool; returns its image and annotation counts. Raises ValueError on a category clash."""
    images, annotations, categories = [], [], {}
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    (out / split).mkdir(parents=True, exist_ok=True)
    for k, root in enumerate(roots):
        data = json.loads((root / "annotations" / f"instances_{split}.json").read_text())
        for cat in data["categories"]:
            known = categories.setdefault(cat["id"], cat)
            if known["name"] != cat["name"]:
                raise ValueError(f"category id {cat['id']} is {known['name']!r} in one pool, {cat['name']!r} in {root}")
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
