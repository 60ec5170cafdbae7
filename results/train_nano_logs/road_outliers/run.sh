#!/usr/bin/env bash
# The on-road outlier study (decision_rule.md next to this file): stage 2 of the shipped recipe with every pasted
# object standing on the road (--outlier-road-prob 1.0 instead of 0.5), seeds 5 and 4 side by side from the shipped
# recipe's stage 1 (runs/fr/stage1), then each seed's export, drive caches, road-FPR ladder, held-out sets and demo
# drive. The paired arms are the shipped recipe's runs of the same seeds (runs/fr/f_seed5 = models/dsa_nano, f_seed4).
# From the repo root: setsid nohup bash THIS_FILE > runs/ro.log 2>&1 &   (resumable: rerun after a kill; about 75 min
# on an idle 2-core machine). With arguments ARM:SEED (ARM r = on-road outliers, f = the shipped stage 2) it runs
# those two side by side instead: `bash THIS_FILE f:3 r:3` is the replicate (replicate_rule.md).
W=runs/fr; TAG=ro
source results/train_nano_logs/study_lib.sh
[ -f $W/stage1/final.pt ] || { say "missing $W/stage1/final.pt: run results/train_nano_logs/flat_recipe/run.sh"; exit 1; }
study_drives
arm() {  # arm r|f SEED: stage 2, export, caches, ladder, held-out sets, demo drive
  local O=$W/$1_seed$2 extra=(); [ $1 = r ] && extra=(--outlier-road-prob 1.0)
  stage stage2 $O final.pt 1 --init $W/stage1/final.pt --coco $W/pool_wide --coco-min-size 128 --val-every 200 \
    --val-max-images 50 --anomaly-from-coco --seed $2 --void-ground-labels flat "${extra[@]}" >> $O.log 2>&1
  [ -f $O/model/manifest.json ] || $dsa export --checkpoint $O/final.pt --out $O/model --height 256 --width 512 \
    --graphs fused > /dev/null
  cache_drives $O/model $O/caches runs/drives2/obst_drive_5 runs/drives2/obst_drive_9 runs/clear/clear_drive_21 \
    runs/clear/clear_drive_33
  [ -f $O/ladder/calibration.md ] || $dsa calibrate --model $O/model --val $D/cityscapes --pool $D/coco \
    --pool-min-size 128 --threads 1 --ego-mask-bottom 0.15 --dry-run --out $O/ladder --no-progress > /dev/null
  bash results/train_nano_logs/heldout_eval.sh $O $D
  [ -d $O/drive ] || $dsa bag-eval --bag $W/drive_bag --model $O/model --out $O/drive --ego-mask-bottom 0.15 \
    --no-progress > /dev/null
  say "$1 seed $2 finished"
}
runs=("$@"); [ $# -gt 0 ] || runs=(r:5 r:4)
for a in "${runs[@]}"; do arm ${a%:*} ${a#*:} & done
wait
say all done
