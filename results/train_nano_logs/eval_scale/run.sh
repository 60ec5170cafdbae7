#!/usr/bin/env bash
# Evaluation scale: the shipped dsa_nano on FS L&F-, Road Anomaly- and Cityscapes-format sets rendered at other
# resolutions than the 256x512 it was trained on, each evaluated at native resolution and at the model's own scale
# (short side 256 px, `dsa eval`'s default). From the repo root: bash THIS_FILE (about 15 min on 2 idle cores), then
# python results/train_nano_logs/eval_scale/table.py > results/train_nano_logs/eval_scale/table.md
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
dsa=.venv/bin/dsa; W=runs/eval_scale; export OMP_NUM_THREADS=1
mkdir -p $W/data
synth() {  # synth KIND HxW: 20 frames, seed 11
  local out=$W/data/$1_$2 h=${2%x*} w=${2#*x}
  [ -d $out ] && return
  if [ $1 = cityscapes ]; then $dsa synth cityscapes --out $out --train 1 --val 20 --height $h --width $w --seed 11 --no-progress
  else $dsa synth $1 --out $out --count 20 --height $h --width $w --seed 11 --no-progress; fi > /dev/null 2>&1
}
evaluate() {  # evaluate KIND HxW MODE
  local out=$W/$1_$2_$3
  [ -f $out/metrics.json ] || $dsa eval --checkpoint models/dsa_nano/model.pt --dataset $1 --root-for $1=$W/data/$1_$2 \
    --out $out --eval-size $3 --threads 1 --overlays 1 --no-progress > /dev/null 2>&1
}
for s in fs_laf:256x512 fs_laf:512x1024 fs_laf:1024x2048 road_anomaly:256x455 road_anomaly:720x1280 \
         cityscapes:256x512 cityscapes:512x1024; do synth ${s%:*} ${s#*:}; done
for s in fs_laf:256x512 fs_laf:512x1024 fs_laf:1024x2048 road_anomaly:256x455 road_anomaly:720x1280 \
         cityscapes:256x512 cityscapes:512x1024; do
  evaluate ${s%:*} ${s#*:} native & evaluate ${s%:*} ${s#*:} model; wait
done
