#!/usr/bin/env bash
# The measures of the flat-label recipe study (decision_rule.md next to this file), after run.sh has finished: each
# seed's frontier (the fixed grid plus its own road-FPR ladder), its best point at 12, 24, 48 and 96 false alerts per
# hour beside the shipped model's, what the false alerts at the 48-per-hour point lie on, the held-out table, and
# seed 5's calibrated point replayed on the held-out drives.
# From the repo root: bash THIS_FILE (a few minutes; writes into this directory).
set -euo pipefail
py=.venv/bin/python; W=runs/fr; R=results/train_nano_logs/flat_recipe
ladder() { $py -c "
import json
print(' '.join(f\"{c['threshold']:.4f}\" for c in json.load(open('$1'))['calibration']['candidates']))"; }
for s in 5 4; do
  O=$W/f_seed$s; cal=$O/ladder/calibration.json; [ $s = 5 ] && cal=$O/calibration_drive/calibration.json
  $py results/train_nano_logs/void_weight/frontier.py $O/caches --thresholds $(ladder $cal) \
    --out $R/frontier_f_seed$s.json > /dev/null
  read -r t area < <($py -c "
import json; b = json.load(open('$R/frontier_f_seed$s.json'))['best']; print(b['threshold'], b['min_area_px'])")
  for drive in clear_drive_21 clear_drive_33; do
    $py results/train_nano_logs/false_alerts/false_alert_tracks.py $O/caches/$drive $t $area \
      > $R/tracks_f_seed${s}_$drive.jsonl
  done
done
$py results/train_nano_logs/compare_stage2_runs.py $W/f_seed5 $W/f_seed4 > $R/heldout.md
$py - $R $W <<'PY' > $R/frontier_caps.md
import json, sys
from pathlib import Path
sys.path.insert(0, "results/train_nano_logs/void_weight")
from frontier import best_within, calibrated_point
R, W = sys.argv[1:3]
arms = {"S (shipped)": "results/train_nano_logs/soup_drives/frontier_s.json",
        "F5": f"{R}/frontier_f_seed5.json", "F4": f"{R}/frontier_f_seed4.json"}
print("| cap (false alerts / h) | arm | point | false alerts (per hour) | confirmed of 40 | obstacle frames alerted |")
print("|---|---|---|---|---|---|")
for cap in (12, 24, 48, 96):
    for arm, path in arms.items():
        b = best_within(json.load(open(path))["rows"], cap)
        if b is None:
            print(f"| {cap} | {arm} | none | - | - | - |")
        else:
            print(f"| {cap} | {arm} | {b['threshold']:.4f} / {b['min_area_px']} px | {b['false_alerts']} "
                  f"({b['per_hour']:.0f}) | {b['confirmed']} | {b['obstacle_frames_alerted']} of {b['obstacle_frames']} |")
point, r = calibrated_point(Path(W) / "f_seed5" / "calibrated", Path(W) / "f_seed5" / "caches")  # the product, on the held-out drives
print()
print("F5 at its calibrated point (the recipe's calibration): "
      f"{point.threshold:.4f} / {point.min_area_px} px, {r['false_alerts']} false alerts on the held-out "
      f"clear drives ({r['per_hour']:.0f} per hour), {r['confirmed']} of "
      f"{r['obstacles']} test-family obstacles confirmed, {r['obstacle_frames_alerted']} of "
      f"{r['obstacle_frames']} obstacle frames alerted (shipped: 0.9880 / 96 px, 96 per hour, 37 of 40).")
PY
echo "compare.sh done"
