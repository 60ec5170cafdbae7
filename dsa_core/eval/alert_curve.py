"""The alert operating curve: obstacles confirmed against false alerts per hour, over anomaly thresholds and
minimum obstacle areas, on recorded drives.

Why: a vehicle team picks an operating point by what it costs in false alerts per hour and what it buys in
obstacles found, not by pixel AuPRC. One model pass per drive is cached (the maps the node's obstacle search runs
on); every point of the curve then replays those maps through the node's own code (``find_obstacles``,
``ObstacleTracker`` with its horizon gate) and scores the alerts with bag-eval's ``AlertScorer``. The replay at the
model's calibrated point gives the alert counts of ``dsa bag-eval`` on the same drive (tested).

A point may also grow each component by hysteresis: pixels at or above ``extend`` join a component when they
connect to a pixel at or above the threshold (``hysteresis_mask``). The extent then follows the object, not only
its most confident pixels, while only confident seeds start a component.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import cv2
import numpy as np

CACHE_VERSION = 1


def model_key(model_dir: str | Path) -> str:
    """What identifies the model's maps: the sha256 of its ONNX graphs (from the verified manifest). Recalibrating
    the operating point does not change them; retraining or re-exporting does."""
    from dsa_core.export.manifest import verify_model_dir

    files = verify_model_dir(model_dir)["files"]
    return ",".join(f"{name}:{f['sha256']}" for name, f in sorted(files.items()) if f.get("kind") == "onnx")


def hysteresis_mask(anomaly: np.ndarray, threshold: float, extend: float | None) -> np.ndarray:
    """uint8 0/255: pixels >= ``threshold``, plus the 8-connected regions of pixels >= ``extend`` that hold one.
    ``extend`` None (or >= threshold): the plain mask the node uses (pipeline.anomaly_mask)."""
    from dsa_core.perception.pipeline import anomaly_mask

    seeds = anomaly_mask(anomaly, threshold)
    if extend is None or extend >= threshold:
        return seeds
    low = anomaly_mask(anomaly, extend)
    count, labels = cv2.connectedComponents(low, connectivity=8, ltype=cv2.CV_32S)
    keep = np.zeros(count, bool)
    keep[np.unique(labels[seeds > 0])] = True
    keep[0] = False
    return np.where(keep[labels], np.uint8(255), np.uint8(0))


@dataclass(frozen=True)
class CachedDrive:
    """One drive's model outputs at the export size, with what the node's tracker and the alert scorer need."""

    root: Path
    bag: str
    frames: list[dict[str, Any]]  # per camera message in bag order: topic, index, stamp_ns, row (or None), camera_info
    anomaly: np.ndarray  # float32 [rows, h, w] (memory-mapped)
    class_ids: np.ndarray  # uint8 [rows, h, w]
    image_size: tuple[int, int]  # (H, W) of the camera images
    model_dir: str

    @classmethod
    def load(cls, root: str | Path) -> "CachedDrive":
        root = Path(root)
        meta = json.loads((root / "frames.json").read_text())
        if meta.get("version") != CACHE_VERSION:
            raise ValueError(f"{root}: cache version {meta.get('version')} != {CACHE_VERSION}; cache the drive again")
        return cls(root, meta["bag"], meta["frames"], np.load(root / "anomaly.npy", mmap_mode="r"),
                   np.load(root / "class_ids.npy", mmap_mode="r"), tuple(meta["image_size"]), meta["model_dir"])


#: The model key and model dir of a drive cached from its own ground truth (``cache_ground_truth``).
GROUND_TRUTH = "ground truth"


def _load_matching(out: Path, bag: str | Path, key: str, source: str) -> CachedDrive | None:
    """The finished cache at ``out`` when it holds the maps of ``bag`` by ``key``; None when there is none; an error
    when it holds another bag's or another source's."""
    if not (out / "frames.json").is_file():
        return None
    meta = json.loads((out / "frames.json").read_text())
    if Path(meta["bag"]).resolve() != Path(bag).resolve() or meta.get("model_key") != key:
        raise ValueError(f"{out} holds the maps of another bag or model ({meta['bag']}, graphs "
                         f"{meta.get('model_key')}), not of {bag} by {source}; remove it or choose another cache dir")
    return CachedDrive.load(out)


def _write_cache(bag: str | Path, out: Path, key: str, source: str, maps, progress: bool) -> CachedDrive:
    """Cache ``maps(frame) -> (anomaly, class_ids)`` of every decodable camera frame of ``bag`` at ``out``."""
    from tqdm import tqdm

    from dsa_core.bags.reader import iter_frames, select_streams
    from dsa_core.bags.source import open_bag

    out.mkdir(parents=True, exist_ok=True)
    bag_source = open_bag(bag)
    streams = select_streams(bag_source.topics, None)
    total = sum(bag_source.topics[s.topic][1] for s in streams)
    anomaly = class_ids = None
    frames, row, image_size = [], 0, None
    for frame in tqdm(iter_frames(bag_source, streams), total=total, desc=f"cache {Path(bag).name}", unit="frame",
                      disable=not progress):
        entry = {"topic": frame.stream.topic, "index": frame.index, "stamp_ns": frame.stamp_ns, "row": None,
                 "camera_info": frame.camera_info}
        if frame.rgb is not None:
            a, c = maps(frame)
            if anomaly is None:  # the maps' size is known at the first frame
                anomaly = np.lib.format.open_memmap(out / "anomaly.npy", "w+", np.float32, (total, *a.shape))
                class_ids = np.lib.format.open_memmap(out / "class_ids.npy", "w+", np.uint8, (total, *a.shape))
            anomaly[row], class_ids[row] = a, c
            entry["row"], row = row, row + 1
            image_size = image_size or list(frame.rgb.shape[:2])
        frames.append(entry)
    if anomaly is None:
        raise ValueError(f"{bag}: no camera frame could be decoded; nothing to cache")
    anomaly.flush()
    class_ids.flush()
    meta = {"version": CACHE_VERSION, "bag": str(bag), "model_dir": source, "model_key": key,
            "image_size": image_size, "rows": row, "frames": frames}
    (out / "frames.json").write_text(json.dumps(meta))
    return CachedDrive.load(out)


def cache_drive(bag: str | Path, model_dir: str | Path, out: str | Path, threads: int = 1,
                progress: bool = True) -> CachedDrive:
    """Run every decodable camera frame of ``bag`` through the model once (ONNX Runtime) and keep the export-size
    maps the node's obstacle search uses. A finished cache (frames.json) of the same bag and model graphs is loaded,
    not recomputed; one of another bag or model is refused."""
    from dsa_core.runtime import create_backend

    out, key = Path(out), model_key(model_dir)
    cached = _load_matching(out, bag, key, str(model_dir))
    if cached is not None:
        return cached
    backend = create_backend("onnxruntime", model_dir, intra_op_threads=threads, inter_op_threads=1)

    def maps(frame):
        res = backend.infer(frame.rgb[None])
        small_a = res.export_anomaly if res.export_anomaly is not None else res.anomaly
        small_c = res.export_class_ids if res.export_class_ids is not None else res.class_ids
        return small_a[0], small_c[0]

    return _write_cache(bag, out, key, str(model_dir), maps, progress)


def cache_ground_truth(bag: str | Path, out: str | Path, progress: bool = True) -> CachedDrive:
    """The drive's ground truth cached as if a model had produced it: score 1 on the anomaly pixels and 0 elsewhere
    (void included), and the true classes (void stays 255, not drivable).

    Why: replayed like a model's maps, it gives what a perfect score would give at each point of the curve. That is
    the ceiling the node's obstacle search leaves any model: the minimum area, the ego mask, the horizon gate and the
    debounce, at this image size."""
    out = Path(out)
    cached = _load_matching(out, bag, GROUND_TRUTH, GROUND_TRUTH)
    if cached is not None:
        return cached

    def maps(frame):
        if frame.gt_anomaly is None or frame.gt_semantic is None:
            raise ValueError(f"{bag}: camera frame {frame.index} of {frame.stream.topic} has no ground-truth "
                             f"anomaly and semantic maps; a ground-truth score needs both")
        return (frame.gt_anomaly == 1).astype(np.float32), frame.gt_semantic.astype(np.uint8, copy=False)

    return _write_cache(bag, out, GROUND_TRUTH, GROUND_TRUTH, maps, progress)


@dataclass(frozen=True)
class CurvePoint:
    """One operating point of the curve."""

    threshold: float
    min_area_px: int
    extend: float | None = None  # hysteresis: the lower threshold that grows components (None = off)


def replay(drive: CachedDrive, point: CurvePoint, **options: Any) -> dict[str, Any]:
    """The drive's alerts at ``point``, as the node would raise them from these maps (AlertScorer.compute())."""
    return replay_many(drive, [point], **options)[0]


