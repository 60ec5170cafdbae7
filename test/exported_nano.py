"""The one exported dsa_nano model dir of a test session: what it is (here) and the session fixture that makes it
(``exported_nano`` in conftest.py).

Tracing the graphs is the slow part (~20-40 s of CPU on the shared 2-core machine), and the runtime, export, backend
chain, compile, model-dir, operating-point, bag-eval, demo and node-bench tests all need the same random-init model,
so it is exported once per session. Nothing may write into the directory (tests copy it before altering files).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dsa_core import build_model
from dsa_core.export.onnx_export import export_model_dir

H, W = 64, 128  # the export size


@dataclass(frozen=True)
class ExportedNano:
    model_dir: Path  # backbone/head/fused.onnx + model.pt + manifest.json
    model: torch.nn.Module  # the seeded DSAModel that was exported
    manifest: dict[str, Any]


def export_nano(out: Path) -> ExportedNano:
    torch.manual_seed(0)
    model = build_model("dsa_nano").eval()
    manifest = export_model_dir(model, out, H, W, batch=1, opset=17)
    return ExportedNano(out, model, manifest)
