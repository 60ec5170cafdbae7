"""The end-to-end demo on a synthetic drive (``dsa demo``): drive bag -> the real node (live) and the same pipeline
offline -> reports, overlay PNGs + MP4 with the node's and the true obstacle boxes, summary.json / summary.md.

The steps:
1. writes a synthetic drive bag (``dsa synth bag``: camera moving forward, obstacles from the held-out anomaly
   families approaching on the road from far to near, clear road once they are passed, ground truth topics);
2. live: starts ``dsa_perception_node`` with the ONNX Runtime CPU backend and the shipped model, replays the bag into
   it at the recorded rate, records its outputs (overlay, scores, semantics, obstacle alerts) and scores them;
3. offline: the same pipeline on every frame (what the node would output without dropping frames);
4. leaves the output folder and returns a short summary: pixel metrics (AuPRC, FPR95), alert precision/recall per
   frame and each obstacle's time to alert.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger(__name__)

#: (frames, fps, height, width, segment frames, obstacle start distance range in m or None for the drive's default):
#: full demo vs --quick (tests, smoke checks). Full: 3 streets of 8 s; each obstacle is visible for about 4-5 s, then
#: the road is clear.
FULL = (120, 5.0, 256, 512, 40, None)
QUICK = (8, 2.0, 96, 192, 4, (12.0, 16.0))
#: Colour of the true obstacle box drawn on the overlay PNGs (the node's boxes use its severity colours).
GT_BOX_RGB = (0, 255, 0)


def _check_model(model: Path) -> None:
    if not (model / "manifest.json").is_file():
        raise FileNotFoundError(
            f"no exported model at {model} (manifest.json missing).\n"
            f"  The shipped dsa_nano lives in models/dsa_nano; run from the repository root, or produce it with the\n"
            f"  recipe in results/train_nano.md (dsa synth -> dsa train -> dsa export --out {model}), or pass --model DIR.")


def _write_overlays(recording: Path, topic: str, out: Path, gt_boxes: dict | None = None) -> dict:
    """Overlay images from the node's recorded ~/<cam>/overlay topic -> PNGs + an MP4 (in arrival order).

    ``gt_boxes`` (stamp -> ground-truth obstacles) adds the true obstacle box in GT_BOX_RGB, so a viewer sees at once
    whether the node's boxes are on the obstacle.
    """
    from rosbags.highlevel import AnyReader

    from dsa_core.bags.messages import make_typestore, stamp_to_ns
    from dsa_core.perception.image_codec import image_msg_to_rgb

    out.mkdir(parents=True, exist_ok=True)
    frames = []
    with AnyReader([recording], default_typestore=make_typestore()) as reader:
        conns = [c for c in reader.connections if c.topic == topic]
        for conn, _, raw in reader.messages(connections=conns):
            msg = reader.deserialize(raw, conn.msgtype)
            if msg.encoding != "rgb8":
                raise ValueError(f"{topic}: expected rgb8 overlays, got {msg.encoding}")
            img = np.array(image_msg_to_rgb(msg))  # own copy: the message buffer is read-only
            for gt in (gt_boxes or {}).get(stamp_to_ns(msg.header.stamp), []):
                x, y, w, h = gt.box
                cv2.rectangle(img, (x - 2, y - 2), (x + w + 1, y + h + 1), GT_BOX_RGB, 1)
                cv2.putText(img, "GT", (x, min(msg.height - 2, y + h + 12)), cv2.FONT_HERSHEY_SIMPLEX, 0.35,
                            GT_BOX_RGB, 1, cv2.LINE_AA)
            frames.append(img)
    for i, img in enumerate(frames):
        cv2.imwrite(str(out / f"overlay_{i:04d}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    video = None
    if frames:
        h, w = frames[0].shape[:2]
        path = out.parent / "overlay.mp4"
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 5.0, (w, h))
        if writer.isOpened():
            for img in frames:
                writer.write(cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
            writer.release()
            video = path.name
        else:
            log.warning("OpenCV cannot write mp4 here; overlay PNGs only")
    return {"overlay_images": len(frames), "overlay_dir": out.name, "video": video}


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def _alerts(rep: dict) -> dict | None:
    """The report's alert metrics without the per-frame lists (those stay in the report)."""
    a = rep.get("alerts")
    if not a:
        return None
    keep = ("alert_precision", "alert_recall", "frames_evaluated", "frames_with_obstacle", "frames_with_alert",
            "false_alert_frames_without_obstacle", "obstacle_frames_with_box_on_obstacle", "box_on_obstacle_fraction",
            "obstacles_total", "obstacles_confirmed", "median_seconds_to_alert", "median_distance_at_alert_m",
            "false_alert_tracks")
    out = {k: a[k] for k in keep}
    out["false_alert_frames"] = [f["index"] for f in a["false_alerts"]]
    out["time_to_alert"] = [{"obstacle": o["id"], "first_frame": o["first_frame"], "first_distance_m": o["first_distance_m"],
                             "confirmed": o["confirmed"]} for o in a["obstacles"]]
    return out


def _time_to_alert(t: dict) -> str:
    c = t["confirmed"]
    if not c:
        return f"#{t['obstacle']} never"
    at = f"{c['distance_m']:.0f} m" if c["distance_m"] is not None else f"row {c['bottom_row']}"
    return f"#{t['obstacle']} at {at} after {c['seconds_after_first_seen']:.1f} s"


