"""Unknown obstacles from the anomaly mask: components on the drivable area, tracked and debounced per camera.

No ROS imports: the node converts `TrackedObstacle` into dsa_perception/Obstacle messages. The numeric constants
mirror msg/Obstacle.msg and msg/ObstacleAlert.msg (a test checks they agree).

Why these rules:
* a component must lie on or touch the drivable area (drivable mask dilated by `touch_margin_px`): the semantic
  head labels an obstacle's own pixels as some non-road class, so "on the road" shows as road around it, not under it;
* tracks are associated by box IoU, then by the distance between a detection's centroid and where the track's last
  motion puts it (constant velocity), for small fast-moving boxes: an obstacle approaching at 5-10 m/s slides down
  by about its own box diagonal per frame at 5 fps, and the part of it over the threshold is smaller than the
  object, so consecutive boxes often do not overlap at all;
* an alert needs `debounce_frames` matched frames, which removes single-frame flicker of the anomaly score;
* or, with `debounce_seconds` set, a run of matches in consecutive processed frames that spans that long by the
  header stamps: a node too busy to process every camera frame still confirms an obstacle that persists, where
  counting its fewer processed frames would not. With every frame processed it confirms nothing the frame count
  does not (a run of `debounce_frames` consecutive frames spans `(debounce_frames - 1) / fps`). For the same
  reason a track seen once widens its gate by one per camera frame the node dropped since (the stamps and the
  shortest stamp step give the count): it has no motion to predict, and the obstacle kept moving;
* with the camera's intrinsics (CameraInfo) known, a component whose bottom edge lies more than `horizon_margin_deg`
  above the horizon is dropped: its lowest point is higher than the camera, so it does not stand on the road (a
  flat road shows nothing there; the margin allows for road grade and pitch). On two held-out obstacle-free drives
  such components made 8 of the 19 false alerts (blobs high in the image that touch pixels called road);
* severity grows with the road contact, the size and the closeness (bottom-centre of the image or a short
  flat-ground distance = in the vehicle's path).
"""
from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np


class Severity(enum.IntEnum):
    """Same values as ObstacleAlert.SEVERITY_*."""

    NONE = 0
    INFO = 1
    WARNING = 2
    CRITICAL = 3


class DistanceSource(enum.IntEnum):
    """Same values as Obstacle.DISTANCE_SOURCE_*."""

    NONE = 0
    FLAT_GROUND = 1


MAX_DEBOUNCE_S = 60.0  # a longer confirmation is a typo (and an obstacle a vehicle would reach unannounced)
#: A camera's mount pitch below the horizon, degrees (node parameter camera.<name>.mount_pitch_deg, and the
#: --mount-pitch-deg of bag-eval and calibrate, which must place the horizon where the node does).
MOUNT_PITCH_RANGE_DEG = (-90.0, 90.0)
#: Beyond this a "horizon" gate keeps nearly everything: turn it off instead (horizon_gate).
MAX_HORIZON_MARGIN_DEG = 30.0
#: Stamps of frames at a fixed rate come from rounded clocks: a run of (n - 1) frame periods may read a little short.
STAMP_TOLERANCE_S = 1e-3


