#!/usr/bin/env python3
"""The fresh-drive study's measures (decision_rule.md next to this file), as markdown on stdout: both models at their
own calibrated points on the fresh drives and pooled with the earlier held-out drives, the rule's outcome, and (not
deciding) each model's best point within 12, 24, 48 and 96 false alerts per hour on the fresh drives.

    python results/train_nano_logs/fresh_drives/compare.py   (from the repo root, after run.sh has cached the drives)
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "results/train_nano_logs/void_weight"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from frontier import AREAS, CLEAR as EARLIER_CLEAR, OBSTACLES as EARLIER_OBSTACLES, THRESHOLDS  # noqa: E402
from frontier import best_within, calibrated_point, frontier_rows, load_drives, pooled_row  # noqa: E402
from pooled_frontier import ARMS  # noqa: E402

from dsa_core.eval.alert_curve import CurvePoint, replay  # noqa: E402

FRESH = Path("runs/fresh")
CLEAR, OBSTACLES = ("clear_drive_45", "clear_drive_57"), ("obst_drive_13", "obst_drive_17")


def line(arm: str, drives: str, r: dict) -> str:
    return (f"| {arm} | {drives} | {r['false_alerts']} ({r['false_alerts'] / r['camera_hours']:.0f}) | "
            f"{r['confirmed']} of {r['obstacles']} | {r['obstacle_frames_alerted']} of {r['obstacle_frames']} |")


def main() -> int:
    fresh, before, points = {}, {}, {}
    for arm, (model, roots) in ARMS.items():
        points[arm], fresh[arm] = calibrated_point(model, roots, CLEAR, OBSTACLES)
        before[arm] = calibrated_point(model, roots, EARLIER_CLEAR, EARLIER_OBSTACLES)[1]
    pooled = {arm: pooled_row(before[arm], fresh[arm]) for arm in ARMS}
    print("# Fresh drives: both models at their calibrated points\n")
    print("Clear drives " + ", ".join(f"`{FRESH / n}`" for n in CLEAR) + "; obstacle drives "
          + ", ".join(f"`{FRESH / n}`" for n in OBSTACLES) + ". Earlier: `runs/clear/clear_drive_{21,33}`, "
          "`runs/drives2/obst_drive_{5,9}`. Ego mask 0.15.\n")
    print("| arm (point) | drives | false alerts (per camera-hour) | obstacles confirmed | obstacle frames alerted |")
    print("|---|---|---|---|---|")
    for arm in ARMS:
        name = f"{arm} ({points[arm].threshold:.4f} / {points[arm].min_area_px} px)"
        for drives, r in (("fresh", fresh[arm]), ("earlier", before[arm]), ("pooled", pooled[arm])):
            print(line(name, drives, r))
    s, f = pooled["S (shipped)"], pooled["F5 (flat labels)"]
    fewer = f["false_alerts"] / f["camera_hours"] < s["false_alerts"] / s["camera_hours"]
    as_many = f["confirmed"] >= s["confirmed"]
    verdict = "F5 replaces the shipped model" if fewer and as_many else "the shipped model stays"
    print(f"\n**Rule (pooled): (a) fewer false alerts per hour: {'yes' if fewer else 'no'}; (b) at least as many "
          f"obstacles confirmed: {'yes' if as_many else 'no'} ({f['confirmed']} against {s['confirmed']}). "
          f"Outcome: {verdict}.**\n")
    print("Not deciding: the fresh obstacles that only one arm confirms at its calibrated point (the distance when "
          "the obstacle is first visible, and when the arm confirms it), and each arm's median distance at "
          "confirmation.\n")
    print("| drive | obstacle | first visible at | " + " | ".join(ARMS) + " |")
    print("|---|---|---|" + "---|" * len(ARMS))
    distances = {arm: [] for arm in ARMS}
    for name in OBSTACLES:
        reports = {arm: replay(load_drives(roots, (name,))[0], points[arm], ego_mask_bottom=0.15)["obstacles"]
                   for arm, (_, roots) in ARMS.items()}
        for arm, obstacles in reports.items():
            distances[arm] += [o["confirmed"]["distance_m"] for o in obstacles if o["confirmed"]]
        by_id = [{(o["camera"], o["id"]): o for o in obstacles} for obstacles in reports.values()]
        for per_arm in ([table[key] for table in by_id] for key in by_id[0]):
            if len({o["confirmed"] is None for o in per_arm}) == 2:
                cells = ["missed" if o["confirmed"] is None else f"{o['confirmed']['distance_m']:.1f} m"
                         for o in per_arm]
                print(f"| {name} | {per_arm[0]['id']} | {per_arm[0]['first_distance_m']:.1f} m | "
                      + " | ".join(cells) + " |")
    print("\nMedian distance at confirmation: " + "; ".join(
        f"{arm} {float(np.median(d)):.1f} m ({len(d)} obstacles)" for arm, d in distances.items()) + ".\n")
    print("Not deciding: each model's best point on the fresh drives within each false-alert cap (grid "
          + " ".join(str(t) for t in THRESHOLDS) + " plus its calibrated threshold, minimum areas "
          f"{AREAS[0]}-{AREAS[-1]} px).\n")
    print("| cap (per hour) | arm | point | false alerts (per hour) | obstacles confirmed | obstacle frames alerted |")
    print("|---|---|---|---|---|---|")
    frontiers = {}
    for arm, (_, roots) in ARMS.items():
        grid = [CurvePoint(t, a) for t in sorted(set(THRESHOLDS) | {points[arm].threshold}) for a in AREAS]
        frontiers[arm] = frontier_rows(load_drives(roots, CLEAR), load_drives(roots, OBSTACLES), grid)
    for cap in (12, 24, 48, 96):
        for arm in ARMS:
            b = best_within(frontiers[arm], cap)
            print(f"| {cap} | {arm} | none | - | - | - |" if b is None else
                  f"| {cap} | {arm} | {b['threshold']:.4f} / {b['min_area_px']} px | {b['false_alerts']} "
                  f"({b['per_hour']:.0f}) | {b['confirmed']} of {b['obstacles']} | {b['obstacle_frames_alerted']} of "
                  f"{b['obstacle_frames']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
