#!/usr/bin/env bash
# The recipe's calibration (scripts/train_demo_model.sh step 5: val frames, training pool, the 10-minute val drive)
# on both arms of one seed of the flat void-ground study (into ARM/calibration_drive: compare_stage2_runs.py reads
# ARM/calibration as an older report), then the calibrated points replayed on the held-out drives.
# From the repo root after run.sh: SEED=7 bash THIS_FILE (about 20 min on 2 cores; reported, not part of the rule).
set -uo pipefail
W=runs/vf; SEED=${SEED:-7}; TAG=vf-cal$SEED
source results/train_nano_logs/study_lib.sh
[ -f $D/val_drive/metadata.yaml ] || $dsa synth bag --calibration-drive --out $D/val_drive --no-progress > /dev/null
for a in c f; do
  O=$W/${a}_seed$SEED
  ( [ -f $O/calibration_drive/calibration.json ] || { rm -rf $O/calibrated; cp -r $O/model $O/calibrated
    $dsa calibrate --model $O/calibrated --val $D/cityscapes --pool $D/coco --pool-min-size 128 --threads 1 \
      --val-bag $D/val_drive --ego-mask-bottom 0.15 --out $O/calibration_drive --no-progress > /dev/null; } ) &
done
wait
$py - $W $SEED <<'PY' > results/train_nano_logs/void_flat/calibrated_seed$SEED.md
import sys
from pathlib import Path
sys.path.insert(0, "results/train_nano_logs/void_weight")
from frontier import calibrated_point
W, S = sys.argv[1:3]
print("| arm | calibrated point | held-out clear drives: false alerts (per hour) | test-family obstacles confirmed | obstacle frames alerted |")
print("|---|---|---|---|---|")
for arm in "cf":
    point, r = calibrated_point(Path(W) / f"{arm}_seed{S}" / "calibrated", Path(W) / f"{arm}_seed{S}" / "caches")
    print(f"| {arm.upper()} | {point.threshold:.4f} / {point.min_area_px} px | {r['false_alerts']} "
          f"({r['per_hour']:.0f}) | {r['confirmed']} of {r['obstacles']} | "
          f"{r['obstacle_frames_alerted']} of {r['obstacle_frames']} |")
PY
say done
