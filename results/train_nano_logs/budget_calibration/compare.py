#!/usr/bin/env python3
"""The budget-calibration study's measures (decision_rule.md next to this file), as markdown on stdout: each arm's
calibrated point on the 30-minute val drive, replayed pooled over every held-out drive, the rule's outcome, and (not
deciding) the road-debris drives, the demo drive and the frame-rule points beside them.

    python results/train_nano_logs/budget_calibration/compare.py   (from the repo root, after run.sh)
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "results/train_nano_logs/fresh_drives"))

from pooled_frontier import ARMS, CLEAR, OBSTACLES, load  # noqa: E402

from dsa_core.eval.alert_curve import CachedDrive, CurvePoint, curve_rows  # noqa: E402
from dsa_core.export.manifest import verify_model_dir  # noqa: E402
from dsa_core.runtime.operating_point import resolve_operating_point  # noqa: E402

W = Path("runs/budget")
BUDGET, HELD_RATE, MIN_CONFIRMED = 48, 60, 58
DEBRIS = ("debris_drive_5", "debris_drive_9")
DEMO = {"S (shipped)": Path("runs/fresh/demo_S"), "F5 (flat labels)": Path("runs/fresh/demo_F5")}
#: study arm -> (model arm of ../fresh_drives/pooled_frontier.py, calibrated model dir)
STUDY = {"SB": ("S (shipped)", W / "sb/calibrated"), "FB": ("F5 (flat labels)", W / "fb/calibrated")}
FRAME_RULE = {"S (shipped)": Path("models/dsa_nano"), "F5 (flat labels)": Path("runs/fr/f_seed5/calibrated")}


def point_of(model_dir: Path) -> CurvePoint:
    op = resolve_operating_point(verify_model_dir(model_dir))
    return CurvePoint(op.anomaly_threshold, op.min_area_for(256, 512))


def measure(arm: str, point: CurvePoint) -> dict:
    roots = ARMS[arm][1]

    def row(names: tuple[str, ...], clear: bool = False) -> dict | None:
        if not all(any((r / n / "frames.json").is_file() for r in roots) for n in names):
            return None
        drives = [load(roots, n) for n in names]
        return next(curve_rows(drives, [], [point], ego_mask_bottom=0.15) if clear else
                    curve_rows([], drives, [point], ego_mask_bottom=0.15))

    clear, obst, debris = row(CLEAR, clear=True), row(OBSTACLES), row(DEBRIS)
    demo = next(curve_rows([], [CachedDrive.load(DEMO[arm])], [point], ego_mask_bottom=0.15))
    return {"false_alerts": clear["false_alert_tracks"], "per_hour": clear["false_alerts_per_hour"],
            "confirmed": obst["obstacles_confirmed"], "obstacles": obst["obstacles"],
            "frames_alerted": obst["obstacle_frames_alerted"], "obstacle_frames": obst["obstacle_frames"],
            "median_m": obst["median_distance_at_alert_m"],
            "debris": "not cached" if debris is None else f"{debris['obstacles_confirmed']} of {debris['obstacles']}",
            "demo": f"{demo['obstacles_confirmed']} of {demo['obstacles']}, {demo['false_alert_tracks']} false alerts, "
                    f"{demo['obstacle_frames_alerted']} of {demo['obstacle_frames']} obstacle frames"}


def main() -> int:
    rows = {}
    for name, (arm, model_dir) in STUDY.items():
        cal = json.loads((model_dir.parent / "calibration" / "calibration.json").read_text())
        rows[name] = {"arm": arm, "point": point_of(model_dir), "val": cal}
        rows[name].update(measure(arm, rows[name]["point"]))
    for arm, model_dir in FRAME_RULE.items():
        rows[f"{arm}, frame rule"] = {"arm": arm, "point": point_of(model_dir)}
        rows[f"{arm}, frame rule"].update(measure(arm, rows[f"{arm}, frame rule"]["point"]))
    print("# Calibrating to 48 false alerts per hour on a 30-minute val drive\n")
    print("Held-out: clear drives " + ", ".join(CLEAR) + " (40 camera-minutes), test-family obstacle drives "
          + ", ".join(OBSTACLES) + " (80 obstacles); road debris " + ", ".join(DEBRIS) + " (40); the demo drive. "
          "Ego mask 0.15.\n")
    print("| arm | point | held-out false alerts (per camera-hour) | obstacles confirmed | obstacle frames alerted | "
          "median distance at confirmation | road debris confirmed | demo drive |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        p = r["point"]
        val = "" if "val" not in r else (f"; val drive {r['val']['calibration']['area']['false_alert_tracks']} in "
                                         f"{r['val']['calibration']['val_drives']['camera_minutes']:.0f} min")
        print(f"| {name} | {p.threshold:.4f} / {p.min_area_px} px{val} | {r['false_alerts']} ({r['per_hour']:.0f}) | "
              f"{r['confirmed']} of {r['obstacles']} | {r['frames_alerted']} of {r['obstacle_frames']} | "
              f"{r['median_m']:.1f} m | {r['debris']} | {r['demo']} |")
    holds = {n: rows[n]["per_hour"] <= HELD_RATE and rows[n]["confirmed"] >= MIN_CONFIRMED for n in STUDY}
    if holds["FB"] and rows["FB"]["confirmed"] >= rows["SB"]["confirmed"]:
        outcome = "FB: the flat-label recipe with budget calibration replaces the shipped model"
    elif holds["SB"]:
        outcome = "SB: the shipped model takes the budget-calibrated operating point"
    else:
        outcome = "nothing changes"
    print("\n" + "; ".join(f"{n} holds its budget: {'yes' if h else 'no'} ({rows[n]['per_hour']:.0f} per hour, "
                           f"{rows[n]['confirmed']} of 80)" for n, h in holds.items())
          + f".\n\n**Outcome: {outcome}.**\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
