"""`dsa bench pipeline` runs end to end on the shipped model (small frames, few rounds) and writes what it claims."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

MODEL = Path(__file__).resolve().parents[1] / "models" / "dsa_nano"


@pytest.mark.skipif(not (MODEL / "manifest.json").is_file(), reason="the shipped model dir is not in this checkout")
@pytest.mark.slow
def test_bench_pipeline_writes_timing_quality_and_load(tmp_path: Path) -> None:
    out = tmp_path / "bench_pipeline.json"
    subprocess.run([sys.executable, "-P", "-m", "dsa_core.cli", "bench", "pipeline", "--model-dir", str(MODEL),
                    "--height", "300", "--width", "560", "--frames", "2", "--rounds", "2", "--quality-frames", "2",
                    "--out", str(out)], check=True, capture_output=True, text=True, timeout=600)
    report = json.loads(out.read_text())
    timing = report["timing"]
    assert report["camera"] == "560x300" and timing["frames"] == 2 and timing["rounds"] == 2
    assert 0 < timing["cpu_ms_median"] and 0 < timing["wall_ms_median"] <= timing["wall_ms_p90"]
    assert set(timing["stage_ms_median"]) == {"backend_resize_in", "backend_resize_out", "mask", "obstacles",
                                              "visualization"}
    assert set(timing["resize_in_ms_median"]) == set(report["quality"]["methods"]) == {"area", "runtime", "linear"}
    assert report["quality"]["methods"]["area"]["argmax_agreement_vs_area"] == 1.0
    assert len(report["machine"]["load_before"]) == 3 and report["machine"]["cpus"] >= 1
    assert "process CPU" in out.with_suffix(".md").read_text()
