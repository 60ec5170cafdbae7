"""TensorRT 10 engines from the exported ONNX graphs, and the engine cache that decides when to rebuild.

Plans are only valid for the TensorRT version and GPU that built them (docs/ros_reference.md §7): every engine file
``<graph>.<precision>.<key16>.engine`` has a JSON sidecar holding the full cache key (ONNX sha256, TensorRT
version, GPU name + compute capability, precision, input shapes) and the engine's own sha256. ``check_cached_engine``
(pure Python) compares them; any mismatch, a missing or unreadable file -> rebuild, with the reason logged.
``tensorrt`` and ``pycuda`` are passed in by the caller (imported lazily by the runtime backend).
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dsa_core.export.calibration import CalibrationBatches, CalibrationCache
from dsa_core.atomic import write_json_atomic
from dsa_core.export.manifest import sha256_file

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "int8")
SIDECAR_FORMAT = "dsa-trt-engine-v1"


@dataclass(frozen=True)
class EngineKey:
    onnx_sha256: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str  # "9.0"
    precision: str
    input_shapes: tuple[tuple[str, tuple[int, ...]], ...]  # ((name, shape), ...) in input order

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_shapes"] = {name: list(shape) for name, shape in self.input_shapes}
        return d

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_json(), sort_keys=True).encode()).hexdigest()


def make_engine_key(onnx_path: Path, onnx_sha256: str, tensorrt_version: str, gpu_name: str, compute_capability: str,
                    precision: str) -> EngineKey:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return EngineKey(onnx_sha256, tensorrt_version, gpu_name, compute_capability, precision, onnx_input_shapes(onnx_path))


def onnx_input_shapes(onnx_path: Path) -> tuple[tuple[str, tuple[int, ...]], ...]:
    import onnx

    proto = onnx.load(str(onnx_path), load_external_data=False)
    return tuple((v.name, tuple(int(d.dim_value) for d in v.type.tensor_type.shape.dim)) for v in proto.graph.input)


def engine_paths(cache_dir: Path, graph: str, key: EngineKey) -> tuple[Path, Path]:
    engine = Path(cache_dir) / f"{graph}.{key.precision}.{key.digest()[:16]}.engine"
    return engine, engine.with_name(engine.name + ".json")


def write_sidecar(engine_path: Path, key: EngineKey, build_seconds: float) -> None:
    write_json_atomic(engine_path.with_name(engine_path.name + ".json"), {
        "format": SIDECAR_FORMAT, "key": key.to_json(), "engine_sha256": sha256_file(engine_path),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "build_seconds": round(build_seconds, 1)})


def check_cached_engine(engine_path: Path, key: EngineKey) -> tuple[bool, str]:
    """(reusable, reason). Reusable only if engine + sidecar exist, parse, the key matches and the sha256 matches."""
    sidecar_path = engine_path.with_name(engine_path.name + ".json")
    if not engine_path.is_file():
        return False, f"no cached engine at {engine_path}"
    if not sidecar_path.is_file():
        return False, f"engine {engine_path.name} has no sidecar {sidecar_path.name}"
    try:
        sidecar = json.loads(sidecar_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return False, f"sidecar {sidecar_path.name} unreadable ({exc})"
    if not isinstance(sidecar, dict) or sidecar.get("format") != SIDECAR_FORMAT or not isinstance(sidecar.get("key"), dict):
        return False, f"sidecar {sidecar_path.name} is not a {SIDECAR_FORMAT} file"
    expected = key.to_json()
    diffs = [f"{k}: cached {sidecar['key'].get(k)!r} != wanted {v!r}" for k, v in expected.items() if sidecar["key"].get(k) != v]
    if diffs:
        return False, "cache key mismatch: " + "; ".join(diffs)
    if sha256_file(engine_path) != sidecar.get("engine_sha256"):
        return False, f"engine {engine_path.name} does not match the sha256 in its sidecar (corrupt or replaced)"
    return True, "cache hit"


# ---- the parts below need TensorRT (and pycuda for int8 calibration) -------------------------------------------

def _progress_monitor(trt: Any) -> Any | None:
    """An IProgressMonitor that logs build phases (TensorRT >= 10.0 Python API); None where unavailable."""
    base = getattr(trt, "IProgressMonitor", None)
    if base is None:
        return None

    class LogProgress(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            base.__init__(self)
            self._last = 0.0

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            log.info("TensorRT build: %s%s (%d steps)", f"{parent_phase} / " if parent_phase else "", phase_name, num_steps)

        def step_complete(self, phase_name: str, step: int) -> bool:
            if time.monotonic() - self._last > 5.0:  # like Autoware: a heartbeat every few seconds, not a flood
                self._last = time.monotonic()
                log.info("TensorRT build: %s step %d ... please wait", phase_name, step + 1)
            return True  # False would cancel the build

        def phase_finish(self, phase_name: str) -> None:
            log.debug("TensorRT build: %s done", phase_name)

    return LogProgress()


def make_entropy_calibrator(trt: Any, cuda: Any, batches: CalibrationBatches, cache: CalibrationCache) -> Any:
    """IInt8EntropyCalibrator2 fed from ``batches`` (uint8, the graph's input dtype), keeping the cache file."""

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self._iter = iter(batches)
            shape = (batches.batch, 3, batches.height, batches.width)
            self._device = cuda.mem_alloc(int(np.prod(shape)))  # uint8
            self._count = 0

        def get_batch_size(self) -> int:
            return batches.batch

        def get_batch(self, names: list[str]) -> list[int] | None:
            try:
                data = next(self._iter)
            except StopIteration:
                return None
            cuda.memcpy_htod(self._device, data)
            self._count += 1
            log.info("int8 calibration batch %d/%d", self._count, len(batches))
            return [int(self._device)]

        def read_calibration_cache(self) -> bytes | None:
            return cache.read()

        def write_calibration_cache(self, data: Any) -> None:
            cache.write(bytes(data))

    return EntropyCalibrator()


def build_serialized_engine(trt: Any, onnx_path: Path, precision: str, workspace_bytes: int = 2 << 30,
                            calibrator: Any | None = None, trt_logger: Any | None = None) -> bytes:
    """Parse ``onnx_path`` (errors reported node by node) and build a serialized plan."""
    trt_logger = trt_logger or trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(trt_logger)
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH"):  # deprecated no-op in TRT 10, required before
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, trt_logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise RuntimeError(f"TensorRT could not parse {onnx_path.name}:\n  " + "\n  ".join(errors))
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_bytes))
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        if calibrator is None:
            raise ValueError("int8 needs a calibrator (an image list) or an existing calibration cache")
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = calibrator
    monitor = _progress_monitor(trt)
    if monitor is not None:
        config.progress_monitor = monitor
    log.info("building TensorRT %s engine from %s (this can take minutes)...", precision, onnx_path.name)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise RuntimeError(f"TensorRT failed to build an engine for {onnx_path.name} (see the TensorRT log above)")
    return bytes(plan)


