#!/usr/bin/env python3
"""The first rule's product check (decision_rule.md next to this file): R5 calibrated with the recipe's own step
(30-minute obstacle-free drive, 48 false alerts per camera-hour, counted without the horizon gate), replayed at its
manifest's point on the held-out drives, beside the shipped model (F5) at its own.

    python results/train_nano_logs/road_outliers/product_check.py > results/train_nano_logs/road_outliers/product_check.md

R5 ships only if it gives no more false alerts on the held-out clear drives 21 / 33 than F5 (9) and alerts more
obstacle frames than 212 of 935 (F5 at its first calibration, the number the rule was written against).
"""
from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE.parent / "void_weight"))

from frontier import calibrated_point, calibration_alerts  # noqa: E402

RUNS = REPO / "runs" / "fr"
#: arm -> (calibrated model dir, its held-out drive caches); F5 is the model shipped until R5 replaced it (its dir:
#: `git show ddf4309:models/dsa_nano/FILE` for fused.onnx, manifest.json, model.pt)
ARMS = {"F5 (shipped until now)": (RUNS / "f_seed5" / "shipped", RUNS / "f_seed5" / "caches"),
        "R5": (RUNS / "r_seed5" / "calibrated", RUNS / "r_seed5" / "caches")}
MIN_FRAMES = 212  # F5's obstacle frames alerted at its first calibration (the rule's bar): R5 must exceed it


def main() -> int:
    print("# Product check: R5 at its own calibration (decision_rule.md)\n")
    print("Each model at its manifest's point (calibrated on `runs/budget/val_drive_30min`, at most 48 false alerts "
          "per camera-hour counted without the horizon gate), replayed with the node's horizon gate on the held-out "
          "clear drives 21 / 33 (20 camera-minutes) and obstacle drives 5 / 9 (40 test-family obstacles).\n")
    print("| model | threshold | min area px | val drive: false alerts without / with the gate | held-out false alerts "
          "(per hour) | obstacles confirmed | obstacle frames alerted |")
    print("|---|---|---|---|---|---|---|")
    rows = {}  # in ARMS' order: F5, R5
    for name, (model_dir, caches) in ARMS.items():
        point, row = calibrated_point(model_dir, caches)
        rows[name] = row
        val = calibration_alerts(model_dir)
        print(f"| {name} | {point.threshold:.4f} | {point.min_area_px} | {val['horizon_gate_off']} "
              f"/ {val['horizon_gate_on']} | {row['false_alerts']} ({row['per_hour']:.0f}) | "
              f"{row['confirmed']} of {row['obstacles']} | {row['obstacle_frames_alerted']} of "
              f"{row['obstacle_frames']} |")
    f5, r5 = rows.values()
    passes = r5["false_alerts"] <= f5["false_alerts"] and r5["obstacle_frames_alerted"] > MIN_FRAMES
    print(f"\nRule: R5 <= {f5['false_alerts']} false alerts (F5's) and > {MIN_FRAMES} obstacle frames alerted: "
          f"{r5['false_alerts']} and {r5['obstacle_frames_alerted']}: **{'passes' if passes else 'fails'}**.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
