#!/usr/bin/env bash
# The soup-on-the-drives check (decision_rule.md next to this file). From the repo root (about 30 min on 2 cores):
#   setsid nohup bash THIS_FILE > runs/soup_drives.log 2>&1 &
set -uo pipefail
py=.venv/bin/python; dsa=.venv/bin/dsa; U=runs/soup45; D=runs/recipe/data; R=results/train_nano_logs/soup_drives
export OMP_NUM_THREADS=1
[ -f $U/model/manifest.json ] || $dsa export --checkpoint $U/final.pt --out $U/model --height 256 --width 512 \
  --graphs fused > /dev/null
cache() { $py -c "from dsa_core.eval.alert_curve import cache_drive
cache_drive('$1', '$U/model', '$U/caches/$(basename $1)', threads=1, progress=False)"; }  # a finished cache is kept
( cache runs/clear/clear_drive_21; cache runs/drives2/obst_drive_5; cache runs/drives2/obst_drive_9 ) &
( cache runs/clear/clear_drive_33
  [ -f $U/ladder/calibration.md ] || $dsa calibrate --model $U/model --val $D/cityscapes --pool $D/coco \
    --pool-min-size 128 --threads 1 --ego-mask-bottom 0.15 --dry-run --out $U/ladder --no-progress > /dev/null ) &
wait
ladders=$($py -c "
import json
print(' '.join(f\"{c['threshold']:.4f}\" for f in ('runs/s10k/s_seed5/calibration/calibration.json', '$U/ladder/calibration.json')
               for c in json.load(open(f))['calibration']['candidates']))")
$py results/train_nano_logs/void_weight/frontier.py runs/ship/caches --thresholds $ladders --out $R/frontier_s.json
$py results/train_nano_logs/void_weight/frontier.py $U/caches --thresholds $ladders --out $R/frontier_u.json
echo "soup_drives done $(date)"