@dataclass(frozen=True)
class ObstacleSettings:
    """Detection, tracking and severity settings (the node maps its parameters onto these)."""

    min_area: int = 50  # pixels of one mask component
    min_area_fraction: float = 0.0  # ... and at least this share of the image (a calibrated model's value)
    drivable_classes: tuple[int, ...] = (0,)  # Cityscapes train ids (0 = road, 1 = sidewalk)
    touch_margin_px: int = 3  # dilation of the drivable mask that counts as "touching"
    debounce_frames: int = 3  # matched frames before a track is confirmed (1 = alert at once)
    debounce_seconds: float = 0.0  # ... or a run of consecutive matches this long by the stamps (0 = off)
    max_missed_frames: int = 2  # a track survives this many frames without a match
    match_iou: float = 0.1  # minimum box IoU for an association
    match_centroid_frac: float = 1.0  # else: distance to the predicted centroid <= this fraction of the larger box diagonal
    on_road_contact: float = 0.5  # road share of the ring around the obstacle needed for WARNING
    critical_area_fraction: float = 0.01  # share of the image that makes an on-road obstacle CRITICAL
    critical_distance_m: float = 20.0  # flat-ground distance that makes an on-road obstacle CRITICAL
    path_bottom_fraction: float = 1.0 / 3.0  # box bottom in the lowest third of the image ...
    path_center_fraction: float = 0.5  # ... and centre in the central half = in the path, close -> CRITICAL
    horizon_gate: bool = True  # drop components above the horizon (needs the camera's CameraInfo; no-op without)
    horizon_margin_deg: float = 3.0  # ... by more than this angle (road grade, pitch error, braking)
    # Bottom rows that show the ego vehicle (hood): a camera property. Its pixels are never part of an obstacle: the
    # hood is "unknown" to a road-scene model (void in Cityscapes), borders the road, and raised false alerts.
    ego_mask_bottom_fraction: float = 0.0

    def __post_init__(self) -> None:
        if self.min_area < 1:
            raise ValueError(f"min_area must be >= 1 pixel, got {self.min_area}")
        if not 0.0 <= self.min_area_fraction < 1.0:
            raise ValueError(f"min_area_fraction must be in [0, 1), got {self.min_area_fraction}")
        if not 0.0 <= self.ego_mask_bottom_fraction <= 0.5:
            raise ValueError(f"ego_mask_bottom_fraction must be in [0, 0.5], got {self.ego_mask_bottom_fraction}")
        if self.debounce_frames < 1:
            raise ValueError(f"debounce_frames must be >= 1, got {self.debounce_frames}")
        if not 0.0 <= self.debounce_seconds <= MAX_DEBOUNCE_S:
            raise ValueError(f"debounce_seconds must be in [0, {MAX_DEBOUNCE_S:g}], got {self.debounce_seconds}")
        if not 0.0 <= self.horizon_margin_deg <= MAX_HORIZON_MARGIN_DEG:
            raise ValueError(f"horizon_margin_deg must be in [0, {MAX_HORIZON_MARGIN_DEG:g}], got {self.horizon_margin_deg}")
        if self.touch_margin_px < 0 or self.max_missed_frames < 0:
            raise ValueError(f"touch_margin_px and max_missed_frames must be >= 0, got {self.touch_margin_px}, "
                             f"{self.max_missed_frames}")
        bad = [c for c in self.drivable_classes if not 0 <= int(c) <= 254]
        if bad or not self.drivable_classes:
            raise ValueError(f"drivable_classes must be a non-empty list of train ids 0..254, got {self.drivable_classes}")

    def debounce_seconds_at(self, fps: float) -> float:
        """The ``debounce_seconds`` that matches ``debounce_frames`` for a camera at ``fps``: the span of that many
        consecutive frames."""
        if not fps > 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        return (self.debounce_frames - 1) / fps

    def min_area_for(self, height: int, width: int) -> int:
        """Pixels a component needs in an image of this size: max(min_area, ceil(min_area_fraction * H * W))."""
        return max(self.min_area, math.ceil(self.min_area_fraction * height * width))


#: Plausible pinhole intrinsics relative to the image size (why: a CameraInfo is input like an image, and a
#: focal length of 1e-300 px passed "finite and > 0" and then overflowed the distance computation).
#: Field of view from fx (horizontal) and fy (vertical): between a 0.5 degree telephoto and a 179 degree lens
#: (the pinhole field of view of fisheye calibrations stays below 180 degrees).
MIN_FOV_DEG, MAX_FOV_DEG = 0.5, 179.0
MAX_PIXEL_ASPECT = 2.0  # fy / fx within [1/2, 2]
PRINCIPAL_POINT_MARGIN = 0.5  # cx, cy within the image extended by half its size on each side
MAX_SKEW = 0.1  # |K[0][1]| <= 0.1 fx
#: Flat-ground points farther than this are not reported (a ray grazing the horizon gives no usable distance, and
#: every number sent stays far inside float32).
MAX_GROUND_RANGE_M = 1000.0


def camera_info_values(k: Any, width: Any, height: Any, max_side: int = 1 << 20
                       ) -> tuple[tuple[list[float], int, int] | None, str | None]:
    """A CameraInfo's (K, width, height) -> (info, problem): info = (K as floats, width, height) when plausible;
    (None, None) for an all-zero K (uncalibrated, by convention: no distances); (None, why) when refused (malformed
    or implausible: camera_info_problem)."""
    try:
        k, width, height = [float(v) for v in k], int(width), int(height)
    except (TypeError, ValueError, OverflowError) as exc:
        return None, f"{type(exc).__name__}: {exc}"
    if not any(k):
        return None, None
    problem = camera_info_problem(k, width, height, max_side)
    return (None, problem) if problem else ((k, width, height), None)