def replay_many(drive: CachedDrive, points: list[CurvePoint], ego_mask_bottom: float = 0.0,
                mount_pitch_deg: float = 0.0, horizon_gate: bool = True) -> list[dict[str, Any]]:
    """``replay`` for many points in one pass over the maps: the components of each (threshold, extend) are found
    once per frame with no size filter, and each point's tracker gets those of at least its minimum area (what
    find_obstacles keeps at that area: its other tests are per component)."""
    from dsa_core.bags.alerts import AlertBox, AlertScorer, find_gt_obstacles
    from dsa_core.bags.source import open_bag
    from dsa_core.perception.obstacles import ObstacleSettings, ObstacleTracker, find_obstacles, ground_camera_for_image

    source = open_bag(drive.bag)
    topics = sorted({f["topic"] for f in drive.frames})
    gt_tables = find_gt_obstacles(source, source.topics, topics)
    missing = [t for t in topics if t not in gt_tables]
    if missing:
        raise ValueError(f"{drive.bag}: no ground-truth obstacle topic for {missing}; the curve needs one")
    big_h, big_w = drive.image_size
    if tuple(drive.anomaly.shape[1:]) != (big_h, big_w):
        raise ValueError(f"{drive.root}: maps {drive.anomaly.shape[1:]} differ from the images {drive.image_size}; "
                         f"the replay's one-pass area filter needs them equal")
    search = ObstacleSettings(min_area=1, ego_mask_bottom_fraction=ego_mask_bottom, horizon_gate=horizon_gate)
    settings = [ObstacleSettings(min_area=p.min_area_px, ego_mask_bottom_fraction=ego_mask_bottom,
                                 horizon_gate=horizon_gate) for p in points]
    scorers = [AlertScorer(gt_tables=gt_tables) for _ in points]
    trackers = [{t: ObstacleTracker(s) for t in topics} for s in settings]
    masks = sorted({(p.threshold, p.extend) for p in points}, key=str)
    pitch = math.radians(mount_pitch_deg)
    for f in drive.frames:
        if f["row"] is None:
            for scorer in scorers:
                scorer.add(f["topic"], f["index"], f["stamp_ns"], None, None, topic=f["topic"])
            continue
        scores = np.ascontiguousarray(drive.anomaly[f["row"]])
        ids = np.ascontiguousarray(drive.class_ids[f["row"]])
        found = {key: find_obstacles(hysteresis_mask(scores, *key), ids, scores, search) for key in masks}
        info = f["camera_info"]
        camera = ground_camera_for_image(tuple(info) if info else None, big_w, big_h, 0.0, pitch)[0]
        for p, s, scorer, tracker in zip(points, settings, scorers, trackers):
            detections = [d for d in found[(p.threshold, p.extend)] if d.pixel_area >= s.min_area]
            out = tracker[f["topic"]].update(detections, (big_h, big_w), f["stamp_ns"], camera)
            confirmed = [AlertBox(o.detection.bbox, o.distance_m, o.track_id, severity=int(o.severity))
                         for o in out.obstacles if o.confirmed]
            scorer.add(f["topic"], f["index"], f["stamp_ns"], None, confirmed, topic=f["topic"])
    return [scorer.compute() for scorer in scorers]


