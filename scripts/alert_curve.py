#!/usr/bin/env python3
"""The alert operating curve of a model on recorded drives: obstacles confirmed against false alerts per hour.

    python scripts/alert_curve.py --model models/dsa_nano --clear CLEAR_BAG... --obstacles OBSTACLE_BAG... \
        --out results/alert_curve [--summaries OBSTACLE_BAG_SUMMARY.json...] [--extend 0.9 ...] [--ego-mask-bottom 0.15]

Each bag is run through the model once (ONNX Runtime, one thread) and its maps are cached under OUT/cache/ (a rerun
reuses them). Every (threshold, minimum area[, hysteresis extend]) point then replays the maps through the node's
obstacle search and tracker (dsa_core.eval.alert_curve) and is scored like bag-eval. Clear bags hold no obstacle and
count false alerts; obstacle bags (with a ground-truth obstacle topic, dsa synth bag) count both.

Writes OUT/curve.json (one row per point), OUT/curve.md (the rows as a table) and OUT/curve.png; with the obstacle
bags' `dsa synth bag` summaries, also the obstacles confirmed per family at the calibrated point.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

THRESHOLDS = (0.95, 0.97, 0.98, 0.99, 0.995)  # plus the model's calibrated one
AREAS = (25, 36, 49, 64, 81, 100, 115, 150, 200, 300, 400)


def markdown(rows: list[dict], meta: dict) -> str:
    clear, obstacles = meta["clear"], meta["obstacles"]
    lines = ["# Alert operating curve", "",
             f"- model: {meta['model']}, calibrated point {meta['calibrated_threshold']:.5g} / "
             f"{meta['calibrated_min_area_px']} px; ego mask {meta['ego_mask_bottom']:g} of the height; horizon gate on",
             f"- clear drives (false alerts only): {', '.join(clear) or '-'}",
             f"- obstacle drives: {', '.join(obstacles)}", "",
             "| threshold | min area px | extend | false alerts | per hour | obstacles confirmed | obstacle frames "
             "alerted | frames with a box on the obstacle | median distance at alert | from WARNING: false alerts (per hour) "
             "/ obstacles confirmed |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        dist = "-" if r["median_distance_at_alert_m"] is None else f"{r['median_distance_at_alert_m']:.1f} m"
        w = r["from_warning"]
        w_rate = "-" if w["false_alerts_per_hour"] is None else f"{w['false_alerts_per_hour']:.1f}"
        warn = f"{w['false_alert_tracks']} ({w_rate}) / {w['obstacles_confirmed']} of {r['obstacles']}"
        per_hour = "-" if r["false_alerts_per_hour"] is None else f"{r['false_alerts_per_hour']:.1f}"
        lines.append(f"| {r['threshold']:.5g} | {r['min_area_px']} | {r['extend'] if r['extend'] is not None else '-'} | "
                     f"{r['false_alert_tracks']} | {per_hour} | {r['obstacles_confirmed']} of {r['obstacles']} | "
                     f"{r['obstacle_frames_alerted']} of {r['obstacle_frames']} | "
                     f"{r['obstacle_frames_with_box_on']} of {r['obstacle_frames']} | {dist} | {warn} |")
    if meta.get("by_family"):
        lines += ["", "## By obstacle family, at the calibrated point", "",
                  "| family | obstacles confirmed | their frames with a box on them | median distance at alert |",
                  "|---|---|---|---|"]
        for name, f in meta["by_family"].items():
            dist = "-" if f["median_distance_at_alert_m"] is None else f"{f['median_distance_at_alert_m']:.1f} m"
            lines.append(f"| {name} | {f['confirmed']} of {f['obstacles']} | {f['frames_with_box']} of "
                         f"{f['frames_processed']} | {dist} |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path, calibrated: tuple[float, int]) -> None:
    """Two panels: every alert, and only obstacles of WARNING severity or above (on the drivable area)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["threshold"], r["extend"]), []).append(r)
    panels = [(axes[0], lambda r: r, "every alert (INFO and up)"),
              (axes[1], lambda r: r["from_warning"], "from WARNING up (obstacles on the drivable area)")]
    for ax, pick, title in panels:
        for (t, e), rs in sorted(groups.items(), key=lambda kv: (kv[0][1] or 0, kv[0][0])):
            rs = sorted(rs, key=lambda r: r["min_area_px"])
            x = [pick(r)["false_alerts_per_hour"] for r in rs]
            y = [pick(r)["obstacles_confirmed"] / r["obstacles"] for r in rs]
            label = f"threshold {t:.4g}" + (f", extend {e:g}" if e is not None else "")
            ax.plot(x, y, "o-" if e is None else "s--", ms=3, label=label)
        for r in rows:  # the model's calibrated point (manifest), when it is on the grid
            if (r["threshold"], r["min_area_px"], r["extend"]) == (*calibrated, None):
                ax.plot([pick(r)["false_alerts_per_hour"]], [pick(r)["obstacles_confirmed"] / r["obstacles"]], "k*",
                        ms=12, label=f"calibrated point ({calibrated[0]:.4g}, {calibrated[1]} px)", zorder=5)
        ax.set_xscale("symlog", linthresh=1.0)
        ax.set_xlabel("false alerts per camera-hour (confirmed tracks off every obstacle)")
        ax.set_title(title, fontsize=10)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("obstacles confirmed (fraction)")
    axes[0].legend(fontsize=7)
    fig.suptitle("Alert operating curve: each line runs over the minimum obstacle area")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    from dsa_core.eval.alert_curve import CurvePoint, by_family, cache_drive, curve_rows, replay
    from dsa_core.runtime.operating_point import resolve_operating_point
    from dsa_core.export.manifest import verify_model_dir

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--clear", type=Path, nargs="*", default=[])
    ap.add_argument("--obstacles", type=Path, nargs="+", required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--thresholds", type=float, nargs="+", default=None,
                    help=f"default {THRESHOLDS} and the model's calibrated threshold")
    ap.add_argument("--areas", type=int, nargs="+", default=list(AREAS))
    ap.add_argument("--extend", type=float, nargs="*", default=[],
                    help="also each point with hysteresis down to this score (at the model's threshold only)")
    ap.add_argument("--ego-mask-bottom", type=float, default=0.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cache-dir", type=Path, default=None, help="where the maps of each bag are kept (default OUT/cache)")
    ap.add_argument("--summaries", type=Path, nargs="*", default=[],
                    help="the `dsa synth bag` summary (JSON) of each --obstacles bag, in the same order: adds the "
                         "obstacles confirmed per family at the calibrated point")
    args = ap.parse_args(argv)
    if args.summaries and len(args.summaries) != len(args.obstacles):
        ap.error(f"--summaries needs one file per --obstacles bag ({len(args.obstacles)}), got {len(args.summaries)}")

    op = resolve_operating_point(verify_model_dir(args.model))

    def cached(bags: list[Path]) -> list:
        return [cache_drive(b, args.model, (args.cache_dir or args.out / "cache") / b.name, threads=args.threads) for b in bags]

    thresholds = sorted(set(args.thresholds or THRESHOLDS) | {op.anomaly_threshold})
    clear, obstacles = cached(args.clear), cached(args.obstacles)
    calibrated_area = op.min_area_for(*(clear or obstacles)[0].image_size)
    areas = sorted(set(args.areas) | {calibrated_area})
    points = [CurvePoint(t, a) for t in thresholds for a in areas]
    points += [CurvePoint(op.anomaly_threshold, a, e) for e in args.extend for a in areas]

    rows = list(curve_rows(clear, obstacles, points, ego_mask_bottom=args.ego_mask_bottom))
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {"model": str(args.model), "calibrated_threshold": op.anomaly_threshold,
            "calibrated_min_area_px": calibrated_area,
            "clear": [str(b) for b in args.clear], "obstacles": [str(b) for b in args.obstacles],
            "ego_mask_bottom": args.ego_mask_bottom, "rows": rows}
    if args.summaries:
        families = [{o["id"]: o["family"] for o in json.loads(p.read_text())["obstacles"]} for p in args.summaries]
        point = CurvePoint(op.anomaly_threshold, calibrated_area)
        meta["by_family"] = by_family([replay(d, point, ego_mask_bottom=args.ego_mask_bottom) for d in obstacles],
                                      families)
    (args.out / "curve.json").write_text(json.dumps(meta, indent=1))
    (args.out / "curve.md").write_text(markdown(rows, meta))
    plot(rows, args.out / "curve.png", (op.anomaly_threshold, calibrated_area))
    print((args.out / "curve.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
