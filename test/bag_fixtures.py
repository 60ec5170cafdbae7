"""Helpers shared by the bag / bag-eval / demo tests: one random-init dsa_nano export per pytest session.

Why a file lock-free cache under the session's base temp dir: exporting takes ~30-40 s on the shared 2-core
machine, and three test files need the same model; the session base temp is shared by all of them.
"""
from __future__ import annotations

from pathlib import Path

import torch

from dsa_core import build_model
from dsa_core.export.onnx_export import export_model_dir

NANO_EXPORT_SIZE = (64, 128)


def random_nano_model_dir(tmp_path_factory, name: str = "dsa_nano_random") -> Path:
    """A random-init dsa_nano exported (fused ONNX + model.pt + manifest) at 64x128, created once per session."""
    out = tmp_path_factory.getbasetemp() / name
    if (out / "manifest.json").exists():
        return out
    torch.manual_seed(0)
    model = build_model("dsa_nano").eval()
    export_model_dir(model, out, *NANO_EXPORT_SIZE, batch=1, graphs=("fused",))
    return out
