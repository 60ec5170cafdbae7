#!/usr/bin/env bash
# The void-ground study (decision_rule.md next to this file): two stage-1 continuations and their stage 2, side by
# side on one thread each, then the evaluation. From the repo root:
#   setsid nohup bash THIS_FILE > runs/vg.log 2>&1 &        (resumable; rerun after a kill)
W=runs/vg; TAG=vg
source results/train_nano_logs/study_lib.sh
mkdir -p $W
arm() {  # arm NAME VOID_GROUND
  local a=$1
  stage stage1 $W/${a}_stage1 final.pt 1 --init runs/s10k/stage1/final.pt --iterations 2000 --val-every 1000 \
    --val-max-images 50 --coco $D/coco --coco-min-size 128 --anomaly-from-coco --seed 0 --ubhl-void-ground $2 \
    > $W/${a}_stage1.log 2>&1
  stage stage2 $W/${a}_seed5 final.pt 1 --init $W/${a}_stage1/final.pt --coco runs/s10k/pool_wide --coco-min-size 128 \
    --val-every 200 --val-max-images 50 --anomaly-from-coco --seed 5 > $W/${a}_seed5.log 2>&1
  [ -f $W/${a}_seed5/model/manifest.json ] || $dsa export --checkpoint $W/${a}_seed5/final.pt \
    --out $W/${a}_seed5/model --height 256 --width 512 --graphs fused > /dev/null
  for bag in runs/clear/clear_drive_21 runs/clear/clear_drive_33 runs/drives2/obst_drive_5 runs/drives2/obst_drive_9; do
    $py -c "from dsa_core.eval.alert_curve import cache_drive
cache_drive('$bag', '$W/${a}_seed5/model', '$W/caches_$a/$(basename $bag)', threads=1, progress=False)"  # a finished cache is kept
  done
  bash results/train_nano_logs/heldout_eval.sh $W/${a}_seed5 $D
  [ -f $W/${a}_seed5/ladder/calibration.md ] || $dsa calibrate --model $W/${a}_seed5/model --val $D/cityscapes \
    --pool $D/coco --pool-min-size 128 --threads 1 --ego-mask-bottom 0.15 --dry-run --out $W/${a}_seed5/ladder \
    --no-progress > /dev/null
  say "arm $a done"
}
arm c ood &
arm g id &
wait
say all done