def camera_info_problem(k: Any, width: int, height: int, max_side: int = 1 << 20) -> str | None:
    """Why the 3x3 row-major intrinsics ``k`` for a ``width`` x ``height`` image are not physically plausible (None
    when they are). All-zero K (an uncalibrated camera by the CameraInfo convention) is a problem too; the node
    tells it apart."""
    try:
        k = [float(v) for v in k]
    except (TypeError, ValueError) as exc:
        return f"K is not numeric ({exc})"
    if len(k) != 9:
        return f"K must have 9 values, found {len(k)}"
    if not all(math.isfinite(v) for v in k):
        return f"K has non-finite values: {k}"
    if not (isinstance(width, int) and isinstance(height, int)) or not (1 <= width <= max_side and 1 <= height <= max_side):
        return f"image size {width}x{height} is not within 1..{max_side} per side"
    fx, skew, cx, fy, cy = k[0], k[1], k[2], k[4], k[5]
    if abs(k[3]) > 1e-9 or abs(k[6]) > 1e-9 or abs(k[7]) > 1e-9 or abs(k[8] - 1.0) > 1e-6:
        return f"K must end in rows [0, fy, cy] and [0, 0, 1], found {k}"
    for name, f, size in (("fx", fx, width), ("fy", fy, height)):
        if f <= 0:
            return f"{name} = {f} must be > 0"
        fov = math.degrees(2.0 * math.atan(size / (2.0 * f)))
        if not MIN_FOV_DEG <= fov <= MAX_FOV_DEG:
            return (f"{name} = {f:.6g} px gives a field of view of {fov:.4g} degrees over {size} px, outside "
                    f"[{MIN_FOV_DEG}, {MAX_FOV_DEG}]")
    if not 1.0 / MAX_PIXEL_ASPECT <= fy / fx <= MAX_PIXEL_ASPECT:
        return f"pixel aspect fy/fx = {fy / fx:.4g} outside [{1 / MAX_PIXEL_ASPECT}, {MAX_PIXEL_ASPECT}]"
    m = PRINCIPAL_POINT_MARGIN
    if not (-m * width <= cx <= (1 + m) * width and -m * height <= cy <= (1 + m) * height):
        return f"principal point ({cx:.6g}, {cy:.6g}) is far outside the {width}x{height} image"
    if abs(skew) > MAX_SKEW * fx:
        return f"skew {skew:.6g} exceeds {MAX_SKEW} fx"
    return None


