#!/usr/bin/env bash
# Evaluation of the void-weight study (decision_rule.md next to this file), from the repo root after both stage-2
# runs have finished: bash THIS_FILE. Two processes of one thread; each step is skipped when its product exists.
set -uo pipefail
dsa=.venv/bin/dsa; py=.venv/bin/python; D=runs/recipe/data; W=runs/void
export OMP_NUM_THREADS=1
cache() {  # cache BAG: the seed-5 V model's maps of one drive
  $py -c "from dsa_core.eval.alert_curve import cache_drive; cache_drive('$1', '$W/v_seed5/model', '$W/caches/$(basename $1)', threads=1, progress=False)"
}
[ -f $W/v_seed5/model/manifest.json ] || $dsa export --checkpoint $W/v_seed5/final.pt --out $W/v_seed5/model \
  --height 256 --width 512 --graphs fused
( cache runs/clear/clear_drive_21; cache runs/drives2/obst_drive_5; cache runs/drives2/obst_drive_9 ) &
( cache runs/clear/clear_drive_33; bash results/train_nano_logs/heldout_eval.sh $W/v_seed5 $D
  bash results/train_nano_logs/heldout_eval.sh $W/v_seed4 $D
  # the road-pixel FPR ladder of the V model on the val frames (no drive): its candidate thresholds
  [ -f $W/v_seed5/ladder/calibration.md ] || $dsa calibrate --model $W/v_seed5/model --val $D/cityscapes \
    --pool $D/coco --pool-min-size 128 --threads 1 --ego-mask-bottom 0.15 --dry-run --out $W/v_seed5/ladder \
    --no-progress > /dev/null ) &
wait
echo "evaluate.sh done $(date)"
