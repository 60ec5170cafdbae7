"""Obstacle alerts against the ground truth: per-frame alert precision/recall, boxes on the obstacle, time to alert.

Why next to the pixel metrics: the node's product is the alert (ObstacleAlert with the boxes of confirmed
obstacles), and pixel AuPRC does not say whether an alert carries information or whether its box is on the obstacle.

Definitions (used by offline and live bag-eval alike):

* a frame **alerts** when it has at least one confirmed obstacle box (ObstacleAlert.severity > SEVERITY_NONE);
* a **ground-truth obstacle** comes from the bag's ground-truth obstacle topic when it has one (``dsa synth bag``
  writes ``<camera base>/gt/obstacles``: id, box and true distance of every visible obstacle). Otherwise it is a
  group of 8-connected ``anomaly == 1`` components whose boxes touch, and its identity carries over to the next
  frame by box overlap (a street cut can then merge two obstacles; the topic avoids that);
* a box is **on** an obstacle when its box IoU with the obstacle's box is >= ``match_iou`` (default 0.1);
* an obstacle is **confirmed** at the first processed frame with a confirmed box on it. Time to alert counts from
  the first frame the obstacle is visible in the ground truth, frames the node dropped included (it lost that time);
* a **false alert** is an alert on a frame without an obstacle, or a confirmed box on no obstacle;
* a **false alert track** is a confirmed track (the node's track id) whose box never lay on an obstacle: what a
  driver counts as one false alert, however many frames it lasts (``dsa calibrate --val-bag`` counts the same).
* **from a severity up** (``by_min_severity``): the same counts when only the confirmed boxes of at least WARNING
  (or CRITICAL) severity alert, for a consumer that ignores INFO alerts at the edge of the drivable area.

Per-frame metrics cover the frames that were processed and have ground truth; frames the node dropped count only
for the obstacles' time to alert.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import cv2
import numpy as np

from dsa_core.labels import CITYSCAPES_CLASSES, VOID
from dsa_core.perception.obstacles import Severity, box_iou  # ROS-free: the node's own box IoU and severities

#: Box IoU at which an alert box counts as being on a ground-truth obstacle.
MATCH_IOU = 0.1
#: Message type of the ground-truth obstacle topic (the node's own alert message, filled with the true boxes).
GT_OBSTACLES_TYPE = "dsa_perception/msg/ObstacleAlert"

Box = tuple[int, int, int, int]  # x, y, width, height in pixels
#: Consumers often act only from WARNING (on the drivable area) or CRITICAL up, so the scores are also given from
#: each of these levels up (Severity: the node's ObstacleAlert.SEVERITY_*).
SEVERITY_LEVELS = {"warning": Severity.WARNING, "critical": Severity.CRITICAL}


def _touch(a: Box, b: Box) -> bool:
    return a[0] <= b[0] + b[2] and b[0] <= a[0] + a[2] and a[1] <= b[1] + b[3] and b[1] <= a[1] + a[3]


def gt_boxes_from_mask(gt_anomaly: np.ndarray) -> list[Box]:
    """Boxes of the obstacles in a 0/1/255 anomaly map: 8-connected components of 1, merged while their boxes touch.

    Why merge: one obstacle can fall apart into pieces (thin parts, occlusion by the hood); pieces of one object
    touch or overlap in box space, two separate obstacles usually do not.
    """
    count, _, stats, _ = cv2.connectedComponentsWithStats((gt_anomaly == 1).astype(np.uint8), connectivity=8)
    boxes = [tuple(int(v) for v in stats[i, :4]) for i in range(1, count)]
    merged = True
    while merged and len(boxes) > 1:
        merged = False
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                if _touch(boxes[i], boxes[j]):
                    a, b = boxes[i], boxes.pop(j)
                    x0, y0 = min(a[0], b[0]), min(a[1], b[1])
                    boxes[i] = (x0, y0, max(a[0] + a[2], b[0] + b[2]) - x0, max(a[1] + a[3], b[1] + b[3]) - y0)
                    merged = True
                    break
            if merged:
                break
    return sorted(boxes)


@dataclass(frozen=True)
class GtObstacle:
    """One ground-truth obstacle in one frame."""

    ident: int  # unique per camera within the bag
    box: Box
    distance_m: float = math.nan  # true ground distance when the ground truth has it


@dataclass(frozen=True)
class AlertBox:
    """One confirmed obstacle box the node reported."""

    box: Box
    distance_m: float = math.nan  # the node's own (flat-ground) estimate, NaN without CameraInfo
    track_id: int = 0  # the node's track id (Obstacle.track_id); 0 = not known
    gt_class: int | None = None  # ground-truth train id of most of its flagged pixels (flagged_class), 255 = void
    severity: int = Severity.INFO  # the obstacle's own severity (Obstacle.severity)


def flagged_class(box: Box, flagged: np.ndarray, gt_semantic: np.ndarray | None) -> int | None:
    """The ground-truth train id (255 = void) that most of the flagged pixels inside ``box`` carry: what an alert
    lies on. Why: a false alert on void content (a gravel strip, a bin: things none of the classes covers) asks for a
    different fix than one on a bus the model should know. None without ground truth or flagged pixels."""
    if gt_semantic is None or gt_semantic.shape != flagged.shape:
        return None
    x, y, w, h = box
    labels = gt_semantic[y:y + h, x:x + w][flagged[y:y + h, x:x + w] > 0]
    if labels.size == 0:
        return None
    return int(np.bincount(labels.ravel(), minlength=256).argmax())


def class_name(train_id: int) -> str:
    return CITYSCAPES_CLASSES[train_id] if 0 <= train_id < len(CITYSCAPES_CLASSES) else (
        "void" if train_id == VOID else f"id {train_id}")


@dataclass
class _Frame:
    camera: str
    index: int
    stamp_ns: int
    height: int | None
    processed: bool
    gt: list[GtObstacle]
    alerts: list[AlertBox]


def read_gt_obstacles(bag: Any, topic: str) -> dict[int, list[GtObstacle]]:
    """stamp -> ground-truth obstacles of that frame, from a ground-truth obstacle topic (ObstacleAlert messages).
    ``bag``: a path or an open dsa_core.bags.source.BagSource (a damaged bag is read up to the damage; a message
    that does not deserialize is left out, so its frame has no obstacle ground truth)."""
    from dsa_core.bags.messages import stamp_to_ns
    from dsa_core.bags.source import BagSource, open_bag

    source = bag if isinstance(bag, BagSource) else open_bag(bag)
    if topic not in source.topics:
        raise ValueError(f"ground-truth obstacle topic {topic} not in {source.path}")
    if source.topics[topic][0] != GT_OBSTACLES_TYPE:
        raise ValueError(f"ground-truth obstacle topic {topic} has type {source.topics[topic][0]}, expected "
                         f"{GT_OBSTACLES_TYPE}")
    out: dict[int, list[GtObstacle]] = {}
    for _, msgtype, _, raw in source.messages({topic}):
        try:
            msg = source.deserialize(raw, msgtype)
        except Exception:  # noqa: BLE001 - listed by the camera/GT reader; here it only has no obstacles
            continue
        out[stamp_to_ns(msg.header.stamp)] = [
            GtObstacle(int(o.track_id), (int(o.bbox_x), int(o.bbox_y), int(o.bbox_width), int(o.bbox_height)),
                       float(o.distance_m)) for o in msg.obstacles]
    return out


def default_gt_obstacles_topic(camera_topic: str) -> str:
    """Where ``dsa synth bag`` puts the obstacle ground truth of ``camera_topic`` (<camera base>/gt/obstacles)."""
    topic = camera_topic[: -len("/compressed")] if camera_topic.endswith("/compressed") else camera_topic
    return f"{topic.rsplit('/', 1)[0]}/gt/obstacles"


def find_gt_obstacles(bag: str | Path, topics: dict[str, tuple[str, int]],
                      camera_topics: Iterable[str]) -> dict[str, dict[int, list[GtObstacle]]]:
    """camera topic -> its ground-truth obstacles by stamp, for the cameras whose bag has the default topic."""
    found = {}
    for cam in camera_topics:
        topic = default_gt_obstacles_topic(cam)
        if topics.get(topic, ("",))[0] == GT_OBSTACLES_TYPE:
            found[cam] = read_gt_obstacles(bag, topic)
    return found


@dataclass
class AlertScorer:
    """Collects, in bag order per camera, each frame's ground truth and confirmed boxes; ``compute`` scores them."""

    match_iou: float = MATCH_IOU
    #: camera topic -> stamp -> ground-truth obstacles (``find_gt_obstacles``); cameras not in it use their masks
    gt_tables: dict[str, dict[int, list[GtObstacle]]] = field(default_factory=dict)
    _frames: list[_Frame] = field(default_factory=list)
    _previous: dict[str, list[GtObstacle]] = field(default_factory=dict)  # mask fallback: last frame's obstacles
    _next_id: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0.0 < self.match_iou <= 1.0:
            raise ValueError(f"match_iou must be in (0, 1], got {self.match_iou}")

    def add(self, camera: str, index: int, stamp_ns: int, gt_anomaly: np.ndarray | None,
            alerts: list[AlertBox] | None, gt_obstacles: list[GtObstacle] | None = None, topic: str | None = None) -> None:
        """One camera frame. ``alerts`` None: the frame was not processed (dropped, rejected).

        ``gt_obstacles``: the frame's ground-truth obstacles; when None they come from ``gt_tables[topic]`` if the
        camera has a table (a frame missing from it is not scored), else from ``gt_anomaly``. A frame without any
        ground truth is not scored and ends the mask fallback's identities.
        """
        if gt_obstacles is None and topic in self.gt_tables:
            gt_obstacles = self.gt_tables[topic].get(int(stamp_ns))
            if gt_obstacles is None:
                return
        if gt_obstacles is None and gt_anomaly is None:
            self._previous.pop(camera, None)
            return
        if gt_obstacles is None:
            gt_obstacles = self._identify(camera, gt_boxes_from_mask(gt_anomaly))
        height = int(gt_anomaly.shape[0]) if gt_anomaly is not None else None
        self._frames.append(_Frame(camera, int(index), int(stamp_ns), height, alerts is not None, list(gt_obstacles),
                                   list(alerts or [])))

    def _identify(self, camera: str, boxes: list[Box]) -> list[GtObstacle]:
        """Give mask-derived boxes the id of the previous frame's obstacle they overlap most (greedy), else a new id."""
        previous = self._previous.get(camera, [])
        pairs = sorted(((box_iou(b, p.box), i, j) for i, b in enumerate(boxes) for j, p in enumerate(previous)),
                       reverse=True)
        ids: dict[int, int] = {}
        used: set[int] = set()
        for iou, i, j in pairs:
            if iou > 0 and i not in ids and j not in used:
                ids[i] = previous[j].ident
                used.add(j)
        out = []
        for i, b in enumerate(boxes):
            if i not in ids:
                ids[i] = self._next_id[camera] = self._next_id.get(camera, 0) + 1
            out.append(GtObstacle(ids[i], b))
        self._previous[camera] = out
        return out

    @property
    def scored(self) -> bool:
        """True once a frame with ground truth was added (there is something to report)."""
        return bool(self._frames)

    def compute(self) -> dict[str, Any]:
        """Per-frame alert metrics, per-obstacle time to alert and the false-alert frames (see module docstring),
        plus ``by_min_severity``: the headline counts when only boxes of at least that severity alert."""
        out = self._compute(Severity.INFO)
        out["by_min_severity"] = {}
        for name, level in SEVERITY_LEVELS.items():
            sub = self._compute(level)
            out["by_min_severity"][name] = {k: sub[k] for k in (
                "frames_with_alert", "true_alert_frames", "false_alert_frames_without_obstacle", "alert_precision",
                "alert_recall", "obstacles_confirmed", "median_distance_at_alert_m", "false_alert_tracks",
                "false_alerts_per_hour", "false_alerts_per_hour_upper95")}
        return out

    def _compute(self, min_severity: int) -> dict[str, Any]:
        t = self.match_iou
        tp = fp = fn = tn = box_frames = boxes_on = boxes_off = 0
        false_alerts: list[dict[str, Any]] = []
        tracks: dict[tuple[str, int], dict[str, Any]] = {}
        alert_tracks: dict[tuple[str, int], bool] = {}  # (camera, node track id) -> ever on an obstacle
        track_classes: dict[tuple[str, int], list[int]] = {}  # (camera, node track id) -> gt classes under its boxes
        unidentified = False
        for fr in self._frames:
            for gt in fr.gt:
                tr = tracks.setdefault((fr.camera, gt.ident), {
                    "camera": fr.camera, "id": gt.ident, "first_frame": fr.index, "first_stamp_ns": fr.stamp_ns,
                    "first_distance_m": gt.distance_m, "first_bottom_row": gt.box[1] + gt.box[3] - 1,
                    "last_frame": fr.index, "frames_visible": 0, "frames_processed": 0, "frames_with_box": 0,
                    "confirmed": None})
                tr["last_frame"] = fr.index
                tr["frames_visible"] += 1
            if not fr.processed:
                continue
            alerts = [a for a in fr.alerts if a.severity >= min_severity]
            on = [[a for a in alerts if box_iou(a.box, gt.box) >= t] for gt in fr.gt]
            off = [a for a in alerts if all(box_iou(a.box, gt.box) < t for gt in fr.gt)]
            boxes_on += len(alerts) - len(off)
            boxes_off += len(off)
            for a in alerts:
                unidentified = unidentified or a.track_id == 0
                key = (fr.camera, a.track_id)
                alert_tracks[key] = alert_tracks.get(key, False) or not any(a is o for o in off)
                if a.gt_class is not None:
                    track_classes.setdefault(key, []).append(a.gt_class)
            alert, positive = bool(alerts), bool(fr.gt)
            tp += alert and positive
            fp += alert and not positive
            fn += positive and not alert
            tn += not alert and not positive
            box_frames += positive and any(on)
            if off:
                false_alerts.append({"camera": fr.camera, "index": fr.index, "stamp_ns": fr.stamp_ns,
                                     "reason": "alert on a frame without an obstacle" if not positive
                                     else "alert box on no obstacle", "boxes_off_obstacle": len(off),
                                     "boxes": [list(a.box) for a in off]})
            for gt, hits in zip(fr.gt, on):
                tr = tracks[(fr.camera, gt.ident)]
                tr["frames_processed"] += 1
                tr["frames_with_box"] += bool(hits)
                if hits and tr["confirmed"] is None:
                    best = max(hits, key=lambda a: box_iou(a.box, gt.box))
                    tr["confirmed"] = {
                        "frame": fr.index, "stamp_ns": fr.stamp_ns, "frames_after_first_seen": fr.index - tr["first_frame"],
                        "seconds_after_first_seen": (fr.stamp_ns - tr["first_stamp_ns"]) * 1e-9,
                        "distance_m": gt.distance_m, "bottom_row": gt.box[1] + gt.box[3] - 1, "image_height": fr.height,
                        "box_iou": box_iou(best.box, gt.box), "node_distance_m": best.distance_m}
        obstacles = sorted(tracks.values(), key=lambda o: (o["camera"], o["first_stamp_ns"], o["id"]))
        delays = [o["confirmed"]["seconds_after_first_seen"] for o in obstacles if o["confirmed"]]
        distances = [o["confirmed"]["distance_m"] for o in obstacles
                     if o["confirmed"] and math.isfinite(o["confirmed"]["distance_m"])]
        positives = tp + fn
        stamps: dict[str, list[int]] = {}  # every scored frame, processed or dropped: the time driven
        for fr in self._frames:
            stamps.setdefault(fr.camera, []).append(fr.stamp_ns)
        hours = sum(camera_seconds(v) for v in stamps.values()) / 3600.0
        false_tracks = None if unidentified else sum(not on for on in alert_tracks.values())
        by_class: dict[str, int] = {}  # false alerts (tracks) by what most of their boxes lie on
        if not unidentified:
            for key, on in alert_tracks.items():
                if not on and key in track_classes:
                    name = class_name(int(np.bincount(track_classes[key]).argmax()))
                    by_class[name] = by_class.get(name, 0) + 1
        per_hour = false_tracks is not None and hours > 0
        return {
            "match_iou": t, "frames_evaluated": tp + fp + fn + tn, "frames_with_obstacle": positives,
            "frames_without_obstacle": fp + tn, "frames_with_alert": tp + fp,
            "true_alert_frames": tp, "false_alert_frames_without_obstacle": fp, "missed_obstacle_frames": fn,
            "alert_precision": tp / (tp + fp) if tp + fp else None,
            "alert_recall": tp / positives if positives else None,
            "obstacle_frames_with_box_on_obstacle": box_frames,
            "box_on_obstacle_fraction": box_frames / positives if positives else None,
            "confirmed_boxes_on_obstacle": boxes_on, "confirmed_boxes_off_obstacle": boxes_off,
            "obstacles": obstacles, "obstacles_total": len(obstacles),
            "obstacles_confirmed": sum(o["confirmed"] is not None for o in obstacles),
            "median_seconds_to_alert": float(np.median(delays)) if delays else None,
            "median_distance_at_alert_m": float(np.median(distances)) if distances else None,
            "false_alerts": false_alerts,
            "alert_tracks": None if unidentified else len(alert_tracks),
            "false_alert_tracks": false_tracks,
            "false_alerts_by_class": dict(sorted(by_class.items(), key=lambda kv: (-kv[1], kv[0]))) or None,
            # the unit a driver counts: false alerts per hour of camera time (dropped frames are time driven too)
            "camera_hours": hours,
            "false_alerts_per_hour": false_tracks / hours if per_hour else None,
            "false_alerts_per_hour_upper95": alert_rate_upper_bound(false_tracks, hours) if per_hour else None,
        }