@dataclass(frozen=True)
class GroundCamera:
    """Pinhole intrinsics (pixels, at the image size used) plus mounting height above a flat ground and pitch.

    pitch_rad > 0 means the optical axis points below the horizon. Coordinates follow the ROS optical frame:
    x right, y down, z forward. height_m = 0 means the mount height is unknown: the horizon is known (it needs only
    the intrinsics and the pitch), distances are not.
    """

    fx: float
    fy: float
    cx: float
    cy: float
    height_m: float
    pitch_rad: float

    @classmethod
    def from_camera_info_k(cls, k: Any, info_width: int, info_height: int, image_width: int, image_height: int,
                           height_m: float, pitch_rad: float) -> "GroundCamera | None":
        """From CameraInfo.k (row-major 3x3); scaled when the CameraInfo size differs. None when K is unusable."""
        k = [float(v) for v in k]
        if len(k) != 9 or not all(math.isfinite(v) for v in k) or k[0] <= 0 or k[4] <= 0:
            return None
        if not (math.isfinite(height_m) and height_m >= 0 and math.isfinite(pitch_rad)):
            return None
        sx = image_width / info_width if info_width else 1.0
        sy = image_height / info_height if info_height else 1.0
        return cls(k[0] * sx, k[4] * sy, k[2] * sx, k[5] * sy, height_m, pitch_rad)

    def ground_point(self, u: float, v: float) -> tuple[float, float, float] | None:
        """Intersection of the pixel ray with the ground plane (optical frame, metres); None above the horizon and
        beyond MAX_GROUND_RANGE_M (bounded, finite numbers only), and always without a mount height."""
        if self.height_m <= 0:
            return None
        d = np.array([(u - self.cx) / self.fx, (v - self.cy) / self.fy, 1.0])
        down = np.array([0.0, math.cos(self.pitch_rad), math.sin(self.pitch_rad)])  # world "down" in the optical frame
        along = float(down @ d)
        if not math.isfinite(along) or along <= 1e-9:
            return None
        p = d * (self.height_m / along)
        point = (float(p[0]), float(p[1]), float(p[2]))
        if not all(math.isfinite(c) for c in point) or self.ground_distance(point) > MAX_GROUND_RANGE_M:
            return None
        return point

    def horizon_row(self, above_rad: float = 0.0) -> float:
        """The image row (y, pixels) of rays ``above_rad`` above the horizontal; -inf when that is beyond the top of
        the field of the pinhole model (every row lies below it)."""
        angle = self.pitch_rad + above_rad
        return self.cy - self.fy * math.tan(angle) if angle < math.pi / 2 - 1e-9 else -math.inf

    def may_stand_on_ground(self, bbox: tuple[int, int, int, int], margin_rad: float) -> bool:
        """Whether a box's bottom edge lies below the horizon, or above it by at most ``margin_rad``."""
        return bbox[1] + bbox[3] > self.horizon_row(margin_rad)

    def ground_distance(self, point: tuple[float, float, float]) -> float:
        """Distance along the ground from the point below the camera to ``point`` (no overflow for any float)."""
        r = math.hypot(point[0], point[1], point[2])
        return math.sqrt(max(0.0, (r - self.height_m) * (r + self.height_m)))


@dataclass
class Detection:
    """One mask component of one frame that lies on / touches the drivable area."""

    bbox: tuple[int, int, int, int]  # x, y, width, height (pixels)
    pixel_area: int
    area_fraction: float
    score_max: float
    score_mean: float
    drivable_fraction: float  # share of the component's own pixels classed drivable
    road_contact: float  # share of the ring of `touch_margin_px` around the component that is drivable
    centroid: tuple[float, float]


@dataclass
class TrackedObstacle:
    """A detection with its track state, distance and severity (one Obstacle message)."""

    track_id: int
    age_frames: int
    first_seen: Any  # header stamp of the first frame (opaque here)
    detection: Detection
    confirmed: bool
    severity: Severity
    distance_m: float = math.nan
    distance_source: DistanceSource = DistanceSource.NONE
    ground_point: tuple[float, float, float] = (math.nan, math.nan, math.nan)


@dataclass
class FrameObstacles:
    """Obstacles of one frame, sorted by decreasing severity then area, and the frame's alert level."""

    obstacles: list[TrackedObstacle]
    severity: Severity
    most_severe_track_id: int
    nearest_distance_m: float


