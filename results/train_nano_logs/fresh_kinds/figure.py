#!/usr/bin/env python3
"""One frame of each fresh held-out kind through the shipped model: the frame, Eq. 2 and 1 - p(road) from the same
forward pass (both in [0, 1], one colour scale), the obstacles outlined in green on all three.

    python results/train_nano_logs/fresh_kinds/figure.py     # writes fresh_kinds.png next to this file
"""
from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
sys.path.append(str(REPO))

FRAME = 0  # the first frame of each set (run.sh writes the sets under runs/fk)


def main() -> int:
    from dsa_core.data.anomaly_sets import open_benchmark
    from dsa_core.data.synth.anomaly_synth import FRESH_KINDS
    from dsa_core.runtime import create_backend

    backend = create_backend("onnxruntime", REPO / "models" / "dsa_nano", intra_op_threads=1, class_scores=True)
    rows = []
    for kind in FRESH_KINDS:
        sample = open_benchmark("fs_laf", REPO / "runs" / "fk" / kind)[FRAME]
        out = backend.infer(sample.image[None], baselines=True)
        contours, _ = cv2.findContours((sample.label == 1).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        maps = [out.anomaly[0], out.baselines["not_drivable"][0]]
        tiles = [cv2.cvtColor(sample.image, cv2.COLOR_RGB2BGR)]
        tiles += [cv2.applyColorMap((255 * np.clip(m, 0, 1)).astype(np.uint8), cv2.COLORMAP_INFERNO) for m in maps]
        for tile, text in zip(tiles, (kind, "Eq. 2 (DSA)", "1 - p(road)")):
            cv2.drawContours(tile, contours, -1, (0, 255, 0), 1)
            cv2.putText(tile, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 1, cv2.LINE_AA)
        rows.append(np.concatenate(tiles, 1))
    out_path = HERE / "fresh_kinds.png"
    cv2.imwrite(str(out_path), cv2.resize(np.concatenate(rows, 0), None, fx=0.75, fy=0.75,
                                          interpolation=cv2.INTER_AREA))
    print(out_path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
