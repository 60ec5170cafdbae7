#!/usr/bin/env bash
# Reproduce the shipped models/dsa_nano from nothing on a CPU (about 2 h 15 min on an idle 2-core machine; results/train_nano.md).
#
#   bash scripts/train_demo_model.sh [WORK_DIR] [MODEL_DIR]        # defaults: runs/recipe, models/dsa_nano
#   setsid nohup bash scripts/train_demo_model.sh > train.log 2>&1 &   # in the background
#
# Resumable: every step is skipped when its product exists, and a killed training stage continues from its
# last.pt. The iteration counts are the dsa_nano defaults of dsa_core/train/config.py; override them with
# PRETRAIN_ITERS / STAGE1_ITERS / STAGE2_ITERS (e.g. tiny values for a smoke test).
# The defaults are the shipped model's run: TRAIN_THREADS (default 2) sets the torch threads of pre-training and
# stage 1, STAGE2_THREADS (default 1) and STAGE2_SEED (default 5) stage 2's, STAGE1_SEED (default 0) stage 1's seed (a
# replicate that should sample stage 1 as well changes it). 2 threads are fastest on an idle 2-core machine (stage 1
# at 0.43 s/step there, results/train_nano.md); results round differently with other thread counts, and anything
# else running on the machine slows a 2-thread stage several-fold: give it the machine, or use TRAIN_THREADS=1.
# VAL_DRIVE_FRAMES (default 9000 = 30 camera-minutes, dsa_core/bags/drive.py) sets the length of the obstacle-free
# drive whose false alerts set the minimum obstacle area; its calibration (TRAIN_THREADS threads) is the last step.
# VOID_GROUND_LABELS (default: the preset's, flat) sets the training labels of void ground in all three stages
# (dsa train --void-ground-labels; flat: parking as sidewalk, ground and rail track as terrain; void: Cityscapes).
# Evaluation families never enter training: the anomaly benchmarks and the drive use sprite families that are
# asserted absent from the training scenes and from both training pools (dsa_core.study.separation, run below).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
bash scripts/setup_env.sh
dsa="${DSA_VENV:-$repo/.venv}/bin/dsa"
py="${DSA_VENV:-$repo/.venv}/bin/python"
work="${1:-runs/recipe}"
model_dir="${2:-models/dsa_nano}"
train_frames="${TRAIN_FRAMES:-3000}"
val_frames="${VAL_FRAMES:-100}"
bench_frames="${BENCH_FRAMES:-40}"
train_threads="${TRAIN_THREADS:-2}"
stage2_threads="${STAGE2_THREADS:-1}"
stage1_seed="${STAGE1_SEED:-0}"
stage2_seed="${STAGE2_SEED:-5}"
void_ground=(); [ -n "${VOID_GROUND_LABELS:-}" ] && void_ground=(--void-ground-labels "$VOID_GROUND_LABELS")
export OMP_NUM_THREADS=1
data="$work/data"
mkdir -p "$work"
say() { echo "[train_demo_model $(date +%H:%M:%S)] $*"; }

# 1. data in the real on-disk formats, seeded: the training scenes, the outlier pool, and anomaly sets for
#    evaluation only.
[ -f "$data/.cityscapes_done" ] || { say "synth cityscapes ($train_frames train / $val_frames val)";
  "$dsa" synth cityscapes --out "$data/cityscapes" --train "$train_frames" --val "$val_frames" --height 256 --width 512 --seed 0 --no-progress;
  touch "$data/.cityscapes_done"; }
[ -f "$data/.coco_done" ] || { say "synth coco outlier pool";
  "$dsa" synth coco --out "$data/coco" --images "${POOL_IMAGES:-600}" --height 160 --width 224 --seed 0 --no-progress;
  touch "$data/.coco_done"; }
# stage 2's pool: the outlier pool plus the pre-training object set (12 families; the "wider pool" of
# results/train_nano.md, chosen on unseen validation objects). Stage 1 keeps the outlier pool alone.
[ -f "$data/.pretrain_objects_done" ] || { say "synth coco --families pretrain (the pre-training object set)";
  "$dsa" synth coco --families pretrain --out "$data/pretrain_objects" --images "${POOL_IMAGES:-600}" --height 160 \
    --width 224 --seed 0 --no-progress;
  touch "$data/.pretrain_objects_done"; }
[ -f "$data/pool_wide/annotations/instances_train2017.json" ] || { say "merge the two into the stage-2 pool";
  "$py" scripts/merge_coco_pools.py "$data/pool_wide" "$data/coco" "$data/pretrain_objects"; }
"$py" -m dsa_core.study.separation "$data/coco" "$data/pool_wide" > "$work/data_separation.jsonl"
for bench in fs_laf road_anomaly; do
  [ -f "$data/.${bench}_done" ] || { say "synth $bench (evaluation only)";
    "$dsa" synth "$bench" --out "$data/$bench" --count "$bench_frames" --height 256 --width 512 --seed 0 --no-progress;
    touch "$data/.${bench}_done"; }
