"""A synthetic drive: consecutive frames of a camera moving forward, with road obstacles approaching.

Why: bag replay, the node-in-the-loop evaluation and the demo need a *sequence* (tracking, debouncing, latency under
a frame rate), not independent images. ``render_scene`` draws one still street, so a drive is made of segments: each
segment renders one street at ``zoom_max`` times the output size and moves the camera forward by zooming into the
vanishing point (the looming of a forward motion), while an anomaly from ``TEST_ANOMALY_FAMILIES`` stands still on
the road and is projected with the true pinhole model at a shrinking distance (it grows and slides down faster than
the background, like an obstacle being approached). Segments cut to a new street, like a drive through town.

Ground truth per frame (exact by construction):

* ``semantic``: Cityscapes train ids (255 = void), the obstacle's pixels void (it is no Cityscapes class);
* ``anomaly``: 0 = in-distribution, 1 = obstacle, 255 = void (Cityscapes void content off the obstacle).

The camera intrinsics (for CameraInfo) are recovered exactly from the road polygon that ``render_scene`` projects
(the road is the first polygon with four corners at z = 0.5 m and z = 400 m), so flat-ground distances computed
by the node from CameraInfo are meaningful.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterator

import cv2
import numpy as np

from dsa_core.data.cityscapes import ID_TO_TRAINID
from dsa_core.data.scene import TEST_ANOMALY_FAMILIES, Scene, Sprite, make_sprite, paste_sprite, render_scene

log = logging.getLogger(__name__)

VOID = 255
#: Depths of the two road edges render_scene projects (scene.py: z_near = 0.5, z_far = 400.0).
_ROAD_Z_NEAR, _ROAD_Z_FAR = 0.5, 400.0


@dataclass(frozen=True)
class DriveSpec:
    """What to generate; every frame depends only on (seed, segment index, frame index within the segment)."""

    frames: int
    height: int
    width: int
    fps: float = 10.0
    seed: int = 0
    segment_frames: int = 30  # frames per street before the cut to the next one
    speed_mps: float = 8.0  # ego speed (obstacle approach and zoom rate)
    zoom_max: float = 1.35  # the street is rendered this much larger, so zoomed frames keep full resolution
    obstacle_probability: float = 0.75  # fraction of segments with an obstacle on the road
    obstacle_start_m: tuple[float, float] = (28.0, 40.0)  # distance of the obstacle when its segment starts
    obstacle_size_m: tuple[float, float] = (0.5, 1.2)

    def __post_init__(self) -> None:
        if self.frames < 1:
            raise ValueError(f"frames must be >= 1, got {self.frames}")
        if self.height < 32 or self.width < 32:
            raise ValueError(f"frame size must be at least 32x32, got {self.height}x{self.width}")
        if self.fps <= 0:
            raise ValueError(f"fps must be > 0, got {self.fps}")
        if self.segment_frames < 1:
            raise ValueError(f"segment_frames must be >= 1, got {self.segment_frames}")
        if self.zoom_max < 1.0:
            raise ValueError(f"zoom_max must be >= 1, got {self.zoom_max}")
        if not 0.0 <= self.obstacle_probability <= 1.0:
            raise ValueError(f"obstacle_probability must be in [0, 1], got {self.obstacle_probability}")


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics in pixels plus the camera height above the flat ground (metres)."""

    f: float
    cx: float
    cy: float
    camera_height: float

    def k_matrix(self) -> list[float]:
        return [self.f, 0.0, self.cx, 0.0, self.f, self.cy, 0.0, 0.0, 1.0]


@dataclass
class DriveFrame:
    index: int
    stamp_ns: int  # time since the start of the drive
    rgb: np.ndarray  # uint8 HxWx3
    semantic: np.ndarray  # uint8 HxW train ids, 255 void
    anomaly: np.ndarray  # uint8 HxW 0 / 1 / 255
    intrinsics: Intrinsics
    obstacle_distance_m: float  # NaN when the frame shows no obstacle


@dataclass(frozen=True)
class _Road:
    f: float
    xv: float
    yh: float
    left: float  # lateral road edges in metres (camera at x = 0)
    right: float


def road_geometry(scene: Scene) -> _Road:
    """Recover f, the vanishing point and the road edges from render_scene's road polygon (see module docstring)."""
    roads = [o for o in scene.objects if o.label == "road"]
    if not roads or len(roads[0].polygon) != 4:
        raise ValueError("scene has no 4-corner road polygon; render_scene's road layout changed")
    p = roads[0].polygon.astype(np.float64)  # (l, near), (r, near), (r, far), (l, far)
    inv_near, inv_far = 1.0 / _ROAD_Z_NEAR, 1.0 / _ROAD_Z_FAR
    # y = yh + f hc / z on both rows; x = xv + f X / z on both corners of both rows.
    y_near, y_far = (p[0, 1] + p[1, 1]) / 2, (p[2, 1] + p[3, 1]) / 2
    f = (y_near - y_far) / (scene.camera_height * (inv_near - inv_far))
    yh = y_far - f * scene.camera_height * inv_far
    a_l = (p[0, 0] - p[3, 0]) / (inv_near - inv_far)  # f * road_left
    a_r = (p[1, 0] - p[2, 0]) / (inv_near - inv_far)
    xv = (p[3, 0] + p[2, 0]) / 2 - (a_l + a_r) / 2 * inv_far
    if not f > 0:
        raise ValueError(f"recovered a non-positive focal length {f} from the road polygon")
    return _Road(f=f, xv=xv, yh=yh, left=a_l / f, right=a_r / f)


