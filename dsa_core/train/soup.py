"""Weight averaging ("model soup") of runs fine-tuned from one initialisation.

Why: stage 2 trains only the decoder, from one stage-1 checkpoint, and two seeds of it differ by a few points on
every anomaly set. Runs that start from the same weights and fine-tune briefly stay in one basin of the loss, where
the average of their weights is usually at least as good as each run (Wortsman et al., "Model soups", ICML 2022),
at no inference cost. The average is only meaningful under that condition, so it is checked: everything the stage
keeps frozen must be bit-identical across the checkpoints, or they are refused.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch

from dsa_core.checkpoint import CheckpointError, load_checkpoint


def averaged_keys(config: dict[str, Any], stage: str) -> set[str]:
    """State-dict keys the stage trains: its trainable parameters and the floating buffers of the modules that own
    them (e.g. normalisation statistics). Every other key must be equal across the soup's checkpoints."""
    from dsa_core.model.dsa import build_model
    from dsa_core.train.objectives import configure_trainable

    with torch.device("meta"):
        model = build_model(config)
    configure_trainable(model, stage)
    keys: set[str] = set()
    for name, module in model.named_modules():
        prefix = f"{name}." if name else ""
        own = list(module.named_parameters(recurse=False))
        if not any(p.requires_grad for _, p in own):
            continue
        keys.update(prefix + n for n, p in own if p.requires_grad)
        keys.update(prefix + n for n, b in module.named_buffers(recurse=False) if b.is_floating_point())
    return keys


def average_checkpoints(paths: Sequence[str | os.PathLike]) -> dict[str, Any]:
    """The mean of the trained weights of ``paths`` (same config and stage, same frozen weights), as a checkpoint
    payload for ``save_checkpoint``. Averaged in float64, stored in each tensor's own dtype."""
    if len(paths) < 2:
        raise ValueError(f"a soup needs at least 2 checkpoints, got {len(paths)}")
    parts = [load_checkpoint(p) for p in paths]
    first = parts[0]
    stage = first.get("stage")
    if stage not in ("stage1", "stage2"):
        raise CheckpointError(f"{paths[0]}: a soup averages DSA stage checkpoints, this one is stage {stage!r}")
    for path, part in zip(paths[1:], parts[1:]):
        if part.get("stage") != stage:
            raise CheckpointError(f"{path} is stage {part.get('stage')!r}, {paths[0]} is {stage!r}")
        if part["config"] != first["config"]:
            raise CheckpointError(f"{path} has a different model config than {paths[0]}")
        if set(part["model"]) != set(first["model"]):
            raise CheckpointError(f"{path} has different state-dict keys than {paths[0]}")
    trained = averaged_keys(first["config"], stage)
    model: dict[str, torch.Tensor] = {}
    for key, ref in first["model"].items():
        tensors = [part["model"][key] for part in parts]
        if key in trained:
            model[key] = (sum(t.to(torch.float64) for t in tensors) / len(tensors)).to(ref.dtype)
            continue
        for path, t in zip(paths[1:], tensors[1:]):
            if t.shape != ref.shape or not torch.equal(t, ref):
                raise CheckpointError(f"{path}: {key} is not trained in {stage} but differs from {paths[0]}: the "
                                      f"runs did not start from the same checkpoint, so their average means nothing")
        model[key] = ref
    return {"config": first["config"], "model": model, "stage": stage, "step": min(int(p.get("step", 0)) for p in parts),
            "train_config": first.get("train_config"), "soup_of": [os.fspath(p) for p in paths]}
