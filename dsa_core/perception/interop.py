"""What other ROS tools read: vision_msgs/Detection2DArray (trackers, Foxglove, RViz plugins) and the class map.

Why a plain field layout first: vision_msgs is in every apt ROS install but exists as no wheel here, so the
conversion from our obstacles to the Detection2D fields is a pure function (``detection2d_layout``, tested without
vision_msgs), and ``fill_message`` writes such a layout into whatever generated message class is installed.

Layout: vision_msgs 4.x (Humble, Jazzy, Kilted): Detection2D{header, results[ObjectHypothesisWithPose{hypothesis
{class_id, score}, pose}], bbox{center{position{x, y}, theta}, size_x, size_y}, id}. One Detection2D per confirmed
obstacle (unconfirmed tracks would make downstream trackers flicker): id = track id, class_id = "anomaly", score =
the obstacle's highest anomaly score, bbox in pixels (centre + size), and the hypothesis pose = the flat-ground
contact point in the camera's optical frame when the distance is known (else zero with covariance[0] = -1, the
"unknown" marker of PoseWithCovariance users).
"""
from __future__ import annotations

import functools
import importlib
import math
from typing import Any, Sequence

from dsa_core.labels import CITYSCAPES_CLASSES, CITYSCAPES_PALETTE

ANOMALY_CLASS_ID = "anomaly"
UNKNOWN_COVARIANCE = -1.0


def detection2d_layout(obstacles: Sequence[Any]) -> list[dict[str, Any]]:
    """Confirmed dsa_core TrackedObstacles -> Detection2D field values (nested dicts; header left to the caller)."""
    out = []
    for o in obstacles:
        if not o.confirmed:
            continue
        x, y, w, h = o.detection.bbox
        known = math.isfinite(o.distance_m)
        gx, gy, gz = o.ground_point if known else (0.0, 0.0, 0.0)
        covariance = [0.0] * 36
        if not known:
            covariance[0] = UNKNOWN_COVARIANCE
        out.append({
            "id": str(o.track_id),
            "bbox": {"center": {"position": {"x": x + w / 2.0, "y": y + h / 2.0}, "theta": 0.0},
                     "size_x": float(w), "size_y": float(h)},
            "results": [{"hypothesis": {"class_id": ANOMALY_CLASS_ID, "score": float(o.detection.score_max)},
                         "pose": {"pose": {"position": {"x": float(gx), "y": float(gy), "z": float(gz)}},
                                  "covariance": covariance}}],
        })
    return out


def class_map_layout(manifest: dict[str, Any] | None) -> dict[str, Any]:
    """ClassMap field values from a model manifest's ``classes`` (id, name, color), else the Cityscapes classes."""
    manifest = manifest or {}
    classes = manifest.get("classes") or [{"id": i, "name": n, "color": list(c)} for i, (n, c) in
                                          enumerate(zip(CITYSCAPES_CLASSES, CITYSCAPES_PALETTE))]
    rgb = [c.get("color") or (0, 0, 0) for c in classes]  # no colour = black in semantic_color
    return {"model_name": str(manifest.get("model_name", "")), "anomaly_score": str(manifest.get("score", "msp")),
            "ids": [int(c["id"]) for c in classes], "names": [str(c["name"]) for c in classes],
            "colors": [{"r": r / 255.0, "g": g / 255.0, "b": b / 255.0, "a": 1.0} for r, g, b in rgb]}


@functools.cache
def _element_class(msg_cls: type, field: str) -> Any:
    """The generated class of the elements of a sequence field (rosidl keeps the type in SLOT_TYPES)."""
    slot = msg_cls.SLOT_TYPES[list(msg_cls.get_fields_and_field_types()).index(field)]
    value_type = slot.value_type
    module = importlib.import_module(".".join(value_type.namespaces))
    return getattr(module, value_type.name)


def fill_message(msg: Any, values: dict[str, Any]) -> Any:
    """Write a nested dict into a generated message (sequences of messages included); unknown fields raise
    AttributeError, so a vision_msgs with another layout is found at start, not per frame."""
    for name, value in values.items():
        if not hasattr(msg, name):
            raise AttributeError(f"{type(msg).__name__} has no field {name!r}")
        if isinstance(value, dict):
            fill_message(getattr(msg, name), value)
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            cls = _element_class(type(msg), name)
            setattr(msg, name, [fill_message(cls(), v) for v in value])
        else:
            setattr(msg, name, value)
    return msg


def detection_layout_problem(array_cls: Any) -> str | None:
    """Why the installed Detection2DArray cannot take our layout (another vision_msgs major version), else None."""
    from types import SimpleNamespace

    sample = SimpleNamespace(confirmed=True, track_id=1, distance_m=math.nan, ground_point=(0.0, 0.0, 0.0),
                             detection=SimpleNamespace(bbox=(0, 0, 2, 2), score_max=1.0))
    try:
        fill_message(array_cls(), {"detections": detection2d_layout([sample])})
    except (AttributeError, TypeError, ValueError, AssertionError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None
