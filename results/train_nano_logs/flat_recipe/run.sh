#!/usr/bin/env bash
# The full recipe with void ground labelled as a flat class (decision_rule.md next to this file): pre-training and
# stage 1 from nothing with the recipe's arguments (scripts/train_demo_model.sh) plus --void-ground-labels flat, then
# stage-2 seeds 5 (the recipe's) and 4 side by side on one thread each, then each seed's export, held-out sets and
# drive caches; seed 5 also gets the recipe's calibration (val frames, training pool, 10-minute val drive).
# From the repo root: setsid nohup bash THIS_FILE > runs/fr.log 2>&1 &   (resumable: rerun after a kill; about
# 2 h 25 min on an idle 2-core machine)
W=runs/fr; TAG=fr
source results/train_nano_logs/study_lib.sh
study_data; study_wide_pool; study_drives
[ -f $D/val_drive/metadata.yaml ] || $dsa synth bag --calibration-drive --out $D/val_drive --no-progress > /dev/null
flat=(--void-ground-labels flat)
stage pretrain $W/pretrain backbone.safetensors 2 --val-every 1000 --val-max-images 50 "${flat[@]}" \
  >> $W/pretrain.log 2>&1
stage stage1 $W/stage1 final.pt 2 --backbone-weights $W/pretrain/backbone.safetensors --val-every 1000 \
  --val-max-images 50 --coco $D/coco --coco-min-size 128 --anomaly-from-coco --seed 0 "${flat[@]}" >> $W/stage1.log 2>&1
export_seed() {  # export_seed SEED: stage 2 of one seed, then its model dir
  local O=$W/f_seed$1
  stage stage2 $O final.pt 1 --init $W/stage1/final.pt --coco $W/pool_wide --coco-min-size 128 --val-every 200 \
    --val-max-images 50 --anomaly-from-coco --seed $1 "${flat[@]}" >> $O.log 2>&1
  [ -f $O/model/manifest.json ] || $dsa export --checkpoint $O/final.pt --out $O/model --height 256 --width 512 \
    --graphs fused > /dev/null
}
export_seed 5 &
export_seed 4 &
wait
S5=$W/f_seed5 S4=$W/f_seed4
# two chains of about equal length on the two cores
( [ -f $S5/calibration_drive/calibration.json ] || { rm -rf $S5/calibrated; cp -r $S5/model $S5/calibrated
    $dsa calibrate --model $S5/calibrated --val $D/cityscapes --pool $D/coco --pool-min-size 128 --threads 1 \
      --val-bag $D/val_drive --ego-mask-bottom 0.15 --out $S5/calibration_drive --no-progress > /dev/null; }
  cache_drives $S5/model $S5/caches runs/clear/clear_drive_21 runs/drives2/obst_drive_5 runs/drives2/obst_drive_9
  cache_drives $S4/model $S4/caches runs/drives2/obst_drive_5
  bash results/train_nano_logs/heldout_eval.sh $S5 $D ) &
( cache_drives $S5/model $S5/caches runs/clear/clear_drive_33
  cache_drives $S4/model $S4/caches runs/clear/clear_drive_21 runs/clear/clear_drive_33 runs/drives2/obst_drive_9
  [ -f $S4/ladder/calibration.md ] || $dsa calibrate --model $S4/model --val $D/cityscapes --pool $D/coco \
    --pool-min-size 128 --threads 1 --ego-mask-bottom 0.15 --dry-run --out $S4/ladder --no-progress > /dev/null
  bash results/train_nano_logs/heldout_eval.sh $S4 $D ) &
wait
say all done