def find_obstacles(mask: np.ndarray, class_ids: np.ndarray, anomaly: np.ndarray, settings: ObstacleSettings,
                   image_size: tuple[int, int] | None = None) -> list[Detection]:
    """Components (8-connected) of ``mask`` with >= min_area_for(H, W) pixels that lie on or touch the drivable
    area.

    ``image_size`` (H, W): the camera image the maps stand for when they are smaller (the model's export size).
    The search then runs on the small maps (7x fewer pixels at 720p from 512x256) and every result is given in
    camera pixels: boxes grown to whole camera pixels (so they hold the camera-size component up to one model pixel),
    areas and the minimum area scaled by the pixel ratio, the touch margin shrunk to model pixels (at least one).
    """
    if mask.shape != class_ids.shape or mask.shape != anomaly.shape or mask.ndim != 2:
        raise ValueError(f"mask, class_ids and anomaly must be HxW of one size, got {mask.shape}, "
                         f"{class_ids.shape}, {anomaly.shape}")
    h, w = mask.shape
    big_h, big_w = image_size if image_size is not None else (h, w)
    sx, sy = big_w / w, big_h / h
    binary = (mask > 0).view(np.uint8)  # a fresh 0/1 array: no second copy for astype
    ego_rows = int(round(settings.ego_mask_bottom_fraction * h))
    if ego_rows:
        binary[h - ego_rows:] = 0
    # Grana's block-based labelling: the same components as the default algorithm in a third of the time here
    count, labels, stats, centroids = cv2.connectedComponentsWithStatsWithAlgorithm(binary, 8, cv2.CV_32S, cv2.CCL_GRANA)
    min_area = settings.min_area_for(big_h, big_w)
    keep = [i for i in range(1, count) if stats[i, cv2.CC_STAT_AREA] * sx * sy >= min_area]
    if not keep:
        return []
    drivable_ids = np.asarray(settings.drivable_classes, dtype=class_ids.dtype)
    m = settings.touch_margin_px
    if m > 0 and (sx, sy) != (1.0, 1.0):
        m = max(1, round(m / math.sqrt(sx * sy)))
    kernel = np.ones((2 * m + 1, 2 * m + 1), np.uint8)
    detections = []
    for i in keep:
        x, y, bw, bh, area = (int(v) for v in stats[i, :5])
        # crop around the component (plus margin) so every test below is O(box), not O(image)
        x0, y0, x1, y1 = max(0, x - m), max(0, y - m), min(w, x + bw + m), min(h, y + bh + m)
        comp = labels[y0:y1, x0:x1] == i
        drv = np.isin(class_ids[y0:y1, x0:x1], drivable_ids)  # the crop only: O(box)
        ring = (cv2.dilate(comp.view(np.uint8), kernel) > 0) & ~comp if m > 0 else comp
        ring_px = int(np.count_nonzero(ring))
        contact = float(np.count_nonzero(ring & drv)) / ring_px if ring_px else 0.0
        own_drivable = float(np.count_nonzero(comp & drv)) / area
        if contact == 0.0 and own_drivable == 0.0:
            continue  # neither on nor touching the drivable area (e.g. in the sky)
        scores = anomaly[y0:y1, x0:x1][comp]
        bx0, by0 = math.floor(x * sx), math.floor(y * sy)
        bx1, by1 = min(big_w, math.ceil((x + bw) * sx)), min(big_h, math.ceil((y + bh) * sy))
        detections.append(Detection(
            bbox=(bx0, by0, bx1 - bx0, by1 - by0), pixel_area=int(round(area * sx * sy)), area_fraction=area / float(h * w),
            score_max=float(scores.max()), score_mean=float(scores.mean(dtype=np.float64)),
            drivable_fraction=own_drivable, road_contact=contact,
            centroid=((float(centroids[i, 0]) + 0.5) * sx - 0.5, (float(centroids[i, 1]) + 0.5) * sy - 0.5)))
    return detections


def box_iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """IoU of two (x, y, w, h) pixel boxes."""
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


@dataclass
class _Track:
    track_id: int
    bbox: tuple[int, int, int, int]
    centroid: tuple[float, float]
    hits: int
    first_seen: Any
    missed: int = 0
    confirmed: bool = False
    velocity: tuple[float, float] = (0.0, 0.0)  # centroid motion per processed frame between its last two matches
    time_s: float | None = None  # stamp of its last match, seconds
    velocity_per_s: tuple[float, float] | None = None  # the same motion per second, when both stamps were known
    run_start_s: float | None = None  # stamp of the first match of its current run of consecutive processed frames

    def predicted_centroid(self, time_s: float | None = None) -> tuple[float, float]:
        """Where the centroid is expected in the frame stamped ``time_s``. By the elapsed time when the stamps allow
        it: a frame the node dropped (or a camera at a varying rate) still moved the obstacle, which counting
        processed frames misses. Else by processed frames (it moved ``missed`` frames ago the last time)."""
        if self.velocity_per_s is not None and time_s is not None and self.time_s is not None and time_s > self.time_s:
            dt = time_s - self.time_s
            return self.centroid[0] + dt * self.velocity_per_s[0], self.centroid[1] + dt * self.velocity_per_s[1]
        steps = self.missed + 1
        return self.centroid[0] + steps * self.velocity[0], self.centroid[1] + steps * self.velocity[1]


def stamp_seconds(stamp: Any) -> float | None:
    """A header stamp in seconds: integer nanoseconds (bags) or anything with ``sec`` / ``nanosec`` (a ROS Time);
    None for no stamp or one that is all zero (an unstamped publisher)."""
    if stamp is None:
        return None
    if isinstance(stamp, (int, np.integer)):
        ns = int(stamp)
    elif hasattr(stamp, "sec") and hasattr(stamp, "nanosec"):
        ns = int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)
    else:
        return None
    return ns * 1e-9 if ns > 0 else None


