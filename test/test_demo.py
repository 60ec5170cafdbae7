"""A shortened `dsa demo --quick` end to end: bag -> real node (ORT CPU) -> recording -> reports, overlays, summary."""
from __future__ import annotations

import pytest

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np


REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "models" / "dsa_nano"


@pytest.mark.ros
@pytest.mark.slow
def test_quick_demo_end_to_end(tmp_path: Path, request) -> None:
    shipped = (SHIPPED / "manifest.json").exists()  # the session's random export only when no model is shipped
    model = SHIPPED if shipped else request.getfixturevalue("exported_nano").model_dir
    out = tmp_path / "demo_output"
    dsa = Path(sys.executable).parent / "dsa"  # the installed console script, as scripts/demo.sh runs it
    done = subprocess.run([str(dsa), "demo", "--quick", "--out", str(out), "--model", str(model)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    frames = summary["bag"]["frames"]
    live, offline = summary["live"], summary["offline"]
    assert live["dropped"]["published"] == frames
    assert live["frames_scored"] + live["dropped"]["count"] == frames and live["frames_scored"] >= 1
    assert offline["frames_scored"] == frames
    assert offline["auprc"] is not None and 0.0 <= offline["auprc"] <= 1.0
    assert live["latency"]["count"] == live["frames_scored"]
    # one overlay image per frame the node answered, same size as the camera
    pngs = sorted((out / "overlays").glob("*.png"))
    assert len(pngs) == summary["overlays"]["overlay_images"] == live["frames_scored"]
    assert cv2.imread(str(pngs[0])).shape[:2] == (96, 192)
    for rel in ("live/report.md", "live/report.json", "offline/report.md", "offline/pr_curve.png", "summary.md"):
        assert (out / rel).stat().st_size > 0
    assert "dsa demo:" in done.stdout and "AuPRC" in done.stdout
    # Alert metrics and time to alert beside the pixel metrics, for both runs, from the drive's obstacle truth.
    assert done.stdout.count("alerts: precision") == 2 and "time to alert: #1" in done.stdout
    ids = [o["id"] for o in summary["bag"]["obstacles"]]
    assert ids, "the quick drive must show obstacles"
    for run, report in ((live, out / "live" / "report.json"), (offline, out / "offline" / "report.json")):
        a, full = run["alerts"], json.loads(report.read_text())["alerts"]
        assert [t["obstacle"] for t in a["time_to_alert"]] == ids
        assert a["frames_evaluated"] == run["frames_scored"] and a["frames_with_obstacle"] <= summary["bag"]["obstacle_frames"]
        assert a["alert_precision"] == full["alert_precision"] and a["alert_recall"] == full["alert_recall"]
        assert a["false_alert_frames"] == [f["index"] for f in full["false_alerts"]]
        # the node's track ids reach both runs, so false alerts are also counted as alerts, not only frames
        assert a["false_alert_tracks"] == full["false_alert_tracks"] is not None
        assert a["false_alert_tracks"] <= len(a["false_alert_frames"])
    assert offline["alerts"]["frames_with_obstacle"] == summary["bag"]["obstacle_frames"]
    # The overlays carry the true obstacle box (green); the quick drive shows an obstacle on most frames.
    green = [bool(np.all(cv2.imread(str(p))[..., ::-1] == (0, 255, 0), axis=2).any()) for p in pngs]
    assert any(green)


def test_demo_without_model_says_what_is_missing(tmp_path: Path) -> None:
    dsa = Path(sys.executable).parent / "dsa"
    done = subprocess.run([str(dsa), "demo", "--quick", "--out", str(tmp_path / "o"), "--model", str(tmp_path / "none")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "no exported model" in done.stderr and "results/train_nano.md" in done.stderr
