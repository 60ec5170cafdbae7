"""The colcon-style build of this package, shared by test_ros_build.py and test_colcon_test.py.

colcon builds an ament_cmake package with `cmake <src> -B build/<pkg> -DCMAKE_INSTALL_PREFIX=install/<pkg>`,
`cmake --build`, `cmake --install`; ``colcon_build`` does the same into a temporary workspace against the pip ROS 2
wheels of this venv, and ``install_env`` gives the environment `source install/setup.bash` would.
"""
from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VENV = Path(sys.prefix)
PACKAGE = "dsa_perception"


def run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 900) -> str:
    """Run ``cmd``; its stdout, or a failed assertion with the command and the tail of its output."""
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{result.stdout[-6000:]}\n{result.stderr[-4000:]}"
    return result.stdout


def site_packages(prefix: Path) -> Path:
    return Path(sysconfig.get_path("purelib", vars={"base": str(prefix), "platbase": str(prefix)}))


def colcon_build(root: Path, testing: bool) -> tuple[Path, Path]:
    """Configure, build and install the package under workspace ``root`` (``testing``: BUILD_TESTING=ON, which
    registers the colcon tests); returns (build dir, install prefix)."""
    env = {**os.environ, "AMENT_PREFIX_PATH": str(VENV)}
    run(["bash", str(REPO / "scripts" / "build_ros_interfaces.sh"), str(VENV), "--fix-wheels-only"], root, env)
    # Configure through a symlink: CMake refuses exported include dirs inside the source tree, and the venv's numpy
    # include dir is inside it when the venv is the repository's .venv/.
    source = root / "src" / PACKAGE
    source.parent.mkdir()
    source.symlink_to(REPO, target_is_directory=True)
    build, install = root / "build" / PACKAGE, root / "install" / PACKAGE
    run(["cmake", "-S", str(source), "-B", str(build), f"-DCMAKE_INSTALL_PREFIX={install}",
         f"-DCMAKE_PREFIX_PATH={VENV}", f"-DPython3_EXECUTABLE={sys.executable}",
         f"-DBUILD_TESTING={'ON' if testing else 'OFF'}"], root, env)
    run(["cmake", "--build", str(build), "-j", str(max(1, min(4, os.cpu_count() or 1)))], root, env)
    run(["cmake", "--install", str(build)], root, env)
    return build, install


def install_env(install: Path, **extra: str) -> dict[str, str]:
    """The environment `source install/setup.bash` gives: this install first, then the ROS 2 underlay (the venv);
    discovery stays on this machine."""
    return {**os.environ, "PYTHONPATH": str(site_packages(install)),
            "LD_LIBRARY_PATH": os.pathsep.join([str(install / "lib"), os.environ.get("LD_LIBRARY_PATH", "")]),
            "AMENT_PREFIX_PATH": os.pathsep.join([str(install), str(VENV)]),
            "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST", **extra}
