#!/usr/bin/env bash
# The several-outliers study (decision_rule.md next to this file): the shipped recipe's stage 2 with 1-3 pasted
# objects per outlier frame (--outlier-max-objects 3), seeds 5 and 4 side by side from the recipe's stage 1
# (runs/fr/stage1), then each seed's export and held-out sets; with DRIVES=1 also the drive caches, road-FPR ladder
# and demo drive of the drive check. The paired arms are the shipped recipe's runs (runs/fr/r_seed5, runs/fr/r_seed4).
# From the repo root: setsid nohup bash THIS_FILE > runs/mo.log 2>&1 &   (resumable; about 35 min on an idle 2-core
# machine without DRIVES, 75 min with).
W=runs/fr; TAG=mo
source results/train_nano_logs/study_lib.sh
[ -f $W/stage1/final.pt ] || { say "missing $W/stage1/final.pt: run results/train_nano_logs/flat_recipe/run.sh"; exit 1; }
arm() {  # arm SEED
  local O=$W/m_seed$1
  stage stage2 $O final.pt 1 --init $W/stage1/final.pt --coco $W/pool_wide --coco-min-size 128 --val-every 200 \
    --val-max-images 50 --anomaly-from-coco --seed $1 --void-ground-labels flat --outlier-road-prob 1.0 \
    --outlier-max-objects 3 >> $O.log 2>&1
  [ -f $O/model/manifest.json ] || $dsa export --checkpoint $O/final.pt --out $O/model --height 256 --width 512 \
    --graphs fused > /dev/null
  bash results/train_nano_logs/heldout_eval.sh $O $D
  if [ -n "${DRIVES:-}" ]; then
    study_drives
    cache_drives $O/model $O/caches runs/drives2/obst_drive_5 runs/drives2/obst_drive_9 runs/clear/clear_drive_21 \
      runs/clear/clear_drive_33
    [ -f $O/ladder/calibration.md ] || $dsa calibrate --model $O/model --val $D/cityscapes --pool $D/coco \
      --pool-min-size 128 --threads 1 --ego-mask-bottom 0.15 --dry-run --out $O/ladder --no-progress > /dev/null
    [ -d $O/drive ] || $dsa bag-eval --bag $W/drive_bag --model $O/model --out $O/drive --ego-mask-bottom 0.15 \
      --no-progress > /dev/null
  fi
  say "seed $1 finished"
}
for s in 5 4; do arm $s & done
wait
say all done