def camera_seconds(stamps_ns: Iterable[int]) -> float:
    """The driving time one camera's frames stand for: each frame is one frame interval, so n frames at 5 fps are
    n / 5 s (the span of the stamps times n / (n - 1)); 0 for fewer than two frames."""
    stamps = list(stamps_ns)
    if len(stamps) < 2:
        return 0.0
    return (max(stamps) - min(stamps)) * len(stamps) / (len(stamps) - 1) / 1e9


def alert_rate_upper_bound(events: int, hours: float, confidence: float = 0.95) -> float | None:
    """One-sided exact Poisson upper bound of a rate per hour seen as ``events`` in ``hours``: no false alert in
    2 camera-minutes still allows 90 per hour."""
    if hours <= 0:
        return None
    if events < 0:
        raise ValueError(f"need events >= 0, got {events}")
    from scipy.stats import chi2

    return float(chi2.ppf(confidence, 2 * (events + 1)) / 2.0 / hours)


def frame_ranges(indices: Iterable[int]) -> str:
    """Compact list of frame indices for people: 3-7, 12, 15-16."""
    idx = sorted(set(int(i) for i in indices))
    parts, start = [], None
    for a, b in zip(idx, idx[1:] + [None]):
        start = a if start is None else start
        if b != a + 1:
            parts.append(str(a) if start == a else f"{start}-{a}")
            start = None
    return ", ".join(parts)
