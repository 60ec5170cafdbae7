#!/usr/bin/env bash
# The fresh-drive study (decision_rule.md next to this file): generates the fresh clear and obstacle drives, caches the
# shipped model's and the flat recipe's maps of them (one model per core), then writes compare.md.
# From the repo root: setsid nohup bash THIS_FILE > runs/fresh.log 2>&1 &   (about 45 min on an idle 2-core machine;
# a finished drive or cache is kept, so a killed run resumes)
W=runs/fresh; TAG=fresh; R=results/train_nano_logs/fresh_drives
source results/train_nano_logs/study_lib.sh
set -e
mkdir -p $W
say drives
for s in 45 57; do [ -f $W/clear_drive_$s/metadata.yaml ] || $dsa synth bag --out $W/clear_drive_$s \
  --seed $s --frames 3000 --fps 5 --segment-frames 40 --obstacle-probability 0 --no-progress > /dev/null & done; wait
for s in 13 17; do [ -f $W/obst_drive_$s/metadata.yaml ] || $dsa synth bag --out $W/obst_drive_$s \
  --seed $s --frames 800 --fps 5 --segment-frames 40 --obstacle-probability 1.0 --no-progress > /dev/null & done; wait
drives="$W/obst_drive_13 $W/obst_drive_17 $W/clear_drive_45 $W/clear_drive_57"
say caches
cache_drives models/dsa_nano $W/s_caches $drives &
cache_drives runs/fr/f_seed5/calibrated $W/f5_caches $drives &
wait
say compare
$py $R/compare.py > $R/compare.md
say done
