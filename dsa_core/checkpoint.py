"""Checkpoints: written atomically (temp file + fsync + rename), read with ``weights_only=True`` and validated.

A checkpoint is a dict: ``format`` (CHECKPOINT_FORMAT), ``config`` (DSAConfig.to_dict()), ``model`` (state
dict), optionally ``optimizer``, ``scheduler``, ``step``, ``rng``, ``train_config``, ``metrics``. A file that
cannot be read safely, or lacks these keys, is refused with CheckpointError: never executed, never half-loaded.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_FORMAT = "dsa-checkpoint-v1"


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, corrupt, unsafe or not a DSA checkpoint."""


def save_checkpoint(payload: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write atomically: a killed process leaves either the old file or the new one, never a torn file."""
    path = Path(path)
    if "config" not in payload or "model" not in payload:
        raise ValueError("checkpoint payload needs 'config' and 'model'")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"format": CHECKPOINT_FORMAT, **payload}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load with ``weights_only=True`` (no arbitrary code) and check it is a DSA checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # corrupt zip, truncated file, pickled code refused by weights_only
        raise CheckpointError(f"refusing checkpoint {path}: cannot be loaded safely ({type(exc).__name__}: {exc})") from exc
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise CheckpointError(f"refusing checkpoint {path}: expected format {CHECKPOINT_FORMAT!r}, found {found!r}")
    for key in ("config", "model"):
        if key not in data:
            raise CheckpointError(f"refusing checkpoint {path}: missing key {key!r}")
    return data


def model_from_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu"):
    """Rebuild the DSAModel stored in a checkpoint (strict state-dict load)."""
    from dsa_core.model.dsa import build_model

    data = load_checkpoint(path, map_location)
    model = build_model(data["config"])
    missing, unexpected = model.load_state_dict(data["model"], strict=False)
    if missing or unexpected:
        raise CheckpointError(f"refusing checkpoint {path}: state dict does not match its config "
                              f"(missing {missing[:5]}..., unexpected {unexpected[:5]}...)")
    return model, data
