"""Where the installed package's executables are, for tests that run them as processes: the package prefix from
the ament index (a colcon install under `colcon test`, or this repository's .venv), and the interpreter flags.

Why not sys.prefix: under `colcon test` the interpreter is the system one and the package lives in install/."""
from __future__ import annotations

import sys
from pathlib import Path


def package_prefix() -> Path:
    try:
        from ament_index_python.packages import get_package_prefix

        return Path(get_package_prefix("dsa_perception"))
    except (ImportError, LookupError, ValueError, OSError):  # OSError: AMENT_PREFIX_PATH unset
        return Path(sys.prefix)


def executable(name: str) -> Path:
    return package_prefix() / "lib" / "dsa_perception" / name


def python() -> list[str]:
    """The interpreter; -P (3.11+) keeps a source checkout in the working directory off sys.path."""
    return [sys.executable, "-P"] if sys.version_info >= (3, 11) else [sys.executable]
