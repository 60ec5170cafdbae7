"""scripts/gpu_train.py at a tiny budget on CPU (so it works the first time on a GPU machine), and the sharded
weights it leaves behind."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from dsa_core import build_model
from dsa_core.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint, save_sharded

REPO = Path(__file__).resolve().parent.parent


def _script():
    spec = importlib.util.spec_from_file_location("gpu_train", REPO / "scripts" / "gpu_train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sharded_weights_round_trip_and_tamper_refused(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model("dsa_nano")
    payload = {"config": model.cfg.to_dict(), "model": model.state_dict(), "stage": "stage2", "step": 3}
    files = save_sharded(payload, tmp_path / "w", max_bytes=2 * 2**20)
    shards = [f for f in files if f.suffix == ".safetensors"]
    assert len(shards) > 2 and all(f.stat().st_size <= 2 * 2**20 + 64 * 1024 for f in shards)
    loaded, data = model_from_checkpoint(tmp_path / "w")
    assert data["step"] == 3
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    raw = bytearray(shards[0].read_bytes())
    raw[-1] ^= 0xFF
    shards[0].write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="sha256"):
        load_checkpoint(tmp_path / "w")


@pytest.mark.slow
def test_gpu_train_tiny_on_cpu(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    out = tmp_path / "out"
    rc = _script().main(["--out", str(out), "--work", str(tmp_path / "work"), "--tiny", "--device", "cpu", "--workers", "2"])
    assert rc == 0
    report = json.loads((out / "gpu_train.json").read_text())
    assert set(report["stages"]) == {"pretrain", "stage1", "stage2"}
    assert all(s["step"] >= 1 for s in report["stages"].values())
    assert {"cityscapes", "fs_laf", "road_anomaly"} <= set(report["eval"])
    from dsa_core.data.synth.anomaly_synth import FS_LAF_KINDS  # every held-out kind is reported, with its baselines

    assert set(report["eval_kinds"]) == set(FS_LAF_KINDS)
    for kind, result in report["eval_kinds"].items():
        assert 0.0 <= result["auprc"] <= 1.0 and set(result["baselines"]) >= {"max_softmax", "not_drivable"}, kind
    assert all(p.stat().st_size <= 16 * 2**20 for p in out.rglob("*") if p.is_file())
    from dsa_core.runtime import create_backend

    assert create_backend("onnxruntime", out / "model").name == "onnxruntime"
    from dsa_core.export.manifest import verify_model_dir
    from dsa_core.runtime.operating_point import resolve_operating_point

    op = resolve_operating_point(verify_model_dir(out / "model"))  # the model dir carries its calibrated point
    assert op.threshold_source == op.min_area_source == "manifest"
    assert op.anomaly_threshold == report["calibration"]["anomaly_threshold"]
    assert report["calibration"]["val_drive_frames"] == 6  # the min area counts the val drive's alerts
    from dsa_core.eval.calibrate import RECIPE_MAX_FALSE_ALERTS_PER_HOUR  # the CPU recipe's false-alert budget

    assert json.loads((out / "model" / "manifest.json").read_text())["operating_point"]["calibration"][
        "max_false_alerts_per_hour"] == RECIPE_MAX_FALSE_ALERTS_PER_HOUR
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert files == ["eval_metrics.json", "gpu_train.json", "model/fused.onnx", "model/manifest.json", "model/model.pt"]


def test_gpu_train_refuses_a_missing_cuda_device(tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    assert _script().main(["--out", str(tmp_path), "--tiny", "--device", "cuda"]) == 2
