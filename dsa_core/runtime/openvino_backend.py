"""OpenVINO backend (native runtime, CPU plugin, fp32): fused.onnx with the adapter's BatchNorm outputs kept, behind
a parity probe against ONNX Runtime.

Why the extra outputs: on the trained dsa_nano, OpenVINO's CPU plugin computes a different head from the graph as
exported (class-id agreement with ORT 59 %) unless the 4 adapter BatchNorm outputs ``.../adapter/norms.{0..3}`` (the
tensors the pixel decoder's 1x1 input convolutions read) are graph outputs; then it agrees to 2.7e-7
(results/openvino_bisect.md). Keeping them as outputs stops a CPU-plugin fusion into those convolutions. The graph
is changed in memory only; the file on disk stays the one the manifest hashes. A graph without those BatchNorms is
refused: the workaround is not known to apply to it.

Why the probe: the divergence raised no error, so a wrong result is caught only by comparing. At every load the
patched graph and the unpatched one in ONNX Runtime CPU run the same seeded synthetic image
(dsa_core.runtime.parity); the backend is offered only when they agree within the thresholds there.

``openvino`` is an optional dependency (``pip install openvino``, the extra ``openvino``; not the ORT OpenVINO
execution provider): without it the backend raises BackendUnavailable with the import error, as TensorRT does.
"""
from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Any

import numpy as np

from dsa_core.export.graphs import IMAGE_NAME
from dsa_core.export.manifest import verified_onnx_graph
from dsa_core.runtime.base import BackendUnavailable, InferenceBackend
from dsa_core.runtime.onnxruntime_backend import SCORES_NAME, expose_class_scores
from dsa_core.runtime.parity import check_parity, reference_session
from dsa_core.runtime.signal_stack import preserved_signal_stack

log = logging.getLogger(__name__)

GRAPH = "fused.onnx"
#: the adapter's per-level output BatchNorms (module ``adapter.norms.<level>``), one per feature level
ADAPTER_NORM = re.compile(r"(?:^|/)adapter/norms\.(\d+)/")
ADAPTER_LEVELS = 4
#: fp32 on every CPU (the plugin would pick bf16 where the CPU has it); one stream, lowest latency per frame
COMPILE_CONFIG = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}


def import_openvino() -> Any:
    """The openvino module, or BackendUnavailable saying why it cannot be imported."""
    try:
        import openvino as ov
    except Exception as exc:  # ImportError, or OSError from a broken install
        raise BackendUnavailable(f"openvino not importable: {type(exc).__name__}: {exc} "
                                 "(pip install openvino, or the extra dsa_perception[openvino])") from exc
    return ov


def keep_adapter_norm_outputs(proto: Any) -> list[str]:
    """Append the outputs of the adapter's level BatchNorms to ``proto``'s graph outputs (in place); their names.
    BackendUnavailable when the graph does not have one per level."""
    from onnx import TensorProto, helper

    found: dict[int, str] = {}
    for node in proto.graph.node:
        match = ADAPTER_NORM.search(node.name)
        if node.op_type == "BatchNormalization" and match:
            found.setdefault(int(match.group(1)), node.output[0])
    if sorted(found) != list(range(ADAPTER_LEVELS)):
        raise BackendUnavailable(f"openvino: the graph has adapter BatchNorm outputs for levels {sorted(found)}, not "
                                 f"0..{ADAPTER_LEVELS - 1} (BatchNormalization nodes named */adapter/norms.<level>/*); "
                                 "the workaround that makes OpenVINO agree with ONNX Runtime does not apply to it")
    existing = {o.name for o in proto.graph.output}
    names = [found[level] for level in range(ADAPTER_LEVELS)]
    for name in names:
        if name not in existing:
            proto.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    return names


