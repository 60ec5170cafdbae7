#!/usr/bin/env bash
# "A wider outlier-exposure pool in stage 2" (results/train_nano.md), as run on 2026-12-03. Needs runs/ptd from
# ../pretrain_disjoint_objects/run.sh. From the repo root: setsid nohup bash THIS_FILE > runs/ptd/wide.log 2>&1 &
# Then: python results/train_nano_logs/compare_stage2_runs.py runs/ptd/s2w_seed0 runs/ptd/s2w_seed1
W=runs/ptd; TAG=wide
source results/train_nano_logs/study_lib.sh
[ -f $W/pool_wide/annotations/instances_train2017.json ] || $py scripts/merge_coco_pools.py $W/pool_wide $D/coco $D/pretrain_objects
stage2_seeds s2w $W/pool_wide chain_w
say all done