def severity_of(det: Detection, image_size: tuple[int, int], distance_m: float,
                settings: ObstacleSettings) -> Severity:
    """INFO at the edge of the drivable area; WARNING on it; CRITICAL on it and large, near or in the path."""
    if det.road_contact < settings.on_road_contact and det.drivable_fraction < settings.on_road_contact:
        return Severity.INFO
    h, w = image_size
    x, y, bw, bh = det.bbox
    bottom_in_path = (y + bh) >= h * (1.0 - settings.path_bottom_fraction)
    centre_in_path = abs((x + bw / 2.0) - w / 2.0) <= w * settings.path_center_fraction / 2.0
    near = math.isfinite(distance_m) and distance_m <= settings.critical_distance_m
    if det.area_fraction >= settings.critical_area_fraction or near or (bottom_in_path and centre_in_path):
        return Severity.CRITICAL
    return Severity.WARNING


def _run_start(track: _Track, time_s: float | None) -> float | None:
    """The start of the track's run of matches once it is matched in the frame stamped ``time_s``: the run goes on
    when it was matched in the previous processed frame and the stamps increase, else a new run starts here."""
    goes_on = (track.hits > 0 and track.missed == 0 and time_s is not None and track.time_s is not None
               and time_s > track.time_s)
    return track.run_start_s if goes_on else time_s


def _run_lasted(track: _Track, s: ObstacleSettings) -> bool:
    """The time rule of the debounce: the current run spans ``debounce_seconds`` by the stamps (two matches at least)."""
    if s.debounce_seconds <= 0 or track.run_start_s is None or track.time_s is None:
        return False
    span = track.time_s - track.run_start_s
    return span > 0 and span >= s.debounce_seconds - STAMP_TOLERANCE_S


