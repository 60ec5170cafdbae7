#!/usr/bin/env bash
# The full-length run of "Pre-training on objects disjoint from the pool" (results/train_nano.md), as run on 2026-12-02.
# From the repo root: setsid nohup bash THIS_FILE > runs/ptd/run.log 2>&1 &   (resumable; rerun after a kill)
# Then: python results/train_nano_logs/compare_stage2_runs.py runs/ptd/s2_seed0 runs/ptd/s2_seed1
# Resumable: each step skipped when its product exists; training resumes from last.pt.
set -uo pipefail
cd "$(git rev-parse --show-toplevel)"
dsa=.venv/bin/dsa; py=.venv/bin/python
W=runs/ptd; D=runs/recipe/data
export OMP_NUM_THREADS=1
say() { echo "[ptd $(date +%H:%M:%S)] $*"; }
mkdir -p $W $D
# data (same seeds and sizes as scripts/train_demo_model.sh)
[ -f $D/.cityscapes_done ] || { say data; 
  ( $dsa synth cityscapes --out $D/cityscapes --train 3000 --val 100 --height 256 --width 512 --seed 0 --no-progress && touch $D/.cityscapes_done ) &
  ( $dsa synth coco --out $D/coco --images 600 --height 160 --width 224 --seed 0 --no-progress && touch $D/.coco_done
    for b in fs_laf road_anomaly; do $dsa synth $b --out $D/$b --count 40 --height 256 --width 512 --seed 0 --no-progress; done
    for k in road_coloured tiny thin_pole photo_like large_near; do
      $dsa synth fs_laf --kind $k --out $D/kinds/$k --count 40 --height 256 --width 512 --seed 0 --no-progress; done
    $py -c "
from dsa_core.bags.drive import DriveSpec; from dsa_core.bags.writer import write_drive_bag
write_drive_bag('$W/drive_bag', DriveSpec(frames=120, height=256, width=512, fps=5.0, seed=0, segment_frames=40, obstacle_probability=1.0), storage='sqlite3', version=8, progress=False)"
    touch $D/.evalsets_done ) &
  wait; }
[ -f $D/.pretrain_objects_done ] || { $dsa synth coco --families pretrain --out $D/pretrain_objects --images 600 \
  --height 160 --width 224 --seed 0 --no-progress && touch $D/.pretrain_objects_done; }
[ -f $W/pool/held_out/annotations/instances_train2017.json ] || $py scripts/pool_category_split.py $D/coco $W/pool --held-out handbag kite "teddy bear"
stage() {  # stage NAME OUT PRODUCT THREADS ARGS...
  local name=$1 out=$2 product=$3 th=$4; shift 4
  [ -f "$out/$product" ] && { say "$name done ($out)"; return; }
  local resume=(); [ -f "$out/last.pt" ] && resume=(--resume)
  say "$name -> $out"
  $dsa train --preset dsa_nano --stage $name --data $D/cityscapes --out $out --threads $th --no-progress "${resume[@]}" "$@"
}
stage pretrain $W/pretrain backbone.safetensors 2 --val-every 1000 --val-max-images 50 --coco $D/pretrain_objects \
  --coco-min-size 128 --pretrain-outlier-prob 0.5 --outlier-scale 0.35 1.6 --outlier-road-prob 0.5 > $W/pretrain.log 2>&1
stage stage1 $W/stage1 final.pt 2 --backbone-weights $W/pretrain/backbone.safetensors --val-every 1000 \
  --val-max-images 50 --coco $D/coco --coco-min-size 128 --anomaly-from-coco > $W/stage1.log 2>&1
for s in 0 1; do
  ( stage stage2 $W/s2_seed$s final.pt 1 --init $W/stage1/final.pt --coco $D/coco --coco-min-size 128 \
      --val-every 200 --val-max-images 50 --anomaly-from-coco --seed $s > $W/s2_seed$s.log 2>&1
    bash results/train_nano_logs/evaluate_stage2_run.sh $W/s2_seed$s $D $W/pool/held_out $W/drive_bag
    say "seed $s finished" ) > $W/chain_seed$s.log 2>&1 &
done
wait
say all done
