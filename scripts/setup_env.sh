#!/usr/bin/env bash
# Create or update the project virtual environment at .venv/ (idempotent; a warm run takes a second or two).
#   - pinned torch==2.14.1 / torchvision==0.29.1 (CUDA 13.0 builds from local disk) + everything in requirements*.txt
#   - this repository installed editable (dsa, dsa_perception_node console scripts)
#   - the ROS 2 interfaces in msg/ built with CMakeLists.txt against the pip ROS 2 wheels (scripts/build_ros_interfaces.sh)
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${DSA_VENV:-$repo/.venv}"
py="${PYTHON:-$(command -v python3.11 || command -v python3)}"

if [ ! -x "$venv/bin/python" ]; then
  echo "[setup] creating virtual environment $venv with $py"
  "$py" -m venv "$venv"
fi

stamp_file="$venv/.dsa_requirements.sha256"
stamp="$(cat "$repo/requirements.txt" "$repo/requirements-ros.txt" "$repo/setup.py" "$repo/setup.cfg" | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp_file" ] || [ "$(cat "$stamp_file")" != "$stamp" ]; then
  echo "[setup] installing Python requirements (first run: a few minutes; torch comes from local disk)"
  "$venv/bin/python" -m pip install -q --upgrade pip setuptools wheel
  "$venv/bin/python" -m pip install -q -r "$repo/requirements.txt" -r "$repo/requirements-ros.txt"
  "$venv/bin/python" -m pip install -q --no-deps --no-build-isolation -e "$repo"
  echo "$stamp" > "$stamp_file"
else
  echo "[setup] Python requirements up to date"
fi

if [ -f "$repo/scripts/build_ros_interfaces.sh" ]; then
  bash "$repo/scripts/build_ros_interfaces.sh" "$venv"
fi
echo "[setup] environment ready: $venv"
