#!/usr/bin/env bash
# Build and install the dsa_perception ROS 2 package (msg/ interfaces + Python packages + node executable) with
# CMakeLists.txt against the pip ROS 2 wheels of a virtual environment - the recipe of
# docs/stack_notes.md §2, "Generating the msg/ interfaces against the wheels".
#
# usage: scripts/build_ros_interfaces.sh [VENV] [--fix-wheels-only] [--force]
#   VENV               virtual environment with the ros-* wheels (default: <repo>/.venv); it is also the install
#                      prefix, so the generated `dsa_perception.msg` lands in VENV's site-packages and the
#                      typesupport libraries in VENV/lib (on the LD_LIBRARY_PATH the ros-wheels-bootstrapper sets)
#   --fix-wheels-only  only rewrite the wheels' hard-coded interpreter include paths (used by test_ros_build.py)
#   --force            rebuild even when nothing changed
#
# The install is a symlink install (like `colcon build --symlink-install`): VENV/lib/python3.11/site-packages/
# dsa_perception/ holds the generated msg/ + typesupport modules and symlinks to this repository's
# dsa_perception/*.py, so edits are live; adding or removing a file, or changing msg/ or CMakeLists.txt, needs a
# rerun (detected by the stamp; a no-change run takes well under a second). dsa_core is not installed here
# (-DDSA_INSTALL_CORE=OFF): the editable pip install provides it and sees new files at once. The build directory
# lives inside VENV (VENV/var/dsa_perception/build) because the installed typesupport modules link into it.
#
# Import caveat: in a Python started with the repository root as sys.path[0] (`python -m ...` or `python -c` run
# from the root) `import dsa_perception` finds the source tree, which has no `msg` subpackage. Code that needs the
# messages must run from elsewhere or with `python -P` (3.11+: no cwd on sys.path), e.g. `python -P -m pytest`.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$repo/.venv"
fix_only=0
force=0
for arg in "$@"; do
  case "$arg" in
    --fix-wheels-only) fix_only=1 ;;
    --force) force=1 ;;
    -*) echo "build_ros_interfaces.sh: unknown option '$arg'" >&2; exit 2 ;;
    *) venv="$(cd "$arg" && pwd)" ;;
  esac
done
py="$venv/bin/python"
if [ ! -x "$py" ]; then
  echo "build_ros_interfaces.sh: expected a virtual environment with bin/python at '$venv'" >&2
  exit 2
fi
if [ ! -d "$venv/share/rosidl_default_generators" ]; then
  echo "build_ros_interfaces.sh: '$venv' lacks the ROS 2 build wheels (share/rosidl_default_generators);" \
       "install requirements-ros.txt first" >&2
  exit 2
fi

# 1. The manylinux-built wheels hard-code their builder's interpreter include dirs in share/**/*.cmake
#    (/opt/python/cp311-cp311/include/python3.11 and .../site-packages/numpy/_core/include). Rewrite them to
#    this interpreter's dirs. Idempotent: after the rewrite the pattern no longer occurs.
"$py" - "$venv/share" <<'PYEOF'
import pathlib
import re
import sys
import sysconfig

import numpy

share = pathlib.Path(sys.argv[1])
py_include = sysconfig.get_paths()["include"]
np_include = numpy.get_include()
numpy_pattern = re.compile(r"/opt/python/cp3\d+-cp3\d+/lib/python3\.\d+/site-packages/numpy/_core/include")
python_pattern = re.compile(r"/opt/python/cp3\d+-cp3\d+/include/python3\.\d+")
changed = 0
for path in share.rglob("*.cmake"):
    text = path.read_text()
    if "/opt/python/" not in text:
        continue
    new = python_pattern.sub(py_include, numpy_pattern.sub(np_include, text))
    if "/opt/python/" in new:
        sys.exit(f"build_ros_interfaces.sh: unexpected /opt/python path left in {path}")
    path.write_text(new)
    changed += 1
