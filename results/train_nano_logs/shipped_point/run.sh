#!/usr/bin/env bash
# The shipped-point study (plan.md next to this file): four fresh obstacle-free and two fresh obstacle drives, the
# shipped model's maps of them (one drive per core at a time), then measure.md.
# From the repo root: setsid nohup bash THIS_FILE > runs/shipped.log 2>&1 &   (about 40 min on 2 idle cores;
# a finished drive or cache is kept, so a killed run resumes)
W=runs/shipped; TAG=shipped; R=results/train_nano_logs/shipped_point
source results/train_nano_logs/study_lib.sh
set -e
mkdir -p $W
say drives
for s in 61 69 77 89; do [ -f $W/clear_drive_$s/metadata.yaml ] || $dsa synth bag --out $W/clear_drive_$s \
  --seed $s --frames 3000 --fps 5 --segment-frames 40 --obstacle-probability 0 --no-progress > /dev/null & done; wait
for s in 63 71; do [ -f $W/obst_drive_$s/metadata.yaml ] || $dsa synth bag --out $W/obst_drive_$s \
  --seed $s --frames 800 --fps 5 --segment-frames 40 --obstacle-probability 1.0 --no-progress > /dev/null & done; wait
say caches
cache_drives models/dsa_nano $W/caches $W/obst_drive_63 $W/clear_drive_61 $W/clear_drive_69 &
cache_drives models/dsa_nano $W/caches $W/obst_drive_71 $W/clear_drive_77 $W/clear_drive_89 &
wait
say measure
$py $R/measure.py > $R/measure.md
say done
