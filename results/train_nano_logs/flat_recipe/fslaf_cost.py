#!/usr/bin/env python3
"""Where the flat-label model loses FS L&F AuPRC against the shipped model: per-image AuPRC, precision at fixed
recalls, and, at each model's threshold for 50 % pixel recall, which pixels are missed (anomaly pixels below it, by
the model's own predicted class) and which are false (road pixels above it, by predicted class, image row and distance
to the anomaly). Markdown on stdout.

    python results/train_nano_logs/flat_recipe/fslaf_cost.py [--set runs/recipe/data/fs_laf] [--threads 1]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage
from sklearn.metrics import average_precision_score, precision_recall_curve

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from dsa_core.checkpoint import model_from_checkpoint  # noqa: E402
from dsa_core.data.anomaly_sets import FishyscapesLostAndFound  # noqa: E402
from dsa_core.eval.evaluate import predict_maps  # noqa: E402
from dsa_core.labels import CITYSCAPES_CLASSES, VOID  # noqa: E402

ARMS = {"S (shipped)": "models/dsa_nano/model.pt", "F5 (flat labels)": "runs/fr/f_seed5/calibrated/model.pt"}
NEAR_PX = 4  # "next to the anomaly": within this many pixels of an anomaly pixel


def run(path: str, dataset) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    model, _ = model_from_checkpoint(path)
    model.eval()
    out = []
    for sample in dataset:
        maps = predict_maps(model, sample.image, semantic=True)
        out.append((maps.anomaly, maps.pred, sample.label))
    return out


def share(counts: dict[str, int]) -> str:
    total = sum(counts.values()) or 1
    top = sorted(counts.items(), key=lambda kv: -kv[1])[:4]
    return ", ".join(f"{k} {100 * v / total:.0f} %" for k, v in top)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", type=Path, default=Path("runs/recipe/data/fs_laf"))
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dataset = FishyscapesLostAndFound(args.set)
    results = {arm: run(path, dataset) for arm, path in ARMS.items()}
    print(f"# FS L&F ({args.set}, {len(dataset)} images): where the flat-label model loses AuPRC\n")
    print("| arm | pooled AuPRC | precision at recall 0.5 / 0.8 / 0.95 | per-image AuPRC median (min) | "
          "threshold at recall 0.5 | missed anomaly pixels at it, by predicted class | false road pixels at it, by "
          "predicted class | false pixels within 4 px of the anomaly | false pixels by image third (top/mid/bottom) |")
    print("|---|---|---|---|---|---|---|---|---|")
    per_image = {}
    for arm, frames in results.items():
        keep = [(a[lab != VOID], lab[lab != VOID]) for a, _, lab in frames]
        scores = np.concatenate([k[0] for k in keep])
        labels = np.concatenate([k[1] for k in keep]).astype(np.int64)
        ap_ = average_precision_score(labels, scores)
        prec, rec, thr = precision_recall_curve(labels, scores)
        at = {r: prec[rec >= r].max() for r in (0.5, 0.8, 0.95)}
        t50 = thr[np.searchsorted(-rec[:-1], -0.5, side="right") - 1]  # highest threshold with recall >= 0.5
        per_image[arm] = [average_precision_score(lab[lab != VOID] == 1, a[lab != VOID]) if (lab == 1).any()
                          else np.nan for a, _, lab in frames]
        missed, false, near, thirds = {}, {}, 0, np.zeros(3, np.int64)
        for a, pred, lab in frames:
            anomaly = lab == 1
            ring = ndimage.binary_dilation(anomaly, iterations=NEAR_PX) & ~anomaly
            fp = (lab == 0) & (a >= t50)
            for c in np.unique(pred[anomaly & (a < t50)]):
                missed[CITYSCAPES_CLASSES[c]] = missed.get(CITYSCAPES_CLASSES[c], 0) + int(
                    (pred[anomaly & (a < t50)] == c).sum())
            for c in np.unique(pred[fp]):
                false[CITYSCAPES_CLASSES[c]] = false.get(CITYSCAPES_CLASSES[c], 0) + int((pred[fp] == c).sum())
            near += int((fp & ring).sum())
            rows = np.nonzero(fp)[0]
            thirds += np.bincount(np.minimum(3 * rows // a.shape[0], 2), minlength=3)
        nfp = max(int(thirds.sum()), 1)
        pi = np.array(per_image[arm])
        print(f"| {arm} | {100 * ap_:.1f} | {at[0.5]:.2f} / {at[0.8]:.2f} / {at[0.95]:.2f} | "
              f"{100 * np.nanmedian(pi):.1f} ({100 * np.nanmin(pi):.1f}) | {t50:.4f} | {share(missed)} | "
              f"{share(false)} ({nfp} px) | {100 * near / nfp:.0f} % | "
              + " / ".join(f"{100 * x / nfp:.0f} %" for x in thirds) + " |")
    s, f = (np.array(per_image[a]) for a in ARMS)
    worse = np.argsort(f - s)[:8]
    print("\nImages where F5's AuPRC falls most below S's (per-image AuPRC, S -> F5; anomaly pixels; F5's mean "
          "predicted-class share on the anomaly):\n")
    names = dataset.names
    for i in worse:
        a, pred, lab = results["F5 (flat labels)"][i]
        cls = np.bincount(pred[lab == 1], minlength=len(CITYSCAPES_CLASSES))
        top = ", ".join(f"{CITYSCAPES_CLASSES[c]} {100 * cls[c] / cls.sum():.0f} %" for c in np.argsort(-cls)[:2])
        print(f"- `{names[i]}`: {100 * s[i]:.1f} -> {100 * f[i]:.1f}; {int((lab == 1).sum())} px; {top}")
    print(f"\nImages where F5 is worse by more than 10 points: {int(((f - s) < -0.10).sum())} of {len(s)}; better by more "
          f"than 10: {int(((f - s) > 0.10).sum())}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