def _alert_line(a: dict | None) -> str:
    """Alert precision/recall, box on the obstacle, false alerts and time to alert per obstacle, in one line."""
    if a is None:
        return "alerts: no obstacle ground truth"
    tta = ", ".join(_time_to_alert(t) for t in a["time_to_alert"]) or "no obstacle"
    return (f"alerts: precision {_fmt(a['alert_precision'])}  recall {_fmt(a['alert_recall'])}  box on obstacle "
            f"{_fmt(a['box_on_obstacle_fraction'])}  false-alert frames {len(a['false_alert_frames'])}/"
            f"{a['frames_evaluated']}"
            + ("" if a["false_alert_tracks"] is None else f" (false alerts {a['false_alert_tracks']})")
            + f"  time to alert: {tta}")


def run_demo(out: Path, model: Path, quick: bool = False, frames: int | None = None, seed: int = 0) -> str:
    """Run the demo into ``out`` (a previous demo output there is replaced) and return the terminal summary."""
    from dsa_core.bags.alerts import read_gt_obstacles
    from dsa_core.bags.drive import DriveSpec
    from dsa_core.bags.live import evaluate_live
    from dsa_core.bags.offline import evaluate_offline
    from dsa_core.data.synth.scene import EGO_MASK_BOTTOM_FRACTION
    from dsa_core.bags.writer import write_drive_bag
    from dsa_core.perception.obstacles import ObstacleSettings

    t_start = time.perf_counter()
    _check_model(model)
    if out.exists() and any(out.iterdir()):
        # Re-running the README command replaces the previous demo's output, and only that: a directory that does
        # not hold a finished demo (summary.json) is somebody else's and is left alone.
        if not (out / "summary.json").is_file():
            raise FileExistsError(f"{out} exists, is not empty and is not a previous demo output; "
                             f"remove it or pass --out NEW_DIR")
        import shutil

        print(f"[demo] replacing the previous demo output in {out}")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    default_frames, fps, height, width, seg, start_m = QUICK if quick else FULL
    frames = frames or default_frames
    print(f"[demo] 1/3 synthetic drive: {frames} frames {width}x{height} at {fps:g} fps")
    spec = DriveSpec(frames=frames, height=height, width=width, fps=fps, seed=seed, segment_frames=seg,
                     obstacle_probability=1.0, **({"obstacle_start_m": start_m} if start_m else {}))
    bag = out / "drive_bag"
    bag_info = write_drive_bag(bag, spec, storage="sqlite3", version=8, progress=True)
    t_bag = time.perf_counter()

    print(f"[demo] 2/3 live: dsa_perception_node (onnxruntime CPU, {model}) <- bag replay at the recorded rate")
    ego = EGO_MASK_BOTTOM_FRACTION
    live = evaluate_live(bag, model, out / "live", backends=["onnxruntime"], rate=1.0, record_overlay=True,
                         node_params={"publish_overlay": True, "inference_threads": 2, "ego_mask_bottom_fraction": ego,
                                      "debounce_seconds": ObstacleSettings().debounce_seconds_at(fps)})
    gt_boxes = read_gt_obstacles(bag, bag_info["topics"]["gt_obstacles"])
    overlays = _write_overlays(out / "live" / "recording", "/dsa_perception/front/overlay", out / "overlays", gt_boxes)
    t_live = time.perf_counter()

    print("[demo] 3/3 offline: the same pipeline on every frame")
    offline = evaluate_offline(bag, model, out / "offline", backends=("onnxruntime",), progress=True,
                               ego_mask_bottom=ego)
    t_end = time.perf_counter()

    def metrics(rep: dict) -> dict:
        m = rep["metrics"]
        return {"frames_scored": m["frames_scored"], "auprc": m.get("anomaly", {}).get("auprc"),
                "fpr95": m.get("anomaly", {}).get("fpr95"), "miou": m.get("semantic", {}).get("miou"),
                "component_mean_f1": m.get("components", {}).get("mean_f1"), "latency": rep["latency"],
                "alerts": _alerts(rep)}

    summary = {
        "model": str(model), "backend": "onnxruntime (CPU)", "bag": bag_info, "quick": bool(quick),
        "live": {**metrics(live), "dropped": live["dropped"]},
        "offline": metrics(offline), "overlays": {**overlays, "boxes": "node: severity colours; true obstacle: green"},
        "wall_s": {"bag": t_bag - t_start, "live": t_live - t_bag, "offline": t_end - t_live, "total": t_end - t_start},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    lv, of = summary["live"], summary["offline"]
    lines = [
        f"dsa demo: {frames} frames, model {model}, ONNX Runtime CPU, total {summary['wall_s']['total']:.0f} s",
        f"  live node : processed {lv['dropped']['published'] - lv['dropped']['count']}/{lv['dropped']['published']} "
        f"frames (dropped {lv['dropped']['count']}), latency p50 {_fmt(lv['latency'].get('p50_ms'))} ms "
        f"p99 {_fmt(lv['latency'].get('p99_ms'))} ms",
        f"  live      : AuPRC {_fmt(lv['auprc'])}  FPR95 {_fmt(lv['fpr95'])}  mIoU {_fmt(lv['miou'])}",
        f"              {_alert_line(lv['alerts'])}",
        f"  offline   : AuPRC {_fmt(of['auprc'])}  FPR95 {_fmt(of['fpr95'])}  mIoU {_fmt(of['miou'])}  "
        f"component mean F1 {_fmt(of['component_mean_f1'])} ({of['frames_scored']} frames)",
        f"              {_alert_line(of['alerts'])}",
        f"  outputs   : {out}/ (overlays/ {overlays['overlay_images']} PNGs, {overlays['video'] or 'no video'}, "
        f"live/report.md, offline/report.md, summary.json)",
    ]
    (out / "summary.md").write_text("# dsa demo\n\n```\n" + "\n".join(lines) + "\n```\n")
    return "\n".join(lines)
