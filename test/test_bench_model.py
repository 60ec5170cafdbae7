"""`dsa bench model` on a tiny export: the peak is the best of torch.mm and numpy sgemm sampled every round, CPU time
and load are recorded, overload is flagged from the recorded loads, speed-ups are paired per-round ratios."""
from __future__ import annotations

import pytest

import json
import os
import subprocess
import sys
from pathlib import Path


@pytest.mark.slow
def test_bench_model_records_peaks_cpu_load_and_paired_ratios(tmp_path: Path) -> None:
    out = tmp_path / "bench_model.json"
    subprocess.run([sys.executable, "-P", "-m", "dsa_core.cli", "bench", "model", "--preset", "dsa_nano", "--height", "64",
                    "--width", "128", "--iterations", "3", "--warmup", "1", "--threads", "1",
                    "--backends", "torch", "torch-compiled", "onnxruntime", "--work-dir", str(tmp_path / "work"), "--out", str(out)],
                   check=True, capture_output=True, text=True, timeout=900)
    report = json.loads(out.read_text())
    m = report["machine"]
    assert set(m["matmul_peak_by_kernel"]) == {"torch_mm", "numpy_sgemm"}
    assert m["matmul_peak_gflops_fp32"] == max(m["matmul_peak_by_kernel"].values())
    for name, samples in m["matmul_peak_samples"].items():
        assert len(samples) == 1 + 3 and max(samples) == m["matmul_peak_by_kernel"][name]  # start + every round
    assert len(m["load1_per_round"]) == 1 + 3 + 1
    assert m["overloaded"] == (max(m["load1_per_round"]) > os.cpu_count())
    [run] = report["runs"]
    torch_res, ort_res = run["backends"]["torch"], run["backends"]["onnxruntime"]
    assert torch_res["speedup_vs_torch_eager"] == {"min": 1.0, "median": 1.0, "max": 1.0, "n": 3}
    ratios = [t / o for t, o in zip(torch_res["latency_all_ms"], ort_res["latency_all_ms"])]
    assert ort_res["speedup_vs_torch_eager"]["min"] == min(ratios) and ort_res["speedup_vs_torch_eager"]["n"] == 3
    assert ort_res["process_cpu_ms"]["median"] > 0 and ort_res["fraction_of_matmul_peak"] > 0
    compiled = run["backends"]["torch_compiled"]  # inductor, compiled at construction: outside the timings
    assert compiled["describe"]["compile"] == "inductor" and compiled["describe"]["compile_s"] > 0
    assert compiled["fraction_of_matmul_peak"] > 0 and compiled["speedup_vs_torch_eager"]["n"] == 3
    assert "numpy_sgemm" in out.with_suffix(".md").read_text()