#: curve row field -> AlertScorer.compute() key, summed over every drive / over the obstacle drives only
_SUM_ALL = {"false_alert_tracks": "false_alert_tracks", "camera_hours": "camera_hours",
            "false_alert_frames": "false_alert_frames_without_obstacle"}
_SUM_OBSTACLE_DRIVES = {"obstacles": "obstacles_total", "obstacles_confirmed": "obstacles_confirmed",
                        "obstacle_frames": "frames_with_obstacle", "obstacle_frames_alerted": "true_alert_frames",
                        "obstacle_frames_with_box_on": "obstacle_frames_with_box_on_obstacle"}


def _add(totals: dict[str, Any], report: dict[str, Any], has_obstacles: bool) -> None:
    """Add one drive's alert report to the ``totals`` fields it has."""
    for field, key in (_SUM_ALL | _SUM_OBSTACLE_DRIVES if has_obstacles else _SUM_ALL).items():
        if field in totals:
            totals[field] += report[key]


def curve_rows(clear: Iterable[CachedDrive], obstacle: Iterable[CachedDrive], points: Iterable[CurvePoint],
               **replay_options: Any) -> Iterator[dict[str, Any]]:
    """Per point: false alerts (confirmed tracks never on an obstacle) and camera hours summed over every drive,
    and the obstacles confirmed, obstacle frames with an alert, boxes on obstacles and the median true distance at
    which obstacles were confirmed over the obstacle drives; ``from_warning``: the headline counts when only
    obstacles of at least WARNING severity (on the drivable area) alert."""
    points = list(points)
    drives = [(d, False) for d in clear] + [(d, True) for d in obstacle]
    results = [replay_many(d, points, **replay_options) for d, _ in drives]
    for k, p in enumerate(points):
        row = {"threshold": p.threshold, "min_area_px": p.min_area_px, "extend": p.extend,
               **dict.fromkeys(_SUM_ALL | _SUM_OBSTACLE_DRIVES, 0),
               "from_warning": dict.fromkeys(("false_alert_tracks", "obstacles_confirmed", "obstacle_frames_alerted"), 0)}
        distances = []
        for (_, has_obstacles), per_point in zip(drives, results):
            a = per_point[k]
            _add(row, a, has_obstacles)
            _add(row["from_warning"], a["by_min_severity"]["warning"], has_obstacles)
            if has_obstacles:
                distances += [o["confirmed"]["distance_m"] for o in a["obstacles"]
                              if o["confirmed"] and math.isfinite(o["confirmed"]["distance_m"])]
        hours = row["camera_hours"]
        for totals in (row, row["from_warning"]):
            totals["false_alerts_per_hour"] = totals["false_alert_tracks"] / hours if hours else None
        # the ground-truth distance of each obstacle when it was first confirmed: how much warning an alert gives
        row["median_distance_at_alert_m"] = float(np.median(distances)) if distances else None
        yield row


