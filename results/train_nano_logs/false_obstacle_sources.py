#!/usr/bin/env python3
"""Where the calibration's false obstacles come from: per threshold, the val frames with a false obstacle component
(the node's drivable-area rule, the demo camera's hood masked, no area floor), the size and bottom row of each frame's
largest one, and the ground-truth class most of its over-threshold pixels lie on (255 = void: the synthetic scenes'
bins, boxes and carts, parking strips and traffic islands).

    python results/train_nano_logs/false_obstacle_sources.py [MODEL_DIR] [VAL_ROOT] [THRESHOLD ...]

Defaults: models/dsa_nano, runs/recipe/data/cityscapes, and the thresholds of its calibration ladder at 1 %, 0.2 %,
0.05 % road FPR and the chosen one.
"""
from __future__ import annotations

import collections
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def main() -> int:
    from dsa_core.bags.alerts import class_name, flagged_class
    from dsa_core.data.cityscapes import CityscapesDataset
    from dsa_core.data.synth.scene import EGO_MASK_BOTTOM_FRACTION
    from dsa_core.eval.calibrate import _obstacle_components
    from dsa_core.runtime import create_backend

    model = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "models" / "dsa_nano"
    val = Path(sys.argv[2]) if len(sys.argv) > 2 else REPO / "runs" / "recipe" / "data" / "cityscapes"
    thresholds = [float(t) for t in sys.argv[3:]] or [0.7526, 0.925, 0.9713, 0.991]
    backend = create_backend("onnxruntime", model)
    ds = CityscapesDataset(val, "val")
    under = {t: collections.Counter() for t in thresholds}
    sizes, rows = {t: [] for t in thresholds}, {t: [] for t in thresholds}
    for i in range(len(ds)):
        image, label, _ = ds.load(i)
        out = backend.infer(image[None])
        anomaly, class_ids = out.anomaly[0], out.class_ids[0]
        for t in thresholds:
            comps = _obstacle_components(anomaly, class_ids, t, EGO_MASK_BOTTOM_FRACTION)
            if not comps:
                continue
            d = max(comps, key=lambda c: c.pixel_area)
            under[t][class_name(flagged_class(d.bbox, anomaly >= t, label))] += 1
            sizes[t].append(d.pixel_area)
            rows[t].append(d.bbox[1] + d.bbox[3])
    print(f"model {model}, {len(ds)} val frames of {val}")
    print("| threshold | frames with a false obstacle | largest: px p50 / p90 | bottom row p50 | GT class under it (frames) |")
    print("|---|---|---|---|---|")
    for t in thresholds:
        n = len(sizes[t])
        size = f"{np.median(sizes[t]):.0f} / {np.percentile(sizes[t], 90):.0f}" if n else "-"
        row = f"{np.median(rows[t]):.0f}" if n else "-"
        cls = ", ".join(f"{k} {v}" for k, v in under[t].most_common(6))
        print(f"| {t} | {n} | {size} | {row} | {cls} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
