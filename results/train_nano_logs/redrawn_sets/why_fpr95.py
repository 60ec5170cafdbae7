#!/usr/bin/env python3
"""Why a set's FPR95 is high: at the Eq. 2 threshold that keeps 95 % of the anomaly pixels (the threshold FPR95 is
read at), which anomaly pixels fall below it and which in-distribution pixels rise above it, per draw of the set
(the redrawn sets of run.sh next to this file).

    python results/train_nano_logs/redrawn_sets/why_fpr95.py road_anomaly [MODEL_DIR] [--figure PNG]
    python results/train_nano_logs/redrawn_sets/why_fpr95.py large_near

A set is road_anomaly, fs_laf or a held-out kind (FS L&F format). Missed anomaly pixels are split by the class the
model gives them and by where they lie in their object (the lowest third of its box or above); false pixels by class
and by whether they lie within BORDER_PX of an anomaly (the object's rim, where a mask at a quarter of the input
resolution blurs). ``--figure`` draws, per draw, the two frames with the most missed anomaly pixels: the image with
the anomaly outlined, and the Eq. 2 score with the pixels under the threshold outlined.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[3]
sys.path.append(str(REPO))

from dsa_core.data.anomaly_sets import benchmark_samples  # noqa: E402
from dsa_core.data.synth.anomaly_synth import FS_LAF_KINDS  # noqa: E402
from dsa_core.labels import CITYSCAPES_CLASSES  # noqa: E402
from dsa_core.runtime import create_backend  # noqa: E402

ROOT = REPO / "runs" / "redrawn"
BORDER_PX = 4


def top(counts: np.ndarray, n: int = 4) -> str:
    share = counts / max(counts.sum(), 1)
    return ", ".join(f"{CITYSCAPES_CLASSES[i]} {100 * share[i]:.0f} %" for i in np.argsort(-share)[:n] if share[i] > 0)


def lower_third(anomaly: np.ndarray) -> np.ndarray:
    """True on the pixels in the lowest third of their own connected anomaly region's box."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(anomaly.astype(np.uint8), connectivity=8)
    rows = np.arange(anomaly.shape[0])[:, None]
    out = np.zeros(anomaly.shape, bool)
    for i in range(1, count):
        y, h = stats[i, cv2.CC_STAT_TOP], stats[i, cv2.CC_STAT_HEIGHT]
        out |= (labels == i) & (rows >= y + 2 * h / 3)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("set", choices=["road_anomaly", "fs_laf", *FS_LAF_KINDS])
    ap.add_argument("model", nargs="?", default=str(REPO / "models" / "dsa_nano"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--figure", type=Path, help="write the worst frames of each draw to this PNG")
    args = ap.parse_args()
    worst = []
    backend = create_backend("onnxruntime", args.model, class_scores=True)
    k = len(CITYSCAPES_CLASSES)
    print(f"| {args.set} | FPR95 | missed anomaly pixels: classes | missed: in the lowest third of the object | "
          f"missed: frames holding 80 % of them | false pixels: classes | false: within {BORDER_PX} px of an anomaly |")
    print("|---|---|---|---|---|---|---|")
    for seed in args.seeds:
        key = "road_anomaly" if args.set == "road_anomaly" else "fs_laf"
        root = ROOT / f"seed{seed}" / "sets" / (args.set if args.set in ("road_anomaly", "fs_laf") else
                                                f"kinds/{args.set}")
        frames, images = [], []
        for image, label in benchmark_samples(key, root):
            result = backend.infer(image[None])
            anomaly, normal = label == 1, label == 0
            rim = cv2.dilate(anomaly.astype(np.uint8), np.ones((2 * BORDER_PX + 1,) * 2, np.uint8)) > 0
            frames.append((result.anomaly[0], result.class_ids[0], anomaly, normal, rim & normal, lower_third(anomaly)))
            images.append(image)
        pos = np.concatenate([s[a] for s, _, a, _, _, _ in frames])
        threshold = np.quantile(pos, 0.05)  # 95 % of the anomaly pixels score at or above it
        missed_cls, false_cls = np.zeros(k), np.zeros(k)
        missed = missed_low = false = false_rim = negatives = 0
        per_frame = []
        for score, cls, a, n, rim, low in frames:
            m, f = a & (score < threshold), n & (score >= threshold)
            per_frame.append(int(m.sum()))
            missed_cls += np.bincount(cls[m], minlength=k)[:k]
            false_cls += np.bincount(cls[f], minlength=k)[:k]
            missed, missed_low = missed + m.sum(), missed_low + (m & low).sum()
            false, false_rim, negatives = false + f.sum(), false_rim + (f & rim).sum(), negatives + n.sum()
        for i in np.argsort(per_frame)[::-1][:2]:
            worst.append((seed, int(i), images[i], frames[i][0], frames[i][2], threshold))
        cum = np.cumsum(sorted(per_frame, reverse=True))
        holding = int(np.searchsorted(cum, 0.8 * cum[-1]) + 1)
        print(f"| seed {seed} | {100 * false / negatives:.1f} | {top(missed_cls)} | "
              f"{100 * missed_low / max(missed, 1):.0f} % | {holding} of {len(frames)} | {top(false_cls)} | "
              f"{100 * false_rim / max(false, 1):.0f} % |")
    if args.figure:
        draw_worst(worst, args.set, args.figure)
    return 0


def draw_worst(worst: list, name: str, out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(worst), 2, figsize=(9, 2.4 * len(worst)), squeeze=False)
    for row, (seed, i, image, score, anomaly, threshold) in zip(axes, worst):
        row[0].imshow(image)
        row[0].contour(anomaly, levels=[0.5], colors="lime", linewidths=0.8)
        row[0].set_title(f"{name}, seed {seed}, frame {i}: anomaly outlined", fontsize=8)
        shown = row[1].imshow(score, cmap="magma", vmin=0, vmax=1)
        row[1].contour(anomaly & (score < threshold), levels=[0.5], colors="cyan", linewidths=0.8)
        row[1].set_title(f"Eq. 2 score; anomaly pixels under the FPR95 threshold {threshold:.3f} outlined", fontsize=8)
        fig.colorbar(shown, ax=row[1], fraction=0.025)
        for ax in row:
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(out, dpi=64)


if __name__ == "__main__":
    raise SystemExit(main())
