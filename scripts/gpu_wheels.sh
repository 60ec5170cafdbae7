#!/usr/bin/env bash
# Fetch the wheels scripts/gpu_train.py needs on the GPU machine into gpu_wheels/ (git-ignored). Its python3 (3.12)
# has torch, timm, onnx, onnxruntime, scipy, OpenCV, Pillow, matplotlib, safetensors, tqdm and PyYAML but not
# pycocotools (the COCO reader of the outlier pool), cityscapesscripts (the label table) or rosbags and its
# dependencies (the calibration's val drive is a bag), and no network.
# Carry the folder (device tool: carry ["gpu_wheels"]); the command line is in scripts/gpu_train.py's docstring.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$repo/gpu_wheels}"
"${DSA_VENV:-$repo/.venv}/bin/pip" download -q --only-binary=:all: --no-deps --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$out" pycocotools==2.0.11 cityscapesscripts==2.3.0 rosbags==0.11.9 apsw==3.54.1.0 backports.zstd==1.8.0 \
  lz4==4.4.5 ruamel.yaml==0.19.1
ls "$out"
