#!/usr/bin/env bash
# The flat void-ground study (decision_rule.md next to this file): two 1500-step stage-2 continuations of the
# shipped model side by side on one thread each, then each arm's drive caches, held-out sets and road-FPR ladder.
# From the repo root: SEED=7 setsid nohup bash THIS_FILE > runs/vf_seed7.log 2>&1 &   (seeds 7 and 8 ran;
# resumable: rerun after a kill)
W=runs/vf; SEED=${SEED:-7}; TAG=vf-seed$SEED
source results/train_nano_logs/study_lib.sh
study_data; study_wide_pool; study_drives
arm() {  # arm NAME VOID_GROUND_LABELS
  local a=$1 O=$W/$1_seed$SEED
  stage stage2 $O final.pt 1 --init models/dsa_nano/model.pt --iterations 1500 --coco $W/pool_wide \
    --coco-min-size 128 --val-every 500 --val-max-images 50 --anomaly-from-coco --seed $SEED \
    --void-ground-labels $2 > $O.log 2>&1
  [ -f $O/model/manifest.json ] || $dsa export --checkpoint $O/final.pt --out $O/model --height 256 --width 512 \
    --graphs fused > /dev/null
  cache_drives $O/model $O/caches runs/clear/clear_drive_21 runs/clear/clear_drive_33 runs/drives2/obst_drive_5 \
    runs/drives2/obst_drive_9
  bash results/train_nano_logs/heldout_eval.sh $O $D
  [ -f $O/ladder/calibration.md ] || $dsa calibrate --model $O/model --val $D/cityscapes --pool $D/coco \
    --pool-min-size 128 --threads 1 --ego-mask-bottom 0.15 --dry-run --out $O/ladder --no-progress > /dev/null
  say "arm $a done"
}
arm c void &
arm f flat &
wait
say all done
