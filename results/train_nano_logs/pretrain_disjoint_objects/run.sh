#!/usr/bin/env bash
# The full-length run of "Pre-training on objects disjoint from the pool" (results/train_nano.md), as run on 2026-12-02.
# From the repo root: setsid nohup bash THIS_FILE > runs/ptd/run.log 2>&1 &   (resumable; rerun after a kill)
# Then: python results/train_nano_logs/compare_stage2_runs.py runs/ptd/s2_seed0 runs/ptd/s2_seed1
# Resumable (study_lib.sh): each step skipped when its product exists; training resumes from last.pt.
W=runs/ptd; TAG=ptd
source results/train_nano_logs/study_lib.sh
study_data
[ -f $D/.pretrain_objects_done ] || { $dsa synth coco --families pretrain --out $D/pretrain_objects --images 600 \
  --height 160 --width 224 --seed 0 --no-progress && touch $D/.pretrain_objects_done; }
stage pretrain $W/pretrain backbone.safetensors 2 --val-every 1000 --val-max-images 50 --coco $D/pretrain_objects \
  --coco-min-size 128 --pretrain-outlier-prob 0.5 --outlier-scale 0.35 1.6 --outlier-road-prob 0.5 > $W/pretrain.log 2>&1
stage stage1 $W/stage1 final.pt 2 --backbone-weights $W/pretrain/backbone.safetensors --val-every 1000 \
  --val-max-images 50 --coco $D/coco --coco-min-size 128 --anomaly-from-coco > $W/stage1.log 2>&1
stage2_seeds s2 $D/coco chain
say all done
