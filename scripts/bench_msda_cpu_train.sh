#!/usr/bin/env bash
# Time 20 dsa_nano stage-1 training steps per CPU deformable-attention implementation (DSA_MSDA_CPU), the variants
# interleaved round by round so that a loaded machine's drift hits all alike (results/bench_msda_cpu_kernel.md).
# Usage: bash scripts/bench_msda_cpu_train.sh OUT_DIR [ROUNDS] [VARIANTS...]; prints one line per run:
# variant round time_s(step 10) time_s(step 20) wall_s load1 (validation cut to 2 images: it is not what is timed).
# DATA / INIT: the Cityscapes-format root and the stage-1 checkpoint to start from (defaults: what
# scripts/train_demo_model.sh leaves in runs/recipe).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$1"; rounds="${2:-3}"; shift $(( $# < 2 ? $# : 2 ))
variants=("$@")
[ ${#variants[@]} -gt 0 ] || variants=(grid_sample cpp)
cd "$repo"
data="${DATA:-runs/recipe/data/cityscapes}"
init="${INIT:-runs/recipe/stage1/final.pt}"
[ -d "$data" ] && [ -f "$init" ] || { echo "need DATA=$data and INIT=$init (bash scripts/train_demo_model.sh)" >&2; exit 2; }
mkdir -p "$out"
for round in $(seq 1 "$rounds"); do
  for variant in "${variants[@]}"; do
    dir="$out/${variant}_$round"
    rm -rf "$dir"
    start=$(date +%s.%N)
    DSA_MSDA_CPU="$variant" OMP_NUM_THREADS=1 nice -n 10 .venv/bin/dsa train --preset dsa_nano --stage stage1 \
      --data "$data" --out "$dir" --init "$init" --threads 1 --iterations 20 \
      --no-progress --num-workers 1 --val-max-images 2 > "$dir.log" 2>&1
    wall=$(echo "$(date +%s.%N) - $start" | bc)
    # metrics.csv is written by the csv module (CRLF line ends)
    t10=$(tr -d '\r' < "$dir/metrics.csv" | awk -F, 'NR>1 && $1==10 {print $NF}')
    t20=$(tr -d '\r' < "$dir/metrics.csv" | awk -F, 'NR>1 && $1==20 {print $NF}')
    echo "$variant $round $t10 $t20 $wall $(cut -d' ' -f1 /proc/loadavg)"
  done
done
