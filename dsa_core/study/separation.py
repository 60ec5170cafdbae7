"""The data-separation guard of the study: the benchmarks' anomaly appearances never reach training or the pool."""
from __future__ import annotations

import json
import sys
from pathlib import Path


def check_anomaly_separation(coco_root: Path | None) -> dict[str, list[str]]:
    """Assert the benchmarks' anomaly appearances cannot reach training or the outlier pool.

    Synthetic data: the benchmark writers draw only ``TEST_ANOMALY_FAMILIES``, the COCO pool only
    ``OUTLIER_POOL_FAMILIES`` (annotated as ``POOL_FAMILY_CATEGORY``), backbone pre-training's objects only
    ``PRETRAIN_OBJECT_FAMILIES`` (``PRETRAIN_FAMILY_CATEGORY``), the model-selection set only
    ``VALIDATION_OBJECT_FAMILIES`` (``VALIDATION_FAMILY_CATEGORY``); the four sets and the three category sets must be
    disjoint, and every category annotated in the pool must be a training-object category (outlier-pool or
    pre-training: the recipe's stage-2 pool merges the two) or one the AnomalyMix filter drops (COCO_EXCLUDED_NAMES).
    Returns the families / categories checked (written to the study's results).
    """
    from dsa_core.data.coco_categories import COCO_EXCLUDED_NAMES
    from dsa_core.data.synth.sprites import (
        OUTLIER_POOL_FAMILIES, PRETRAIN_OBJECT_FAMILIES, TEST_ANOMALY_FAMILIES, VALIDATION_OBJECT_FAMILIES)
    from dsa_core.data.synth.synthetic import (
        POOL_FAMILY_CATEGORY, PRETRAIN_FAMILY_CATEGORY, VALIDATION_FAMILY_CATEGORY)

    sets = {"test anomaly": TEST_ANOMALY_FAMILIES, "outlier-pool": OUTLIER_POOL_FAMILIES,
            "pre-training object": PRETRAIN_OBJECT_FAMILIES, "validation object": VALIDATION_OBJECT_FAMILIES}
    names = list(sets)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            overlap = set(sets[a]) & set(sets[b])
            if overlap:
                raise AssertionError(f"{a} families {sorted(overlap)} are also {b} families")
    labels = {"outlier-pool": (POOL_FAMILY_CATEGORY, OUTLIER_POOL_FAMILIES),
              "pre-training": (PRETRAIN_FAMILY_CATEGORY, PRETRAIN_OBJECT_FAMILIES),
              "validation": (VALIDATION_FAMILY_CATEGORY, VALIDATION_OBJECT_FAMILIES)}
    for name, (category_of, families) in labels.items():
        if set(category_of) != set(families):
            raise AssertionError(f"the {name} category map covers {sorted(category_of)}, the {name} families are "
                                 f"{sorted(families)}")
    kinds = list(labels)
    for i, a in enumerate(kinds):
        for b in kinds[i + 1:]:
            shared = set(labels[a][0].values()) & set(labels[b][0].values())
            if shared:
                raise AssertionError(f"categories {sorted(shared)} label both {a} and {b} objects")
    info = {"test_families": list(TEST_ANOMALY_FAMILIES), "pool_families": list(OUTLIER_POOL_FAMILIES),
            "pretrain_families": list(PRETRAIN_OBJECT_FAMILIES), "validation_families": list(VALIDATION_OBJECT_FAMILIES)}
    if coco_root is not None:
        ann = Path(coco_root) / "annotations" / "instances_train2017.json"
        with ann.open() as f:
            coco = json.load(f)
        names = {c["id"]: c["name"] for c in coco["categories"]}
        used = sorted({names[a["category_id"]] for a in coco["annotations"]})
        training = set(POOL_FAMILY_CATEGORY.values()) | set(PRETRAIN_FAMILY_CATEGORY.values())
        foreign = [n for n in used if n not in training | set(COCO_EXCLUDED_NAMES)]
        if foreign:
            raise AssertionError(f"{ann}: categories {foreign} are neither training-object categories "
                                 f"{sorted(training)} nor filtered by AnomalyMix")
        info["pool_categories_used"] = used
    return info


def main(argv: list[str] | None = None) -> int:
    """``python -m dsa_core.study.separation POOL_ROOT...``: the guard on each training pool (exit 1 on a breach)."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("pools", type=Path, nargs="+", help="COCO-format pool roots that training will read")
    args = parser.parse_args(argv)
    try:
        for pool in args.pools:
            info = check_anomaly_separation(pool)
            print(json.dumps({"pool": str(pool), "categories": info["pool_categories_used"]}))
    except AssertionError as err:
        print(f"data separation breached: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