done
# the calibration's val drive: streets with no obstacle and none of the demo's (bags.drive.calibration_drive_spec),
# in the bag format a vehicle records; its false alerts set the operating point's minimum obstacle area.
[ -f "$data/.val_drive_done" ] || { say "synth bag: an obstacle-free val drive for the calibration";
  rm -rf "$data/val_drive";
  "$dsa" synth bag --calibration-drive --out "$data/val_drive" ${VAL_DRIVE_FRAMES:+--frames "$VAL_DRIVE_FRAMES"} \
    --height 256 --width 512 --no-progress > /dev/null;
  touch "$data/.val_drive_done"; }
# every held-out kind, hard and fresh, FS L&F format (evaluation only; the list lives in anomaly_synth.FS_LAF_KINDS)
kinds="$("$py" -c 'from dsa_core.data.synth.anomaly_synth import FS_LAF_KINDS as k; print(" ".join(k))')"
for kind in $kinds; do
  [ -f "$data/.kind_${kind}_done" ] || { say "synth fs_laf --kind $kind (evaluation only)";
    "$dsa" synth fs_laf --kind "$kind" --out "$data/kinds/$kind" --count "$bench_frames" --height 256 --width 512 --seed 0 --no-progress;
    touch "$data/.kind_${kind}_done"; }
done

# 2-4. training stages: skip when finished, resume when killed.
stage() {  # stage NAME OUT_DIR PRODUCT THREADS ARGS...
  local name=$1 out=$2 product=$3 threads=$4; shift 4
  if [ -f "$out/$product" ]; then say "$name: done ($out/$product)"; return; fi
  local resume=()
  [ -f "$out/last.pt" ] && resume=(--resume) && say "$name: resuming from $out/last.pt"
  say "$name: training"
  "$dsa" train --preset dsa_nano --stage "$name" --data "$data/cityscapes" --out "$out" --threads "$threads" --no-progress \
    "${void_ground[@]}" "${resume[@]}" "$@"
}
iters() { [ -n "${1:-}" ] && echo "--iterations $1" || true; }
# shellcheck disable=SC2046
stage pretrain "$work/pretrain" backbone.safetensors "$train_threads" $(iters "${PRETRAIN_ITERS:-}") \
  --val-every 1000 --val-max-images 50
# shellcheck disable=SC2046
stage stage1 "$work/stage1" final.pt "$train_threads" --backbone-weights "$work/pretrain/backbone.safetensors" \
  $(iters "${STAGE1_ITERS:-}") --val-every 1000 --val-max-images 50 --coco "$data/coco" --coco-min-size 128 --anomaly-from-coco \
  --seed "$stage1_seed"
# shellcheck disable=SC2046
stage stage2 "$work/stage2" final.pt "$stage2_threads" --init "$work/stage1/final.pt" --coco "$data/pool_wide" \
  --coco-min-size 128 $(iters "${STAGE2_ITERS:-}") --val-every 200 --val-max-images 50 --anomaly-from-coco \
  --seed "$stage2_seed"

# 5. evaluation on data the model never trained on (scores of DSA and the zero-cost baselines; the frames resampled
# for intervals and the share of resamples in which DSA stays ahead of each baseline).
say "eval"
resamples=1000
"$dsa" eval --checkpoint "$work/stage2/final.pt" --dataset cityscapes fs_laf road_anomaly \
  --root-for "cityscapes=$data/cityscapes" --root-for "fs_laf=$data/fs_laf" --root-for "road_anomaly=$data/road_anomaly" \
  --out "$work/eval" --bootstrap "$resamples" --no-progress
for kind in $kinds; do
  "$dsa" eval --checkpoint "$work/stage2/final.pt" --dataset fs_laf --root-for "fs_laf=$data/kinds/$kind" \
    --out "$work/eval_kinds/$kind" --bootstrap "$resamples" --no-progress > /dev/null
done

# 6. export + calibrated operating point (in-distribution val frames and drive, and the training outlier pool only),
# after the evaluation so that its 2 threads have the machine: at most the recipes' false alerts per camera-hour of
# the val drive (dsa_core.eval.calibrate.RECIPE_MAX_FALSE_ALERTS_PER_HOUR); the ego mask is the synthetic camera's
# (scene.EGO_MASK_BOTTOM_FRACTION).
say "export -> $model_dir"
"$dsa" export --checkpoint "$work/stage2/final.pt" --out "$model_dir" --height 256 --width 512 --graphs fused
say "calibrate $model_dir"
alert_budget="$("$py" -c 'from dsa_core.eval.calibrate import RECIPE_MAX_FALSE_ALERTS_PER_HOUR as r; print(r)')"
"$dsa" calibrate --model "$model_dir" --val "$data/cityscapes" --pool "$data/coco" --pool-min-size 128 \
  --threads "$train_threads" --val-bag "$data/val_drive" --max-false-alerts-per-hour "$alert_budget" \
  --ego-mask-bottom 0.15 --out "$work/calibration" --no-progress
say "done: $model_dir (calibration in $work/calibration), evaluation in $work/eval and $work/eval_kinds"
