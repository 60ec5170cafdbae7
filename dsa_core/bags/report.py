"""The bag-evaluation report: report.json, report.md (tables), pr_curve.png, latency_hist.png, frames_strip.png.

The strip shows the worst and best frames by per-frame AuPRC (frames with anomaly pixels), each row
input | anomaly heat | ground truth, so a reader sees at once what the numbers mean.
"""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from dsa_core.bags.alerts import frame_ranges
from dsa_core.bags.scoring import BagScorer, FrameRecord
from dsa_core.eval.baselines import BASELINES, model_score_name
from dsa_core.labels import VOID

log = logging.getLogger(__name__)


def _finite(values: list[float]) -> np.ndarray:
    arr = np.asarray([v for v in values if v is not None], np.float64)
    return arr[np.isfinite(arr)]


def latency_summary(latencies_ms: list[float]) -> dict[str, float | int]:
    arr = _finite(latencies_ms)
    if arr.size == 0:
        return {"count": 0}
    return {"count": int(arr.size), "mean_ms": float(arr.mean()), "p50_ms": float(np.percentile(arr, 50)),
            "p90_ms": float(np.percentile(arr, 90)), "p99_ms": float(np.percentile(arr, 99)), "max_ms": float(arr.max())}


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items() if not str(k).startswith("_")}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return None if not math.isfinite(float(value)) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def _heat(score: np.ndarray) -> np.ndarray:
    s = np.clip(np.nan_to_num(score, nan=0.0), 0.0, 1.0)
    return cv2.cvtColor(cv2.applyColorMap((s * 255).astype(np.uint8), cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB)


def _gt_view(gt: np.ndarray) -> np.ndarray:
    view = np.zeros(gt.shape + (3,), np.uint8)
    view[gt == 0] = (40, 40, 40)
    view[gt == 1] = (255, 60, 60)
    view[gt == VOID] = (0, 0, 110)
    return view


def _strip_row(rec: FrameRecord, label: str) -> np.ndarray | None:
    if not rec.score_file:
        return None
    with np.load(rec.score_file) as z:
        anomaly, gt, rgb = z["anomaly"], z["gt"], z["rgb"]
    th, tw = (rgb.shape[:2] if rgb.size else (min(gt.shape[0], 180), min(gt.shape[1], 320)))
    tiles = [cv2.resize(rgb, (tw, th), interpolation=cv2.INTER_AREA) if rgb.size else np.zeros((th, tw, 3), np.uint8),
             cv2.resize(_heat(anomaly), (tw, th), interpolation=cv2.INTER_AREA),
             cv2.resize(_gt_view(gt), (tw, th), interpolation=cv2.INTER_NEAREST)]
    row = np.concatenate(tiles, axis=1)
    text = f"{label} {rec.camera} #{rec.index} AuPRC {rec.auprc:.3f}"
    cv2.putText(row, text, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(row, text, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
    return row


def worst_and_best(frames: list[FrameRecord], n: int = 3) -> tuple[list[FrameRecord], list[FrameRecord]]:
    ranked = sorted((f for f in frames if math.isfinite(f.auprc)), key=lambda f: (f.auprc, f.camera, f.index))
    n = min(n, len(ranked) // 2) if len(ranked) > 1 else len(ranked)
    return ranked[:n], ranked[::-1][:n] if len(ranked) > 1 else []


def write_strip(path: Path, frames: list[FrameRecord], n: int = 3) -> list[dict[str, Any]] | None:
    worst, best = worst_and_best(frames, n)
    rows, listed = [], []
    for label, group in (("WORST", worst), ("BEST", best)):
        for rec in group:
            row = _strip_row(rec, label)
            if row is not None:
                rows.append(row)
                listed.append({"kind": label.lower(), "camera": rec.camera, "index": rec.index, "auprc": rec.auprc})
    if not rows:
        return None
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 2), (0, width - r.shape[1]), (0, 0))) for r in rows]
    cv2.imwrite(str(path), cv2.cvtColor(np.concatenate(rows, axis=0), cv2.COLOR_RGB2BGR))
    return listed


