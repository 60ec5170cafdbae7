"""`dsa bench node --soak` end to end on a few seconds of load: the node, the load generator and the orchestrator
as separate processes over real DDS; the counts must add up and the memory figures must be there."""
from __future__ import annotations

import pytest

import json
import subprocess
import sys
from pathlib import Path


pytestmark = [pytest.mark.ros, pytest.mark.slow]


def test_short_soak_reports_delivery_counts_latency_and_memory(tmp_path: Path, exported_nano) -> None:
    model_dir = exported_nano.model_dir
    out = tmp_path / "soak.json"
    proc = subprocess.run([sys.executable, "-P", "-m", "dsa_core.cli", "bench", "node", "--soak", "--duration", "4",
                           "--image-size", "72", "128", "--model-dir", str(model_dir), "--threads", "1",
                           "--backends", "onnxruntime", "--domain-id", "79", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r = json.loads(out.read_text())
    assert r["config"]["cameras"] == ["front", "rear"] and r["config"]["rate"] == 30.0
    assert r["config"]["dds_profile"].endswith("config/fastdds_large_frames.xml")
    for cam in ("front", "rear"):
        d = r["delivery"][cam]
        assert d["sent"] == 120 and 0.5 * d["sent"] <= d["received"] <= d["sent"]
        assert d["delivered_fraction"] == d["received"] / d["sent"]
        # every received frame is processed, overwritten while waiting, or (at most one) still pending at the end
        assert d["received"] - 1 <= d["processed"] + d["dropped"] + d["rejected"] <= d["received"]
        assert r["per_camera"][cam]["answered"] <= d["processed"] + 1
        assert r["per_camera"][cam]["end_to_end_ms"]["p99"] >= r["per_camera"][cam]["end_to_end_ms"]["p50"] > 0
    parts = r["rss_parts_mb_1hz"]
    assert len(parts["anon"]) == len(r["rss_mb"]["samples_1hz"]) >= 3 and min(parts["anon"]) > 0
    md = out.with_suffix(".md").read_text()
    assert "Shortened run: 4 s instead of the plan's 300 s" in md and "anonymous (heap)" in md
