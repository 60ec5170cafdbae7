"""Scripts put the repo root on sys.path so they run from a checkout; loaded inside the test process (as
test_alert_curve loads scripts/alert_curve.py) they must not shadow the installed dsa_perception, which alone holds
the generated message module."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
LOAD_THEN_IMPORT = """
import importlib.util, sys
from pathlib import Path
for p in sys.argv[1:]:
    spec = importlib.util.spec_from_file_location(Path(p).stem, p)
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
import dsa_perception.msg
print(sys.modules["dsa_perception"].__file__)
"""


def test_loading_the_scripts_keeps_the_installed_dsa_perception() -> None:
    pytest.importorskip("dsa_perception.msg", reason="the generated interfaces (not in the compat venv)")
    scripts = sorted(str(p) for p in SCRIPTS.glob("*.py") if "sys.path" in p.read_text())
    assert len(scripts) >= 9
    # -P: a fresh interpreter without the cwd on sys.path, as scripts/test.sh runs pytest
    done = subprocess.run([sys.executable, "-P", "-c", LOAD_THEN_IMPORT, *scripts], capture_output=True, text=True,
                          cwd=SCRIPTS.parent, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (Path(done.stdout.strip()).parent / "msg").is_dir()  # the installed package, not the repo's sources
