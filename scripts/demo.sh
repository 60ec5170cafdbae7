#!/usr/bin/env bash
# README command 1: set up the environment (idempotent) and run the end-to-end demo on the embedded default
# (dsa_perception_node + ONNX Runtime CPU + the shipped models/dsa_nano, fed by a synthetic drive bag).
#   bash scripts/demo.sh [--out demo_output] [--quick]
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
start=$(date +%s)
bash "$repo/scripts/setup_env.sh"
venv="${DSA_VENV:-$repo/.venv}"
"$venv/bin/dsa" demo "$@"
echo "[demo.sh] wall time including set-up: $(( $(date +%s) - start )) s"
