#!/usr/bin/env python3
"""Per obstacle family, what the flat-label model (F5, shipped) and the model before it (S) make of the obstacle's
pixels on the two test-family obstacle drives: the class they call them, the mean Eq. 2 score, and the share of the
pixels at or above each model's calibrated threshold. From the cached maps (`runs/fr/f_seed5/caches`,
`runs/fresh/s_caches`) and the drives' ground-truth caches.

    python results/train_nano_logs/flat_recipe/families.py > results/train_nano_logs/flat_recipe/families.md
"""
from __future__ import annotations

import collections
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))

from dsa_core.eval.alert_curve import CachedDrive  # noqa: E402
from dsa_core.labels import CITYSCAPES_CLASSES  # noqa: E402

DRIVES = ("obst_drive_5", "obst_drive_9")
SUMMARIES = {d: REPO / "results" / "alert_curve" / "test_families" / f"drive_{d[-1]}.json" for d in DRIVES}
#: model -> (cache root, its calibrated threshold as its manifest holds it: F5 calibrated to the false-alert budget,
#: S by the frame rule on the 10-minute drive)
MODELS = {"F5 (shipped, flat labels)": (REPO / "runs" / "fr" / "f_seed5" / "caches", 0.9922508597373962),
          "S (before, Cityscapes labels)": (REPO / "runs" / "fresh" / "s_caches", 0.9883032441139221)}
GT_ROOT = REPO / "runs" / "fr" / "f_seed5" / "caches"


def family_table(models: dict[str, tuple[Path, float]]) -> str:
    """The markdown table: per family and model (name -> (cache root, threshold)), the classes called, the mean score
    and the share of obstacle pixels at or above the threshold."""
    stats: dict = collections.defaultdict(lambda: collections.defaultdict(list))
    for drive in DRIVES:
        gt = CachedDrive.load(GT_ROOT / f"{drive}.ground_truth")
        obstacles = json.loads(SUMMARIES[drive].read_text())["obstacles"]
        for name, (root, threshold) in models.items():
            model = CachedDrive.load(root / drive)
            for o in obstacles:
                for f in range(o["first_frame"], o["last_frame"] + 1):
                    on = np.asarray(gt.anomaly[gt.frames[f]["row"]]) > 0.5
                    if on.sum() < 16:
                        continue
                    ids = np.asarray(model.class_ids[model.frames[f]["row"]])[on]
                    score = np.asarray(model.anomaly[model.frames[f]["row"]])[on]
                    s = stats[o["family"]][name]
                    s.append((np.bincount(ids, minlength=256), float(score.mean()), float((score >= threshold).mean())))
    lines = ["| family | model | frames | called | mean score | pixels over its threshold |", "|---|---|---|---|---|---|"]
    for family in sorted(stats):
        for name in models:
            rows = stats[family][name]
            counts = sum(r[0] for r in rows)
            top = np.argsort(counts)[::-1][:2]
            called = ", ".join(f"{CITYSCAPES_CLASSES[c] if c < len(CITYSCAPES_CLASSES) else c} {counts[c] / counts.sum():.0%}"
                               for c in top if counts[c])
            lines.append(f"| {family} | {name} | {len(rows)} | {called} | {np.mean([r[1] for r in rows]):.3f} | "
                         f"{np.mean([r[2] for r in rows]):.0%} |")
    return "\n".join(lines)


def main() -> int:
    print("# What each model makes of the obstacles' pixels, by family (test-family drives 5 and 9)\n")
    print("Frames where the obstacle covers at least 16 px. Classes: the two most frequent the model calls the "
          "obstacle's pixels, pooled over its frames.\n")
    print(family_table(MODELS))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