def load_or_build_engine(trt: Any, runtime: Any, onnx_path: Path, key: EngineKey, cache_dir: Path, graph: str,
                         workspace_bytes: int = 2 << 30, calibrator_factory: Any | None = None, force_rebuild: bool = False) -> Any:
    """Deserialize the cached engine if its sidecar validates, else (re)build, cache and deserialize."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    engine_path, _ = engine_paths(cache_dir, graph, key)
    ok, reason = (False, "rebuild forced") if force_rebuild else check_cached_engine(engine_path, key)
    if ok:
        engine = runtime.deserialize_cuda_engine(engine_path.read_bytes())
        if engine is not None:
            log.info("loaded cached TensorRT engine %s", engine_path)
            return engine
        reason = f"cached engine {engine_path.name} failed to deserialize"
    log.warning("building %s engine: %s", graph, reason)
    start = time.monotonic()
    calibrator = calibrator_factory() if (key.precision == "int8" and calibrator_factory is not None) else None
    plan = build_serialized_engine(trt, onnx_path, key.precision, workspace_bytes, calibrator)
    tmp = engine_path.with_name(engine_path.name + ".tmp")
    tmp.write_bytes(plan)
    tmp.replace(engine_path)
    write_sidecar(engine_path, key, time.monotonic() - start)
    log.info("built %s in %.0f s", engine_path, time.monotonic() - start)
    engine = runtime.deserialize_cuda_engine(plan)
    if engine is None:
        raise RuntimeError(f"TensorRT could not deserialize the engine it just built ({engine_path})")
    return engine
