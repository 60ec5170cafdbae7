#!/usr/bin/env python3
"""The alert operating curve of a model on recorded drives: obstacles confirmed against false alerts per hour.

    python scripts/alert_curve.py --model models/dsa_nano --clear CLEAR_BAG... --obstacles OBSTACLE_BAG... \
        --out results/alert_curve [--summaries OBSTACLE_BAG_SUMMARY.json...] [--extend 0.9 ...] [--ego-mask-bottom 0.15] \
        [--ground-truth-score]

Each bag is run through the model once (ONNX Runtime, one thread) and its maps are cached under OUT/cache/ (a rerun
reuses them). Every (threshold, minimum area[, hysteresis extend]) point then replays the maps through the node's
obstacle search and tracker (dsa_core.eval.alert_curve) and is scored like bag-eval. Clear bags hold no obstacle and
count false alerts; obstacle bags (with a ground-truth obstacle topic, dsa synth bag) count both.

Writes OUT/curve.json (one row per point), OUT/curve.md (the rows as a table) and OUT/curve.png; with the obstacle
bags' `dsa synth bag` summaries, also the obstacles confirmed per family at the calibrated point.

With --ground-truth-score the drives' own ground truth is replayed as a score too (1 on the obstacle, 0 elsewhere,
the true classes; dsa_core.eval.alert_curve.cache_ground_truth), at every minimum area: what a perfect score would
confirm through the same obstacle search, tracker and debounce. Those rows (score "ground truth") and
OUT/ceiling.png, per-frame recall against the minimum area for the ground truth and for the model at its
calibrated threshold, show how much of the recall the operating point and the image size leave any model.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.append(str(REPO))  # last: the venv's dsa_perception (with its generated msg module) wins

THRESHOLDS = (0.95, 0.97, 0.98, 0.99, 0.995)  # plus the model's calibrated one
AREAS = (25, 36, 49, 64, 81, 100, 115, 150, 200, 300, 400)
GROUND_TRUTH_THRESHOLD = 0.5  # the ground-truth score is 0 or 1


def markdown(rows: list[dict], meta: dict) -> str:
    clear, obstacles = meta["clear"], meta["obstacles"]
    lines = ["# Alert operating curve", "",
             f"- model: {meta['model']}, calibrated point {meta['calibrated_threshold']:.5g} / "
             f"{meta['calibrated_min_area_px']} px; ego mask {meta['ego_mask_bottom']:g} of the height; horizon gate on",
             f"- clear drives (false alerts only): {', '.join(clear) or '-'}",
             f"- obstacle drives: {', '.join(obstacles)}"]
    if any(r["score"] == "ground truth" for r in rows):
        lines.append("- score \"ground truth\": each drive's ground truth replayed as a perfect score (1 on the obstacle, "
                     "0 elsewhere, the true classes) through the same search and tracker: the ceiling of any model")
    lines += ["",
             "| score | threshold | min area px | extend | false alerts | per hour | obstacles confirmed | obstacle frames "
             "alerted | frames with a box on the obstacle | median distance at alert | from WARNING: false alerts (per hour) "
             "/ obstacles confirmed |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        dist = "-" if r["median_distance_at_alert_m"] is None else f"{r['median_distance_at_alert_m']:.1f} m"
        w = r["from_warning"]
        w_rate = "-" if w["false_alerts_per_hour"] is None else f"{w['false_alerts_per_hour']:.1f}"
        warn = f"{w['false_alert_tracks']} ({w_rate}) / {w['obstacles_confirmed']} of {r['obstacles']}"
        per_hour = "-" if r["false_alerts_per_hour"] is None else f"{r['false_alerts_per_hour']:.1f}"
        lines.append(f"| {r['score']} | {r['threshold']:.5g} | {r['min_area_px']} | {r['extend'] if r['extend'] is not None else '-'} | "
                     f"{r['false_alert_tracks']} | {per_hour} | {r['obstacles_confirmed']} of {r['obstacles']} | "
                     f"{r['obstacle_frames_alerted']} of {r['obstacle_frames']} | "
                     f"{r['obstacle_frames_with_box_on']} of {r['obstacle_frames']} | {dist} | {warn} |")
    truth = [r for r in rows if r["score"] == "ground truth"]
    if truth:
        lines += ["", "## What a perfect score can get", "",
                  "Obstacle frames whose obstacle shows, above the ego mask, a component of at least the minimum area "
                  "(findable), and those a perfect score alerts through the tracker and its debounce:", "",
                  "| min area px | obstacle frames | findable | alerted by a perfect score | alerted by the model "
                  "(calibrated threshold) |", "|---|---|---|---|---|"]
        model = {r["min_area_px"]: r for r in rows if r["score"] == "model"
                 and r["threshold"] == meta["calibrated_threshold"] and r["extend"] is None}
        for r in truth:
            m = model.get(r["min_area_px"])
            lines.append(f"| {r['min_area_px']} | {r['obstacle_frames']} | {r['obstacle_frames_findable']} | "
                         f"{r['obstacle_frames_alerted']} | {m['obstacle_frames_alerted'] if m else '-'} |")
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
            y = [pick(r)["obstacles_confirmed"] / r["obstacles"] if r["obstacles"] else math.nan for r in rs]
            label = f"threshold {t:.4g}" + (f", extend {e:g}" if e is not None else "")
            ax.plot(x, y, "o-" if e is None else "s--", ms=3, label=label)
        for r in rows:  # the model's calibrated point (manifest), when it is on the grid
            if (r["threshold"], r["min_area_px"], r["extend"]) == (*calibrated, None):
                ax.plot([pick(r)["false_alerts_per_hour"]],
                        [pick(r)["obstacles_confirmed"] / r["obstacles"] if r["obstacles"] else math.nan], "k*",
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


def plot_ceiling(rows: list[dict], path: Path, calibrated: tuple[float, int]) -> None:
    """Per-frame recall (obstacle frames with a confirmed alert) and obstacles confirmed against the minimum area:
    the ground truth as the score, and the model at its calibrated threshold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    lines = [("ground truth", GROUND_TRUTH_THRESHOLD, "perfect score (the ground truth)", "tab:green"),
             ("model", calibrated[0], f"model at its threshold {calibrated[0]:.4g}", "tab:blue")]
    for score, threshold, label, colour in lines:
        rs = sorted((r for r in rows if r["score"] == score and r["threshold"] == threshold and r["extend"] is None),
                    key=lambda r: r["min_area_px"])
        if not rs:
            continue
        x = [r["min_area_px"] for r in rs]
        ax.plot(x, [r["obstacle_frames_alerted"] / max(1, r["obstacle_frames"]) for r in rs], "o-", color=colour,
                ms=3, label=f"{label}: obstacle frames alerted")
        ax.plot(x, [r["obstacles_confirmed"] / max(1, r["obstacles"]) for r in rs], "s--", color=colour, ms=3,
                label=f"{label}: obstacles confirmed")
    ax.axvline(calibrated[1], color="k", lw=0.8, ls=":", label=f"calibrated minimum area ({calibrated[1]} px)")
    ax.set_xscale("log")
    ticks = sorted({r["min_area_px"] for r in rows})
    ax.set_xticks(ticks, [str(t) for t in ticks], fontsize=7)
    ax.minorticks_off()
    ax.set_xlabel("minimum obstacle area (px)")
    ax.set_ylabel("fraction")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title("What the obstacle search leaves a perfect score, and what the model gets", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    from dsa_core.eval.alert_curve import (CurvePoint, by_family, cache_drive, cache_ground_truth, curve_rows,
                                         findable_obstacle_frames, replay)
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
    ap.add_argument("--ground-truth-score", action="store_true",
                    help="also replay each drive's ground truth as a perfect score, at every minimum area (the ceiling "
                         "the obstacle search leaves any model; rows with score 'ground truth', OUT/ceiling.png)")
    args = ap.parse_args(argv)
    if args.summaries and len(args.summaries) != len(args.obstacles):
        ap.error(f"--summaries needs one file per --obstacles bag ({len(args.obstacles)}), got {len(args.summaries)}")

    op = resolve_operating_point(verify_model_dir(args.model))

    cache_root = args.cache_dir or args.out / "cache"

    def cached(bags: list[Path]) -> list:
        return [cache_drive(b, args.model, cache_root / b.name, threads=args.threads) for b in bags]

    thresholds = sorted(set(args.thresholds or THRESHOLDS) | {op.anomaly_threshold})
    clear, obstacles = cached(args.clear), cached(args.obstacles)
    calibrated_area = op.min_area_for(*(clear or obstacles)[0].image_size)
    areas = sorted(set(args.areas) | {calibrated_area})
    points = [CurvePoint(t, a) for t in thresholds for a in areas]
    points += [CurvePoint(op.anomaly_threshold, a, e) for e in args.extend for a in areas]

    rows = [{"score": "model", **r} for r in curve_rows(clear, obstacles, points, ego_mask_bottom=args.ego_mask_bottom)]
    if args.ground_truth_score:
        def truth(bags: list[Path]) -> list:
            return [cache_ground_truth(b, cache_root / f"{b.name}.ground_truth") for b in bags]

        clear_truth, obstacle_truth = truth(args.clear), truth(args.obstacles)
        findable = [findable_obstacle_frames(d, areas, args.ego_mask_bottom) for d in obstacle_truth]
        rows += [{"score": "ground truth", **r, "obstacle_frames_findable": sum(f[r["min_area_px"]] for f in findable)}
                 for r in curve_rows(clear_truth, obstacle_truth,
                                     [CurvePoint(GROUND_TRUTH_THRESHOLD, a) for a in areas],
                                     ego_mask_bottom=args.ego_mask_bottom)]
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
    plot([r for r in rows if r["score"] == "model"], args.out / "curve.png", (op.anomaly_threshold, calibrated_area))
    if args.ground_truth_score:
        plot_ceiling(rows, args.out / "ceiling.png", (op.anomaly_threshold, calibrated_area))
    print((args.out / "curve.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
