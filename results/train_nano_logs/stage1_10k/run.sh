#!/usr/bin/env bash
# "A 10000-step stage 1" (rule in decision_rule.md next to this file, written before any run): arm S = the recipe
# with a 10000-step stage 1, paired with arm W of the low-contrast study's replicate 1 (runs/lcu1: same data,
# pre-training, stage-1 seed; W's stage 2 is runs/lcu1/w_seed4). From the repo root, on an otherwise idle machine:
#   REPLICATE=1 setsid nohup bash THIS_FILE > runs/s10k.log 2>&1 &      (resumable; rerun after a kill)
# Replicate N uses stage-2 seed N + 3; replicate 2 also trains W's seed-5 stage 2 on runs/lcu1/stage1.
REPLICATE=${REPLICATE:-1}; SEED=$((REPLICATE + 3))
W=runs/s10k; TAG=s10k
source results/train_nano_logs/study_lib.sh
for need in pretrain/backbone.safetensors stage1/final.pt pool_wide/annotations/instances_train2017.json pool/held_out drive_bag; do
  [ -e runs/lcu1/$need ] || { say "missing runs/lcu1/$need: run low_contrast_unseen/run.sh (REPLICATE=1) first"; exit 1; }
done
mkdir -p $W
for l in pretrain pool_wide pool drive_bag; do [ -e $W/$l ] || ln -s ../lcu1/$l $W/$l; done
stage stage1 $W/stage1 final.pt 2 --backbone-weights $W/pretrain/backbone.safetensors --iterations 10000 \
  --val-every 1000 --val-max-images 50 --coco $D/coco --coco-min-size 128 --anomaly-from-coco > $W/stage1.log 2>&1
stage2_run s $W/pool_wide $SEED chain_s &
if [ "$REPLICATE" != 1 ]; then  # W's stage 2 of this seed on the shipped-length stage 1
  ( O=runs/lcu1/w_seed$SEED
    stage stage2 $O final.pt 1 --init runs/lcu1/stage1/final.pt --coco $W/pool_wide --coco-min-size 128 \
      --val-every 200 --val-max-images 50 --anomaly-from-coco --seed $SEED > runs/lcu1/w_seed$SEED.log 2>&1
    bash results/train_nano_logs/evaluate_stage2_run.sh $O $D runs/lcu1/pool/held_out runs/lcu1/drive_bag ) &
fi
wait
$py results/train_nano_logs/compare_stage2_runs.py runs/lcu1/w_seed$SEED $W/s_seed$SEED > $W/compare_seed$SEED.md
say all done
