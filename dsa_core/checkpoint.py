"""Checkpoints: written atomically (temp file + fsync + rename), read with ``weights_only=True`` and validated.

A checkpoint is a dict: ``format`` (CHECKPOINT_FORMAT), ``config`` (DSAConfig.to_dict()), ``model`` (state
dict), optionally ``optimizer``, ``scheduler``, ``step``, ``rng``, ``train_config``, ``metrics``. A file that
cannot be read safely, or lacks these keys, is refused with CheckpointError: never executed, never half-loaded.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from dsa_core.atomic import atomic_open

CHECKPOINT_FORMAT = "dsa-checkpoint-v1"


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, corrupt, unsafe or not a DSA checkpoint."""


def save_checkpoint(payload: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write atomically: a killed process leaves either the old file or the new one, never a torn file."""
    path = Path(path)
    if "config" not in payload or "model" not in payload:
        raise ValueError("checkpoint payload needs 'config' and 'model'")
    with atomic_open(path, "wb", durable=True) as f:
        torch.save({"format": CHECKPOINT_FORMAT, **payload}, f)
    return path


SHARD_INDEX = "shards.json"


def save_sharded(payload: dict[str, Any], out_dir: str | os.PathLike, max_bytes: int = 16 * 2**20) -> list[Path]:
    """Write ``config`` + ``model`` as safetensors shards of at most ``max_bytes`` each plus ``shards.json``.

    Why: some transfer paths (the GPU machine's result folder) limit the size of one file; the weights travel as
    several files and ``load_checkpoint(out_dir)`` puts them back together (sha256 of each shard checked).
    """
    import hashlib
    import json

    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for key, value in payload["model"].items():
        nbytes = value.numel() * value.element_size()
        if nbytes > max_bytes:
            raise ValueError(f"tensor {key} has {nbytes} bytes, more than one shard ({max_bytes})")
        if size + nbytes > max_bytes and shards[-1]:
            shards.append({})
            size = 0
        shards[-1][key] = value.detach().cpu().contiguous()
        size += nbytes
    files = []
    for i, shard in enumerate(shards):
        path = out / f"model-{i:03d}.safetensors"
        save_file(shard, str(path))
        files.append({"file": path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()})
    index = {"format": CHECKPOINT_FORMAT, "config": payload["config"], "shards": files,
             **{k: payload[k] for k in ("stage", "step", "train_config") if k in payload}}
    (out / SHARD_INDEX).write_text(json.dumps(index, indent=1))
    return [out / f["file"] for f in files] + [out / SHARD_INDEX]


def _load_sharded(path: Path) -> dict[str, Any]:
    import hashlib
    import json

    from safetensors.torch import load_file

    try:
        index = json.loads((path / SHARD_INDEX).read_text())
        model: dict[str, torch.Tensor] = {}
        for entry in index["shards"]:
            shard = path / entry["file"]
            if Path(entry["file"]).name != entry["file"] or hashlib.sha256(shard.read_bytes()).hexdigest() != entry["sha256"]:
                raise CheckpointError(f"shard {shard} is missing, outside the directory or does not match its sha256")
            model.update(load_file(str(shard)))
    except CheckpointError:
        raise
    except Exception as exc:
        raise CheckpointError(f"refusing sharded checkpoint {path}: {type(exc).__name__}: {exc}") from exc
    if index.get("format") != CHECKPOINT_FORMAT or "config" not in index:
        raise CheckpointError(f"refusing sharded checkpoint {path}: not a {CHECKPOINT_FORMAT!r} shard index")
    return {**{k: v for k, v in index.items() if k != "shards"}, "model": model}


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load with ``weights_only=True`` (no arbitrary code) and check it is a DSA checkpoint; a directory with a
    ``shards.json`` (``save_sharded``) is read as one."""
    path = Path(path)
    if path.is_dir() and (path / SHARD_INDEX).is_file():
        return _load_sharded(path)
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
