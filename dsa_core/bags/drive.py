"""A synthetic drive: consecutive frames of a camera moving forward, with road obstacles approaching.

Why: bag replay, the node-in-the-loop evaluation and the demo need a *sequence* (tracking, debouncing, time to
alert, latency under a frame rate), not independent images. ``render_scene`` draws one still street, so a drive is
made of segments, one street each, cut like a drive through town:

* **Background motion.** Each street is rendered once, larger than the output by the zoom its last frame needs, and
  every frame zooms into the vanishing point by ``D / (D - travelled)`` (the looming of a plane at depth
  ``looming_depth_m``). The zoom grows with every frame, so no two frames of a street are the same. Zooming about
  the vanishing point maps the road's image triangle onto itself, so the road stays where the intrinsics put it.
* **Camera-fixed parts.** The ego vehicle's hood and the out-of-ROI border belong to the camera: they are taken from
  the unzoomed rendering and drawn last, over the moving street and over the obstacle.
* **Obstacles** (from ``TEST_ANOMALY_FAMILIES`` by default, or ``DRIVE_OBSTACLE_FAMILIES``: never seen in
  training) stand still on the road and are
  projected with the true pinhole model at their true distance: they appear far away (small, just below the horizon),
  grow and slide down as the camera approaches, and leave the view when their base reaches the bottom edge
  (passed under the camera). A street with an obstacle therefore ends with clear road once it is passed (when the
  street is long enough), and ``1 - obstacle_probability`` of the streets have none: frames without an obstacle to
  measure false alerts on.
* **Occlusion.** The street has no depth, so two rules keep the obstacle where a camera could see it: a street with
  an obstacle has no vehicle in the camera's lane nearer than the obstacle's farthest start (``LEAD_VEHICLE_GAP_M``
  beyond it), and a frame in which the street under the obstacle's base is not road (a crossing pedestrian, a car
  of another lane) shows the street without it (``_base_on_road``). Without them the obstacle would float on a
  nearer car, which no node should alert on. Whether a street has an obstacle is drawn apart from the street, so the
  streets of a drive without obstacles (the calibration drive) do not depend on these rules.

The intrinsics are those of the unzoomed output and are the same for every frame of a street (the camera does not
change its lens); the background's looming is an approximation of the motion, the obstacle's projection is exact.

Ground truth per frame (exact by construction):

* ``semantic``: Cityscapes train ids (255 = void), the obstacle's pixels void (it is no Cityscapes class);
* ``anomaly``: 0 = in-distribution, 1 = obstacle, 255 = void (Cityscapes void content off the obstacle);
* the obstacle itself: an id unique within the drive, its family, its box and its ground distance.

The camera intrinsics (for CameraInfo) are recovered exactly from the road polygon that ``render_scene`` projects
(the road is the first polygon with four corners at z = 0.5 m and z = 400 m), so flat-ground distances computed
by the node from CameraInfo are meaningful.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Iterator

import cv2
import numpy as np

from dsa_core.labels import ROAD, VOID, id_to_train_id_lut
from dsa_core.data.synth.scene import Scene, render_scene
from dsa_core.data.synth.sprites import (TEST_ANOMALY_FAMILIES, VALIDATION_OBJECT_FAMILIES, Sprite, make_sprite,
                                         paste_sprite)

log = logging.getLogger(__name__)

#: Depths of the two road edges render_scene projects (scene.py: z_near = 0.5, z_far = 400.0).
_ROAD_Z_NEAR, _ROAD_Z_FAR = 0.5, 400.0
#: Cityscapes label ids fixed to the camera: ego vehicle, rectification border, out of roi.
_CAMERA_FIXED_IDS = (1, 2, 3)
#: Largest zoom a street may need; bounds the size of its rendering (3x the output in each direction).
MAX_ZOOM = 3.0
#: Obstacles stand at most this far left or right of the camera: in the vehicle's path.
_PATH_HALF_WIDTH_M = 1.5
#: Obstacles smaller than this (pixels, larger side) are not drawn: too far away to be seen.
MIN_OBSTACLE_PX = 6
#: On a street with an obstacle, the first vehicle of the camera's lane stands at least this far behind the farthest
#: start of the obstacle (render_scene's clear_ego_lane_m).
LEAD_VEHICLE_GAP_M = 5.0
#: An obstacle is drawn only when at least this share of the street under its base (the non-void pixels of the
#: rows its base covers, across the middle half of its width) is road: otherwise it stands behind something nearer.
MIN_BASE_ROAD_SHARE = 0.5
#: Families a drive's obstacles may come from: the evaluation families (the default) and the road-debris validation
#: objects (cones, barrels, sacks, furniture, branches), which no training stage sees either. The outlier pool and
#: the pre-training objects are refused: alerts on what the model trained on measure fit, not generalisation.
DRIVE_OBSTACLE_FAMILIES: tuple[str, ...] = TEST_ANOMALY_FAMILIES + VALIDATION_OBJECT_FAMILIES


@dataclass(frozen=True)
class DriveSpec:
    """What to generate; every frame depends only on (seed, segment index, frame index within the segment)."""

    frames: int
    height: int
    width: int
    fps: float = 10.0
    seed: int = 0
    segment_frames: int = 30  # frames per street before the cut to the next one
    speed_mps: float = 8.0  # ego speed (obstacle approach and background looming)
    looming_depth_m: float = 100.0  # the background moves like a plane at this depth
    obstacle_probability: float = 0.75  # fraction of streets with an obstacle on the road
    obstacle_start_m: tuple[float, float] = (35.0, 50.0)  # distance of the obstacle when its street starts
    obstacle_size_m: tuple[float, float] = (0.5, 1.2)
    #: sprite families the obstacles are drawn from: never one a training stage saw (DRIVE_OBSTACLE_FAMILIES)
    obstacle_families: tuple[str, ...] = TEST_ANOMALY_FAMILIES

    def __post_init__(self) -> None:
        bad = [f for f in self.obstacle_families if f not in DRIVE_OBSTACLE_FAMILIES]
        if bad or not self.obstacle_families:
            raise ValueError(f"obstacle families must be a non-empty choice of {', '.join(DRIVE_OBSTACLE_FAMILIES)} "
                             f"(families no training stage sees), got {', '.join(self.obstacle_families) or 'none'}")
        if self.frames < 1:
            raise ValueError(f"frames must be >= 1, got {self.frames}")
        if self.height < 32 or self.width < 32:
            raise ValueError(f"frame size must be at least 32x32, got {self.height}x{self.width}")
        if not self.fps > 0:
            raise ValueError(f"fps must be > 0, got {self.fps}")
        if self.segment_frames < 1:
            raise ValueError(f"segment_frames must be >= 1, got {self.segment_frames}")
        if not self.speed_mps > 0:
            raise ValueError(f"speed_mps must be > 0 (a camera that does not move gives frozen frames), got {self.speed_mps}")
        if not self.looming_depth_m > 0:
            raise ValueError(f"looming_depth_m must be > 0, got {self.looming_depth_m}")
        if not 0.0 <= self.obstacle_probability <= 1.0:
            raise ValueError(f"obstacle_probability must be in [0, 1], got {self.obstacle_probability}")
        for name in ("obstacle_start_m", "obstacle_size_m"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ValueError(f"{name} must be a range 0 < low <= high, got {(lo, hi)}")
        if self.segment_zoom(self.segment_frames - 1) > MAX_ZOOM:
            travelled = self.speed_mps * (self.segment_frames - 1) / self.fps
            raise ValueError(f"a street of {self.segment_frames} frames at {self.speed_mps} m/s and {self.fps} fps "
                             f"travels {travelled:.0f} m, which needs a zoom above {MAX_ZOOM} (looming depth "
                             f"{self.looming_depth_m} m); use fewer segment_frames, a lower speed or a higher fps")

    def segment_zoom(self, k: int) -> float:
        """Zoom of frame ``k`` of a street (1 at its first frame; inf once the looming plane is reached)."""
        remaining = self.looming_depth_m - self.speed_mps * k / self.fps
        return self.looming_depth_m / remaining if remaining > 0 else math.inf


#: Frames of the recipes' calibration drive: 30 camera-minutes, 225 streets at 5 fps. The false alerts of a drive come
#: from a few streets each, so a short drive's rate is mostly chance: calibrated on 600 frames (15 streets) to 2 % of
#: frames, a model alerted on 6.6 % of a held-out 3000-frame drive; a budget of false alerts per hour needs enough
#: drive for a few dozen alerts (results/train_nano.md, "Calibrating both models to one false-alert budget").
CALIBRATION_DRIVE_FRAMES = 9000


def calibration_drive_spec(height: int, width: int, frames: int = CALIBRATION_DRIVE_FRAMES) -> DriveSpec:
    """The obstacle-free val drive the recipes calibrate on (``dsa calibrate --val-bag``): 5 fps, 40-frame streets,
    no obstacle, seed 7 (the demo drives seed 0, so the calibration never sees the demo's streets)."""
    return DriveSpec(frames=frames, height=height, width=width, fps=5.0, seed=7, segment_frames=40,
                     obstacle_probability=0.0)


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
    obstacle_id: int = 0  # unique within the drive (1-based); 0 when the frame shows no obstacle
    obstacle_family: str | None = None
    obstacle_box: tuple[int, int, int, int] | None = None  # x, y, width, height of the visible obstacle pixels
    obstacle_ground_point: tuple[float, float, float] | None = None  # contact point, camera optical frame (metres)


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


@dataclass(frozen=True)
class _Obstacle:
    sprite: Sprite  # at the largest size it is drawn
    x: float  # lateral position on the road, metres
    z0: float  # distance when the street starts
    size_m: float
    shadow: float
    ident: int


class _Segment:
    """One street: the big rendering, the camera-fixed layer, the intrinsics and (maybe) one obstacle."""

    def __init__(self, spec: DriveSpec, index: int) -> None:
        rng = np.random.default_rng([spec.seed, 7001, index])
        # Whether the street has an obstacle is drawn apart from the street, so a drive without obstacles (the
        # calibration drive) renders the same streets whatever this decision's rule.
        has_obstacle = np.random.default_rng([spec.seed, 7002, index]).random() < spec.obstacle_probability
        self.spec = spec
        zoom_end = spec.segment_zoom(spec.segment_frames - 1)
        self.big_w = int(math.ceil(spec.width * zoom_end))
        self.render_scale = self.big_w / spec.width  # >= zoom_end: the last frame still downsamples
        self.big_h = int(math.ceil(spec.height * self.render_scale))
        # a lead vehicle in the camera's lane would stand in front of the obstacle: none before the obstacle's start
        self.scene = render_scene(self.big_h, self.big_w, rng,
                                  clear_ego_lane_m=spec.obstacle_start_m[1] + LEAD_VEHICLE_GAP_M if has_obstacle else 0.0)
        self.road = road_geometry(self.scene)
        self.semantic = id_to_train_id_lut()[self.scene.label_ids].astype(np.uint8)
        r = self.render_scale
        self.intrinsics = Intrinsics(f=self.road.f / r, cx=self.road.xv / r, cy=self.road.yh / r,
                                     camera_height=self.scene.camera_height)
        size = (spec.width, spec.height)
        a1 = self._affine(1.0)
        self.fixed = cv2.warpAffine(np.isin(self.scene.label_ids, _CAMERA_FIXED_IDS).astype(np.uint8), a1, size,
                                    flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE).astype(bool)
        self.fixed_rgb = self._warp_rgb(a1, 1.0)
        self.fixed_semantic = cv2.warpAffine(self.semantic, a1, size, flags=cv2.INTER_NEAREST,
                                             borderMode=cv2.BORDER_REPLICATE)
        self.obstacle: _Obstacle | None = None
        if has_obstacle:
            road, intr = self.road, self.intrinsics
            z0 = float(rng.uniform(*spec.obstacle_start_m))
            size_m = float(rng.uniform(*spec.obstacle_size_m))
            # In the vehicle's path (the case an alert is for), on the road, where nothing nearer hides it.
            lo, hi = max(road.left + 0.6, -_PATH_HALF_WIDTH_M), min(road.right - 0.6, _PATH_HALF_WIDTH_M)
            candidates = rng.uniform(lo, hi, 12) if hi > lo else np.full(1, (road.left + road.right) / 2)
            x = max(candidates, key=lambda c: self._visible_share(float(c), z0, size_m))
            family = spec.obstacle_families[int(rng.integers(len(spec.obstacle_families)))]
            z_near = max(z0 - spec.speed_mps * (spec.segment_frames - 1) / spec.fps, self._exit_distance(), 1.0)
            largest = int(np.clip(round(intr.f * size_m / z_near), 8, spec.height))
            self.obstacle = _Obstacle(make_sprite(family, largest, rng), x, z0, size_m,
                                      shadow=float(rng.uniform(0.2, 0.5)), ident=index + 1)

    def _visible_share(self, x: float, z0: float, size_m: float) -> float:
        """Share of the obstacle's approach (every eighth frame of the street) in which its base stands on the road of
        the street (``_base_on_road``), i.e. in which it is drawn and not hidden by something nearer.

        Why: with the camera's lane clear, a crossing pedestrian or a car of the next lane can still stand in the
        path and hide an obstacle behind it. Of the candidate places, the one seen longest is taken."""
        spec, intr, road = self.spec, self.intrinsics, self.road
        seen = tried = 0
        for k in range(0, spec.segment_frames, max(1, spec.segment_frames // 8)):
            z = z0 - spec.speed_mps * k / spec.fps
            if z < self._exit_distance():
                break
            scale = spec.segment_zoom(k) / self.render_scale  # output pixels per big pixel
            side = intr.f * size_m / z  # the obstacle's size in output pixels
            u, v = intr.f * x / z, intr.f * intr.camera_height / z  # relative to the vanishing point
            # the output-pixel test of _base_on_road, on the big rendering (its coordinates divided by scale)
            tried += 1
            seen += _base_on_road(self.semantic, road.xv + u / scale, road.yh + v / scale, side / scale, side / scale)
        return seen / tried if tried else 0.0

    def _exit_distance(self) -> float:
        """Distance at which an obstacle's base reaches the bottom image row (it is passed and leaves the view)."""
        intr = self.intrinsics
        below = self.spec.height - 1 - intr.cy
        return intr.f * intr.camera_height / below if below > 0 else math.inf

    def _affine(self, zoom: float) -> np.ndarray:
        """Big rendering -> output at ``zoom``: a scaling about the vanishing point, which stays at (cx, cy)."""
        k = zoom / self.render_scale
        intr, road = self.intrinsics, self.road
        return np.array([[k, 0.0, intr.cx - k * road.xv], [0.0, k, intr.cy - k * road.yh]])

    def _warp_rgb(self, affine: np.ndarray, zoom: float) -> np.ndarray:
        shrink = self.render_scale / zoom  # >= 1: low-pass first so the downsampling does not alias
        src = self.scene.image
        if shrink > 1.0 + 1e-6:
            src = cv2.GaussianBlur(src, (0, 0), 0.5 * math.sqrt(shrink * shrink - 1.0))
        return cv2.warpAffine(src, affine, (self.spec.width, self.spec.height), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE)

    def frame(self, k: int) -> DriveFrame:
        spec, intr = self.spec, self.intrinsics
        zoom = spec.segment_zoom(k)
        affine = self._affine(zoom)
        rgb = self._warp_rgb(affine, zoom)
        semantic = cv2.warpAffine(self.semantic, affine, (spec.width, spec.height), flags=cv2.INTER_NEAREST,
                                  borderMode=cv2.BORDER_REPLICATE)
        mask = np.zeros(semantic.shape, bool)
        ob = self.obstacle
        if ob is not None:
            z = ob.z0 - spec.speed_mps * k / spec.fps
            px = int(round(intr.f * ob.size_m / z)) if z > 0 else 0
            if z >= self._exit_distance() and px >= MIN_OBSTACLE_PX:
                small = _resize_sprite(ob.sprite, min(px, max(ob.sprite.mask.shape)))
                sh, sw = small.mask.shape
                u = intr.cx + intr.f * ob.x / z
                v = intr.cy + intr.f * intr.camera_height / z  # base of the object on the ground
                if _base_on_road(semantic, u, v, sw, sh):
                    mask = paste_sprite(rgb, small, (int(round(u - sw / 2)), int(round(v - 0.9 * sh))), shadow=ob.shadow)
        rgb[self.fixed] = self.fixed_rgb[self.fixed]
        semantic[self.fixed] = self.fixed_semantic[self.fixed]
        mask &= ~self.fixed
        semantic[mask] = VOID
        anomaly = np.where(semantic == VOID, np.uint8(VOID), np.uint8(0))
        anomaly[mask] = 1
        out = DriveFrame(index=k, stamp_ns=0, rgb=rgb, semantic=semantic, anomaly=anomaly, intrinsics=intr,
                         obstacle_distance_m=float("nan"))
        if mask.any():
            rows, cols = np.nonzero(mask.any(1))[0], np.nonzero(mask.any(0))[0]
            out.obstacle_distance_m = float(np.hypot(ob.x, z))
            out.obstacle_id, out.obstacle_family = ob.ident, ob.sprite.family
            out.obstacle_ground_point = (ob.x, intr.camera_height, z)
            out.obstacle_box = (int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1))
        return out


def _base_on_road(semantic: np.ndarray, u: float, v: float, sw: int, sh: int) -> bool:
    """Whether an obstacle whose base stands at image point (u, v) stands on the road of this frame's street.

    Why: the street is a flat rendering without depth, and the obstacle is pasted over it. Where the street shows a
    car or a person under the obstacle's base, that thing is nearer than the obstacle and hides it; an obstacle pasted
    there would float on the car, which no camera sees (and no node should alert on: it does not touch the road). Such
    frames show the street without the obstacle, and the obstacle comes into view once its base is on the road."""
    h, w = semantic.shape
    y0, y1 = int(round(v)), int(round(v + max(1.0, 0.1 * sh)))
    x0, x1 = int(round(u - sw / 4)), int(round(u + sw / 4)) + 1
    base = semantic[max(0, y0):min(h, y1 + 1), max(0, x0):min(w, x1)]
    seen = base[base != VOID]
    return seen.size == 0 or float(np.mean(seen == ROAD)) >= MIN_BASE_ROAD_SHARE


def generate_drive(spec: DriveSpec) -> Iterator[DriveFrame]:
    """Yield ``spec.frames`` frames in order (one street rendering per segment, reused by its frames)."""
    segment: _Segment | None = None
    period_ns = 1e9 / spec.fps
    for i in range(spec.frames):
        seg_index, k = divmod(i, spec.segment_frames)
        if k == 0 or segment is None:
            segment = _Segment(spec, seg_index)
        frame = segment.frame(k)
        frame.index, frame.stamp_ns = i, int(round(i * period_ns))
        yield frame
