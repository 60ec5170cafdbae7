"""dsa export --quantize dynamic-int8 (dsa_core/export/quantize.py) on the session's exported dsa_nano: the int8
graph runs in ONNX Runtime through the backend, its accuracy change against fused.onnx is recorded in the manifest
and matches a recomputation through the two backends, and the model dir still passes its integrity check."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from dsa_core.export.manifest import ModelIntegrityError, verify_model_dir
from dsa_core.export.quantize import INT8_GRAPH, quantize_model_dir, synthetic_images
from dsa_core.export.trt_onnx_ops import graph_op_types
from dsa_core.runtime.base import BackendUnavailable
from dsa_core.runtime.onnxruntime_backend import OnnxRuntimeBackend


@pytest.fixture(scope="module")
def quantized(exported_nano, tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("int8") / "model"
    shutil.copytree(exported_nano.model_dir, model_dir)
    return model_dir, quantize_model_dir(model_dir, n_images=2, seed=3)


def test_int8_graph_is_quantized_and_listed(quantized) -> None:
    model_dir, manifest = quantized
    assert verify_model_dir(model_dir)["files"][INT8_GRAPH]["sha256"] == manifest["files"][INT8_GRAPH]["sha256"]
    ops = graph_op_types(onnx.load(str(model_dir / INT8_GRAPH)))
    assert ops["MatMulInteger"] > 0 and ops["DynamicQuantizeLinear"] > 0
    assert set(manifest["files"]) >= {"fused.onnx", "head.onnx", "backbone.onnx", "model.pt", INT8_GRAPH}
    (model_dir / INT8_GRAPH).write_bytes((model_dir / INT8_GRAPH).read_bytes() + b"\0")
    with pytest.raises(ModelIntegrityError):
        verify_model_dir(model_dir)
    (model_dir / INT8_GRAPH).write_bytes((model_dir / INT8_GRAPH).read_bytes()[:-1])
    verify_model_dir(model_dir)


def test_recorded_agreement_matches_the_backends(quantized) -> None:
    model_dir, manifest = quantized
    record = manifest["files"][INT8_GRAPH]["quantization"]
    fp32 = OnnxRuntimeBackend(model_dir, precision="fp32", graph="fused", intra_op_threads=1)
    int8 = OnnxRuntimeBackend(model_dir, precision="int8", intra_op_threads=1)
    assert int8.fused_file == INT8_GRAPH and int8.describe()["precision"] == "int8"
    same = total = 0
    diffs, worst = [], 0.0
    for batch in synthetic_images(2, 1, manifest["input"]["height"], manifest["input"]["width"], seed=3):
        image = batch[0].transpose(1, 2, 0)[None]  # the backend takes NHWC camera frames
        a, b = fp32.infer(image), int8.infer(image)
        same += int((a.class_ids == b.class_ids).sum())
        total += a.class_ids.size
        diff = np.abs(a.anomaly.astype(np.float64) - b.anomaly)
        diffs.append(diff.mean())
        worst = max(worst, float(diff.max()))
    assert record["images"] == 2 and record["method"] == "dynamic-int8"
    assert record["argmax_agreement"] == pytest.approx(same / total, abs=1e-9)
    assert record["anomaly_mean_abs_diff"] == pytest.approx(float(np.mean(diffs)), rel=1e-5, abs=1e-7)
    assert record["anomaly_max_abs_diff"] == pytest.approx(worst, rel=1e-5, abs=1e-7)
    assert 0.0 <= record["argmax_agreement"] <= 1.0 and worst > 0.0  # int8 really changed the numbers


def test_int8_needs_the_quantized_graph(exported_nano) -> None:
    with pytest.raises(BackendUnavailable, match="--quantize dynamic-int8"):
        OnnxRuntimeBackend(exported_nano.model_dir, precision="int8")


def test_cli_quantizes_an_existing_model_dir(exported_nano, tmp_path) -> None:
    """`dsa export --out DIR --quantize dynamic-int8` on an export without the int8 graph (a real subprocess)."""
    model_dir = tmp_path / "model"
    shutil.copytree(exported_nano.model_dir, model_dir)
    proc = subprocess.run([sys.executable, "-P", "-m", "dsa_core.cli", "export", "--out", str(model_dir), "--quantize",
                           "dynamic-int8"], capture_output=True, text=True, timeout=300, cwd=Path(__file__).parents[1])
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = verify_model_dir(model_dir)["files"][INT8_GRAPH]["quantization"]
    assert f"wrote {INT8_GRAPH}: argmax_agreement {record['argmax_agreement']:.4g}" in proc.stdout
