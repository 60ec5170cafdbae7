"""One exported dsa_nano model dir per pytest process, shared by test_export.py and test_runtime.py.

Tracing the graphs is the slow part of these tests (~20-30 s of CPU); when both files run in one session the
export happens once. Nothing may write into the returned directory (tests copy it before altering files).
"""
from __future__ import annotations

import functools
import tempfile
from pathlib import Path
from typing import Any

import torch

from dsa_core import build_model
from dsa_core.export.onnx_export import export_model_dir

H, W = 64, 128


@functools.lru_cache(maxsize=1)
def exported_nano() -> tuple[Path, torch.nn.Module, dict[str, Any]]:
    """(model dir with backbone/head/fused.onnx + model.pt + manifest, the seeded DSAModel, the manifest)."""
    torch.manual_seed(0)
    model = build_model("dsa_nano").eval()
    out = Path(tempfile.mkdtemp(prefix="dsa_nano_export_"))
    manifest = export_model_dir(model, out, H, W, batch=1, opset=17)
    return out, model, manifest
