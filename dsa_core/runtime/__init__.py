"""Inference backends behind one interface: ``create_backend(kind, model_dir, ...)``; the ordered preference list,
fallback and retry are dsa_core.runtime.chain.BackendChain.

Every backend verifies the model dir against its manifest first (ModelIntegrityError on any mismatch).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from dsa_core.export.manifest import ModelIntegrityError
from dsa_core.runtime.base import BackendUnavailable, InferenceBackend, InferenceResult

BACKEND_KINDS = ("tensorrt", "onnxruntime", "openvino", "torch")


def create_backend(kind: str, model_dir: str | Path, device: str = "cpu", precision: str = "fp32", **opts: Any) -> InferenceBackend:
    """kind: tensorrt | onnxruntime | openvino | torch. ``opts`` go to the backend (threads, graph, cache_dir, ...)."""
    if kind == "onnxruntime":
        from dsa_core.runtime.onnxruntime_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend(model_dir, device=device, precision=precision, **opts)
    if kind == "torch":
        from dsa_core.runtime.torch_backend import TorchBackend

        return TorchBackend(model_dir, device=device, precision=precision, **opts)
    if kind == "openvino":
        from dsa_core.runtime.openvino_backend import OpenVinoBackend

        return OpenVinoBackend(model_dir, device=device, precision=precision, **opts)
    if kind == "tensorrt":
        from dsa_core.runtime.tensorrt_backend import TensorRTBackend

        return TensorRTBackend(model_dir, device=device, precision=precision, **opts)
    raise ValueError(f"unknown backend kind {kind!r}; expected one of {BACKEND_KINDS}")


__all__ = ["BACKEND_KINDS", "BackendUnavailable", "InferenceBackend", "InferenceResult", "ModelIntegrityError",
           "create_backend"]
