#!/usr/bin/env bash
# The fresh-drive study (decision_rule.md next to this file): generates the fresh clear and obstacle drives, caches
# the shipped model's and the flat recipe's maps of them (one model per core), then the maps of the earlier and
# road-debris drives the comparisons also need, then writes compare.md.
# From the repo root: setsid nohup bash THIS_FILE > runs/fresh.log 2>&1 &   (about 75 min on an idle 2-core machine;
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
# the earlier held-out and road-debris drives: the shipped model's maps (its alert-curve caches were not kept), and
# the flat model's debris maps beside its own caches of the earlier drives (compare.py, pooled_frontier.py)
E=runs/drives2
cache_drives models/dsa_nano $W/s_caches $E/obst_drive_5 runs/clear/clear_drive_21 $E/debris_drive_5 &
cache_drives models/dsa_nano $W/s_caches $E/obst_drive_9 runs/clear/clear_drive_33 $E/debris_drive_9 &
wait
cache_drives runs/fr/f_seed5/calibrated runs/fr/f_seed5/caches $E/debris_drive_5 $E/debris_drive_9
say compare
$py $R/compare.py > $R/compare.md
say done
