#!/usr/bin/env python3
"""Where a checkpoint puts the road's class evidence: per checkpoint, over in-distribution val frames, the mean
L_road = Σ_q softmax(c_q)[road]·σ(m_q) on road pixels (DSA Eq. 2's evidence), the no-object probability of the query
that carries most of it, and the median Eq. 2 score on the road.

    python scripts/road_evidence.py CITYSCAPES_ROOT CHECKPOINT [CHECKPOINT ...] [--frames 12]

Why: outlier exposure can lower every in-distribution pixel's evidence without moving the argmax (mIoU does not
see it), which compresses the Eq. 2 score range (results/train_nano.md).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parent.parent
sys.path.append(str(REPO))  # last: the venv's dsa_perception (with its generated msg module) wins


def main() -> int:
    from dsa_core.checkpoint import model_from_checkpoint
    from dsa_core.data.cityscapes import CityscapesDataset
    from dsa_core.labels import ROAD
    from dsa_core.losses.contrastive import semantic_evidence

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("cityscapes", type=Path)
    p.add_argument("checkpoints", type=Path, nargs="+")
    p.add_argument("--frames", type=int, default=12)
    args = p.parse_args()
    torch.set_num_threads(1)
    val = CityscapesDataset(args.cityscapes, "val")
    frames = [val.load(i)[:2] for i in range(min(args.frames, len(val)))]
    print("| checkpoint | mean L_road on road | p(no object) of the road's query | median Eq. 2 score on road |")
    print("|---|---|---|---|")
    for ck in args.checkpoints:
        model, _ = model_from_checkpoint(ck)
        model.eval()
        evidence, no_object, score = [], [], []
        for image, label in frames:
            x = torch.from_numpy(np.array(image, copy=True)).permute(2, 0, 1)[None].float()
            with torch.no_grad():
                out = model(x)
            L = semantic_evidence(out["pred_logits"], out["pred_masks"])[0]  # [K, h, w]
            probs, masks = out["pred_logits"][0].softmax(-1), out["pred_masks"][0].sigmoid()
            road = torch.from_numpy(np.asarray(label) == ROAD)[None, None].float()
            road = F.interpolate(road, size=masks.shape[-2:], mode="nearest")[0, 0].bool()
            if not road.any():
                continue
            evidence.append(L[ROAD][road].mean().item())
            carrier = (probs[:, ROAD][:, None] * masks[:, road]).mean(1).argmax()
            no_object.append(probs[carrier, -1].item())
            score.append((1 - L.max(0).values[road]).median().item())
        print(f"| {ck} | {np.mean(evidence):.3f} | {np.mean(no_object):.3f} | {np.mean(score):.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
