"""scripts/train_demo_model.sh end to end at a tiny budget: every step runs, a re-run skips what is done, and
the model dir it leaves is calibrated and loads."""
from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from dsa_core.checkpoint import load_checkpoint
from dsa_core.data.synth.anomaly_synth import FS_LAF_KINDS
from dsa_core.eval.calibrate import RECIPE_MAX_FALSE_ALERTS_PER_HOUR

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def test_recipe_script_tiny_budget_and_resume(tmp_path: Path) -> None:
    env = dict(os.environ, TRAIN_FRAMES="4", VAL_FRAMES="2", BENCH_FRAMES="2", POOL_IMAGES="8",
               VAL_DRIVE_FRAMES="6", PRETRAIN_ITERS="2", STAGE1_ITERS="2", STAGE2_ITERS="2")
    work, model = tmp_path / "work", tmp_path / "model"
    cmd = ["bash", str(REPO / "scripts" / "train_demo_model.sh"), str(work), str(model)]
    for var in ("TRAIN_THREADS", "STAGE2_THREADS", "STAGE2_SEED"):  # the defaults: the shipped model's run
        env.pop(var, None)
    first = subprocess.run(cmd, env={**env, "STAGE1_SEED": "3", "VOID_GROUND_LABELS": "void"}, capture_output=True,
                           text=True, timeout=1500)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    configs = {stage: load_checkpoint(work / stage / name)["train_config"]
               for stage, name in (("pretrain", "last.pt"), ("stage1", "final.pt"), ("stage2", "final.pt"))}
    assert {stage: c["seed"] for stage, c in configs.items() if stage != "pretrain"} == {"stage1": 3, "stage2": 5}
    # STAGE1_SEED reaches stage 1 (stage 2 keeps the shipped seed 5); VOID_GROUND_LABELS reaches every stage
    assert {c["void_ground_labels"] for c in configs.values()} == {"void"}  # the preset says flat
    assert first.stderr.count("with 2 torch thread(s)") == 2  # pre-training and stage 1: 2 threads by default
    assert first.stderr.count("with 1 torch thread(s)") == 1  # stage 2: one thread by default
    pools = re.findall(r"(\S+)/annotations/instances_train2017.json: \d+ images kept", first.stderr)
    # stage 1 reads the recipe's pool (training and validation), stage 2 the merged pool
    assert [Path(p).name for p in dict.fromkeys(pools)] == ["coco", "pool_wide"]
    guard = [json.loads(line) for line in (work / "data_separation.jsonl").read_text().splitlines()]
    assert [g["pool"] for g in guard] == [str(work / "data" / "coco"), str(work / "data" / "pool_wide")]
    manifest = json.loads((model / "manifest.json").read_text())
    assert manifest["operating_point"]["anomaly_threshold"] is not None
    drive = manifest["operating_point"]["calibration"]["val_drives"]  # the min area counts the val drive's alerts
    assert drive["frames"] == 6 and drive["bag"] == str(work / "data" / "val_drive")
    # to the recipes' false-alert budget per camera-hour (dsa_core.eval.calibrate, the one place it is set)
    assert manifest["operating_point"]["calibration"]["max_false_alerts_per_hour"] == RECIPE_MAX_FALSE_ALERTS_PER_HOUR
    metrics = json.loads((work / "eval" / "metrics.json").read_text())
    assert {"cityscapes", "fs_laf", "road_anomaly"} <= set(metrics["datasets"])
    assert "baselines" in metrics["datasets"]["fs_laf"]
    assert metrics["datasets"]["fs_laf"]["bootstrap"]["resamples"] == 1000  # intervals over resampled frames
    kinds = sorted(p.name for p in (work / "eval_kinds").iterdir())
    assert kinds == sorted(FS_LAF_KINDS)  # every held-out kind, hard and fresh
    second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1500)
    assert second.returncode == 0, second.stderr[-3000:]
    for stage in ("pretrain", "stage1", "stage2"):
        assert f"{stage}: done" in second.stdout