def _plots(out: Path, metrics: dict[str, Any], latencies_ms: list[float], title: str) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = {}
    pr = metrics.get("_pr_curve")
    if pr is not None:
        precision, recall = pr
        fig, ax = plt.subplots(figsize=(5, 4))
        ax.step(np.concatenate([[0.0], recall]), np.concatenate([[precision[0]], precision]), where="post")
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_title(f"{title}: AuPRC {metrics['anomaly']['auprc']:.3f}")
        fig.tight_layout()
        fig.savefig(out / "pr_curve.png", dpi=100)
        plt.close(fig)
        files["pr_curve"] = "pr_curve.png"
    lat = _finite(latencies_ms)
    if lat.size:
        fig, ax = plt.subplots(figsize=(5, 4))
        ax.hist(lat, bins=min(40, max(5, lat.size // 3)))
        ax.set_xlabel("latency [ms]")
        ax.set_ylabel("frames")
        ax.set_title(f"{title}: p50 {np.percentile(lat, 50):.0f} ms, p99 {np.percentile(lat, 99):.0f} ms")
        fig.tight_layout()
        fig.savefig(out / "latency_hist.png", dpi=100)
        plt.close(fig)
        files["latency_hist"] = "latency_hist.png"
    return files


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def _alerts_markdown(a: dict[str, Any]) -> list[str]:
    """The obstacle-alert section: per-frame precision/recall, box on the obstacle, time to alert, false alerts."""
    lines = ["## Obstacle alerts (frames, confirmed boxes)", "",
             f"A frame alerts when it has a confirmed obstacle; a box is on an obstacle at box IoU >= {a['match_iou']:g}.",
             "", "| frames | with obstacle | with alert | alert precision | alert recall | obstacle frames with a box "
             "on it | alerts on frames without obstacle | boxes on / off obstacles |", "|---|---|---|---|---|---|---|---|",
             f"| {a['frames_evaluated']} | {a['frames_with_obstacle']} | {a['frames_with_alert']} | "
             f"{_fmt(a['alert_precision'], 3)} | {_fmt(a['alert_recall'], 3)} | "
             f"{a['obstacle_frames_with_box_on_obstacle']} ({_fmt(a['box_on_obstacle_fraction'], 3)}) | "
             f"{a['false_alert_frames_without_obstacle']} | {a['confirmed_boxes_on_obstacle']} / "
             f"{a['confirmed_boxes_off_obstacle']} |", ""]
    if a["obstacles"]:
        lines += ["Time to alert: from the first frame an obstacle is visible in the ground truth to the first processed "
                  "frame with a confirmed box on it (row = the obstacle's bottom image row).", "",
                  "| camera | obstacle | visible frames | first seen at | confirmed at frame | after | at | box on it |",
                  "|---|---|---|---|---|---|---|---|"]
        for o in a["obstacles"]:
            seen = _where(o["first_distance_m"], o["first_bottom_row"])
            c = o["confirmed"]
            conf = (f"{c['frame']} | {c['frames_after_first_seen']} frames, {c['seconds_after_first_seen']:.1f} s | "
                    f"{_where(c['distance_m'], c['bottom_row'])}") if c else "never | - | -"
            lines.append(f"| {o['camera']} | {o['id']} | {o['first_frame']}-{o['last_frame']} ({o['frames_visible']}) | "
                         f"{seen} | {conf} | {o['frames_with_box']} of {o['frames_processed']} processed |")
        lines.append("")
    false = a["false_alerts"]
    tracks = a.get("false_alert_tracks")
    lines += [f"False alerts: {len(false)} frames" + (f" ({frame_ranges(f['index'] for f in false)})" if false else "")
              + ("" if tracks is None else f", from {tracks} confirmed track(s) never on an obstacle")
              + ("" if a.get("false_alerts_per_hour") is None else
                 f": {a['false_alerts_per_hour']:.3g} false alerts per camera-hour over {60 * a['camera_hours']:.1f} "
                 f"camera-minutes (95 % upper bound {a['false_alerts_per_hour_upper95']:.3g})"), ""]
    levels = a.get("by_min_severity") or {}
    if levels:
        lines += ["By the obstacles' own severity (INFO: at the edge of the drivable area; WARNING: on it; CRITICAL: "
                  "on it and large, near or in the path). The rows count only boxes of at least that severity, for a "
                  "consumer that acts from there up:", "",
                  "| from | frames with alert | alert precision | alert recall | obstacles confirmed | median distance "
                  "at alert | false alerts (tracks) | per camera-hour (95 % bound) |", "|---|---|---|---|---|---|---|---|"]
        rows = [("INFO (all)", a)] + [(name.upper(), sub) for name, sub in levels.items()]
        for name, r in rows:
            dist = r["median_distance_at_alert_m"]
            rate = ("-" if r["false_alerts_per_hour"] is None else
                    f"{r['false_alerts_per_hour']:.3g} ({r['false_alerts_per_hour_upper95']:.3g})")
            lines.append(f"| {name} | {r['frames_with_alert']} | {_fmt(r['alert_precision'], 3)} | "
                         f"{_fmt(r['alert_recall'], 3)} | {r['obstacles_confirmed']} of {a['obstacles_total']} | "
                         f"{'-' if dist is None else f'{dist:.1f} m'} | "
                         f"{'-' if r['false_alert_tracks'] is None else r['false_alert_tracks']} | {rate} |")
        lines.append("")
    if a.get("false_alerts_by_class"):
        lines += ["False alerts by what they lie on (the ground-truth class of most of their flagged pixels; void = "
                  "content none of the classes covers): "
                  + ", ".join(f"{name} {n}" for name, n in a["false_alerts_by_class"].items()), ""]
    return lines


def _where(distance_m: Any, row: Any) -> str:
    return (f"{distance_m:.1f} m, " if isinstance(distance_m, float) and math.isfinite(distance_m) else "") + f"row {row}"


def horizon_gate_record(settings: Any, streams: list[Any], pitch_deg: float = 0.0,
                        road_tops: dict[str, list[float]] | None = None) -> dict[str, Any]:
    """Whether the node's horizon gate (ObstacleSettings.horizon_gate) was in force, for which cameras (it needs the
    camera's CameraInfo, which a bag may lack) and at which mount pitch; with ``road_tops`` (camera topic -> every
    frame's road-top elevation, perception.horizon_check), the mount pitch check over the whole bag."""
    from dsa_core.perception.horizon_check import pitch_warning

    out = {"on": bool(settings.horizon_gate), "margin_deg": float(settings.horizon_margin_deg),
           "pitch_deg": float(pitch_deg),
           "camera_info": {s.topic: s.camera_info for s in streams}}
    if road_tops is not None:
        out["road_top"] = {}
        for topic, values in road_tops.items():
            a = np.asarray(values, float)
            median = float(np.median(a)) if a.size else None
            out["road_top"][topic] = {"frames": int(a.size), "median_deg": median,
                                      "p90_deg": float(np.percentile(a, 90)) if a.size else None,
                                      "warning": pitch_warning(median, float(settings.horizon_margin_deg))}
    return out


def _horizon_gate_line(gate: dict[str, Any]) -> str:
    if not gate["on"]:
        return "- horizon gate: off"
    with_info = [f"{info} for {cam}" for cam, info in gate["camera_info"].items() if info]
    without = [cam for cam, info in gate["camera_info"].items() if not info]
    parts = [f"CameraInfo {', '.join(with_info)}"] if with_info else []
    parts += [f"not applied to {', '.join(without)} (no CameraInfo topic)"] if without else []
    line = (f"- horizon gate: components more than {gate['margin_deg']:g}° above the horizon dropped (pitch "
            f"{gate['pitch_deg']:g}°); {'; '.join(parts)}")
    for cam, top in (gate.get("road_top") or {}).items():
        if top["median_deg"] is None:
            continue
        line += (f"\n  - mount pitch check, {cam}: the road's top lies a median {top['median_deg']:+.2f}° from the "
                 f"configured horizon (90th percentile {top['p90_deg']:+.2f}°, {top['frames']} frames)"
                 + (f": **{top['warning']}**" if top["warning"] else ""))
    return line


def _operating_point_lines(op: dict[str, Any]) -> list[str]:
    """Which threshold and minimum obstacle area were in force, and where they came from."""
    t, area = op["anomaly_threshold"], op["min_obstacle_area"]
    size = (f"{area['pixels']} px" if "pixels" in area else f"{100 * area['fraction_of_image']:.4g} % of the image")
    lines = [f"- anomaly threshold: {_fmt(t['value'], 6)} ({t['source']}), minimum obstacle area: {size} "
             f"({area['source']})"]
    cal = op.get("calibration")
    if cal and "achieved_road_fpr" in cal:
        area_cal, drive = cal.get("area") or {}, cal.get("val_drives")
        kept = area_cal.get("false_frames_kept")
        counted = (f"val drive frames with a false alert {kept} of {drive.get('frames')} ({drive.get('bag')})" if drive
                   else f"val frames with a false obstacle {kept} of {cal.get('val_frames')} ({cal.get('val_root')})")
        at = (drive or {}).get("alerts_at_point")
        if at:
            gated = "with" if drive.get("horizon_gate_counted") else "without"
            other = at["horizon_gate_off" if drive.get("horizon_gate_counted") else "horizon_gate_on"]
            counted += (f" counted {gated} the horizon gate ({'without' if gated == 'with' else 'with'} it: "
                        f"{other['false_frames']} frames, {other['false_alert_tracks']} false alert(s))")
        lines.append(f"  - calibration: {cal.get('rule', '')}; road FPR achieved {_fmt(cal.get('achieved_road_fpr'), 5)}"
                     f", {counted}")
    elif cal:
        lines.append(f"  - from the manifest: {cal.get('method', 'no calibration record')}")
    if "fallback" in (t["source"], area["source"]):
        lines.append("  - fallback = a per-score default, not a calibration (run dsa calibrate on the model dir)")
    return lines


def _markdown(report: dict[str, Any]) -> str:
    m = report["metrics"]
    lines = [f"# Bag evaluation: {report['bag']}", "", f"- mode: **{report['mode']}**, backend: {report.get('backend')}",
             f"- model: {report['model_dir']}", f"- cameras: {', '.join(report['camera_topics'])}",
             f"- frames in: {report['frames_in']}, processed: {report['frames_processed']}, "
             f"scored: {m['frames_scored']}, skipped: {m['frames_skipped']}", ""]
    if report.get("dropped") is not None:
        lines.insert(-1, f"- frames dropped by the node: {report['dropped']['count']} of {report['dropped']['published']}")
    if report.get("operating_point"):
        lines[-1:-1] = _operating_point_lines(report["operating_point"])
    if report.get("horizon_gate"):
        lines.insert(-1, _horizon_gate_line(report["horizon_gate"]))
    if "anomaly" in m:
        a = m["anomaly"]
        op = report.get("operating_point") or {}
        lines += ["## Anomaly (pixel level, pooled)", "", "| score | AuPRC | FPR95 | AUROC |", "|---|---|---|---|",
                  f"| {model_score_name(op.get('score', 'msp'))} | {_fmt(a['auprc'])} | {_fmt(a['fpr95'])} | "
                  f"{_fmt(a['auroc'])} |"]
        for name, b in m.get("baselines", {}).items():
            lines.append(f"| baseline: {BASELINES.get(name, name)} | {_fmt(b['auprc'])} | {_fmt(b['fpr95'])} | "
                         f"{_fmt(b['auroc'])} |")
        lines += ["", f"{a['n_pos']} anomaly px, {a['n_neg']} in-distribution px."]
        if m.get("baselines"):
            lines.append("Baselines come from the same forward pass: the class scores normalised over the classes "
                         "(dsa_core.eval.baselines).")
        elif report.get("baselines_note"):
            lines.append(f"Baselines: {report['baselines_note']}.")
        lines.append("")
    if "components" in m:
        c = m["components"]
        lines += ["## Anomaly (component level, SMIYC)", "", "| sIoU | PPV | mean F1 | GT comps | pred comps | thresh_p |",
                  "|---|---|---|---|---|---|",
                  f"| {_fmt(c['siou'])} | {_fmt(c['ppv'])} | {_fmt(c['mean_f1'])} | {c['n_gt_components']} | "
                  f"{c['n_pred_components']} | {_fmt(c['thresh_p'])} |", ""]
    if report.get("alerts"):
        lines += _alerts_markdown(report["alerts"])
    if "semantic" in m:
        s = m["semantic"]
        lines += ["## Semantic segmentation", "", "| mIoU | pixel accuracy |", "|---|---|",
                  f"| {_fmt(s['miou'])} | {_fmt(s['pixel_accuracy'])} |", ""]
    if not any(k in m for k in ("anomaly", "semantic")):
        lines += ["No ground-truth topics: frames were processed but not scored.", ""]
    lat = report["latency"]
    if lat.get("count"):
        lines += [f"## Latency ({report['latency_definition']})", "", "| frames | mean | p50 | p90 | p99 | max |",
                  "|---|---|---|---|---|---|",
                  f"| {lat['count']} | {lat['mean_ms']:.1f} | {lat['p50_ms']:.1f} | {lat['p90_ms']:.1f} | "
                  f"{lat['p99_ms']:.1f} | {lat['max_ms']:.1f} |", ""]
    if report.get("bag_damage") or report.get("unreadable_messages"):
        from dsa_core.bags.source import describe_damage

        lines += ["## What could not be read", ""]
        lines += [f"- damaged bag, read up to the damage: {describe_damage(d)}" for d in report.get("bag_damage") or []]
        if report.get("unreadable_messages"):
            lines += ["", "| topic | log time (ns) | stamp (ns) | reason |", "|---|---|---|---|"]
            lines += [f"| {u['topic']} | {u['log_time_ns']} | {u['stamp_ns'] if u['stamp_ns'] is not None else '?'} | "
                      f"{u['reason']} |" for u in report["unreadable_messages"]]
        lines.append("")
    if report["skipped"]:
        lines += ["## Skipped frames", "", "| camera | index | stamp [ns] | reason |", "|---|---|---|---|"]
        lines += [f"| {s['camera']} | {s['index']} | {s['stamp_ns']} | {s['reason']} |" for s in report["skipped"]]
        lines.append("")
    if report.get("strip"):
        lines += ["## Worst and best frames", "", "![strip](frames_strip.png)", "",
                  "Rows: input | anomaly score (inferno, 0..1) | ground truth (red anomaly, blue void).", ""]
    for key, name in (("pr_curve", "PR curve"), ("latency_hist", "Latency")):
        if key in report["files"]:
            lines += [f"![{name}]({report['files'][key]})", ""]
    return "\n".join(lines)


def write_report(out: str | Path, scorer: BagScorer, info: dict[str, Any], latencies_ms: list[float],
                 latency_definition: str, alerts: dict[str, Any] | None = None) -> dict[str, Any]:
    """Compute metrics and write all report files into ``out``; returns the report dict (as in report.json).

    ``alerts``: ``AlertScorer.compute()`` (alert precision/recall, time to alert, false alerts), when scored.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    metrics = scorer.compute()
    files = _plots(out, metrics, latencies_ms, Path(str(info.get("bag", "bag"))).name)
    strip = write_strip(out / "frames_strip.png", scorer.frames)
    if strip is not None:
        files["strip"] = "frames_strip.png"
    report = {**info, "metrics": metrics, "latency": latency_summary(latencies_ms), "latency_definition": latency_definition,
              "alerts": alerts, "skipped": scorer.skipped, "strip": strip, "files": {**files, "json": "report.json", "markdown": "report.md"},
              "per_frame": [{"camera": f.camera, "index": f.index, "stamp_ns": f.stamp_ns, "scored": f.scored,
                             "anomaly_px": f.n_anomaly_px, "auprc": f.auprc, "mean_id_score": f.mean_id_score,
                             "latency_ms": f.latency_ms, **f.extra} for f in scorer.frames]}
    report = _jsonable(report)
    (out / "report.json").write_text(json.dumps(report, indent=1))
    (out / "report.md").write_text(_markdown(report))
    log.info("report written to %s", out)
    return report


def _num(v, digits: int = 2) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def alert_summary_lines(a: dict) -> list[str]:
    """Alert precision/recall, boxes on the obstacle and time to alert per obstacle, a few lines for the terminal."""
    lines = [f"alerts  precision {_num(a['alert_precision'])}  recall {_num(a['alert_recall'])}  "
             f"({a['frames_with_alert']} alert frames, {a['frames_with_obstacle']} of {a['frames_evaluated']} frames hold "
             f"an obstacle)  box on the obstacle in {a['obstacle_frames_with_box_on_obstacle']} obstacle frames "
             f"({_num(a['box_on_obstacle_fraction'])})  false-alert frames {len(a['false_alerts'])}"
             + ("" if a.get("false_alert_tracks") is None else f" (false alerts {a['false_alert_tracks']})")]
    for o in a["obstacles"]:
        c = o["confirmed"]
        seen = f"obstacle {o['id']}: visible from frame {o['first_frame']} ({_where(o['first_distance_m'], o['first_bottom_row'])})"
        lines.append(f"  {seen}, " + (f"confirmed at frame {c['frame']} after {c['seconds_after_first_seen']:.1f} s "
                                      f"({_where(c['distance_m'], c['bottom_row'])})" if c else "never confirmed"))
    return lines


def _where(distance_m, row) -> str:
    return (f"{distance_m:.1f} m, " if distance_m is not None else "") + f"row {row}"


def summary_text(report: dict) -> str:
    """A few lines for the terminal: what was read, the metrics, the alerts, the latency, where the report is."""
    m = report["metrics"]
    parts = [f"bag-eval ({report['mode']}, {report.get('backend')}): {report['frames_in']} frames in, "
             f"{m['frames_scored']} scored, {m['frames_skipped']} skipped"]
    if report.get("bag_damage"):
        from dsa_core.bags.source import describe_damage

        parts += [f"  DAMAGED BAG, read up to the damage: {describe_damage(d)}" for d in report["bag_damage"]]
    if report.get("unreadable_messages"):
        parts.append(f"  {len(report['unreadable_messages'])} messages could not be read (listed in the report)")
    if "anomaly" in m:
        a = m["anomaly"]
        parts.append(f"  anomaly  AuPRC {a['auprc']}  FPR95 {a['fpr95']}  AUROC {a['auroc']}")
        for name, b in m.get("baselines", {}).items():
            parts.append(f"    baseline {name}  AuPRC {b['auprc']}  FPR95 {b['fpr95']}  AUROC {b['auroc']}")
    if "components" in m:
        c = m["components"]
        parts.append(f"  components  sIoU {c['siou']}  PPV {c['ppv']}  mean F1 {c['mean_f1']}")
    if "semantic" in m:
        parts.append(f"  semantic  mIoU {m['semantic']['miou']}")
    if report.get("alerts"):
        parts.extend("  " + line for line in alert_summary_lines(report["alerts"]))
    if report.get("dropped"):
        parts.append(f"  node dropped {report['dropped']['count']} of {report['dropped']['published']} frames")
    lat = report["latency"]
    if lat.get("count"):
        parts.append(f"  latency p50 {lat['p50_ms']:.1f} ms  p99 {lat['p99_ms']:.1f} ms ({report['latency_definition']})")
    parts.append(f"  report: {json.dumps(report['files'])}")
    return "\n".join(parts)
