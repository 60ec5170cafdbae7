"""The pure-Python parts of the TensorRT path, on real files: engine cache key + sidecar validation and the
rebuild decision, int8 calibration batching from an image list, calibration cache, and "unavailable" reporting.
TensorRT itself cannot be installed on this machine; the engine build runs where a GPU + TensorRT exist."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from PIL import Image

from dsa_core.export.calibration import CalibrationBatches, CalibrationCache, read_image_list
from dsa_core.export.manifest import sha256_file
from dsa_core.export.tensorrt_engine import (
    EngineKey, check_cached_engine, engine_paths, load_or_build_engine, make_engine_key, onnx_input_shapes, write_sidecar,
)
from dsa_core.runtime import BackendUnavailable, create_backend
from dsa_core.export.resize import images_to_export_size
from dsa_core.runtime.tensorrt_backend import import_tensorrt


@pytest.fixture()
def onnx_file(tmp_path: Path) -> Path:
    image = helper.make_tensor_value_info("image", TensorProto.UINT8, [2, 3, 8, 16])
    feat = helper.make_tensor_value_info("feat", TensorProto.FLOAT, [2, 4, 1, 1])
    out = helper.make_tensor_value_info("out", TensorProto.FLOAT, [2, 3, 8, 16])
    graph = helper.make_graph([helper.make_node("Cast", ["image"], ["out"], to=TensorProto.FLOAT)], "g", [image, feat], [out])
    path = tmp_path / "head.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def _key(onnx_file: Path, **changes) -> EngineKey:
    key = make_engine_key(onnx_file, sha256_file(onnx_file), "10.9.0", "NVIDIA H200", "9.0", "fp16")
    return dataclasses.replace(key, **changes)


def test_input_shapes_read_from_the_onnx_file(onnx_file: Path) -> None:
    assert onnx_input_shapes(onnx_file) == (("image", (2, 3, 8, 16)), ("feat", (2, 4, 1, 1)))


def test_key_digest_changes_with_every_field(onnx_file: Path) -> None:
    base = _key(onnx_file)
    assert base.digest() == _key(onnx_file).digest()
    variants = [_key(onnx_file, onnx_sha256="0" * 64), _key(onnx_file, tensorrt_version="10.10.0"),
                _key(onnx_file, gpu_name="Orin"), _key(onnx_file, compute_capability="8.7"),
                _key(onnx_file, precision="int8"), _key(onnx_file, input_shapes=(("image", (1, 3, 8, 16)),))]
    digests = {v.digest() for v in variants} | {base.digest()}
    assert len(digests) == len(variants) + 1
    engine, sidecar = engine_paths(Path("/c"), "head", base)
    assert engine.name.startswith("head.fp16.") and engine.name.endswith(".engine")
    assert sidecar.name == engine.name + ".json"
    assert engine_paths(Path("/c"), "head", variants[1])[0] != engine


def test_bad_precision_rejected(onnx_file: Path) -> None:
    with pytest.raises(ValueError, match="precision"):
        make_engine_key(onnx_file, "x", "10.0", "gpu", "9.0", "bf8")


def test_cache_validation_decisions(tmp_path: Path, onnx_file: Path) -> None:
    key = _key(onnx_file)
    engine, sidecar = engine_paths(tmp_path, "head", key)
    ok, reason = check_cached_engine(engine, key)
    assert not ok and "no cached engine" in reason
    engine.write_bytes(b"plan-bytes")
    ok, reason = check_cached_engine(engine, key)
    assert not ok and "no sidecar" in reason
    sidecar.write_text("{not json")
    ok, reason = check_cached_engine(engine, key)
    assert not ok and "unreadable" in reason
    write_sidecar(engine, key, build_seconds=1.0)
    assert check_cached_engine(engine, key) == (True, "cache hit")
    stored = json.loads(sidecar.read_text())
    assert stored["engine_sha256"] == sha256_file(engine) and stored["key"]["gpu_name"] == "NVIDIA H200"
    # another TensorRT version / GPU: the mismatching fields are named
    ok, reason = check_cached_engine(engine, _key(onnx_file, tensorrt_version="10.10.0", compute_capability="8.7"))
    assert not ok and "tensorrt_version" in reason and "compute_capability" in reason and "gpu_name" not in reason
    # engine bytes replaced after the sidecar was written
    engine.write_bytes(b"other-plan")
    ok, reason = check_cached_engine(engine, key)
    assert not ok and "sha256" in reason


class _RecordingTensorRT:
    """Stand-in for the two TensorRT calls the cache logic makes (TensorRT cannot run here): counts builds and
    deserializes plans as their bytes, refusing the ones marked bad."""

    def __init__(self) -> None:
        self.builds = 0

    def deserialize_cuda_engine(self, data: bytes):
        return None if data.startswith(b"BAD") else ("engine", bytes(data))


def test_load_or_build_rebuilds_only_when_needed(tmp_path: Path, onnx_file: Path, monkeypatch) -> None:
    import dsa_core.export.tensorrt_engine as te

    trt = _RecordingTensorRT()

    def fake_build(_trt, onnx_path, precision, workspace_bytes, calibrator):
        trt.builds += 1
        return f"PLAN{trt.builds}-{precision}".encode()

    monkeypatch.setattr(te, "build_serialized_engine", fake_build)
    key = _key(onnx_file)
    e1 = load_or_build_engine(trt, trt, onnx_file, key, tmp_path, "head")
    assert trt.builds == 1 and e1 == ("engine", b"PLAN1-fp16")
    e2 = load_or_build_engine(trt, trt, onnx_file, key, tmp_path, "head")
    assert trt.builds == 1 and e2 == e1  # cache hit
    engine_path, sidecar = engine_paths(tmp_path, "head", key)
    engine_path.write_bytes(b"BAD plan")  # stale plan whose sidecar no longer matches -> rebuild
    assert load_or_build_engine(trt, trt, onnx_file, key, tmp_path, "head") == ("engine", b"PLAN2-fp16")
    assert check_cached_engine(engine_path, key)[0]
    engine_path.write_bytes(b"BAD but consistent")  # sidecar matches, deserialization fails -> rebuild
    write_sidecar(engine_path, key, 0.0)
    assert load_or_build_engine(trt, trt, onnx_file, key, tmp_path, "head") == ("engine", b"PLAN3-fp16")
    load_or_build_engine(trt, trt, onnx_file, key, tmp_path, "head", force_rebuild=True)
    assert trt.builds == 4


def _write_images(folder: Path, sizes: list[tuple[int, int]]) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for i, (h, w) in enumerate(sizes):
        path = folder / f"img{i}.png"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def test_calibration_batches_from_image_list(tmp_path: Path) -> None:
    (tmp_path / "imgs").mkdir()
    paths = _write_images(tmp_path / "imgs", [(40, 80), (16, 32), (50, 60), (16, 32), (20, 20)])
    list_file = tmp_path / "calib.txt"
    list_file.write_text("# calibration set\n\n" + "\n".join(f"imgs/{p.name}" for p in paths[:4]) + f"\n{paths[4]}\n")
    listed = read_image_list(list_file)
    assert listed == paths
    batches = CalibrationBatches(listed, batch=2, height=16, width=32)
    assert len(batches) == 2  # the 5th image does not fill a batch
    out = list(batches)
    assert [b.shape for b in out] == [(2, 3, 16, 32)] * 2 and all(b.dtype == np.uint8 for b in out)
    # same pixels as the runtime's own resize of the same file
    expected = images_to_export_size(np.asarray(Image.open(paths[2]).convert("RGB"))[None], 16, 32)[0]
    np.testing.assert_array_equal(out[1][0], expected)
    # an image already at the export size passes through unchanged (CHW)
    np.testing.assert_array_equal(out[0][1], np.asarray(Image.open(paths[1])).transpose(2, 0, 1))


def test_calibration_input_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="list not found"):
        read_image_list(tmp_path / "nope.txt")
    bad = tmp_path / "bad.txt"
    bad.write_text("missing.png\n")
    with pytest.raises(FileNotFoundError, match=r"bad.txt:1"):
        read_image_list(bad)
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n")
    with pytest.raises(ValueError, match="names no images"):
        read_image_list(empty)
    with pytest.raises(ValueError, match="full batch"):
        CalibrationBatches(_write_images(tmp_path, [(8, 8)]), batch=2, height=8, width=8)


def test_calibration_cache_roundtrip(tmp_path: Path) -> None:
    cache = CalibrationCache(tmp_path / "engines" / "fused.int8-entropy2.calib")
    assert cache.read() is None
    cache.write(b"TRT-1000-EntropyCalibration2\nimage: 3c010a14\n")
    assert cache.read() == b"TRT-1000-EntropyCalibration2\nimage: 3c010a14\n"


def test_tensorrt_reports_unavailable_with_reason(tmp_path: Path) -> None:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("TensorRT is installed here; the unavailable path is not reachable")
    with pytest.raises(BackendUnavailable, match="tensorrt not importable"):
        import_tensorrt()
    with pytest.raises(BackendUnavailable, match="tensorrt not importable"):
        create_backend("tensorrt", tmp_path, device="cuda", precision="fp16")