@dataclass
class ObstacleTracker:
    """Per-camera tracker: call ``update`` once per processed frame, in order."""

    settings: ObstacleSettings = field(default_factory=ObstacleSettings)
    _tracks: list[_Track] = field(default_factory=list)
    _next_id: int = 1
    _last_time_s: float | None = None  # stamp of the previous update
    _frame_period_s: float | None = None  # the camera's frame period: the shortest stamp step between two updates

    def update(self, detections: list[Detection], image_size: tuple[int, int], stamp: Any = None,
               camera: GroundCamera | None = None) -> FrameObstacles:
        """``stamp``: the frame's header stamp (integer nanoseconds or a ROS Time); reported as first seen, and the
        motion prediction goes by it while it increases."""
        s = self.settings
        time_s = stamp_seconds(stamp)
        if time_s is not None and self._last_time_s is not None and time_s > self._last_time_s:
            step = time_s - self._last_time_s
            self._frame_period_s = step if self._frame_period_s is None else min(self._frame_period_s, step)
        self._last_time_s = time_s
        if camera is not None and s.horizon_gate:
            margin = math.radians(s.horizon_margin_deg)
            detections = [d for d in detections if camera.may_stand_on_ground(d.bbox, margin)]
        assigned = self._associate(detections, time_s)
        out: list[TrackedObstacle] = []
        matched_tracks = set()
        for di, det in enumerate(detections):
            track = assigned.get(di)
            if track is None:
                track = _Track(self._next_id, det.bbox, det.centroid, 0, stamp)
                self._next_id += 1
                self._tracks.append(track)
            if track.hits:
                dx, dy = det.centroid[0] - track.centroid[0], det.centroid[1] - track.centroid[1]
                steps = track.missed + 1
                track.velocity = (dx / steps, dy / steps)
                dt = None if time_s is None or track.time_s is None else time_s - track.time_s
                track.velocity_per_s = (dx / dt, dy / dt) if dt is not None and dt > 0 else None
            track.run_start_s = _run_start(track, time_s)
            track.bbox, track.centroid, track.missed, track.time_s = det.bbox, det.centroid, 0, time_s
            track.hits += 1
            track.confirmed = track.confirmed or track.hits >= s.debounce_frames or _run_lasted(track, s)
            matched_tracks.add(id(track))
            distance, source, point = math.nan, DistanceSource.NONE, (math.nan, math.nan, math.nan)
            if camera is not None:
                x, y, bw, bh = det.bbox
                gp = camera.ground_point(x + bw / 2.0, float(y + bh))
                if gp is not None:
                    distance, source, point = camera.ground_distance(gp), DistanceSource.FLAT_GROUND, gp
            out.append(TrackedObstacle(track.track_id, track.hits, track.first_seen, det, track.confirmed,
                                       severity_of(det, image_size, distance, s), distance, source, point))
        for track in self._tracks:
            if id(track) not in matched_tracks:
                track.missed += 1
        self._tracks = [t for t in self._tracks if t.missed <= s.max_missed_frames]
        out.sort(key=lambda o: (-int(o.severity), -o.detection.pixel_area, o.track_id))
        confirmed = [o for o in out if o.confirmed]
        worst = max(confirmed, key=lambda o: int(o.severity), default=None)
        distances = [o.distance_m for o in confirmed if math.isfinite(o.distance_m)]
        return FrameObstacles(out, worst.severity if worst else Severity.NONE, worst.track_id if worst else 0,
                              min(distances) if distances else math.nan)

    def _associate(self, detections: list[Detection], time_s: float | None) -> dict[int, _Track]:
        """Greedy: highest IoU pairs first, then the remaining pairs by distance to the predicted centroid within the
        gate."""
        s = self.settings
        pairs = []
        for di, det in enumerate(detections):
            for track in self._tracks:
                iou = box_iou(det.bbox, track.bbox)
                if iou >= s.match_iou:
                    pairs.append((0, -iou, di, track))
                else:
                    gate = s.match_centroid_frac * max(math.hypot(det.bbox[2], det.bbox[3]),
                                                       math.hypot(track.bbox[2], track.bbox[3]))
                    if track.hits == 1:  # no motion to predict yet: it may have moved a gate per dropped frame too
                        gate *= 1 + self._dropped_frames(track, time_s)
                    px, py = track.predicted_centroid(time_s)
                    dist = math.hypot(det.centroid[0] - px, det.centroid[1] - py)
                    if dist <= gate:
                        pairs.append((1, dist, di, track))
        pairs.sort(key=lambda p: (p[0], p[1], p[2], p[3].track_id))
        assigned: dict[int, _Track] = {}
        used: set[int] = set()
        for _, _, di, track in pairs:
            if di in assigned or track.track_id in used:
                continue
            assigned[di] = track
            used.add(track.track_id)
        return assigned

    def _dropped_frames(self, track: _Track, time_s: float | None) -> int:
        """Camera frames since the track's last match that never reached the tracker (the node dropped them), by the
        stamps and the frame period; 0 without them. Frames processed without a match are not counted: with every
        frame processed nothing changes, so the calibration (every frame of a bag) stays valid."""
        if time_s is None or track.time_s is None or self._frame_period_s is None or time_s <= track.time_s:
            return 0
        frames = round((time_s - track.time_s) / self._frame_period_s)
        return max(0, frames - (track.missed + 1))

    def reconfigure(self, settings: ObstacleSettings) -> None:
        """New settings take effect from the next frame; live tracks keep their ids and hit counts."""
        self.settings = settings


def ground_camera_for_image(info: tuple[Any, int, int] | None, image_width: int, image_height: int, height_m: float,
                            pitch_rad: float) -> tuple[GroundCamera | None, str | None]:
    """The flat-ground camera for one image from the last valid CameraInfo ``info`` (K, width, height) and the mount:
    (None, None) without CameraInfo; (None, why) when K, scaled to this image size, is no longer plausible (the frame
    is then kept without distances or horizon). With mount height 0 (unknown) it has a horizon but no distances."""
    if info is None:
        return None, None
    camera = GroundCamera.from_camera_info_k(info[0], info[1], info[2], image_width, image_height, height_m, pitch_rad)
    k = [camera.fx, 0.0, camera.cx, 0.0, camera.fy, camera.cy, 0.0, 0.0, 1.0] if camera else [0.0] * 9
    problem = camera_info_problem(k, image_width, image_height)
    if problem:
        return None, f"CameraInfo {info[1]}x{info[2]} scaled to the {image_width}x{image_height} image: {problem}"
    return camera, None
