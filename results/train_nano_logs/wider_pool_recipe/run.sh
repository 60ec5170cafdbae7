#!/usr/bin/env bash
# "The wider stage-2 pool on the shipped recipe" (results/train_nano.md), as run on 2026-12-03: the shipped recipe
# from nothing with the 12-family pool in stage 2 only. From the repo root:
#   setsid nohup bash THIS_FILE > runs/wpr/run.log 2>&1 &      (resumable; rerun after a kill)
# Then: python results/train_nano_logs/compare_stage2_runs.py runs/wpr/s2w_seed0 runs/wpr/s2w_seed1
W=runs/wpr; TAG=wpr
source results/train_nano_logs/study_lib.sh
study_data
study_wide_pool
stage pretrain $W/pretrain backbone.safetensors 2 --val-every 1000 --val-max-images 50 > $W/pretrain.log 2>&1
stage stage1 $W/stage1 final.pt 2 --backbone-weights $W/pretrain/backbone.safetensors --val-every 1000 \
  --val-max-images 50 --coco $D/coco --coco-min-size 128 --anomaly-from-coco > $W/stage1.log 2>&1
stage2_seeds s2w $W/pool_wide chain_w
say all done
