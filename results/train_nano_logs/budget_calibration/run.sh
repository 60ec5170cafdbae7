#!/usr/bin/env bash
# The budget-calibration study (decision_rule.md next to this file): a 30-minute calibration drive, then both models
# calibrated to 48 false alerts per hour on it (one per core), then compare.md from the cached held-out drives
# (../fresh_drives/run.sh and the shipped model's caches of the earlier drives must exist).
# From the repo root: setsid nohup bash THIS_FILE > runs/budget.log 2>&1 &   (about 50 min on an idle 2-core machine)
W=runs/budget; TAG=budget; R=results/train_nano_logs/budget_calibration
source results/train_nano_logs/study_lib.sh
set -e
mkdir -p $W
[ -f $W/val_drive_30min/metadata.yaml ] || { say "val drive"; $dsa synth bag --calibration-drive --frames 9000 \
  --out $W/val_drive_30min --no-progress > /dev/null; }
calibrate() {  # calibrate ARM SOURCE_MODEL_DIR
  [ -f $W/$1/calibration/calibration.json ] && { say "$1 calibrated"; return; }
  rm -rf $W/$1; mkdir -p $W/$1; cp -r $2 $W/$1/calibrated
  say "$1 calibrate"
  $dsa calibrate --model $W/$1/calibrated --val $D/cityscapes --pool $D/coco --pool-min-size 128 --threads 1 \
    --val-bag $W/val_drive_30min --ego-mask-bottom 0.15 --max-false-alerts-per-hour 48 --out $W/$1/calibration \
    --no-progress > $W/$1.log 2>&1
  cp $W/$1/calibration/calibration.md $R/calibration_$1.md
}
calibrate sb models/dsa_nano &
calibrate fb runs/fr/f_seed5/model &
wait
say compare
$py $R/compare.py > $R/compare.md
say done
