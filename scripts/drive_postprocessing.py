#!/usr/bin/env python3
"""Can post-processing rescue the demo drive? Scores the drive with the model once, then tries a box filter before
thresholding and hysteresis grouping (components over a low threshold that hold a pixel over the calibrated one).
Exploration only: nothing here is used by the node (results/train_nano.md, "The shipped model on the drive").

    python scripts/drive_postprocessing.py [MODEL_DIR]      # default models/dsa_nano
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.append(str(REPO))  # last: the venv's dsa_perception (with its generated msg module) wins


def main() -> int:
    from dsa_core.bags.demo import FULL
    from dsa_core.bags.drive import DriveSpec, generate_drive
    from dsa_core.data.synth.scene import EGO_MASK_BOTTOM_FRACTION
    from dsa_core.labels import ROAD
    from dsa_core.perception.obstacles import box_iou
    from dsa_core.runtime import create_backend
    from dsa_core.runtime.operating_point import resolve_operating_point

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", nargs="?", type=Path, default=REPO / "models" / "dsa_nano")
    args = p.parse_args()
    backend = create_backend("onnxruntime", args.model)
    high = resolve_operating_point(backend.manifest).anomaly_threshold
    frames, fps, height, width, segment, _ = FULL
    kept = height - int(round(EGO_MASK_BOTTOM_FRACTION * height))
    drive = [(f.anomaly == 1, f.semantic == ROAD, backend.infer(f.rgb[None]).anomaly[0].astype(np.float32))
             for f in generate_drive(DriveSpec(frames=frames, height=height, width=width, fps=fps, segment_frames=segment))]
    n_obstacle = sum(o.any() for o, _, _ in drive)

    print("box filter, threshold = 99th percentile of clear-frame road (above the hood):")
    for k in (1, 3, 5, 7, 11):
        smooth = [cv2.blur(s, (k, k)) if k > 1 else s for _, _, s in drive]
        road = np.concatenate([s[:kept][r[:kept]] for (o, r, _), s in zip(drive, smooth) if not o.any()])
        t = np.quantile(road, 0.99)
        share = [np.mean(s[o] >= t) for (o, _, _), s in zip(drive, smooth) if o.any()]
        print(f"  k={k:2d}: threshold {t:.3f}, obstacle pixels over it: median {np.median(share):.2f}")

    print(f"hysteresis (seed >= {high:.3f}), components touching the road:")
    ring_kernel = np.ones((7, 7), np.uint8)
    for low in (high, 0.75, 0.7, 0.65, 0.6):
        for floor in (328, 150, 80):
            on_obstacle = clear_alerts = 0
            for obstacle, road, score in drive:
                mask = (score >= low).astype(np.uint8)
                mask[kept:] = 0
                n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, 8)
                boxes = []
                for i in range(1, n):
                    comp = labels == i
                    ring = cv2.dilate(comp.view(np.uint8), ring_kernel).astype(bool) & ~comp
                    if stats[i, 4] >= floor and score[comp].max() >= high and (road & (ring | comp)).any():
                        boxes.append(tuple(int(v) for v in stats[i, :4]))
                if obstacle.any():
                    ys, xs = np.nonzero(obstacle)
                    truth = (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
                    on_obstacle += any(box_iou(b, truth) >= 0.1 for b in boxes)
                else:
                    clear_alerts += bool(boxes)
            print(f"  low {low:.3f}, floor {floor:3d} px: box on the obstacle in {on_obstacle}/{n_obstacle} obstacle "
                  f"frames, a component on {clear_alerts}/{len(drive) - n_obstacle} clear frames")
    return 0


if __name__ == "__main__":
    sys.exit(main())