def _resize_sprite(sprite: Sprite, size: int) -> Sprite:
    h, w = sprite.mask.shape
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    rgb = cv2.resize(sprite.rgb, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    mask = cv2.resize(sprite.mask.astype(np.uint8), (nw, nh), interpolation=cv2.INTER_NEAREST).astype(bool)
    return Sprite(family=sprite.family, rgb=rgb, mask=mask, polygon=np.round(sprite.polygon * scale).astype(np.int32))


class _Segment:
    """One street: the big rendering, its geometry and (maybe) one obstacle."""

    def __init__(self, spec: DriveSpec, index: int) -> None:
        rng = np.random.default_rng([spec.seed, 7001, index])
        self.spec = spec
        self.big_h = int(np.ceil(spec.height * spec.zoom_max))
        self.big_w = int(np.ceil(spec.width * spec.zoom_max))
        self.scene = render_scene(self.big_h, self.big_w, rng)
        self.road = road_geometry(self.scene)
        self.semantic = ID_TO_TRAINID[self.scene.label_ids].astype(np.uint8)
        self.obstacle: tuple[Sprite, float, float, float] | None = None  # sprite at its largest, X, z0, size_m
        if rng.random() < spec.obstacle_probability:
            lo, hi = self.road.left + 0.6, self.road.right - 0.6
            x = float(rng.uniform(lo, hi)) if hi > lo else (self.road.left + self.road.right) / 2
            x = float(np.clip(x, -2.5, 2.5))  # in or next to the ego lane: the case an alert is for
            z0 = float(rng.uniform(*spec.obstacle_start_m))
            size_m = float(rng.uniform(*spec.obstacle_size_m))
            family = TEST_ANOMALY_FAMILIES[int(rng.integers(len(TEST_ANOMALY_FAMILIES)))]
            z_end = max(z0 - spec.speed_mps * spec.segment_frames / spec.fps, 4.0)
            largest = int(np.clip(self.road.f * size_m / z_end, 8, 0.6 * min(self.big_h, self.big_w)))
            self.obstacle = (make_sprite(family, largest, rng), x, z0, size_m)
            self.shadow = float(rng.uniform(0.2, 0.5))

    def frame(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, Intrinsics, float]:
        spec, road = self.spec, self.road
        travelled = spec.speed_mps * k / spec.fps
        # Looming of a far "average" depth plane at 100 m, capped by the rendering's extra resolution.
        zoom = min(100.0 / max(100.0 - travelled, 1e-3), spec.zoom_max)
        # Crop that keeps the vanishing point at the same relative position, then resize to the output size.
        x0, y0 = road.xv - road.xv / zoom, road.yh - road.yh / zoom
        cw, ch = self.big_w / zoom, self.big_h / zoom
        sx, sy = spec.width / cw, spec.height / ch
        affine = np.array([[sx, 0.0, -x0 * sx], [0.0, sy, -y0 * sy]])
        size = (spec.width, spec.height)
        rgb = cv2.warpAffine(self.scene.image, affine, size, flags=cv2.INTER_AREA if sx < 1 else cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REPLICATE)
        semantic = cv2.warpAffine(self.semantic, affine, size, flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE)
        f, cx, cy = road.f * sx, (road.xv - x0) * sx, (road.yh - y0) * sy
        intr = Intrinsics(f=f, cx=cx, cy=cy, camera_height=self.scene.camera_height)
        anomaly = np.where(semantic == VOID, np.uint8(VOID), np.uint8(0))
        distance = float("nan")
        if self.obstacle is not None:
            sprite, x, z0, size_m = self.obstacle
            z = z0 - travelled
            if z > 1.0:
                px = int(round(f * size_m / z))
                if px >= 6:
                    small = _resize_sprite(sprite, min(px, max(sprite.mask.shape)))
                    sh, sw = small.mask.shape
                    u = cx + f * x / z
                    v = cy + f * self.scene.camera_height / z  # base of the object on the ground
                    rgb = np.ascontiguousarray(rgb)
                    mask = paste_sprite(rgb, small, (int(round(u - sw / 2)), int(round(v - 0.9 * sh))),
                                        shadow=self.shadow)
                    if mask.any():
                        semantic[mask] = VOID
                        anomaly[mask] = 1
                        distance = float(np.hypot(x, z))
        return rgb, semantic, anomaly, intr, distance


def generate_drive(spec: DriveSpec) -> Iterator[DriveFrame]:
    """Yield ``spec.frames`` frames in order (one street rendering per segment, reused by its frames)."""
    segment: _Segment | None = None
    period_ns = 1e9 / spec.fps
    for i in range(spec.frames):
        seg_index, k = divmod(i, spec.segment_frames)
        if k == 0 or segment is None:
            segment = _Segment(spec, seg_index)
        rgb, semantic, anomaly, intr, distance = segment.frame(k)
        yield DriveFrame(index=i, stamp_ns=int(round(i * period_ns)), rgb=rgb, semantic=semantic, anomaly=anomaly,
                         intrinsics=intr, obstacle_distance_m=distance)
