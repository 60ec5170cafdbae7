"""TensorRT 10 backend: engines from the model dir's ONNX (cached, validated), pycuda buffers, one CUDA stream.

``graph="split"``: the backbone engine writes its 4 feature tensors into device buffers that are bound directly
as the head engine's inputs (no copy) -- one backbone run can feed several heads. ``graph="fused"``: one engine.
Host buffers are pinned; inputs/outputs move with async copies on the backend's stream and both engines run with
``execute_async_v3`` after ``set_tensor_address``. tensorrt and pycuda are imported when the backend is created;
without them it raises BackendUnavailable with the import error.

Files: the ONNX graphs (and any external data) must be listed in the manifest. The engine cache is built on the
vehicle for its GPU and TensorRT version, so it cannot be in the export's manifest: each engine is used only when
its sidecar's key names the manifest-verified ONNX sha256 and its own sha256 matches, else it is rebuilt
(dsa_core/export/tensorrt_engine.py).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from dsa_core.export.calibration import CalibrationBatches, CalibrationCache, read_image_list
from dsa_core.export.tensorrt_engine import PRECISIONS, load_or_build_engine, make_engine_key, make_entropy_calibrator
from dsa_core.export.graphs import IMAGE_NAME
from dsa_core.export.trt_msda_plugin import MSDA_CHOICES, choose_onnx_graph
from dsa_core.export.manifest import listed_file, onnx_external_data_files, read_listed_file
from dsa_core.runtime.base import BackendUnavailable, InferenceBackend

log = logging.getLogger(__name__)


def import_tensorrt() -> tuple[Any, Any]:
    """(tensorrt, pycuda.driver) or BackendUnavailable saying which import failed and why."""
    try:
        import tensorrt as trt
    except Exception as exc:  # ImportError, or OSError from missing libnvinfer
        raise BackendUnavailable(f"tensorrt not importable: {type(exc).__name__}: {exc}") from exc
    major = int(str(trt.__version__).split(".")[0])
    if major < 10:
        raise BackendUnavailable(f"TensorRT >= 10 required (execute_async_v3, tensor API), found {trt.__version__}")
    if not hasattr(trt, "Builder") or not hasattr(trt, "OnnxParser"):
        raise BackendUnavailable(f"tensorrt {trt.__version__} has no Builder/OnnxParser (lean/dispatch runtime only)")
    try:
        import pycuda.driver as cuda

        cuda.init()
        if cuda.Device.count() == 0:
            raise RuntimeError("no CUDA device")
    except Exception as exc:  # no libcuda.so.1 / no driver / no GPU
        raise BackendUnavailable(f"pycuda not usable: {type(exc).__name__}: {exc}") from exc
    return trt, cuda


class TensorRTBackend(InferenceBackend):
    name = "tensorrt"

    def __init__(self, model_dir: str | Path, device: str = "cuda", precision: str = "fp16", graph: str = "split",
                 cache_dir: str | Path | None = None, workspace_mb: int = 2048, calibration_images: str | Path | None = None,
                 force_rebuild: bool = False, msda: str = "auto"):
        if msda not in MSDA_CHOICES:
            raise ValueError(f"msda must be one of {MSDA_CHOICES}, got {msda!r}")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if graph not in ("split", "fused"):
            raise ValueError(f"graph must be 'split' or 'fused', got {graph!r}")
        if precision == "int8" and graph == "split":
            raise ValueError("int8 calibration feeds images only: use graph='fused' for int8")
        trt, cuda = import_tensorrt()
        super().__init__(model_dir, device, precision)
        self.trt, self.cuda = trt, cuda
        self.msda = msda
        self.onnx_files: dict[str, str] = {}
        device_index = int(device.split(":")[1]) if ":" in device else 0
        self._cuda_device = cuda.Device(device_index)
        self._ctx = self._cuda_device.retain_primary_context()
        self._ctx.push()
        try:
            self.gpu_name = self._cuda_device.name()
            cc = self._cuda_device.compute_capability()
            self.compute_capability = f"{cc[0]}.{cc[1]}"
            self.graph = graph if "head.onnx" in self.manifest["files"] else "fused"
            self.cache_dir = Path(cache_dir) if cache_dir else self.model_dir / "engines"
            self._logger = trt.Logger(trt.Logger.WARNING)
            self._runtime = trt.Runtime(self._logger)
            graphs = ["backbone", "head"] if self.graph == "split" else ["fused"]
            self.engines = {g: self._engine(g, workspace_mb, calibration_images, force_rebuild) for g in graphs}
            self.contexts = {g: e.create_execution_context() for g, e in self.engines.items()}
            self.stream = cuda.Stream()
            self._allocate()
        finally:
            self._ctx.pop()

    def _engine(self, graph: str, workspace_mb: int, calibration_images: str | Path | None, force_rebuild: bool) -> Any:
        onnx_name, why = choose_onnx_graph(self.manifest["files"], graph, self.msda, self.trt)
        log.info("TensorRT %s engine from %s (%s)", graph, onnx_name, why)
        self.onnx_files[graph] = onnx_name
        onnx_path = listed_file(self.model_dir, self.manifest, onnx_name)  # listed (and verified) or refused
        for location in onnx_external_data_files(read_listed_file(self.model_dir, self.manifest, onnx_name)):
            listed_file(self.model_dir, self.manifest, location)
        key = make_engine_key(onnx_path, self.manifest["files"][onnx_name]["sha256"], self.trt.__version__,
                              self.gpu_name, self.compute_capability, self.precision)
        factory = None
        if self.precision == "int8":
            cache = CalibrationCache(self.cache_dir / f"{graph}.int8-entropy2.calib")
            if calibration_images is None and cache.read() is None:
                raise ValueError("int8 needs calibration_images (an image list file) or an existing calibration cache")
            paths = read_image_list(calibration_images) if calibration_images else []
            batches = CalibrationBatches(paths, self.batch, self.height, self.width) if paths else None

            def factory() -> Any:
                return make_entropy_calibrator(self.trt, self.cuda, batches, cache) if batches else _cache_only(self.trt, cache, self.batch)
        return load_or_build_engine(self.trt, self._runtime, onnx_path, key, self.cache_dir, onnx_name.removesuffix(".onnx"),
                                    workspace_mb << 20, factory, force_rebuild)

    def _allocate(self) -> None:
        """Device buffer per tensor; split mode binds the backbone's outputs as the head's inputs."""
        trt, cuda = self.trt, self.cuda
        self.device_buffers: dict[str, Any] = {}
        self.host_buffers: dict[str, np.ndarray] = {}
        self.io_names: dict[str, list[str]] = {}
        for graph, engine in self.engines.items():
            names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
            self.io_names[graph] = names
            for name in names:
                shape = tuple(engine.get_tensor_shape(name))
                dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
                if name not in self.device_buffers:  # image + features are shared between backbone and head
                    host = cuda.pagelocked_empty(shape, dtype)
                    self.host_buffers[name] = host
                    self.device_buffers[name] = cuda.mem_alloc(max(host.nbytes, 1))
                self.contexts[graph].set_tensor_address(name, int(self.device_buffers[name]))
        log.info("TensorRT %s on %s (sm %s): %s engines %s, io %s", self.trt.__version__, self.gpu_name, self.compute_capability,
                 self.precision, list(self.engines), self.io_names)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "tensorrt": self.trt.__version__, "gpu": self.gpu_name,
                "compute_capability": self.compute_capability, "graph": self.graph, "engine_cache": str(self.cache_dir),
                "onnx": dict(self.onnx_files)}

    def _run(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
        cuda = self.cuda
        self._ctx.push()
        try:
            np.copyto(self.host_buffers[IMAGE_NAME], images)
            events = [cuda.Event() for _ in range(len(self.engines) + 2)]
            events[0].record(self.stream)
            cuda.memcpy_htod_async(self.device_buffers[IMAGE_NAME], self.host_buffers[IMAGE_NAME], self.stream)
            for i, (graph, context) in enumerate(self.contexts.items()):
                if not context.execute_async_v3(stream_handle=self.stream.handle):
                    raise RuntimeError(f"TensorRT execute_async_v3 failed for the {graph} engine")
                events[i + 1].record(self.stream)
            for name in ("class_ids", "anomaly"):
                cuda.memcpy_dtoh_async(self.host_buffers[name], self.device_buffers[name], self.stream)
            events[-1].record(self.stream)
            self.stream.synchronize()
            stages = {g: events[i].time_till(events[i + 1]) for i, g in enumerate(self.contexts)}  # first stage incl. H2D
            stages["d2h"] = events[-2].time_till(events[-1])
            return self.host_buffers["class_ids"].copy(), self.host_buffers["anomaly"].astype(np.float32), stages
        finally:
            self._ctx.pop()


def _cache_only(trt: Any, cache: CalibrationCache, batch: int) -> Any:
    """A calibrator that serves an existing calibration cache and no data (rebuild without the image list)."""

    class CacheOnlyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)

        def get_batch_size(self) -> int:
            return batch

        def get_batch(self, names: list[str]) -> None:
            return None

        def read_calibration_cache(self) -> bytes | None:
            return cache.read()

        def write_calibration_cache(self, data: Any) -> None:
            cache.write(bytes(data))

    return CacheOnlyCalibrator()
