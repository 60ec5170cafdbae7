#!/usr/bin/env bash
# Where the stage-1 lever saturates (decision_rule.md next to this file): the recipe's 10000-step stage 1
# (runs/fr/stage1) continued for the last 4000 steps of a 14000-step linear schedule (2 threads), then the shipped
# recipe's stage 2 with seeds 5 and 4 side by side (study_lib.sh's recipe_stage2_arm), each seed's held-out sets and
# the demo drive's pixel ranking. The paired arms are the shipped recipe's runs (runs/fr/r_seed5, r_seed4).
# From the repo root: setsid nohup bash THIS_FILE > runs/s14.log 2>&1 &   (resumable; about 60 min on an idle
# 2-core machine).
W=runs/s14; TAG=s14
source results/train_nano_logs/study_lib.sh
[ -f runs/fr/stage1/final.pt ] || { say "missing runs/fr/stage1/final.pt: run results/train_nano_logs/flat_recipe/run.sh"; exit 1; }
mkdir -p $W
for l in pool_wide drive_bag; do [ -e $W/$l ] || ln -s ../fr/$l $W/$l; done
# A linear (poly power 1) schedule from lr 5e-4 over 14000 steps is at 5e-4 * 4000 / 14000 at step 10000 and falls
# linearly to 0: the same lr over the last 4000 steps as this run, which starts from the 10000-step model with fresh
# AdamW moments (50 warm-up steps) and a new crop stream (seed 1; the first 10000 steps drew seed 0's).
stage stage1 $W/stage1 final.pt 2 --init runs/fr/stage1/final.pt --iterations 4000 --lr 1.4285714e-4 \
  --warmup-iters 50 --val-every 1000 --val-max-images 50 --coco $D/coco --coco-min-size 128 --anomaly-from-coco \
  --seed 1 >> $W/stage1.log 2>&1
arm() {  # arm SEED
  local O=$W/x_seed$1
  recipe_stage2_arm $O $1
  [ -d $O/drive ] || $dsa bag-eval --bag $W/drive_bag --model $O/model --out $O/drive --ego-mask-bottom 0.15 \
    --no-progress > /dev/null
  say "seed $1 finished"
}
for s in 5 4; do arm $s & done
wait
say all done
