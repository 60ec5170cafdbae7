"""Where the node finds its model when ``model_dir`` is left empty: the default model shipped with the package.

Why here and not in config/dsa.yaml: the path depends on where the package is installed (colcon prefix, venv).
"""
from __future__ import annotations

from pathlib import Path

DEFAULT_MODEL = "dsa_nano"


def default_model_dir() -> Path | None:
    """share/dsa_perception/models/dsa_nano of a colcon install, else models/dsa_nano of the source checkout this
    module lives in (the repository's venv); None when neither holds a manifest.json."""
    candidates = []
    try:
        from ament_index_python.packages import get_package_share_directory

        candidates.append(Path(get_package_share_directory("dsa_perception")) / "models" / DEFAULT_MODEL)
    except (ImportError, LookupError, OSError):  # no ament_index_python, package not indexed, no AMENT_PREFIX_PATH
        pass
    candidates.append(Path(__file__).resolve().parents[1] / "models" / DEFAULT_MODEL)
    return next((c for c in candidates if (c / "manifest.json").is_file()), None)
