#!/usr/bin/env bash
# "A wider outlier-exposure pool in stage 2" (results/train_nano.md), as run on 2026-12-03. Needs runs/ptd from
# ../pretrain_disjoint_objects/run.sh. From the repo root: setsid nohup bash THIS_FILE > runs/ptd/wide.log 2>&1 &
# Then: python results/train_nano_logs/pretrain_disjoint_objects/compare.py runs/ptd/s2w_seed0 runs/ptd/s2w_seed1
set -uo pipefail
cd "$(git rev-parse --show-toplevel)"
dsa=.venv/bin/dsa; py=.venv/bin/python
W=runs/ptd; D=runs/recipe/data
export OMP_NUM_THREADS=1
say() { echo "[wide $(date +%H:%M:%S)] $*"; }
[ -f $W/pool_wide/annotations/instances_train2017.json ] || $py scripts/merge_coco_pools.py $W/pool_wide $D/coco $D/pretrain_objects
for s in 0 1; do
  ( O=$W/s2w_seed$s
    if [ ! -f $O/final.pt ]; then resume=(); [ -f $O/last.pt ] && resume=(--resume)
      $dsa train --preset dsa_nano --stage stage2 --data $D/cityscapes --out $O --threads 1 --no-progress "${resume[@]}" \
        --init $W/stage1/final.pt --coco $W/pool_wide --coco-min-size 128 --val-every 200 --val-max-images 50 \
        --anomaly-from-coco --seed $s > $W/s2w_seed$s.log 2>&1; fi
    [ -f $O/heldout_category_pool_val.md ] || $py scripts/pool_val_sizes.py $D/cityscapes $W/pool/held_out $O/final.pt \
       --scales 1 --anywhere --out $O/heldout_category_pool_val.md
    [ -f $O/model/manifest.json ] || $dsa export --checkpoint $O/final.pt --out $O/model --height 256 --width 512 --graphs fused
    [ -d $O/calibration ] || $dsa calibrate --model $O/model --val $D/cityscapes --pool $D/coco --pool-min-size 128 \
       --threads 1 --ego-mask-bottom 0.15 --out $O/calibration --no-progress
    [ -d $O/eval ] || $dsa eval --checkpoint $O/final.pt --dataset cityscapes fs_laf road_anomaly \
       --root-for cityscapes=$D/cityscapes --root-for fs_laf=$D/fs_laf --root-for road_anomaly=$D/road_anomaly \
       --out $O/eval --no-progress > /dev/null
    for k in road_coloured tiny thin_pole photo_like large_near; do
      [ -d $O/eval_kinds/$k ] || $dsa eval --checkpoint $O/final.pt --dataset fs_laf --root-for fs_laf=$D/kinds/$k \
        --out $O/eval_kinds/$k --no-progress > /dev/null; done
    [ -d $O/drive ] || $dsa bag-eval --bag $W/drive_bag --model $O/model --out $O/drive --ego-mask-bottom 0.15 --no-progress > /dev/null
    say "seed $s finished" ) > $W/chain_w_seed$s.log 2>&1 &
done
wait
say all done
