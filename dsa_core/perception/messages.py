"""What the node's per-frame output messages hold, ROS-free: the image outputs of a frame, the ObstacleAlert /
Obstacle field values, and the RViz markers of the confirmed obstacles.

Why here: the values are decisions (which outputs exist, which area and threshold an alert reports, how a marker
looks), and they are tested without ROS. The node only copies these layouts into the generated message classes
(dsa_core.perception.interop.fill_message) and publishes them. Opaque values (the input header, a first-seen stamp)
are passed through untouched.

Markers are in the camera's optical frame (REP-103: x right, y down, z forward). With a flat-ground distance
(CameraInfo + camera.C.mount_height_m) an obstacle has a 3-D position and gets a cylinder standing on the ground plus
a label. Without one (the default configuration) it still gets a marker: an arrow from the camera centre along the
ray through the bottom centre of its box, ending at unit depth (z = 1 m), plus a label "? m". The ray uses the
camera's CameraInfo K when there is one, else a nominal pinhole with fx = fy = image width (about 53 degrees
horizontal field of view) centred on the image: an image-space marker whose direction, not length, carries the
information.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

#: visualization_msgs/Marker constants (the message's own values; test_ros_usability.py compares them)
MARKER_ARROW, MARKER_CYLINDER, MARKER_TEXT_VIEW_FACING = 0, 3, 9
MARKER_ADD, MARKER_DELETEALL = 0, 3
#: The image outputs of every camera (~/<camera>/<topic>)
IMAGE_TOPICS = ("semantic", "semantic_color", "anomaly_score", "anomaly_mask", "overlay")
SEVERITY_RGB = {0: (0.6, 0.6, 0.6), 1: (0.0, 0.8, 1.0), 2: (1.0, 0.8, 0.0), 3: (1.0, 0.0, 0.0)}
MARKER_LIFETIME_NS = 500_000_000


def image_outputs(res: Any) -> list[tuple[str, np.ndarray, str]]:
    """(topic, array, encoding) of every image output a CameraResult has (colour and overlay only when made)."""
    out = [("semantic", res.class_ids, "mono8"), ("anomaly_score", res.anomaly, "32FC1"),
           ("anomaly_mask", res.mask, "mono8")]
    if res.color is not None:
        out.append(("semantic_color", res.color, "rgb8"))
    if res.overlay is not None:
        out.append(("overlay", res.overlay, "rgb8"))
    return out


def obstacle_layout(o: Any) -> dict[str, Any]:
    """dsa_perception/Obstacle field values of one dsa_core TrackedObstacle."""
    d = o.detection
    x, y, w, h = d.bbox
    out = {"track_id": o.track_id, "age_frames": o.age_frames, "bbox_x": x, "bbox_y": y, "bbox_width": w,
           "bbox_height": h, "pixel_area": d.pixel_area, "area_fraction": d.area_fraction, "score_max": d.score_max,
           "score_mean": d.score_mean, "drivable_fraction": d.drivable_fraction, "distance_m": o.distance_m,
           "distance_source": int(o.distance_source), "severity": int(o.severity), "confirmed": o.confirmed,
           "ground_point": {"x": o.ground_point[0], "y": o.ground_point[1], "z": o.ground_point[2]}}
    if o.first_seen is not None:
        out["first_seen"] = o.first_seen
    return out


def obstacle_alert_layout(cam: str, res: Any, settings: Any) -> dict[str, Any]:
    """dsa_perception/ObstacleAlert field values (header left to the caller) of one CameraResult: the frame's alert
    level, its obstacles, and the operating point in force (``settings``: the PipelineSettings it ran with; the
    minimum area is the one applied at this image size)."""
    found = res.obstacles
    height, width = res.mask.shape
    return {"camera_name": cam, "severity": int(found.severity), "most_severe_track_id": found.most_severe_track_id,
            "nearest_distance_m": float(found.nearest_distance_m), "image_width": width, "image_height": height,
            "anomaly_threshold": float(settings.anomaly_threshold),
            "min_area_pixels": settings.obstacles.min_area_for(height, width), "frame_index": res.frame_index,
            "obstacles": [obstacle_layout(o) for o in found.obstacles]}


def unit_depth_ray(bbox: Sequence[int], width: int, height: int,
                   info: tuple[Sequence[float], int, int] | None = None) -> tuple[float, float, float]:
    """The point at depth 1 on the ray through the bottom centre of ``bbox`` (x, y, w, h) of a ``width`` x
    ``height`` image; ``info`` = (K row-major, CameraInfo width, height), scaled to the image, else a nominal K."""
    x, y, w, h = bbox
    u, v = x + w / 2.0, float(y + h)
    if info is not None:
        k, info_w, info_h = info
        sx, sy = width / float(info_w), height / float(info_h)
        fx, fy, cx, cy = k[0] * sx, k[4] * sy, k[2] * sx, k[5] * sy
    else:
        fx = fy = float(width)
        cx, cy = width / 2.0, height / 2.0
    return ((u - cx) / fx, (v - cy) / fy, 1.0)


def marker_layouts(cam: str, obstacles: Sequence[Any], header: Any, width: int, height: int,
                   info: tuple[Sequence[float], int, int] | None = None) -> list[dict[str, Any]]:
    """visualization_msgs/Marker field values: DELETEALL, then per confirmed obstacle (dsa_core TrackedObstacle)
    two markers with ids 2 * track_id and 2 * track_id + 1: a cylinder on the ground + label when its distance is
    known, else a unit-depth ray arrow + label."""
    ns = f"{cam}/obstacles"
    out: list[dict[str, Any]] = [{"header": header, "ns": ns, "action": MARKER_DELETEALL}]
    for o in obstacles:
        if not o.confirmed:
            continue
        r, g, b = SEVERITY_RGB[int(o.severity)]
        known = math.isfinite(o.distance_m)
        if known:
            gx, gy, gz = o.ground_point
            shape = {"type": MARKER_CYLINDER,
                     "pose": {"position": {"x": gx, "y": gy - 0.5, "z": gz},
                              "orientation": {"x": -math.sqrt(0.5), "w": math.sqrt(0.5)}},  # axis along optical -y
                     "scale": {"x": 0.6, "y": 0.6, "z": 1.0}}
            label = {"pose": {"position": {"x": gx, "y": gy - 1.3, "z": gz}}, "text": f"#{o.track_id} {o.distance_m:.1f} m"}
        else:
            rx, ry, rz = unit_depth_ray(o.detection.bbox, width, height, info)
            shape = {"type": MARKER_ARROW, "points": [{"x": 0.0, "y": 0.0, "z": 0.0}, {"x": rx, "y": ry, "z": rz}],
                     "pose": {"orientation": {"w": 1.0}},
                     "scale": {"x": 0.02, "y": 0.05, "z": 0.08}}  # shaft, head diameter, head length
            label = {"pose": {"position": {"x": rx, "y": ry - 0.05, "z": rz}}, "text": f"#{o.track_id} ? m"}
        label["type"] = MARKER_TEXT_VIEW_FACING
        label["pose"]["orientation"] = {"w": 1.0}
        label["scale"] = {"z": 0.4 if known else 0.08}
        for i, mk in enumerate((shape, label)):
            mk.update({"header": header, "ns": ns, "id": 2 * o.track_id + i, "action": MARKER_ADD,
                       "color": {"r": r, "g": g, "b": b, "a": 0.8}, "lifetime": {"nanosec": MARKER_LIFETIME_NS}})
            out.append(mk)
    return out
