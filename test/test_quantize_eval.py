"""dsa export --quantize dynamic-int8 --quantize-eval-root DIR: fp32 vs int8 AuPRC / FPR95 on a labelled anomaly set
(dsa_core/export/quantize.py ``labelled_evaluation``), on the session's exported dsa_nano and a 2-frame synthetic
Fishyscapes Lost & Found set at a camera size other than the export size (so the resize both ways is exercised).

The recorded numbers are recomputed independently: each frame through the two ONNX Runtime backends (the runtime's
own resize path, precision fp32 / int8), the pooled valid pixels scored with sklearn (average precision, the ROC
curve's FPR at TPR 95 %), as test/test_metrics.py does for the project's metric functions."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from dsa_core.data.anomaly_sets import open_benchmark
from dsa_core.data.synth.anomaly_synth import write_fs_laf
from dsa_core.export.manifest import verify_model_dir
from dsa_core.export.quantize import INT8_GRAPH, quantize_model_dir
from dsa_core.runtime.onnxruntime_backend import OnnxRuntimeBackend

ROOT = Path(__file__).resolve().parents[1]
CAMERA = (96, 160)  # the synthetic set's frames; the export is 64x128


@pytest.fixture(scope="module")
def fs_laf_set(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fs_laf")
    write_fs_laf(out, count=2, height=CAMERA[0], width=CAMERA[1], seed=5, progress=False)
    return out


@pytest.fixture(scope="module")
def quantized(exported_nano, fs_laf_set, tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("int8_eval") / "model"
    shutil.copytree(exported_nano.model_dir, model_dir)
    return model_dir, quantize_model_dir(model_dir, n_images=1, seed=1, eval_root=fs_laf_set)


def _sklearn(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    valid = labels != 255
    y, s = labels[valid].astype(int), scores[valid].astype(np.float64)
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    return {"auprc": average_precision_score(y, s), "fpr95": fpr[np.searchsorted(tpr, 0.95, side="left")],
            "auroc": roc_auc_score(y, s)}


def test_recorded_auprc_fpr95_match_an_independent_recomputation(quantized, fs_laf_set) -> None:
    model_dir, manifest = quantized
    record = manifest["files"][INT8_GRAPH]["quantization"]["labelled_set"]
    assert record["key"] == "fs_laf" and record["frames"] == 2 and record["root"] == str(fs_laf_set)
    backends = {"fp32": OnnxRuntimeBackend(model_dir, precision="fp32", graph="fused", intra_op_threads=1),
                "int8": OnnxRuntimeBackend(model_dir, precision="int8", intra_op_threads=1)}
    dataset = open_benchmark("fs_laf", fs_laf_set)
    scores = {k: [] for k in backends}
    ids = {k: [] for k in backends}
    labels = []
    for sample in dataset:
        assert sample.image.shape[:2] == CAMERA  # not the export size: the resize runs both ways
        labels.append(sample.label)
        for k, backend in backends.items():
            result = backend.infer(sample.image[None])
            scores[k].append(result.anomaly[0])
            ids[k].append(result.class_ids[0])
    y = np.stack(labels)
    assert (y == 1).any() and (y == 0).any()  # both classes present: the metrics are defined
    for k in backends:
        expected = _sklearn(np.stack(scores[k]), y)
        for metric, value in expected.items():
            assert record[k][metric] == pytest.approx(value, abs=1e-9), (k, metric)
        assert record[k]["n_pos"] == int((y == 1).sum()) and record[k]["n_neg"] == int((y == 0).sum())
    assert record["delta_auprc"] == pytest.approx(record["int8"]["auprc"] - record["fp32"]["auprc"], abs=1e-12)
    assert record["delta_fpr95"] == pytest.approx(record["int8"]["fpr95"] - record["fp32"]["fpr95"], abs=1e-12)
    same = sum(int((a == b).sum()) for a, b in zip(ids["fp32"], ids["int8"]))
    assert record["argmax_agreement"] == pytest.approx(same / y.size, abs=1e-12)
    diff = np.mean([np.abs(a.astype(np.float64) - b).mean() for a, b in zip(scores["fp32"], scores["int8"])])
    assert record["anomaly_mean_abs_diff"] == pytest.approx(diff, rel=1e-5, abs=1e-8)
    assert record["anomaly_mean_abs_diff"] > 0.0  # int8 really changed the scores
    assert verify_model_dir(model_dir)["files"][INT8_GRAPH]["quantization"]["labelled_set"] == record


def test_a_bad_eval_root_fails_before_anything_is_written(exported_nano, tmp_path) -> None:
    model_dir = tmp_path / "model"
    shutil.copytree(exported_nano.model_dir, model_dir)
    before = (model_dir / "manifest.json").read_bytes()
    with pytest.raises(FileNotFoundError):
        quantize_model_dir(model_dir, n_images=1, eval_root=tmp_path / "no_such_set")
    assert not (model_dir / INT8_GRAPH).exists()
    assert (model_dir / "manifest.json").read_bytes() == before


def test_cli_records_and_prints_the_labelled_comparison(exported_nano, fs_laf_set, tmp_path) -> None:
    """The real command line: `dsa export --out DIR --quantize dynamic-int8 --quantize-eval-root SET` (subprocess)."""
    model_dir = tmp_path / "model"
    shutil.copytree(exported_nano.model_dir, model_dir)
    proc = subprocess.run([sys.executable, "-P", "-m", "dsa_core.cli", "export", "--out", str(model_dir), "--quantize",
                           "dynamic-int8", "--quantize-eval-root", str(fs_laf_set), "--quantize-eval-max-images", "1"],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = json.loads((model_dir / "manifest.json").read_text())["files"][INT8_GRAPH]["quantization"]["labelled_set"]
    assert record["frames"] == 1
    assert (f"fs_laf (1 frames): AuPRC fp32 {100 * record['fp32']['auprc']:.2f} % -> int8 "
            f"{100 * record['int8']['auprc']:.2f} %") in proc.stdout


def test_cli_refuses_bad_eval_options_in_one_line(tmp_path, capsys) -> None:
    """Through dsa_core.cli.main in-process (an interpreter start per case is minutes on the loaded 2-core machine)."""
    from dsa_core.cli import main

    for argv, text in ((["--build-engine", "--quantize-eval-root", str(tmp_path)], "--quantize-eval-root needs --quantize"),
                       (["--quantize", "dynamic-int8", "--quantize-eval-root", str(tmp_path), "--quantize-eval-max-images",
                         "0"], "--quantize-eval-max-images must be >= 1")):
        assert main(["export", "--out", str(tmp_path / "m"), *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and text in err, err
    assert not (tmp_path / "m").exists()
