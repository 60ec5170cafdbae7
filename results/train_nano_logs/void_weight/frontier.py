#!/usr/bin/env python3
"""The primary measure of the void-weight and void-ground studies (their decision_rule.md): over a grid of
operating points, the most test-family obstacles confirmed at a point with at most RATE false alerts per camera-hour
on the held-out clear drives, from drives cached by dsa_core.eval.alert_curve.cache_drive.

    python results/train_nano_logs/void_weight/frontier.py CACHE_ROOT [--thresholds T ...] [--rate 48] [--out F.json]

CACHE_ROOT holds clear_drive_21, clear_drive_33, obst_drive_5 and obst_drive_9 (one model's maps).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from dsa_core.eval.alert_curve import CachedDrive, CurvePoint, curve_rows  # noqa: E402

CLEAR = ("clear_drive_21", "clear_drive_33")
OBSTACLES = ("obst_drive_5", "obst_drive_9")
THRESHOLDS = (0.95, 0.97, 0.98, 0.99, 0.995)
AREAS = (25, 36, 49, 64, 81, 96, 115, 150, 200, 300, 400)


def best_within(rows: list[dict], rate: float) -> dict | None:
    """The rule's point: most obstacles confirmed, then most obstacle frames alerted, then fewest false alerts, among
    the points with at most RATE false alerts per hour (None when no point is that quiet)."""
    within = [r for r in rows if r["per_hour"] <= rate]
    return max(within, key=lambda r: (r["confirmed"], r["obstacle_frames_alerted"], -r["per_hour"]), default=None)


def load_drives(roots: Path | tuple[Path, ...], names: tuple[str, ...]) -> list[CachedDrive]:
    """Each named drive's cached maps, from the first of ROOTS that holds them."""
    roots = (roots,) if isinstance(roots, Path) else roots
    return [CachedDrive.load(next((r / n for r in roots if (r / n / "frames.json").is_file()), roots[0] / n))
            for n in names]


def frontier_rows(clear_drives: list[CachedDrive], obstacle_drives: list[CachedDrive],
                  points: list[CurvePoint], horizon_gate: bool = True) -> list[dict]:
    """One row per point: false alerts from the clear drives alone, obstacles from the obstacle drives
    (``horizon_gate``: whether the node's horizon gate drops components above the horizon, as it does by default)."""
    clear = curve_rows(clear_drives, [], points, ego_mask_bottom=0.15, horizon_gate=horizon_gate)
    obstacles = curve_rows([], obstacle_drives, points, ego_mask_bottom=0.15, horizon_gate=horizon_gate)
    return [{"threshold": c["threshold"], "min_area_px": c["min_area_px"], "false_alerts": c["false_alert_tracks"],
             "camera_hours": c["camera_hours"], "per_hour": c["false_alerts_per_hour"],
             "confirmed": o["obstacles_confirmed"], "obstacles": o["obstacles"],
             "obstacle_frames_alerted": o["obstacle_frames_alerted"], "obstacle_frames": o["obstacle_frames"]}
            for c, o in zip(clear, obstacles)]


def pooled_row(*rows: dict) -> dict:
    """Frontier rows of one point on disjoint drive sets, summed into the row of all of them."""
    counts = ("false_alerts", "camera_hours", "confirmed", "obstacles", "obstacle_frames_alerted", "obstacle_frames")
    total = {k: sum(r[k] for r in rows) for k in counts}
    return {**total, "per_hour": total["false_alerts"] / total["camera_hours"]}


def model_point(model_dir: Path, image_size: tuple[int, int]) -> CurvePoint:
    """MODEL_DIR's own operating point (its manifest's) at an image size (H, W)."""
    from dsa_core.export.manifest import verify_model_dir
    from dsa_core.runtime.operating_point import resolve_operating_point

    op = resolve_operating_point(verify_model_dir(model_dir))
    return CurvePoint(op.anomaly_threshold, op.min_area_for(*image_size))


def calibrated_point(model_dir: Path, cache_roots: Path | tuple[Path, ...], clear_names: tuple[str, ...] = CLEAR,
                     obstacle_names: tuple[str, ...] = OBSTACLES, horizon_gate: bool = True) -> tuple[CurvePoint, dict]:
    """MODEL_DIR's own operating point and its frontier row on the cached drives under CACHE_ROOTS."""
    clear_drives = load_drives(cache_roots, clear_names)
    point = model_point(model_dir, clear_drives[0].image_size)
    return point, frontier_rows(clear_drives, load_drives(cache_roots, obstacle_names), [point], horizon_gate)[0]


def calibration_alerts(model_dir: Path) -> dict[str, int]:
    """The false alerts MODEL_DIR's calibration counted on its val drive at the chosen point, by horizon gate state
    (``horizon_gate_off``, how the budget is counted; ``horizon_gate_on``)."""
    op = json.loads((model_dir / "manifest.json").read_text())["operating_point"]
    return {gate: counts["false_alert_tracks"]
            for gate, counts in op["calibration"]["val_drives"]["alerts_at_point"].items()}


def frontier(cache_root: Path, thresholds: list[float], rate: float) -> dict:
    """The grid (THRESHOLDS plus ``thresholds``, times AREAS) replayed on the four drives under CACHE_ROOT, and its
    best point at ``rate``."""
    points = [CurvePoint(t, a) for t in sorted(set(THRESHOLDS) | set(thresholds)) for a in AREAS]
    rows = frontier_rows(load_drives(cache_root, CLEAR), load_drives(cache_root, OBSTACLES), points)
    return {"cache_root": str(cache_root), "rate": rate, "best": best_within(rows, rate), "rows": rows}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cache_root", type=Path)
    ap.add_argument("--thresholds", type=float, nargs="*", default=[])
    ap.add_argument("--rate", type=float, default=48.0)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    result = frontier(args.cache_root, args.thresholds, args.rate)
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps({"best": result["best"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
