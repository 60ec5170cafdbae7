#!/usr/bin/env bash
# The void-ground study's measures (decision_rule.md next to this file), after run.sh has finished: the held-out
# table, each arm's frontier over the grid plus both arms' road-FPR ladders, and what the false alerts at each arm's
# best point lie on. From the repo root: bash THIS_FILE (a few minutes; writes into this directory).
set -euo pipefail
py=.venv/bin/python; W=runs/vg; R=results/train_nano_logs/void_ground
$py results/train_nano_logs/compare_stage2_runs.py $W/c_seed5 $W/g_seed5 > $R/compare.md
ladders=$($py -c "
import json
print(' '.join(f\"{c['threshold']:.4f}\" for a in 'cg'
               for c in json.load(open(f'$W/{a}_seed5/ladder/calibration.json'))['calibration']['candidates']))")
for a in c g; do
  $py results/train_nano_logs/void_weight/frontier.py $W/caches_$a --thresholds $ladders --out $R/frontier_$a.json \
    > /dev/null
  read -r t area < <($py -c "
import json; b = json.load(open('$R/frontier_$a.json'))['best']; print(b['threshold'], b['min_area_px'])")
  for drive in clear_drive_21 clear_drive_33; do
    $py results/train_nano_logs/false_alerts/false_alert_tracks.py $W/caches_$a/$drive $t $area \
      > $R/tracks_${a}_$drive.jsonl
  done
done
echo "compare.sh done"
