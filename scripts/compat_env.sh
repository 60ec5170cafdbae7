#!/usr/bin/env bash
# A virtual environment with a ROS 2 distro's Python, numpy, OpenCV, Pillow and SciPy (the versions Ubuntu ships
# with that distro, from PyPI), for the distro-compatibility tests (test/test_distro_compat.py).
#   bash scripts/compat_env.sh humble|jazzy [VENV]      # prints the venv path on its last line
# Cached like setup_env.sh: reinstalls only when the pins below change (a warm run takes well under a second).
# Exit status 3 when no interpreter of the distro's Python version is found (set COMPAT_PYTHON to one).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
distro="${1:?usage: compat_env.sh humble|jazzy [VENV]}"
case "$distro" in
  # Ubuntu 22.04: python3 3.10, python3-numpy 1.21.5, python3-opencv 4.5.4, python3-pil 9.0.1, python3-scipy 1.8.0
  humble) version=3.10; pins=("numpy==1.21.5" "opencv-python-headless==4.5.4.60" "pillow==9.0.1" "scipy==1.8.0") ;;
  # Ubuntu 24.04: python3 3.12, python3-numpy 1.26.4, python3-opencv 4.6.0, python3-pil 10.2.0, python3-scipy 1.11.4
  jazzy) version=3.12; pins=("numpy==1.26.4" "opencv-python-headless==4.6.0.66" "pillow==10.2.0" "scipy==1.11.4") ;;
  *) echo "compat_env.sh: unknown distro '$distro' (humble or jazzy)" >&2; exit 2 ;;
esac
# not in Ubuntu: simplejpeg (pip, as for the node); the test runner
pins+=("simplejpeg>=1.8" "pytest>=8" "pytest-timeout>=2.3")
venv="${2:-$repo/.venv-compat-$distro}"

find_python() {  # the first candidate that runs and is Python $version (a pyenv shim may only complain)
  local root; root="$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")"
  local c
  for c in ${COMPAT_PYTHON:-} "python$version" $(ls -d "$root"/versions/"$version".*/bin/python"$version" 2>/dev/null | sort -rV); do
    if "$c" -c "import sys; sys.exit(sys.version_info[:2] != tuple(map(int, '$version'.split('.'))))" 2>/dev/null; then
      command -v "$c"
      return
    fi
  done
}

stamp="$(printf '%s\n' "$distro" "${pins[@]}" | sha256sum | cut -d' ' -f1)"
if [ -x "$venv/bin/python" ] && [ "$(cat "$venv/.compat_stamp" 2>/dev/null)" = "$stamp" ]; then
  echo "$venv"
  exit 0
fi
py="$(find_python || true)"
if [ -z "$py" ]; then
  echo "compat_env.sh: no Python $version interpreter (python$version on PATH, pyenv, or COMPAT_PYTHON)" >&2
  exit 3
fi
echo "[compat] $distro: $("$py" --version) with ${pins[*]}" >&2
rm -rf "$venv"
"$py" -m venv "$venv"
"$venv/bin/python" -m pip install -q --disable-pip-version-check "${pins[@]}" >&2
echo "$stamp" > "$venv/.compat_stamp"
echo "$venv"