class OpenVinoRunner:
    """A graph compiled for OpenVINO's CPU plugin, called like an ORT session: ``run(output_names, feeds)``."""

    def __init__(self, ov: Any, proto: Any, num_threads: int | None = None):
        core = ov.Core()
        config: dict[str, Any] = dict(COMPILE_CONFIG)
        if num_threads is not None:
            config["INFERENCE_NUM_THREADS"] = int(num_threads)
        t0 = time.perf_counter()
        with preserved_signal_stack():  # the plugin swaps in a signal stack it later unmaps (signal_stack.py)
            self.compiled = core.compile_model(core.read_model(proto.SerializeToString(), b""), "CPU", config)
        self.compile_s = time.perf_counter() - t0
        self.config = config
        self.request = self.compiled.create_infer_request()
        # an output port has several names (the ONNX output name and the producing node's tensor name)
        self.ports = {name: port for port in self.compiled.outputs for name in port.get_names()}

    def run(self, output_names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        missing = [n for n in output_names if n not in self.ports]
        if missing:
            raise KeyError(f"openvino: the compiled graph has no outputs {missing}")
        results = self.request.infer(feeds, share_outputs=False)  # copies: the request's buffers are reused
        return [results[self.ports[n]] for n in output_names]


class OpenVinoBackend(InferenceBackend):
    """``device`` cpu only, ``precision`` fp32 only. ``num_threads``: INFERENCE_NUM_THREADS (None = OpenVINO's
    default, all cores); the reference ORT session of the probe uses the same count. ``class_scores``: also fetch the
    per-pixel class scores (baselines in evaluation), as in the onnxruntime backend."""

    name = "openvino"

    def __init__(self, model_dir: str | Path, device: str = "cpu", precision: str = "fp32",
                 num_threads: int | None = None, class_scores: bool = False):
        ov = import_openvino()
        if device != "cpu":
            raise BackendUnavailable(f"openvino backend runs on OpenVINO's CPU plugin only, not device {device!r}")
        if precision != "fp32":
            raise BackendUnavailable(f"openvino backend runs fp32 only (INFERENCE_PRECISION_HINT f32), got {precision!r}")
        super().__init__(model_dir, device, precision)
        import onnx

        if GRAPH not in self.manifest["files"]:
            raise BackendUnavailable(f"openvino backend runs {GRAPH}, which {self.model_dir} does not list")
        source = verified_onnx_graph(self.model_dir, self.manifest, GRAPH)
        proto = onnx.load(source) if isinstance(source, str) else onnx.load_model_from_string(source)
        self.extra_outputs = keep_adapter_norm_outputs(proto)
        if class_scores:
            expose_class_scores(proto)
        self.provides_class_scores = class_scores
        self.runner = OpenVinoRunner(ov, proto, num_threads)
        self.openvino_version = ov.get_version()
        self.num_threads = num_threads
        reference = reference_session(source, num_threads)
        t0 = time.perf_counter()
        self.parity = check_parity(reference, self.runner, self.batch, self.height, self.width,
                                   what=f"openvino {self.openvino_version} (CPU, f32) on {self.model_dir / GRAPH}")
        self.parity["seconds"] = time.perf_counter() - t0
        log.info("openvino %s: %s compiled in %.1f s with %d adapter outputs kept; parity with ORT CPU: class ids %.4f, "
                 "max |anomaly diff| %.2g", self.openvino_version, GRAPH, self.runner.compile_s, len(self.extra_outputs),
                 self.parity["argmax_agreement"], self.parity["anomaly_max_abs_diff"])

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "openvino": self.openvino_version, "graph": "fused", "plugin": "CPU",
                "config": self.runner.config, "compile_s": self.runner.compile_s, "extra_outputs": self.extra_outputs,
                "parity": self.parity}

    def _run(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
        t0 = time.perf_counter()
        ids, score = self.runner.run(["class_ids", "anomaly"], {IMAGE_NAME: images})
        return ids, score, {"fused": (time.perf_counter() - t0) * 1e3}

    def _run_scores(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, float]]:
        if not self.provides_class_scores:
            return super()._run_scores(images)
        t0 = time.perf_counter()
        ids, score, semantic = self.runner.run(["class_ids", "anomaly", SCORES_NAME], {IMAGE_NAME: images})
        return ids, score, semantic, {"fused": (time.perf_counter() - t0) * 1e3}
