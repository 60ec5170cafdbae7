#!/usr/bin/env bash
# "A wider outlier-exposure pool in stage 2" (results/train_nano.md), as run on 2026-12-03. Needs runs/ptd from
# ../pretrain_disjoint_objects/run.sh. From the repo root: setsid nohup bash THIS_FILE > runs/ptd/wide.log 2>&1 &
# Then: python results/train_nano_logs/compare_stage2_runs.py runs/ptd/s2w_seed0 runs/ptd/s2w_seed1
W=runs/ptd; TAG=wide
source results/train_nano_logs/study_lib.sh
[ -f $W/pool_wide/annotations/instances_train2017.json ] || $py scripts/merge_coco_pools.py $W/pool_wide $D/coco $D/pretrain_objects
for s in 0 1; do
  ( O=$W/s2w_seed$s
    stage stage2 $O final.pt 1 --init $W/stage1/final.pt --coco $W/pool_wide --coco-min-size 128 --val-every 200 \
      --val-max-images 50 --anomaly-from-coco --seed $s > $W/s2w_seed$s.log 2>&1
    bash results/train_nano_logs/evaluate_stage2_run.sh $O $D $W/pool/held_out $W/drive_bag
    say "seed $s finished" ) > $W/chain_w_seed$s.log 2>&1 &
done
wait
say all done
