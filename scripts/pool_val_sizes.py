#!/usr/bin/env python3
"""Outlier-exposure fit by object size: per checkpoint, pooled AuPRC / FPR95 of the Eq. 2 score on the val frames
with one training-pool object pasted per frame at a fixed scale, standing on the road.

    python scripts/pool_val_sizes.py CITYSCAPES_ROOT COCO_ROOT CHECKPOINT [CHECKPOINT ...] \
        [--frames 50] [--scales 0.5 1 3] [--coco-min-size 128] [--anywhere] [--low-contrast] [--out FILE.md]

Why: training validation pastes the pool objects at their own size (median ~1.3 % of a 256x512 frame), so it
cannot tell whether a stage-2 variant learned to flag objects that fill a large part of the frame. The frames and
objects are the training validation's (same seed); only the size and the placement change. The pool was seen in
stage 2, so this measures fit, not generalisation, unless COCO_ROOT holds objects no training stage saw: the
model-selection set of ``dsa synth coco --families validation``, or pool categories a run never saw
(scripts/pool_category_split.py). ``--anywhere`` places the objects as training validation does (anywhere in the
frame) instead of on the road. ``--low-contrast`` recolours every object towards the pixels it covers, as stage 2's
``--outlier-low-contrast-prob`` does (the same objects at the same places): dark or road-coloured obstacles.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.append(str(REPO))  # last: the venv's dsa_perception (with its generated msg module) wins


def main() -> int:
    from dsa_core.checkpoint import model_from_checkpoint
    from dsa_core.train.validation import cityscapes_val_samples, evaluate_anomaly, mixed_anomaly_samples

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("cityscapes", type=Path)
    p.add_argument("coco", type=Path)
    p.add_argument("checkpoints", type=Path, nargs="+")
    p.add_argument("--frames", type=int, default=50)
    p.add_argument("--scales", type=float, nargs="+", default=[0.5, 1.0, 3.0])
    p.add_argument("--coco-min-size", type=int, default=128)
    p.add_argument("--anywhere", action="store_true", help="place objects anywhere (training validation) not on the road")
    p.add_argument("--low-contrast", action="store_true",
                   help="recolour every object towards what it covers (coco_mix.blend_into_background)")
    p.add_argument("--out", type=Path, help="also write the table here")
    args = p.parse_args()
    torch.set_num_threads(1)
    val = cityscapes_val_samples(str(args.cityscapes), "val", args.frames)
    sets = {s: mixed_anomaly_samples(val, str(args.coco), min_size=args.coco_min_size, scale=s,
                                      road_prob=0.0 if args.anywhere else 1.0,
                                      low_contrast_prob=1.0 if args.low_contrast else 0.0)
            for s in args.scales}
    where = ("anywhere" if args.anywhere else "on road") + (", low contrast" if args.low_contrast else "")
    lines = ["| checkpoint | " + " | ".join(f"{s:g}x {where}: AuPRC / FPR95" for s in args.scales) + " |",
             "|---|" + "---|" * len(args.scales)]
    for ckpt in args.checkpoints:
        model, _ = model_from_checkpoint(ckpt)
        model.eval()
        cells = []
        for s in args.scales:
            m = evaluate_anomaly(model, sets[s])
            cells.append(f"{100 * m['auprc']:.1f} / {100 * m['fpr95']:.1f}")
        lines.append(f"| {ckpt} | " + " | ".join(cells) + " |")
        print(lines[-1], flush=True)
    table = "\n".join(lines) + "\n"
    print(table)
    if args.out is not None:
        args.out.write_text(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
