#!/usr/bin/env bash
# The test command (README, CI): set up .venv/ from nothing if needed, then run the whole test suite.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh test/test_metrics.py -x`.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$repo/scripts/setup_env.sh"
cd "$repo"
# -P: keep the repo root off sys.path so `dsa_perception` resolves to the venv install, which also holds the
# generated `dsa_perception.msg` (its sources are symlinks to this repo).
exec "${DSA_VENV:-$repo/.venv}/bin/python" -P -m pytest "$@"
