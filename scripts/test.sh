#!/usr/bin/env bash
# The test command (README, CI): set up .venv/ from nothing if needed, then run the whole test suite.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh test/test_metrics.py -x`.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$repo/scripts/setup_env.sh"
cd "$repo"
exec "${DSA_VENV:-$repo/.venv}/bin/python" -m pytest "$@"
