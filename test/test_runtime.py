"""Runtime backends on a real exported dsa_nano model dir: one interface (any camera size, any batch), torch and
ONNX Runtime agree, the resize step is what it says, integrity is enforced (the backend chain: test_chain.py)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from dsa_core.export.manifest import ModelIntegrityError
from dsa_core.runtime import BackendUnavailable, create_backend
from dsa_core.runtime.onnxruntime_backend import working_providers
from dsa_core.export.resize import images_to_export_size, outputs_to_camera_size

from exported_nano import H, W


@pytest.fixture(scope="module")
def model_dir(exported_nano) -> Path:
    return exported_nano.model_dir


def _camera(b: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (b, h, w, 3), dtype=np.uint8)


def test_any_size_any_batch_through_onnxruntime(model_dir: Path) -> None:
    backend = create_backend("onnxruntime", model_dir, intra_op_threads=1, inter_op_threads=1)
    images = _camera(3, 90, 200)
    result = backend.infer(images)
    assert result.class_ids.shape == (3, 90, 200) and result.class_ids.dtype == np.uint8
    assert result.anomaly.shape == (3, 90, 200) and result.anomaly.dtype == np.float32
    assert result.class_ids.max() < 19 and np.isfinite(result.anomaly).all()
    assert {"resize_in", "fused", "resize_out", "total"} <= set(result.timings)
    # batch 3 on a batch-1 graph = three single-image calls
    single = [backend.infer(images[i:i + 1]) for i in range(3)]
    np.testing.assert_array_equal(result.class_ids, np.concatenate([s.class_ids for s in single]))
    np.testing.assert_allclose(result.anomaly, np.concatenate([s.anomaly for s in single]), atol=1e-6)
    d = backend.describe()
    assert d["backend"] == "onnxruntime" and d["providers"] == ["CPUExecutionProvider"] and d["export_size"] == [H, W]
    # the export-size maps come along (the node searches obstacles there): the camera maps are their resize
    assert result.export_class_ids.shape == result.export_anomaly.shape == (3, H, W)
    ids, score = outputs_to_camera_size(result.export_class_ids, result.export_anomaly, 90, 200)
    np.testing.assert_array_equal(ids, result.class_ids)
    np.testing.assert_array_equal(score, result.anomaly)


def test_torch_and_onnxruntime_backends_agree(model_dir: Path) -> None:
    images = _camera(1, H, W, seed=3)
    ort_fused = create_backend("onnxruntime", model_dir).infer(images)
    ort_split = create_backend("onnxruntime", model_dir, graph="split").infer(images)
    torch_res = create_backend("torch", model_dir).infer(images)
    assert {"backbone", "head"} <= set(torch_res.timings) and {"backbone", "head"} <= set(ort_split.timings)
    for other in (ort_split, torch_res):
        assert (other.class_ids == ort_fused.class_ids).mean() >= 0.999
        assert np.abs(other.anomaly - ort_fused.anomaly).max() <= 1e-3


def test_baselines_of_the_same_pass_from_onnxruntime_and_torch(model_dir: Path, exported_nano) -> None:
    """The model dir was exported without semantic_scores: ONNX Runtime exposes the argmax input of class_ids.
    Reference: the seeded torch model's class scores at the export size, normalised by hand in float64 and resized
    to the camera like the anomaly score."""
    import cv2

    model = exported_nano.model
    assert "semantic_scores" not in [o["name"] for o in exported_nano.manifest["files"]["fused.onnx"]["outputs"]]
    images = _camera(2, 50, 90, seed=4)
    x = torch.from_numpy(images_to_export_size(images, H, W))
    with torch.no_grad():
        sem = model.predict(x)["semantic"].double().numpy()
    p = sem / sem.sum(1, keepdims=True)
    ref = {"max_softmax": 1 - p.max(1), "entropy": -(p * np.log(p)).sum(1) / np.log(p.shape[1]), "not_drivable": 1 - p[:, 0]}
    backends = [create_backend("onnxruntime", model_dir, class_scores=True),
                create_backend("onnxruntime", model_dir, graph="split", class_scores=True), create_backend("torch", model_dir)]
    for backend in backends:
        res = backend.infer(images, baselines=True)
        plain = backend.infer(images)
        np.testing.assert_array_equal(res.anomaly, plain.anomaly)  # the same pass, nothing else changed
        for name, want in ref.items():
            want = np.stack([cv2.resize(m.astype(np.float32), (90, 50), interpolation=cv2.INTER_LINEAR) for m in want])
            assert res.baselines[name].shape == (2, 50, 90)
            np.testing.assert_allclose(res.baselines[name], want, atol=2e-4, err_msg=f"{backend.name} {name}")
    with pytest.raises(BackendUnavailable, match="class scores"):
        create_backend("onnxruntime", model_dir).infer(images, baselines=True)


def test_input_resize_matches_torch_bilinear_and_skips_when_same_size() -> None:
    images = _camera(2, 40, 60)
    up = images_to_export_size(images, 80, 120)  # enlarging: bilinear with half-pixel centres
    ref = torch.nn.functional.interpolate(torch.from_numpy(images).permute(0, 3, 1, 2).float(), size=(80, 120),
                                          mode="bilinear", align_corners=False).round().numpy()
    assert np.abs(up.astype(np.float64) - ref).max() <= 1.0
    same = images_to_export_size(images, 40, 60)
    np.testing.assert_array_equal(same, images.transpose(0, 3, 1, 2))
    # shrinking by an integer factor = mean of each 2x2 block (area averaging, no aliasing)
    down = images_to_export_size(images, 20, 30).astype(np.float64)
    blocks = images.astype(np.float64).reshape(2, 20, 2, 30, 2, 3).mean(axis=(2, 4)).transpose(0, 3, 1, 2)
    assert np.abs(down - blocks).max() <= 1.0


def test_output_resize_nearest_ids_bilinear_scores() -> None:
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 19, (2, 8, 16), dtype=np.uint8)
    score = rng.random((2, 8, 16), dtype=np.float32)
    big_ids, big_score = outputs_to_camera_size(ids, score, 20, 40)
    rows = np.floor(np.arange(20) * 8 / 20).astype(int)  # nearest: source index floor(dst * in / out)
    cols = np.floor(np.arange(40) * 16 / 40).astype(int)
    np.testing.assert_array_equal(big_ids, ids[:, rows][:, :, cols])
    ref = torch.nn.functional.interpolate(torch.from_numpy(score)[:, None], size=(20, 40), mode="bilinear",
                                          align_corners=False)[:, 0].numpy()
    np.testing.assert_allclose(big_score, ref, atol=1e-5)
    assert big_ids.dtype == np.uint8 and big_score.dtype == np.float32
    with pytest.raises(ValueError, match="one shape"):
        outputs_to_camera_size(ids, score[:1], 20, 40)


def test_bad_images_rejected(model_dir: Path) -> None:
    backend = create_backend("onnxruntime", model_dir)
    with pytest.raises(ValueError, match=r"uint8 RGB images \[B, H, W, 3\]"):
        backend.infer(np.zeros((1, 10, 10, 3), np.float32))
    with pytest.raises(ValueError, match="got dtype uint8 shape"):
        backend.infer(np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(TypeError, match="numpy"):
        backend.infer(torch.zeros(1, 10, 10, 3, dtype=torch.uint8))


def test_integrity_mismatch_refused(model_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(model_dir, bad)
    data = bytearray((bad / "head.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (bad / "head.onnx").write_bytes(bytes(data))
    for kind in ("onnxruntime", "torch"):
        with pytest.raises(ModelIntegrityError, match="head.onnx sha256"):
            create_backend(kind, bad)
    (bad / "head.onnx").unlink()
    with pytest.raises(ModelIntegrityError, match="head.onnx is missing"):
        create_backend("onnxruntime", bad)
    (bad / "manifest.json").write_text("{broken")
    with pytest.raises(ModelIntegrityError, match="unreadable"):
        create_backend("onnxruntime", bad)
    manifest = json.loads((model_dir / "manifest.json").read_text())
    manifest["files"]["../escape.onnx"] = {"sha256": "0"}
    (bad / "manifest.json").write_text(json.dumps(manifest))
    shutil.copy(model_dir / "head.onnx", bad / "head.onnx")
    with pytest.raises(ModelIntegrityError, match="escapes"):
        create_backend("onnxruntime", bad)


def test_gpu_providers_are_probed_not_trusted() -> None:
    import onnxruntime as ort

    ok, failed = working_providers()
    listed = set(ort.get_available_providers())
    for provider in ("TensorrtExecutionProvider", "CUDAExecutionProvider"):
        assert (provider in ok) != (provider in failed)
        if provider not in listed:
            assert failed[provider] == "not in onnxruntime.get_available_providers()"


def test_cli_build_engine_reports_missing_tensorrt(model_dir: Path, capsys) -> None:
    from dsa_core.cli import main

    try:
        import tensorrt  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("TensorRT present: this test covers the unavailable path")
    assert main(["export", "--out", str(model_dir), "--build-engine", "--build-only"]) == 3
    assert "cannot build TensorRT engines here: tensorrt not importable" in capsys.readouterr().out