if changed:
    print(f"[ros-build] rewrote interpreter include paths in {changed} wheel cmake files")
PYEOF
[ "$fix_only" = 1 ] && exit 0

# 2. Skip when nothing that affects the install changed: msg/, CMakeLists.txt, package.xml, the launcher, the
#    set of files under launch/ config/ and dsa_perception/ (contents of .py files do not matter: symlinks).
#    dsa_core is not installed here (-DDSA_INSTALL_CORE=OFF): the editable pip install provides it.
build_dir="$venv/var/dsa_perception/build"
stamp_file="$venv/var/dsa_perception/stamp.sha256"
stamp="$(cd "$repo" && {
  cat CMakeLists.txt package.xml scripts/dsa_perception_node scripts/dsa_perception_lifecycle_node msg/*.msg
  find dsa_perception launch config -type f ! -name '*.pyc' ! -path '*/__pycache__/*' 2>/dev/null | LC_ALL=C sort
  cat launch/* config/* 2>/dev/null || true
  echo "$venv"
} | sha256sum | cut -d' ' -f1)"
site="$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
if [ "$force" = 0 ] && [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$stamp" ] \
   && [ -f "$site/dsa_perception/msg/_obstacle_alert.py" ]; then
  echo "[ros-build] dsa_perception interfaces up to date ($venv)"
  exit 0
fi

# An earlier version of this script also installed dsa_core here; such a copy would shadow the editable install.
if [ -L "$site/dsa_core/__init__.py" ]; then
  rm -rf "$site/dsa_core" "$site"/dsa_core-*.egg-info
fi

# 3. Configure, build, install into the venv prefix (ament finds the typesupports through the ament index).
mkdir -p "$venv/var/dsa_perception"
start=$(date +%s)
export AMENT_PREFIX_PATH="$venv${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
export PATH="$venv/bin:$PATH"
jobs="$(nproc 2>/dev/null || echo 2)"
echo "[ros-build] building dsa_perception interfaces into $venv (build dir $build_dir)"
# CMake refuses to export include dirs that lie inside the source tree, and the venv's numpy include dir does
# when the venv sits in the repository (.venv/): configure through a symlink to the repository instead.
ln -sfn "$repo" "$venv/var/dsa_perception/src"
cmake -S "$venv/var/dsa_perception/src" -B "$build_dir" \
  -DCMAKE_PREFIX_PATH="$venv" \
  -DCMAKE_INSTALL_PREFIX="$venv" \
  -DPython3_EXECUTABLE="$py" \
  -DBUILD_TESTING=OFF \
  -DAMENT_CMAKE_SYMLINK_INSTALL=ON \
  -DDSA_INSTALL_CORE=OFF \
  -DDSA_INSTALL_MODEL=OFF \
  -DCMAKE_BUILD_TYPE=Release >"$venv/var/dsa_perception/cmake-configure.log" 2>&1 \
  || { cat "$venv/var/dsa_perception/cmake-configure.log" >&2; exit 1; }
cmake --build "$build_dir" -j"$jobs" >"$venv/var/dsa_perception/cmake-build.log" 2>&1 \
  || { tail -n 60 "$venv/var/dsa_perception/cmake-build.log" >&2; exit 1; }
cmake --install "$build_dir" >"$venv/var/dsa_perception/cmake-install.log" 2>&1 \
  || { tail -n 60 "$venv/var/dsa_perception/cmake-install.log" >&2; exit 1; }

# 4. Check from a neutral directory (the repository root would shadow the installed package, see README).
(cd / && "$py" -c 'import dsa_perception.model_location; from dsa_perception.msg import Obstacle, ObstacleAlert; ObstacleAlert(obstacles=[Obstacle()])') \
  || { echo "build_ros_interfaces.sh: the installed dsa_perception package does not import" >&2; exit 1; }
echo "$stamp" > "$stamp_file"
echo "[ros-build] done in $(( $(date +%s) - start )) s"
