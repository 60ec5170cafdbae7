#!/usr/bin/env python3
"""Why the demo's alerts fire or not: per frame of the demo drive, the model's anomaly score on the obstacle against
the road's, the share of obstacle pixels over the operating threshold, and the classes the model gives the obstacle.

    python scripts/drive_frames.py [MODEL_DIR] > frames.txt      # default models/dsa_nano, the full demo drive

Rows: frames with an obstacle, and every fifth clear frame. "road" excludes the bottom rows the demo masks as the
hood, so the numbers are those the obstacle search sees.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.append(str(REPO))  # last: the venv's dsa_perception (with its generated msg module) wins


def main() -> int:
    from dsa_core.bags.demo import FULL
    from dsa_core.bags.drive import DriveSpec, generate_drive
    from dsa_core.data.synth.scene import EGO_MASK_BOTTOM_FRACTION
    from dsa_core.labels import ROAD
    from dsa_core.runtime import create_backend
    from dsa_core.runtime.operating_point import resolve_operating_point

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", nargs="?", type=Path, default=REPO / "models" / "dsa_nano")
    args = p.parse_args()
    backend = create_backend("onnxruntime", args.model)
    threshold = resolve_operating_point(backend.manifest).anomaly_threshold
    names = [c["name"] for c in backend.manifest["classes"]]
    frames, fps, height, width, segment, _ = FULL
    rows_kept = height - int(round(EGO_MASK_BOTTOM_FRACTION * height))  # the rows find_obstacles keeps
    print(f"model {args.model}, threshold {threshold:.3f}")
    for f in generate_drive(DriveSpec(frames=frames, height=height, width=width, fps=fps, segment_frames=segment)):
        out = backend.infer(f.rgb[None])
        score, classes = out.anomaly[0], out.class_ids[0]
        road = f.semantic == ROAD
        road[rows_kept:] = False
        p50, p99 = np.quantile(score[road], [0.5, 0.99])
        obstacle = f.anomaly == 1
        if obstacle.any():
            counts = np.bincount(classes[obstacle], minlength=len(names))
            top = ", ".join(f"{names[k]} {counts[k]}" for k in np.argsort(counts)[::-1][:2] if counts[k])
            print(f"{f.index:3d} obstacle {int(obstacle.sum()):5d} px at {f.obstacle_distance_m:4.1f} m: score mean "
                  f"{score[obstacle].mean():.2f} max {score[obstacle].max():.2f}, over threshold "
                  f"{np.mean(score[obstacle] >= threshold):4.0%} | road p50 {p50:.2f} p99 {p99:.2f} | classes: {top}")
        elif f.index % 5 == 0:
            print(f"{f.index:3d} clear: road p50 {p50:.2f} p99 {p99:.2f}, over threshold: road "
                  f"{np.mean(score[road] >= threshold):.1%}, image above the hood {np.mean(score[:rows_kept] >= threshold):.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
