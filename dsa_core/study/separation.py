"""The data-separation guard of the study: the benchmarks' anomaly appearances never reach training or the pool."""
from __future__ import annotations

import json
from pathlib import Path

def check_anomaly_separation(coco_root: Path | None) -> dict[str, list[str]]:
    """Assert the benchmarks' anomaly appearances cannot reach training or the outlier pool.

    Synthetic data: the benchmark writers draw only ``TEST_ANOMALY_FAMILIES``, the COCO pool only
    ``OUTLIER_POOL_FAMILIES`` (annotated as ``POOL_FAMILY_CATEGORY``); the sets must be disjoint, and every
    category annotated in the pool must be a pool category or one the AnomalyMix filter drops (COCO_EXCLUDED_NAMES).
    Returns the families / categories checked (written to the study's results).
    """
    from dsa_core.data.coco_categories import COCO_EXCLUDED_NAMES
    from dsa_core.data.synth.sprites import OUTLIER_POOL_FAMILIES, TEST_ANOMALY_FAMILIES
    from dsa_core.data.synth.synthetic import POOL_FAMILY_CATEGORY

    overlap = set(TEST_ANOMALY_FAMILIES) & set(OUTLIER_POOL_FAMILIES)
    if overlap:
        raise AssertionError(f"test anomaly families {sorted(overlap)} are also outlier-pool families")
    if set(POOL_FAMILY_CATEGORY) != set(OUTLIER_POOL_FAMILIES):
        raise AssertionError(f"POOL_FAMILY_CATEGORY covers {sorted(POOL_FAMILY_CATEGORY)}, the pool families are "
                             f"{sorted(OUTLIER_POOL_FAMILIES)}")
    info = {"test_families": list(TEST_ANOMALY_FAMILIES), "pool_families": list(OUTLIER_POOL_FAMILIES)}
    if coco_root is not None:
        ann = Path(coco_root) / "annotations" / "instances_train2017.json"
        with ann.open() as f:
            coco = json.load(f)
        names = {c["id"]: c["name"] for c in coco["categories"]}
        used = sorted({names[a["category_id"]] for a in coco["annotations"]})
        allowed = set(POOL_FAMILY_CATEGORY.values()) | set(COCO_EXCLUDED_NAMES)
        foreign = [n for n in used if n not in allowed]
        if foreign:
            raise AssertionError(f"{ann}: categories {foreign} are neither outlier-pool categories "
                                 f"{sorted(POOL_FAMILY_CATEGORY.values())} nor filtered by AnomalyMix")
        info["pool_categories_used"] = used
    return info
