"""RViz markers for confirmed obstacles, in the camera's optical frame (REP-103: x right, y down, z forward).

Why two kinds: with a flat-ground distance (CameraInfo + camera.C.mount_height_m) an obstacle has a 3-D position
and gets a cylinder standing on the ground plus a label. Without one (the default configuration) it still gets a
marker: an arrow from the camera centre along the ray through the bottom centre of its box, ending at unit depth
(z = 1 m), plus a label "? m". The ray uses the camera's CameraInfo K when there is one, else a nominal pinhole with
fx = fy = image width (about 53 degrees horizontal field of view) centred on the image: an image-space marker
whose direction, not length, carries the information.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

from geometry_msgs.msg import Point
from visualization_msgs.msg import Marker, MarkerArray

SEVERITY_RGB = {0: (0.6, 0.6, 0.6), 1: (0.0, 0.8, 1.0), 2: (1.0, 0.8, 0.0), 3: (1.0, 0.0, 0.0)}
LIFETIME_NS = 500_000_000


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


def obstacle_markers(cam: str, obstacles: Sequence[Any], header: Any, width: int, height: int,
                     info: tuple[Sequence[float], int, int] | None = None) -> MarkerArray:
    """DELETEALL, then per confirmed obstacle (dsa_core TrackedObstacle) two markers with ids 2 * track_id and
    2 * track_id + 1: a cylinder on the ground + label when its distance is known, else a unit-depth ray arrow +
    label."""
    out = MarkerArray()
    out.markers.append(Marker(header=header, ns=f"{cam}/obstacles", action=Marker.DELETEALL))
    for o in obstacles:
        if not o.confirmed:
            continue
        r, g, b = SEVERITY_RGB[int(o.severity)]
        known = math.isfinite(o.distance_m)
        shape = Marker(header=header, ns=f"{cam}/obstacles", id=2 * o.track_id, action=Marker.ADD)
        label = Marker(header=header, ns=f"{cam}/obstacles", id=2 * o.track_id + 1, type=Marker.TEXT_VIEW_FACING,
                       action=Marker.ADD)
        if known:
            gx, gy, gz = o.ground_point
            shape.type = Marker.CYLINDER
            shape.pose.position = Point(x=gx, y=gy - 0.5, z=gz)
            shape.pose.orientation.x = -math.sqrt(0.5)  # cylinder axis along optical -y (up)
            shape.pose.orientation.w = math.sqrt(0.5)
            shape.scale.x = shape.scale.y = 0.6
            shape.scale.z = 1.0
            label.pose.position = Point(x=gx, y=gy - 1.3, z=gz)
            label.text = f"#{o.track_id} {o.distance_m:.1f} m"
        else:
            rx, ry, rz = unit_depth_ray(o.detection.bbox, width, height, info)
            shape.type = Marker.ARROW
            shape.points = [Point(x=0.0, y=0.0, z=0.0), Point(x=rx, y=ry, z=rz)]
            shape.pose.orientation.w = 1.0
            shape.scale.x, shape.scale.y, shape.scale.z = 0.02, 0.05, 0.08  # shaft, head diameter, head length
            label.pose.position = Point(x=rx, y=ry - 0.05, z=rz)
            label.text = f"#{o.track_id} ? m"
        label.pose.orientation.w = 1.0
        label.scale.z = 0.4 if known else 0.08
        for mk in (shape, label):
            mk.color.r, mk.color.g, mk.color.b, mk.color.a = r, g, b, 0.8
            mk.lifetime.nanosec = LIFETIME_NS
            out.markers.append(mk)
    return out
