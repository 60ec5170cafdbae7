#!/usr/bin/env bash
# The recipe's step 6 on one stage-2 run dir, for the studies of results/train_nano.md: the Cityscapes-format, FS L&F
# and Road Anomaly evaluation and the five held-out kinds, each skipped when its product exists.
# From the repo root: bash THIS_FILE RUN_DIR DATA_DIR (RUN_DIR/final.pt; writes RUN_DIR/eval, RUN_DIR/eval_kinds).
set -uo pipefail
O=$1 D=$2
dsa=.venv/bin/dsa
[ -d $O/eval ] || $dsa eval --checkpoint $O/final.pt --dataset cityscapes fs_laf road_anomaly \
   --root-for cityscapes=$D/cityscapes --root-for fs_laf=$D/fs_laf --root-for road_anomaly=$D/road_anomaly \
   --out $O/eval --no-progress > /dev/null
for k in road_coloured tiny thin_pole photo_like large_near; do
  [ -d $O/eval_kinds/$k ] || $dsa eval --checkpoint $O/final.pt --dataset fs_laf --root-for fs_laf=$D/kinds/$k \
    --out $O/eval_kinds/$k --no-progress > /dev/null; done
