#!/usr/bin/env python3
"""What a model makes of the obstacles of one held-out kind: the class it gives their pixels, and how many of them
score above the 99th percentile of the road's score, for Eq. 2 and for 1 - p(road) (the stretched-outlier study,
decision_rule.md next to this file).

    python results/train_nano_logs/stretched_outliers/diagnose.py thin_pole [MODEL_DIR] [--frames 20]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[3]
sys.path.append(str(REPO))

from dsa_core.data.anomaly_sets import benchmark_samples  # noqa: E402
from dsa_core.labels import CITYSCAPES_CLASSES  # noqa: E402
from dsa_core.runtime import create_backend  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("kind")
    ap.add_argument("model", nargs="?", default=str(REPO / "models" / "dsa_nano"))
    ap.add_argument("--data", default=str(REPO / "runs" / "recipe" / "data" / "kinds"))
    ap.add_argument("--frames", type=int, default=20)
    args = ap.parse_args()
    backend = create_backend("onnxruntime", args.model, class_scores=True)
    classes = np.zeros(len(CITYSCAPES_CLASSES))
    scores: dict[str, tuple[list, list]] = {"Eq. 2": ([], []), "1 - p(road)": ([], [])}
    for image, label in benchmark_samples("fs_laf", Path(args.data) / args.kind, args.frames):
        # label: 0 road, 1 obstacle, 255 ignored
        result = backend.infer(image[None], baselines=True)
        obstacle, road = label == 1, label == 0
        k = len(CITYSCAPES_CLASSES)
        classes += np.bincount(result.class_ids[0][obstacle], minlength=k)[:k]
        for name, score in (("Eq. 2", result.anomaly[0]), ("1 - p(road)", result.baselines["not_drivable"][0])):
            scores[name][0].append(score[obstacle])
            scores[name][1].append(score[road])
    share = classes / classes.sum()
    print(f"{args.kind}, {args.model}: the obstacles' pixels are called "
          + ", ".join(f"{CITYSCAPES_CLASSES[i]} {100 * share[i]:.0f} %" for i in np.argsort(-share)[:5]))
    for name, (obstacle, road) in scores.items():
        obstacle, road = np.concatenate(obstacle), np.concatenate(road)
        print(f"{name}: {100 * (obstacle > np.quantile(road, 0.99)).mean():.0f} % of the obstacles' pixels score above "
              "the road's 99th percentile")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
