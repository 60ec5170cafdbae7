"""ONNX Runtime backend: CPU by default; CUDA / TensorRT execution providers only after a probe session ran on them.

``onnxruntime-gpu`` lists CUDA/TensorRT providers even on machines without a GPU (stack_notes.md), so the provider
list proves nothing: ``working_providers`` builds a one-node model and keeps a provider only if a session created
with it really reports it as active and runs.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from dsa_core.export.graphs import FEATURE_NAMES, IMAGE_NAME
from dsa_core.runtime.base import BackendUnavailable, InferenceBackend

log = logging.getLogger(__name__)

GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


def _probe_model() -> bytes:
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "probe", [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def working_providers(candidates: tuple[str, ...] = GPU_PROVIDERS) -> tuple[list[str], dict[str, str]]:
    """Providers among ``candidates`` on which a tiny session really runs; plus why each other one failed."""
    import onnxruntime as ort

    listed = set(ort.get_available_providers())
    ok, failed = [], {}
    for provider in candidates:
        if provider not in listed:
            failed[provider] = "not in onnxruntime.get_available_providers()"
            continue
        try:
            sess = ort.InferenceSession(_probe_model(), providers=[provider, "CPUExecutionProvider"])
            if sess.get_providers()[0] != provider:
                failed[provider] = f"session fell back to {sess.get_providers()}"
                continue
            out = sess.run(None, {"x": np.array([[-1, 0, 1, 2]], np.float32)})[0]
            if not np.array_equal(out, np.array([[0, 0, 1, 2]], np.float32)):
                failed[provider] = f"probe result wrong: {out}"
                continue
            ok.append(provider)
        except Exception as exc:  # provider libraries missing / no device: reported, not fatal
            failed[provider] = f"{type(exc).__name__}: {exc}"
    return ok, failed


class OnnxRuntimeBackend(InferenceBackend):
    """``graph``: "split" (backbone.onnx feeding head.onnx, per-stage times) or "fused" (fused.onnx).

    ``intra_op_threads`` / ``inter_op_threads``: ORT thread pools (None = ORT default = all cores).
    """

    name = "onnxruntime"

    def __init__(self, model_dir: str | Path, device: str = "cpu", precision: str = "fp32", graph: str = "fused",
                 intra_op_threads: int | None = None, inter_op_threads: int | None = None):
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise BackendUnavailable(f"onnxruntime not importable: {exc}") from exc
        if precision != "fp32":
            raise BackendUnavailable(f"onnxruntime backend runs the fp32 graphs only, got precision {precision!r}")
        if graph not in ("split", "fused"):
            raise ValueError(f"graph must be 'split' or 'fused', got {graph!r}")
        super().__init__(model_dir, device, precision)
        if device == "cpu":
            providers = ["CPUExecutionProvider"]
            self.provider_failures: dict[str, str] = {}
        elif device.startswith("cuda"):
            gpu, self.provider_failures = working_providers()
            if not gpu:
                raise BackendUnavailable(f"onnxruntime: no GPU provider works here: {self.provider_failures}")
            providers = gpu + ["CPUExecutionProvider"]
        else:
            raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if intra_op_threads is not None:
            opts.intra_op_num_threads = intra_op_threads
        if inter_op_threads is not None:
            opts.inter_op_num_threads = inter_op_threads
        self.graph = graph if "head.onnx" in self.manifest["files"] else "fused"
        if self.graph != graph:
            log.warning("model dir %s has no backbone/head graphs; running fused.onnx", self.model_dir)
        names = ["backbone.onnx", "head.onnx"] if self.graph == "split" else ["fused.onnx"]
        self.sessions = {n: ort.InferenceSession(str(self.model_dir / n), sess_options=opts, providers=providers) for n in names}
        self.providers = self.sessions[names[0]].get_providers()
        self.threads = {"intra_op": intra_op_threads, "inter_op": inter_op_threads}
        log.info("onnxruntime %s: %s graph on %s", ort.__version__, self.graph, self.providers)

    def describe(self) -> dict[str, Any]:
        import onnxruntime as ort

        return {**super().describe(), "onnxruntime": ort.__version__, "graph": self.graph, "providers": self.providers,
                "threads": self.threads, "provider_failures": self.provider_failures}

    def _run(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
        if self.graph == "fused":
            t0 = time.perf_counter()
            ids, score = self.sessions["fused.onnx"].run(["class_ids", "anomaly"], {IMAGE_NAME: images})
            return ids, score, {"fused": (time.perf_counter() - t0) * 1e3}
        t0 = time.perf_counter()
        feats = self.sessions["backbone.onnx"].run(list(FEATURE_NAMES), {IMAGE_NAME: images})
        t1 = time.perf_counter()
        ids, score = self.sessions["head.onnx"].run(["class_ids", "anomaly"], {IMAGE_NAME: images, **dict(zip(FEATURE_NAMES, feats))})
        t2 = time.perf_counter()
        return ids, score, {"backbone": (t1 - t0) * 1e3, "head": (t2 - t1) * 1e3}
