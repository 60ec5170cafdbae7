#!/usr/bin/env python3
"""The shipped operating point on the new drives of run.sh, alone and pooled with the eight earlier held-out drives
(plan.md): false alerts per camera-hour with an exact two-sided 95 % Poisson interval, and the obstacles confirmed;
with the node's horizon gate (its default) and without it (how the calibration counts its drive).

    python results/train_nano_logs/shipped_point/measure.py > results/train_nano_logs/shipped_point/measure.md
    python results/train_nano_logs/shipped_point/measure.py --model DIR --caches ROOT [ROOT ...]  (another model:
        its maps of all sixteen drives, dsa_core.eval.alert_curve.cache_drive, under the ROOTs)
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "results" / "train_nano_logs" / "void_weight"))

from scipy.stats import chi2  # noqa: E402

from dsa_core.bags.alerts import alert_rate_upper_bound  # noqa: E402
from frontier import calibrated_point, calibration_alerts, pooled_row  # noqa: E402

NEW_ROOT = REPO / "runs" / "shipped" / "caches"
NEW = (("clear_drive_61", "clear_drive_69", "clear_drive_77", "clear_drive_89"), ("obst_drive_63", "obst_drive_71"))
# the earlier held-out drives: the shipped model's own run's caches (runs/fr/r_seed5: the same weights as
# models/dsa_nano; the model before it, F5, had its maps under runs/fr/f_seed5/caches and runs/fresh/f5_caches)
EARLIER_ROOTS = (REPO / "runs" / "fr" / "r_seed5" / "caches",)
EARLIER = (("clear_drive_21", "clear_drive_33", "clear_drive_45", "clear_drive_57"),
           ("obst_drive_5", "obst_drive_9", "obst_drive_13", "obst_drive_17"))


def poisson_interval(events: int, hours: float) -> tuple[float, float]:
    """Exact (Garwood) two-sided 95 % interval of a rate per hour seen as EVENTS in HOURS."""
    low = chi2.ppf(0.025, 2 * events) / 2.0 / hours if events else 0.0
    return low, alert_rate_upper_bound(events, hours, confidence=0.975)


def line(name: str, row: dict) -> str:
    low, high = poisson_interval(row["false_alerts"], row["camera_hours"])
    return (f"| {name} | {row['camera_hours'] * 60:.0f} | {row['false_alerts']} | {row['per_hour']:.0f} "
            f"({low:.0f}-{high:.0f}) | {row['confirmed']} of {row['obstacles']} | "
            f"{row['obstacle_frames_alerted']} of {row['obstacle_frames']} |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=REPO / "models" / "dsa_nano")
    ap.add_argument("--caches", type=Path, nargs="+", help="roots holding the model's maps of all sixteen drives "
                    f"(default: {NEW_ROOT.relative_to(REPO)} for the new drives, then the earlier roots)")
    args = ap.parse_args()
    new_roots, earlier_roots = (tuple(args.caches),) * 2 if args.caches else ((NEW_ROOT,), EARLIER_ROOTS)
    print("# The shipped operating point on more new streets\n")
    for gate in (True, False):
        point, new = calibrated_point(args.model, new_roots, *NEW, horizon_gate=gate)
        _, earlier = calibrated_point(args.model, earlier_roots, *EARLIER, horizon_gate=gate)
        if gate:
            val = calibration_alerts(args.model)
            print(f"Model `{args.model.resolve().relative_to(REPO)}` at its manifest's point: threshold "
                  f"{point.threshold:.4f}, minimum area {point.min_area_px} px; ego mask 0.15. Calibrated to 48 false "
                  "alerts per camera-hour on the 30-minute calibration drive, counted without the horizon gate "
                  f"({val['horizon_gate_off']} there; {val['horizon_gate_on']} with it).\n")
            print("With the node's horizon gate (its default; the camera's CameraInfo and mount pitch are right):\n")
        else:
            print("\nWithout the horizon gate (a camera with no CameraInfo or a wrong pitch; how the calibration "
                  "counts):\n")
        print("| drives | camera-minutes | false alerts | per hour (95 % interval) | obstacles confirmed | "
              "obstacle frames alerted |")
        print("|---|---|---|---|---|---|")
        print(line("new (seeds 61-89; obstacles 63, 71)", new))
        print(line("earlier held-out (8 drives)", earlier))
        print(line("**pooled**", pooled_row(new, earlier)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
