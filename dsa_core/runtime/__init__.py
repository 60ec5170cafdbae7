"""Inference backends behind one interface: ``create_backend(kind, model_dir, ...)`` and an ordered fallback.

Every backend verifies the model dir against its manifest first (ModelIntegrityError on any mismatch: refused,
never fallen back from, because every backend would read the same altered files).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dsa_core.export.manifest import ModelIntegrityError
from dsa_core.runtime.base import BackendUnavailable, InferenceBackend, InferenceResult

log = logging.getLogger(__name__)

BACKEND_KINDS = ("tensorrt", "onnxruntime", "torch")


def create_backend(kind: str, model_dir: str | Path, device: str = "cpu", precision: str = "fp32", **opts: Any) -> InferenceBackend:
    """kind: tensorrt | onnxruntime | torch. ``opts`` go to the backend (threads, graph, cache_dir, ...)."""
    if kind == "onnxruntime":
        from dsa_core.runtime.onnxruntime_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend(model_dir, device=device, precision=precision, **opts)
    if kind == "torch":
        from dsa_core.runtime.torch_backend import TorchBackend

        return TorchBackend(model_dir, device=device, precision=precision, **opts)
    if kind == "tensorrt":
        from dsa_core.runtime.tensorrt_backend import TensorRTBackend

        return TensorRTBackend(model_dir, device=device, precision=precision, **opts)
    raise ValueError(f"unknown backend kind {kind!r}; expected one of {BACKEND_KINDS}")


@dataclass
class FallbackReport:
    selected: str | None
    failures: dict[str, str] = field(default_factory=dict)  # kind -> why it does not run

    def summary(self) -> str:
        lines = [f"running backend: {self.selected}"]
        lines += [f"  {kind} not used: {why}" for kind, why in self.failures.items()]
        return "\n".join(lines)


def create_backend_with_fallback(preferences: list[str], model_dir: str | Path,
                                 options: dict[str, dict[str, Any]] | None = None, **common: Any) -> tuple[InferenceBackend, FallbackReport]:
    """Try ``preferences`` in order; return the first backend that initialises and a report of the others.

    ``common`` (device, precision, ...) go to every backend; ``options[kind]`` override them per backend (e.g.
    ``{"tensorrt": {"device": "cuda", "precision": "fp16"}}``). Raises BackendUnavailable if none runs.
    """
    if not preferences:
        raise ValueError("preferences must name at least one backend kind")
    unknown = [k for k in preferences if k not in BACKEND_KINDS]
    if unknown:
        raise ValueError(f"unknown backend kinds {unknown}; expected some of {BACKEND_KINDS}")
    report = FallbackReport(selected=None)
    for kind in preferences:
        kwargs = {**common, **(options or {}).get(kind, {})}
        try:
            backend = create_backend(kind, model_dir, **kwargs)
        except ModelIntegrityError:
            raise
        except Exception as exc:  # any init failure falls through to the next kind, loudly
            report.failures[kind] = f"{type(exc).__name__}: {exc}"
            log.warning("backend %s unavailable: %s", kind, report.failures[kind])
            continue
        report.selected = kind
        log.info("%s", report.summary())
        return backend, report
    raise BackendUnavailable("no backend could be created:\n" + "\n".join(f"  {k}: {v}" for k, v in report.failures.items()))


__all__ = ["BACKEND_KINDS", "BackendUnavailable", "FallbackReport", "InferenceBackend", "InferenceResult",
           "ModelIntegrityError", "create_backend", "create_backend_with_fallback"]
