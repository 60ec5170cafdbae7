#!/usr/bin/env python3
"""Both models' alert frontiers pooled over every held-out drive (the earlier and the fresh clear drives, 40
camera-minutes; the earlier and the fresh test-family obstacle drives, 80 obstacles), with each model's calibrated
point marked: pooled_frontier.md and pooled_frontier.png next to this file. Reported; it decides nothing.

    python results/train_nano_logs/fresh_drives/pooled_frontier.py   (from the repo root; about 10 min)
"""
from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "results/train_nano_logs/void_weight"))

from frontier import AREAS, THRESHOLDS, best_within, frontier_rows, load_drives, model_point  # noqa: E402

from dsa_core.eval.alert_curve import CurvePoint  # noqa: E402

CLEAR = ("clear_drive_21", "clear_drive_33", "clear_drive_45", "clear_drive_57")
OBSTACLES = ("obst_drive_5", "obst_drive_9", "obst_drive_13", "obst_drive_17")
#: arm -> (model dir, cache roots searched in order for each drive's maps)
ARMS = {"S (shipped)": (Path("models/dsa_nano"), (Path("runs/fresh/s_caches"),)),
        "F5 (flat labels)": (Path("runs/fr/f_seed5/calibrated"), (Path("runs/fr/f_seed5/caches"),
                                                                   Path("runs/fresh/f5_caches")))}
EXTRA_THRESHOLDS = (0.985, 0.9925, 0.9975)  # between the grid's, where both calibrated points lie


def frontier(rows: list[dict]) -> list[dict]:
    """The points no other point beats on both false alerts per hour and obstacles confirmed."""
    best, out = -1, []
    for r in sorted(rows, key=lambda r: (r["per_hour"], -r["confirmed"])):
        if r["confirmed"] > best:
            best = r["confirmed"]
            out.append(r)
    return out


def main() -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    lines = ["# Pooled alert frontiers: the shipped model and the flat-label model on every held-out drive", "",
             "Clear drives " + ", ".join(CLEAR) + " (40 camera-minutes); obstacle drives " + ", ".join(OBSTACLES)
             + " (80 test-family obstacles). Grid: thresholds " + " ".join(map(str, THRESHOLDS + EXTRA_THRESHOLDS))
             + " plus each model's calibrated one, minimum areas " + f"{AREAS[0]}-{AREAS[-1]} px; ego mask 0.15. "
             "Reported; it decides nothing.", "",
             "| arm | cap (false alerts per hour) | best point | false alerts (per hour) | obstacles confirmed | "
             "obstacle frames alerted |", "|---|---|---|---|---|---|"]
    marks = []
    for (arm, (model, roots)), colour in zip(ARMS.items(), ("tab:blue", "tab:orange")):
        clear = load_drives(roots, CLEAR)
        cal = model_point(model, clear[0].image_size)
        grid = [CurvePoint(t, a) for t in sorted(set(THRESHOLDS + EXTRA_THRESHOLDS) | {cal.threshold})
                for a in AREAS]
        *rows, point = frontier_rows(clear, load_drives(roots, OBSTACLES), grid + [cal])  # one pass, point last
        front = frontier(rows)
        ax.step([r["per_hour"] for r in front], [r["confirmed"] for r in front], where="post", color=colour,
                label=f"{arm}: best point at each rate")
        ax.plot(point["per_hour"], point["confirmed"], "o", color=colour, markersize=8,
                label=f"{arm}: calibrated {cal.threshold:.4f} / {cal.min_area_px} px")
        for cap in (12, 24, 48, 96):
            b = best_within(rows, cap)
            lines.append(f"| {arm} | {cap} | " + ("none | - | - | - |" if b is None else
                         f"{b['threshold']:.4f} / {b['min_area_px']} px | {b['false_alerts']} ({b['per_hour']:.0f}) | "
                         f"{b['confirmed']} of {b['obstacles']} | {b['obstacle_frames_alerted']} of "
                         f"{b['obstacle_frames']} |"))
        marks.append(f"| {arm} | calibrated | {cal.threshold:.4f} / {cal.min_area_px} px | {point['false_alerts']} "
                     f"({point['per_hour']:.0f}) | {point['confirmed']} of {point['obstacles']} | "
                     f"{point['obstacle_frames_alerted']} of {point['obstacle_frames']} |")
    lines += marks
    ax.set_xscale("symlog", linthresh=10)
    ax.set_xlim(0, 400)
    ax.set_xlabel("false alerts per camera-hour (4 held-out clear drives)")
    ax.set_ylabel("obstacles confirmed (of 80)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("Alert frontier pooled over the held-out drives")
    fig.tight_layout()
    fig.savefig(HERE / "pooled_frontier.png", dpi=110)
    (HERE / "pooled_frontier.md").write_text("\n".join(lines) + "\n\n![pooled frontier](pooled_frontier.png)\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