def findable_obstacle_frames(drive: CachedDrive, areas: Iterable[int], ego_mask_bottom: float = 0.0) -> dict[int, int]:
    """Per minimum area: the frames of a ground-truth cache (``cache_ground_truth``) whose obstacle pixels above the
    ego mask form a component (8-connected) of at least that many pixels, i.e. the frames in which a perfect score
    could pass the area filter at all. What a perfect score then misses among them, the tracker and its debounce
    cost."""
    if drive.model_dir != GROUND_TRUTH:
        raise ValueError(f"{drive.root} holds the maps of {drive.model_dir}, not a drive's ground truth")
    areas = sorted(set(areas))
    counts = dict.fromkeys(areas, 0)
    for f in drive.frames:
        if f["row"] is None:
            continue
        mask = (np.asarray(drive.anomaly[f["row"]]) >= 0.5).astype(np.uint8)
        ego_rows = int(round(ego_mask_bottom * mask.shape[0]))
        if ego_rows:
            mask[mask.shape[0] - ego_rows:] = 0
        n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        largest = int(stats[1:, cv2.CC_STAT_AREA].max()) if n > 1 else 0
        for a in areas:
            counts[a] += largest >= a
    return counts


def by_family(reports: Iterable[dict[str, Any]], families: Iterable[dict[int, str]]) -> dict[str, dict[str, Any]]:
    """Per obstacle family over drives: obstacles, how many were confirmed, frames with an alert box on them out of
    their processed frames, and the median true distance at the first confirmation. ``reports``: each drive's
    replay (AlertScorer.compute()); ``families``: each drive's obstacle id -> family (the ``obstacles`` list of
    ``dsa synth bag``'s summary)."""
    rows: dict[str, dict[str, Any]] = {}
    distances: dict[str, list[float]] = {}
    for report, family_of in zip(reports, families):
        for o in report["obstacles"]:
            if o["id"] not in family_of:
                raise ValueError(f"obstacle {o['id']} of the drive has no family in its summary: wrong summary file?")
            name = family_of[o["id"]]
            row = rows.setdefault(name, {"obstacles": 0, "confirmed": 0, "frames_processed": 0, "frames_with_box": 0})
            row["obstacles"] += 1
            row["confirmed"] += o["confirmed"] is not None
            row["frames_processed"] += o["frames_processed"]
            row["frames_with_box"] += o["frames_with_box"]
            if o["confirmed"] and math.isfinite(o["confirmed"]["distance_m"]):
                distances.setdefault(name, []).append(o["confirmed"]["distance_m"])
    for name, row in rows.items():
        row["median_distance_at_alert_m"] = float(np.median(distances[name])) if name in distances else None
    return dict(sorted(rows.items()))
