#!/usr/bin/env bash
# Everything the full-length studies of results/train_nano.md read from one stage-2 run dir, each step skipped
# when its product exists: the unseen-object validation table (when DATA_DIR/validation_objects exists: dsa
# synth coco --families validation; also recoloured towards the road, --low-contrast), the held-out-category pool-val table, export, calibration (with the recipe's pool),
# the Cityscapes-format, FS L&F and Road Anomaly evaluation, the five held-out kinds, and the drive.
# From the repo root: bash THIS_FILE RUN_DIR DATA_DIR HELD_OUT_POOL DRIVE_BAG; read with compare_stage2_runs.py.
set -uo pipefail
O=$1 D=$2 HELD=$3 BAG=$4
dsa=.venv/bin/dsa; py=.venv/bin/python
[ -f $O/unseen_object_val.md ] || [ ! -d $D/validation_objects ] || $py scripts/pool_val_sizes.py $D/cityscapes \
   $D/validation_objects $O/final.pt --scales 0.5 1 --out $O/unseen_object_val.md
[ -f $O/unseen_object_val_low_contrast.md ] || [ ! -d $D/validation_objects ] || $py scripts/pool_val_sizes.py \
   $D/cityscapes $D/validation_objects $O/final.pt --scales 0.5 1 --low-contrast --out $O/unseen_object_val_low_contrast.md
[ -f $O/heldout_category_pool_val.md ] || $py scripts/pool_val_sizes.py $D/cityscapes $HELD $O/final.pt \
   --scales 1 --anywhere --out $O/heldout_category_pool_val.md
[ -f $O/model/manifest.json ] || $dsa export --checkpoint $O/final.pt --out $O/model --height 256 --width 512 --graphs fused
[ -d $O/calibration ] || $dsa calibrate --model $O/model --val $D/cityscapes --pool $D/coco --pool-min-size 128 \
   --threads 1 --ego-mask-bottom 0.15 --out $O/calibration --no-progress
bash results/train_nano_logs/heldout_eval.sh $O $D
[ -d $O/drive ] || $dsa bag-eval --bag $BAG --model $O/model --out $O/drive --ego-mask-bottom 0.15 --no-progress > /dev/null
