#!/usr/bin/env bash
# The flat void-ground study's measures (decision_rule.md next to this file), after run.sh has finished: the
# held-out table, each arm's frontier over the grid plus both arms' road-FPR ladders (and its best point at 12, 24,
# 48 and 96 false alerts per hour), and what the false alerts at each arm's 48-per-hour point lie on.
# From the repo root: SEED=7 bash THIS_FILE (a few minutes; writes into this directory, one file set per seed).
set -euo pipefail
py=.venv/bin/python; W=runs/vf; R=results/train_nano_logs/void_flat; S=${SEED:-7}
$py results/train_nano_logs/compare_stage2_runs.py $W/c_seed$S $W/f_seed$S > $R/compare_seed$S.md
ladders=$($py -c "
import json
print(' '.join(f\"{c['threshold']:.4f}\" for a in 'cf'
               for c in json.load(open(f'$W/{a}_seed$S/ladder/calibration.json'))['calibration']['candidates']))")
for a in c f; do
  $py results/train_nano_logs/void_weight/frontier.py $W/${a}_seed$S/caches --thresholds $ladders --out $R/frontier_${a}_seed$S.json \
    > /dev/null
  read -r t area < <($py -c "
import json; b = json.load(open('$R/frontier_${a}_seed$S.json'))['best']; print(b['threshold'], b['min_area_px'])")
  for drive in clear_drive_21 clear_drive_33; do
    $py results/train_nano_logs/false_alerts/false_alert_tracks.py $W/${a}_seed$S/caches/$drive $t $area \
      > $R/tracks_${a}_seed${S}_$drive.jsonl
  done
done
$py - $R $S <<'PY' > $R/frontier_caps_seed$S.md
import json, sys
sys.path.insert(0, "results/train_nano_logs/void_weight")
from frontier import best_within
R, S = sys.argv[1:3]
print("| cap (false alerts / h) | arm | point | false alerts (per hour) | confirmed of 40 | obstacle frames alerted |")
print("|---|---|---|---|---|---|")
for cap in (12, 24, 48, 96):
    for arm in "cf":
        rows = json.load(open(f"{R}/frontier_{arm}_seed{S}.json"))["rows"]
        b = best_within(rows, cap)
        if b is None:
            print(f"| {cap} | {arm.upper()} | none | - | - | - |")
        else:
            print(f"| {cap} | {arm.upper()} | {b['threshold']:.4f} / {b['min_area_px']} px | {b['false_alerts']} "
                  f"({b['per_hour']:.0f}) | {b['confirmed']} | {b['obstacle_frames_alerted']} of {b['obstacle_frames']} |")
PY
echo "compare.sh done"
