"""ONNX Runtime backend: CPU by default; CUDA / TensorRT execution providers only after a probe session ran on them.

``onnxruntime-gpu`` lists CUDA/TensorRT providers even on machines without a GPU (docs/stack_notes.md §5), so the
provider list proves nothing: ``working_providers`` builds a one-node model and keeps a provider only if a session
created with it really reports it as active and runs.

``class_scores=True`` (evaluation) also fetches the per-pixel class scores of the same pass: the graph's
``semantic_scores`` output when it was exported with them, else the tensor ``class_ids`` is the argmax of, made a
graph output in memory (the file on disk, checked against the manifest, is not changed).
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from dsa_core.export.graphs import FEATURE_NAMES, IMAGE_NAME
from dsa_core.export.quantize import INT8_GRAPH
from dsa_core.export.manifest import verified_onnx_graph
from dsa_core.runtime.base import BackendUnavailable, InferenceBackend

log = logging.getLogger(__name__)

GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
#: Idle intra-op threads sleep instead of busy-waiting. Measured on the whole node (results/bench_node_threads.md:
#: dsa_nano, one 640x360 camera at 10 Hz, shared 2-core machine): 72 of 300 frames answered without spinning vs
#: 18.5 with ORT's spinning default (means of 2 interleaved runs each), outputs bit-identical.
DEFAULT_ALLOW_SPINNING = False


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


SCORES_NAME = "semantic_scores"


def expose_class_scores(proto: Any) -> Any:
    """An ONNX model whose outputs include ``semantic_scores`` [B, K, H, W]: the graph's own output if present,
    else the input of the ArgMax (over axis 1) that ``class_ids`` is cast from, through an Identity node."""
    from onnx import TensorProto, helper

    graph = proto.graph
    if SCORES_NAME in [o.name for o in graph.output]:
        return proto
    producer = {out: node for node in graph.node for out in node.output}
    node = producer.get("class_ids")
    while node is not None and node.op_type in ("Cast", "Identity"):
        node = producer.get(node.input[0])
    axis = next((a.i for a in node.attribute if a.name == "axis"), 0) if node is not None else None
    if node is None or node.op_type != "ArgMax" or axis != 1:
        raise BackendUnavailable("graph has no semantic_scores output and class_ids is not an ArgMax over the class "
                                 "axis; re-export the model dir (dsa export --with-scores)")
    graph.node.append(helper.make_node("Identity", [node.input[0]], [SCORES_NAME], name="expose_semantic_scores"))
    graph.output.append(helper.make_tensor_value_info(SCORES_NAME, TensorProto.FLOAT, None))
    return proto


class OnnxRuntimeBackend(InferenceBackend):
    """``graph``: "split" (backbone.onnx feeding head.onnx, per-stage times) or "fused" (fused.onnx).

    ``intra_op_threads`` / ``inter_op_threads``: ORT thread pools (None = ORT default = all cores).
    ``allow_spinning``: whether idle intra-op threads busy-wait for the next op ("session.intra_op.allow_spinning";
    ORT's own default spins). Spinning buys little inside one pass and takes whole cores from the node's other
    threads (DDS, decode, post-processing) and from other processes on a shared CPU (DEFAULT_ALLOW_SPINNING).
    ``class_scores``: also fetch the per-pixel class scores (baselines in evaluation; the node does not need them).
    """

    name = "onnxruntime"

    def __init__(self, model_dir: str | Path, device: str = "cpu", precision: str = "fp32", graph: str = "fused",
                 intra_op_threads: int | None = None, inter_op_threads: int | None = None, class_scores: bool = False,
                 allow_spinning: bool = DEFAULT_ALLOW_SPINNING):
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise BackendUnavailable(f"onnxruntime not importable: {exc}") from exc
        if precision not in ("fp32", "int8"):
            raise BackendUnavailable(f"onnxruntime backend runs fp32 graphs or the dynamic-int8 fused graph, got precision {precision!r}")
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
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if allow_spinning else "0")
        self.graph = graph if "head.onnx" in self.manifest["files"] else "fused"
        if self.graph != graph:
            log.warning("model dir %s has no backbone/head graphs; running fused.onnx", self.model_dir)
        self.fused_file = "fused.onnx"
        if precision == "int8":  # the quantized graph is a fused one (dsa export --quantize dynamic-int8)
            if INT8_GRAPH not in self.manifest["files"]:
                raise BackendUnavailable(f"precision int8: no {INT8_GRAPH} in {self.model_dir} (dsa export --quantize dynamic-int8)")
            self.graph, self.fused_file = "fused", INT8_GRAPH
        names = ["backbone.onnx", "head.onnx"] if self.graph == "split" else [self.fused_file]
        self.provides_class_scores = class_scores
        self.sessions = {}
        for n in names:
            source = verified_onnx_graph(self.model_dir, self.manifest, n)
            if class_scores and n != "backbone.onnx":
                import onnx

                loaded = onnx.load(source) if isinstance(source, str) else onnx.load_model_from_string(source)
                source = expose_class_scores(loaded).SerializeToString()
            self.sessions[n] = ort.InferenceSession(source, sess_options=opts, providers=providers)
        self.providers = self.sessions[names[0]].get_providers()
        self.threads = {"intra_op": intra_op_threads, "inter_op": inter_op_threads, "allow_spinning": allow_spinning}
        log.info("onnxruntime %s: %s graph on %s", ort.__version__, self.graph, self.providers)

    def describe(self) -> dict[str, Any]:
        import onnxruntime as ort

        return {**super().describe(), "onnxruntime": ort.__version__, "graph": self.graph, "providers": self.providers,
                "threads": self.threads, "provider_failures": self.provider_failures}

    def _run(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
        (ids, score), stages = self._forward(images, ["class_ids", "anomaly"])
        return ids, score, stages

    def _run_scores(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, float]]:
        if not self.provides_class_scores:
            return super()._run_scores(images)
        (ids, score, semantic), stages = self._forward(images, ["class_ids", "anomaly", SCORES_NAME])
        return ids, score, semantic, stages

    def _forward(self, images: np.ndarray, outputs: list[str]) -> tuple[list[np.ndarray], dict[str, float]]:
        if self.graph == "fused":
            t0 = time.perf_counter()
            out = self.sessions[self.fused_file].run(outputs, {IMAGE_NAME: images})
            return out, {"fused": (time.perf_counter() - t0) * 1e3}
        t0 = time.perf_counter()
        feats = self.sessions["backbone.onnx"].run(list(FEATURE_NAMES), {IMAGE_NAME: images})
        t1 = time.perf_counter()
        out = self.sessions["head.onnx"].run(outputs, {IMAGE_NAME: images, **dict(zip(FEATURE_NAMES, feats))})
        t2 = time.perf_counter()
        return out, {"backbone": (t1 - t0) * 1e3, "head": (t2 - t1) * 1e3}
