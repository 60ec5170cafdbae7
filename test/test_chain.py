"""The backend chain (dsa_core/runtime/chain.py) with real backends on a real exported dsa_nano model dir:
ONNX Runtime and torch run here, TensorRT is absent (unavailable) unless installed. Start, the reasons of the kinds
not used, integrity refusal at start and after a run-time failure, fall back, retry of the preferred kind."""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from dsa_core.export.manifest import ModelIntegrityError
from dsa_core.runtime import BackendUnavailable
from dsa_core.runtime.chain import BackendChain, runtime_factory
from dsa_core.runtime.onnxruntime_backend import working_providers



@pytest.fixture
def model_dir(tmp_path: Path, exported_nano) -> Path:
    """A private copy: some tests alter files."""
    out = tmp_path / "model"
    shutil.copytree(exported_nano.model_dir, out)
    return out


def _recording(factory):
    """The factory, plus the list of kinds it was asked for (which kinds the chain tried, in order)."""
    asked: list[str] = []

    def make(kind: str):
        asked.append(kind)
        return factory(kind)
    return make, asked


def _corrupt(model_dir: Path) -> None:
    data = bytearray((model_dir / "head.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (model_dir / "head.onnx").write_bytes(bytes(data))


def _real_failure(backend) -> Exception:
    """A real exception out of a backend's infer (input it refuses)."""
    try:
        backend.infer(np.zeros((1, 4, 4), np.float32))
    except Exception as exc:  # noqa: BLE001
        return exc
    raise AssertionError("the backend accepted a float [1, 4, 4] array")


def _images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (1, 40, 60, 3), dtype=np.uint8)


def _has_tensorrt() -> bool:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False
    return True


def test_start_takes_the_first_kind_that_runs_and_says_why_the_others_did_not(model_dir: Path) -> None:
    factory, asked = _recording(runtime_factory(model_dir, {"tensorrt": {"device": "cuda", "precision": "fp16"}}))
    chain = BackendChain(["tensorrt", "onnxruntime", "torch"], factory)
    backend = chain.start()
    if not _has_tensorrt():
        assert chain.name == "onnxruntime" == backend.name and chain.state == "fallback"
        assert "tensorrt not importable" in chain.failures["tensorrt"]
        assert asked == ["tensorrt", "onnxruntime"]  # torch never tried: onnxruntime already runs
        assert "running backend: onnxruntime" in chain.summary() and "tensorrt not used" in chain.summary()
        assert "tensorrt" in chain.status()["events"]
    assert backend.infer(_images()).anomaly.shape == (1, 40, 60)
    # a GPU request that cannot be met falls through to the CPU torch backend, with the reason
    if not working_providers()[0]:
        chain = BackendChain(["onnxruntime", "torch"], runtime_factory(model_dir, {"onnxruntime": {"device": "cuda"}}))
        assert chain.start().name == "torch" and "no GPU provider works" in chain.failures["onnxruntime"]


def test_no_kind_runs_and_unknown_kinds_are_errors(model_dir: Path) -> None:
    if not torch.cuda.is_available():
        with pytest.raises(BackendUnavailable, match=r"no inference backend could be created from torch:\n  torch: .*cuda"):
            BackendChain(["torch"], runtime_factory(model_dir, device="cuda:0")).start()
    with pytest.raises(ValueError, match="unknown backend kinds"):
        BackendChain(["coreml"], runtime_factory(model_dir))
    with pytest.raises(ValueError, match="at least one"):
        BackendChain([], runtime_factory(model_dir))


def test_a_corrupt_model_is_refused_at_start_never_replaced_by_another_kind(model_dir: Path) -> None:
    _corrupt(model_dir)
    factory, asked = _recording(runtime_factory(model_dir))
    with pytest.raises(ModelIntegrityError, match="head.onnx sha256"):
        BackendChain(["onnxruntime", "torch"], factory).start()
    assert asked == ["onnxruntime"]  # torch would read the same altered files


def test_run_time_failure_falls_back_and_the_preferred_kind_is_retried_back(model_dir: Path) -> None:
    woken = []
    chain = BackendChain(["onnxruntime", "torch"], runtime_factory(model_dir), retry_period_s=0.05,
                         on_ready=lambda: woken.append(1))
    first = chain.start()
    assert chain.state == "ok" and chain.retry_targets() == []
    second = chain.fail(_real_failure(first))
    assert second is not None and second.name == "torch" and chain.name == "torch" and chain.state == "fallback"
    assert chain.retry_targets() == ["onnxruntime"] and "onnxruntime failed: ValueError" in chain.status()["events"]
    expected = second.infer(_images())
    deadline = time.monotonic() + 30
    back = None
    while back is None and time.monotonic() < deadline:
        back = chain.poll()
        time.sleep(0.02)
    assert back is not None and back.name == "onnxruntime" and back is not first  # a fresh instance
    assert chain.name == "onnxruntime" and chain.state == "ok" and woken and chain.retry_targets() == []
    status = chain.status()
    assert int(status["retry.attempts"]) >= 1 and status["retry.last"] == "onnxruntime: started"
    assert "retry: back to onnxruntime (was torch)" in status["events"] and status["retry.next_in_s"] == ""
    got = back.infer(_images())
    assert np.mean(got.class_ids == expected.class_ids) > 0.99  # the same model through both kinds
    chain.close()


def test_a_model_corrupted_while_running_stops_the_walk_and_the_retry_waits_for_good_files(model_dir: Path) -> None:
    chain = BackendChain(["onnxruntime", "torch"], runtime_factory(model_dir), retry_period_s=0.05)
    running = chain.start()
    original = (model_dir / "head.onnx").read_bytes()
    _corrupt(model_dir)
    assert chain.fail(_real_failure(running)) is None  # torch refuses the same altered files: no fall back
    assert chain.state == "failed" and "ModelIntegrityError" in chain.status()["events"]
    assert chain.retry_targets() == ["onnxruntime"]
    deadline = time.monotonic() + 30
    while "ModelIntegrityError" not in chain.last_retry and time.monotonic() < deadline:
        assert chain.poll() is None
        time.sleep(0.02)
    assert chain.last_retry.startswith("onnxruntime: ModelIntegrityError") and chain.state == "failed"
    (model_dir / "head.onnx").write_bytes(original)
    back = None
    while back is None and time.monotonic() < deadline:
        back = chain.poll()
        time.sleep(0.02)
    assert back is not None and chain.name == "onnxruntime" and chain.state == "ok"
    chain.close()


def test_the_only_kind_answering_again_ends_the_failed_state(model_dir: Path) -> None:
    chain = BackendChain(["onnxruntime"], runtime_factory(model_dir))  # no retry
    backend = chain.start()
    assert chain.fail(_real_failure(backend)) is None and chain.state == "failed"
    assert "no backend after onnxruntime in the backends list ['onnxruntime']" in chain.events[-1]
    assert chain.poll() is None and chain.status()["retry.next_in_s"] == ""
    backend.infer(_images())
    chain.answered()
    assert chain.state == "ok" and chain.events[-1] == "onnxruntime answers again"
