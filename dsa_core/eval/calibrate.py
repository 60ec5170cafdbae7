"""``dsa calibrate``: choose a model's anomaly threshold and minimum obstacle area from in-distribution data.

Why from data: the scores are not probabilities (dsa_core.runtime.operating_point), so a threshold only means
something as a rate measured on frames like the ones the vehicle sees. Scores come from the model dir through the
runtime backend, i.e. exactly what the node computes (resize to the export size, the graph, resize back).

The operating point is chosen for what the node publishes, obstacles, on two kinds of validation frames:

* **In-distribution val** (Cityscapes format): every ground-truth road pixel is a negative, and every component of
  ``score >= t`` that the node would turn into an obstacle (on or touching the predicted drivable area,
  dsa_core.perception.obstacles) is a false obstacle.
* **Pool-val** (optional): the same frames with one object of the training outlier pool pasted in (COCO format,
  the AnomalyMix pool of stage 2; never an evaluation family), standing on the road at an obstacle's size
  (``POOL_SCALE``). An object is found when a component of at least the minimum area has a box IoU >= 0.1 with it
  (the alert metric's rule, dsa_core.bags.alerts.MATCH_IOU). It measures fit to outliers seen in training, not
  generalisation.

Rule:

1. **Candidate thresholds**: the road-pixel FPR ladder ``target_fpr`` (default 1 %, the most a threshold may flag)
   and the ladder values below it (0.5 % ... 0.01 %); each threshold is the smallest t with FPR(t) =
   #{road pixels with score >= t} / #{road pixels} <= that rate, an exact order statistic.
2. **Minimum area per candidate**: the smallest share of the image such that at most ``max_false_frame_rate``
   (default 2 %) of the val frames still hold a false obstacle (with val drives: of the drive's frames hold a false
   alert), clipped to [floor, cap] (defaults 0.005 % and 0.25 % of the image: an obstacle of 0.25 % of a 1080p
   frame is about 72 x 72 px and must stay detectable).
   A candidate whose area hits the cap misses the frame-rate target.
3. **Choice**: among the candidates that meet the frame-rate target, the one that finds the most pool-val objects
   (ties: the lower threshold); without a pool, the lowest threshold that meets it. When none meets it, the one with
   the fewest false-obstacle frames, and the report says so.

**Val drives** (optional, ``val_bag``): a recorded drive with no obstacle on the road (rosbag2, e.g. ``dsa synth
bag --calibration-drive``; a frame whose ground truth holds an obstacle is refused). The node alerts only on a
track confirmed over ``debounce_frames`` matched frames, so on a sequence the area rule of step 2 counts what the
node publishes as an alert: a frame with a confirmed track, from the node's own tracker run over the drive. A false
component that flickers is never confirmed, so this area is smaller than the single-frame one (which bounds it: a
frame with a confirmed false track holds a false component). Frames of one street are correlated, so the rate's
upper bound assumes more independence than the drive has; use many streets.

**The horizon gate is not counted** (default; ``horizon_gate`` to count it): the node drops components above the
horizon, which needs the camera's CameraInfo and a right ``mount_pitch_deg``. The area is chosen from the alerts the
node raises without the gate, so the calibrated rate also holds on a camera whose pitch is off or that publishes no
CameraInfo; on a correctly set camera the gate only lowers it. Measured on the shipped model (results/train_nano.md,
"A horizon gate for the node"): counted with the gate, the 10-minute drive allowed a much smaller area (49 px
instead of 115), whose rate did not hold on a held-out drive (108 false alerts per hour against the 72 it was
calibrated to). The record keeps the drive's alerts at the chosen point both ways.

**False alerts per hour** (optional, ``max_false_alerts_per_hour``, with val drives): step 2 then counts alerts, not
frames: at most that many false alerts (confirmed tracks) per hour of the drives' camera time. One alert is one
event for a driver however many frames it lasts, and a rate per hour is what a vehicle programme specifies. Its
95 % upper bound is the exact Poisson one: zero alerts in T hours bound the rate only to 3.0 / T per hour, so a
target of one per hour needs about three hours of obstacle-free drive, and the report says when the drive is shorter.

Why not the pixel rate alone: at a 1 % road-pixel FPR the false pixels form a false obstacle in most frames, and no
area floor that keeps small obstacles removes them (measured in results/train_nano.md, "Calibrated operating
point"). A higher threshold shrinks the false components faster than the obstacles, so a smaller area suffices.

The values go into the model dir's manifest (``operating_point``); the node, bag-eval and the demo use them when
their parameters are unset.
"""
from __future__ import annotations

import logging
import math
import tempfile
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from dsa_core.bags.alerts import alert_rate_upper_bound, camera_seconds
from dsa_core.labels import ROAD

log = logging.getLogger(__name__)

DEFAULT_TARGET_FPR = 0.01
DEFAULT_MAX_FALSE_FRAME_RATE = 0.02
DEFAULT_AREA_FLOOR = 5e-5
DEFAULT_AREA_CAP = 2.5e-3
#: The recipes' false-alert budget on their calibration drive (``max_false_alerts_per_hour``): 48 per camera-hour on
#: the 30-minute drive of dsa_core.bags.drive.CALIBRATION_DRIVE_FRAMES gave the shipped model 49 per hour on 80
#: held-out camera-minutes counted as here (no horizon gate), 27 with the node's gate, and 99 of 120 held-out
#: obstacles (results/train_nano.md, "Calibrating both models to one false-alert budget" and "The on-road-outlier
#: model on the drive").
RECIPE_MAX_FALSE_ALERTS_PER_HOUR = 48.0
#: Road-pixel FPRs tried below ``target_fpr``: about three per decade, down to where 100 val frames of 512 x 256
#: still leave a few hundred road pixels above the threshold.
FPR_LADDER = (0.005, 0.002, 0.001, 0.0005, 0.0002, 0.0001)
#: Log-uniform resize of each pool-val object, which stands on the road: the node must find road obstacles early,
#: i.e. far and small (~100 px at 0.25 for the pool's median object of ~1700 px; a drive obstacle at 10-13 m covers
#: 100-300 px). At their own size anywhere in the frame the objects would reward large minimum areas.
POOL_SCALE = (0.25, 1.0)


def _exact(fraction: float) -> Fraction:
    """The decimal the user wrote (0.01 -> 1/100), so floor(target * N) has no rounding error."""
    return Fraction(repr(float(fraction)))


def threshold_at_fpr(negatives: np.ndarray, target: float) -> tuple[float, float]:
    """(smallest t with #{s >= t} / N <= target, the FPR at t) over negative scores; t is a float32 value."""
    if not 0.0 < target < 1.0:
        raise ValueError(f"target false-positive rate must be in (0, 1), got {target}")
    s = np.sort(np.asarray(negatives, dtype=np.float32).ravel())
    n = s.size
    if n == 0:
        raise ValueError("no negative (road) pixels to calibrate on")
    if not np.isfinite(s).all():
        raise ValueError("scores contain NaN or inf")
    allowed = math.floor(_exact(target) * n)  # false positives the target admits
    t = np.nextafter(s[n - 1 - allowed], np.float32(np.inf), dtype=np.float32)  # just above the (allowed+1)-th highest
    flagged = n - int(np.searchsorted(s, t, side="left"))
    return float(t), flagged / n


def fpr_candidates(target_fpr: float) -> list[float]:
    """``target_fpr`` and the ladder rates below it, highest first."""
    return [target_fpr] + [f for f in FPR_LADDER if f < target_fpr]


def _share_for(pixels: int, image_px: int) -> float:
    """The share f of an image with ceil(f * image_px) == pixels, as the node computes a minimum area (a plain
    pixels / image_px can land one float step high and cost a pixel)."""
    f = pixels / image_px
    while math.ceil(f * image_px) > pixels:
        f = math.nextafter(f, 0.0)
    return f


def rate_upper_bound(events: int, trials: int, confidence: float = 0.95) -> float | None:
    """One-sided Clopper-Pearson upper bound of a rate seen as ``events`` in ``trials``: what 2 false frames in 100
    can still mean (up to ~6 %), so nobody reads 2 % as a guarantee."""
    if trials <= 0:
        return None
    if not 0 <= events <= trials:
        raise ValueError(f"need 0 <= events <= trials, got {events} of {trials}")
    if events == trials:
        return 1.0
    from scipy.stats import beta

    return float(beta.ppf(confidence, events + 1, trials - events))


def frames_with_false_obstacle(largest_px: np.ndarray, image_px: np.ndarray, fraction: float) -> int:
    """Frames whose largest false component (``largest_px``, 0 = none) has at least ``fraction`` of the image."""
    return sum(a > 0 and a >= math.ceil(fraction * p) for a, p in zip(np.asarray(largest_px).tolist(),
                                                                      np.asarray(image_px).tolist()))


def frame_area_rule(largest_px: np.ndarray, image_px: np.ndarray,
                    max_false_frame_rate: float = DEFAULT_MAX_FALSE_FRAME_RATE,
                    floor: float = DEFAULT_AREA_FLOOR, cap: float = DEFAULT_AREA_CAP) -> dict[str, Any]:
    """Smallest share of the image that leaves at most ``max_false_frame_rate`` of the frames with a false obstacle,
    given each frame's largest false component (``largest_px``, 0 = none) and size (``image_px``); clipped to
    [floor, cap], with what it achieves."""
    if not 0.0 <= max_false_frame_rate < 1.0:
        raise ValueError(f"max_false_frame_rate must be in [0, 1), got {max_false_frame_rate}")
    if not 0.0 < floor <= cap < 1.0:
        raise ValueError(f"need 0 < floor <= cap < 1, got floor {floor}, cap {cap}")
    largest = np.asarray(largest_px, dtype=np.int64)
    sizes = np.asarray(image_px, dtype=np.int64)
    if (largest.shape != sizes.shape or largest.ndim != 1 or (largest < 0).any()
            or (sizes < np.maximum(largest, 1)).any()):
        raise ValueError("largest_px and image_px must be matching per-frame pixel counts (0 <= largest <= image)")
    n = largest.size
    frames_allowed = math.floor(_exact(max_false_frame_rate) * n)
    order = np.argsort(-(largest / np.maximum(sizes, 1)), kind="stable")
    if n == 0 or frames_allowed >= n or largest[order[frames_allowed]] == 0:
        wanted = 0.0
    else:
        k = order[frames_allowed]  # the frame with the largest false component that must go
        wanted = _share_for(int(largest[k]) + 1, int(sizes[k]))
    fraction = min(max(wanted, floor), cap)
    kept = frames_with_false_obstacle(largest, sizes, fraction)
    return {"fraction": fraction, "wanted_fraction": wanted, "capped": wanted > cap, "floored": wanted < floor,
            "frames": n, "false_frames": int(np.count_nonzero(largest)), "false_frames_kept": kept,
            "false_frame_rate": kept / n if n else None, "false_frame_rate_upper95": rate_upper_bound(kept, n),
            "max_false_frame_rate": max_false_frame_rate,
            "floor": floor, "cap": cap, "counts": "frames with a false obstacle"}


def choose_candidate(candidates: list[dict[str, Any]]) -> tuple[int, bool]:
    """(index of the chosen candidate, whether it meets the frame-rate target). Candidates are ordered from the
    lowest threshold up; each has ``area`` (frame_area_rule) and, with a pool, ``pool_objects_found``."""
    if not candidates:
        raise ValueError("no candidate thresholds")
    feasible = [i for i, c in enumerate(candidates) if not c["area"]["capped"]]
    if not feasible:
        def misses(i: int) -> tuple[int, int]:
            area = candidates[i]["area"]
            return area["false_alert_tracks" if "max_false_alerts_per_hour" in area else "false_frames_kept"], i

        return min(range(len(candidates)), key=misses), False
    if all(c.get("pool_objects_found") is not None for c in candidates):
        return max(feasible, key=lambda i: (candidates[i]["pool_objects_found"], -i)), True
    return feasible[0], True


def drive_tracking(debounce_frames: int | None, horizon_gate: bool):
    """The node's tracker settings for counting a drive's alerts (no size filter: the area is applied before)."""
    from dsa_core.perception.obstacles import ObstacleSettings

    extra = {} if debounce_frames is None else {"debounce_frames": debounce_frames}
    return ObstacleSettings(min_area=1, horizon_gate=horizon_gate, **extra)


def drive_alerts(sequences: list[list[tuple[Any, ...]]], fraction: float, tracking) -> tuple[int, int]:
    """(frames with a false alert, false tracks confirmed: the alert episodes) of the drive ``sequences`` (as
    sequence_area_rule takes them) at a minimum area of ``fraction`` of the image, under the tracker settings
    ``tracking`` (an ObstacleSettings); one tracker per camera."""
    from dsa_core.perception.obstacles import ObstacleTracker

    frames = episodes = 0
    for seq in sequences:
        tracker, confirmed = ObstacleTracker(tracking), set()
        for components, (h, w), *stamp in seq:
            min_px = math.ceil(fraction * h * w)
            out = tracker.update([c for c in components if c.pixel_area >= min_px], (h, w), *stamp)
            ids = {o.track_id for o in out.obstacles if o.confirmed}
            frames += bool(ids)
            confirmed |= ids
        episodes += len(confirmed)
    return frames, episodes


def sequence_area_rule(sequences: list[list[tuple[list[Any], tuple[int, int]]]],
                        max_false_frame_rate: float = DEFAULT_MAX_FALSE_FRAME_RATE,
                        floor: float = DEFAULT_AREA_FLOOR, cap: float = DEFAULT_AREA_CAP,
                        debounce_frames: int | None = None, max_false_alerts_per_hour: float | None = None,
                        camera_hours: float | None = None, horizon_gate: bool = True) -> dict[str, Any]:
    """Smallest share of the image that leaves at most ``max_false_frame_rate`` of the frames with a false *alert*:
    a track the node's tracker confirms (``debounce_frames``, default the node's) from the components of at least
    that share. ``sequences``: one list per camera, in order, of (every false component of the frame as
    find_obstacles returns it with no size filter, (height, width)[, header stamp in ns, as the node's tracker
    gets it[, the frame's GroundCamera: the node's horizon gate]]). Clipped to [floor, cap], with what it achieves
    and the keys of frame_area_rule, plus ``false_alert_tracks``: how many false alerts (confirmed tracks) those
    frames are, since the frames of one alert are not independent. ``horizon_gate``: whether the tracker drops the
    components above the horizon of each frame's GroundCamera, as the node does by default.

    With ``max_false_alerts_per_hour`` the rate counts alerts instead of frames: at most that many false alerts
    (confirmed tracks) per hour of the drive's camera time (``camera_hours``, every camera's time summed), the unit
    a driver or a safety case counts in. The result then adds the rate, its 95 % upper bound and
    ``drive_shows_target``: whether the drive is long enough that zero alerts would bound the rate below the target.

    The alert count need not fall monotonically with the area (dropping a component can let another one keep a
    track alive), so the answer is the smallest tried share from which every larger tried share meets the rate; the
    shares tried are those just above each component's size, the floor and the cap."""
    if not 0.0 <= max_false_frame_rate < 1.0:
        raise ValueError(f"max_false_frame_rate must be in [0, 1), got {max_false_frame_rate}")
    if not 0.0 < floor <= cap < 1.0:
        raise ValueError(f"need 0 < floor <= cap < 1, got floor {floor}, cap {cap}")
    per_hour = max_false_alerts_per_hour is not None
    if per_hour and not (0.0 <= max_false_alerts_per_hour < math.inf and camera_hours is not None
                         and 0.0 < camera_hours < math.inf):
        raise ValueError(f"a false-alert rate per hour needs a rate >= 0 and the drive's camera time > 0, got "
                         f"{max_false_alerts_per_hour} per hour over {camera_hours} h")
    tracking = drive_tracking(debounce_frames, horizon_gate)
    n = sum(len(seq) for seq in sequences)
    frames_allowed = math.floor(_exact(max_false_frame_rate) * n)
    # (+1e-9: 30 per hour over a 2-minute drive allows 1 alert, not the 0 of a float product 0.99999...)
    alerts_allowed = math.floor(max_false_alerts_per_hour * camera_hours + 1e-9) if per_hour else None

    shares = {floor, cap}
    for seq in sequences:
        for components, (h, w), *_ in seq:
            shares.update(_share_for(c.pixel_area + 1, h * w) for c in components)
    tried = sorted((f for f in shares if floor <= f <= cap), reverse=True)
    counts: dict[float, tuple[int, int]] = {}
    fraction = None
    for f in tried:  # from the cap down, while the rate holds
        counts[f] = drive_alerts(sequences, f, tracking)
        if counts[f][1] > alerts_allowed if per_hour else counts[f][0] > frames_allowed:
            break
        fraction = f
    capped = fraction is None
    if capped:
        fraction = cap
    at_floor = (counts[floor] if floor in counts else drive_alerts(sequences, floor, tracking))[0]
    kept, episodes = counts[fraction]
    out = {"fraction": fraction, "wanted_fraction": None if capped else fraction, "capped": capped,
           "floored": not capped and fraction == floor, "frames": n, "false_frames": at_floor,
           "false_frames_kept": kept, "false_frame_rate": kept / n if n else None,
           "false_frame_rate_upper95": rate_upper_bound(kept, n), "max_false_frame_rate": max_false_frame_rate,
           "floor": floor, "cap": cap, "counts": "alert frames (confirmed tracks)", "false_alert_tracks": episodes,
           "debounce_frames": tracking.debounce_frames}
    if per_hour:
        out.update({"counts": "false alerts (confirmed tracks) per camera-hour",
                    "max_false_alerts_per_hour": max_false_alerts_per_hour, "camera_hours": camera_hours,
                    "false_alerts_per_hour": episodes / camera_hours,
                    "false_alerts_per_hour_upper95": alert_rate_upper_bound(episodes, camera_hours),
                    "drive_shows_target": alert_rate_upper_bound(0, camera_hours) <= max_false_alerts_per_hour})
    return out


@dataclass(frozen=True)
class CalibrationOptions:
    target_fpr: float = DEFAULT_TARGET_FPR
    max_false_frame_rate: float = DEFAULT_MAX_FALSE_FRAME_RATE
    area_floor: float = DEFAULT_AREA_FLOOR
    area_cap: float = DEFAULT_AREA_CAP
    max_frames: int | None = None
    pool_min_size: int | None = None  # None: the training default (TrainConfig.coco_min_size)
    seed: int = 0
    progress: bool = True
    ego_mask_bottom: float = 0.0  # the val camera's ego mask (the node's ego_mask_bottom_fraction)
    debounce_frames: int | None = None  # the node's debounce_frames for the val drives (None: the node's default)
    max_false_alerts_per_hour: float | None = None  # with val drives: count alerts per camera-hour instead of frames
    mount_pitch_deg: float = 0.0  # the val drive camera's pitch (the node's mount_pitch_deg): its horizon gate
    horizon_gate: bool = False  # count the val drive's alerts with the node's horizon gate (module docstring: why not)


def _obstacle_components(anomaly: np.ndarray, class_ids: np.ndarray, threshold: float, ego_mask_bottom: float):
    """The components the node would report as obstacles at ``threshold`` (default drivable rule, no size filter)."""
    from dsa_core.perception.obstacles import ObstacleSettings, find_obstacles

    mask = np.where(anomaly >= np.float32(threshold), np.uint8(255), np.uint8(0))
    settings = ObstacleSettings(min_area=1, ego_mask_bottom_fraction=ego_mask_bottom)
    return find_obstacles(mask, class_ids, anomaly, settings)


def _box(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)


class _Maps:
    """Per-frame score / class maps kept on disk while the candidates are compared (at camera resolution, 200
    frames of maps would hold gigabytes in memory)."""

    def __init__(self, scratch: Path, name: str) -> None:
        self.scratch, self.name, self.count = scratch, name, 0

    def add(self, **arrays: np.ndarray) -> None:
        np.savez(self.scratch / f"{self.name}_{self.count}.npz", **arrays)
        self.count += 1

    def __iter__(self):
        for i in range(self.count):
            with np.load(self.scratch / f"{self.name}_{i}.npz") as z:
                yield {k: z[k] for k in z.files}


def _largest_false_obstacles(val_maps: _Maps, thresholds: list[float],
                             ego_mask_bottom: float) -> tuple[np.ndarray, np.ndarray]:
    """([candidate, frame] pixels of each val frame's largest false obstacle at each threshold, [frame] image
    pixels); every frame is read once."""
    largest, image_px = [], []
    for m in val_maps:
        largest.append([max((d.pixel_area for d in _obstacle_components(m["anomaly"], m["class_ids"], t,
                                                                         ego_mask_bottom)), default=0)
                        for t in thresholds])
        image_px.append(m["anomaly"].size)
    return np.asarray(largest, np.int64).reshape(len(image_px), len(thresholds)).T, np.asarray(image_px, np.int64)


def _pool_objects_found(pool_maps: _Maps, points: list[tuple[float, float]],
                        ego_mask_bottom: float) -> tuple[list[int], list[int]]:
    """Per operating point (threshold, minimum area share): pasted objects found as an obstacle (a component of at
    least the area with box IoU >= MATCH_IOU) and object pixels over the threshold; every frame is read once."""
    from dsa_core.bags.alerts import MATCH_IOU
    from dsa_core.perception.obstacles import box_iou

    found, hits = [0] * len(points), [0] * len(points)
    for m in pool_maps:
        obj = m["outlier"]
        box = _box(obj)
        for k, (threshold, fraction) in enumerate(points):
            min_px = math.ceil(fraction * obj.size)
            comps = _obstacle_components(m["anomaly"], m["class_ids"], threshold, ego_mask_bottom)
            found[k] += any(d.pixel_area >= min_px and box_iou(d.bbox, box) >= MATCH_IOU for d in comps)
            hits[k] += int(np.count_nonzero(m["anomaly"][obj] >= np.float32(threshold)))
    return found, hits


def calibrate(model_dir: str | Path, val_root: str | Path, pool_root: str | Path | None = None,
              options: CalibrationOptions = CalibrationOptions(), backends: tuple[str, ...] = ("onnxruntime", "torch"),
              backend_options: dict[str, dict[str, Any]] | None = None, val_bag: str | Path | None = None,
              val_bag_topics: list[str] | None = None) -> dict[str, Any]:
    """Compute the operating point of ``model_dir`` (nothing is written; see write_operating_point). ``val_bag``:
    an obstacle-free recorded drive whose false alerts set the minimum areas (its camera topics: ``val_bag_topics``,
    default every camera in it)."""
    from tqdm import tqdm

    from dsa_core.data.cityscapes import CityscapesDataset
    from dsa_core.runtime.chain import BackendChain, runtime_factory

    per_hour = options.max_false_alerts_per_hour is not None
    if per_hour and val_bag is None:
        raise ValueError("a false-alert rate per hour is counted on a val drive; give one (val_bag)")
    t0 = time.perf_counter()
    val = CityscapesDataset(val_root, "val")
    n = len(val) if options.max_frames is None else min(len(val), options.max_frames)
    if n == 0:
        raise ValueError(f"no val frames under {val_root}")
    chain = BackendChain(backends, runtime_factory(model_dir, backend_options))
    backend = chain.start()
    score = backend.manifest.get("score", "msp")
    road_scores: list[np.ndarray] = []
    sizes: set[tuple[int, int]] = set()
    with tempfile.TemporaryDirectory(prefix="dsa_calibrate_") as scratch:
        val_maps, pool_maps = _Maps(Path(scratch), "val"), _Maps(Path(scratch), "pool")
        for i in tqdm(range(n), desc="calibrate: val frames", disable=not options.progress, unit="frame"):
            image, label, _ = val.load(i)
            res = backend.infer(image[None])
            road_scores.append(res.anomaly[0][label == ROAD])
            val_maps.add(anomaly=res.anomaly[0], class_ids=res.class_ids[0])
            sizes.add(image.shape[:2])
        negatives = np.concatenate(road_scores)
        pool_record = None if pool_root is None else _pool_pass(backend, val, n, pool_root, options, pool_maps)
        targets = fpr_candidates(options.target_fpr)
        thresholds = [threshold_at_fpr(negatives, f) for f in targets]
        largest, image_px = _largest_false_obstacles(val_maps, [t for t, _ in thresholds], options.ego_mask_bottom)
        drives = None if val_bag is None else _drive_pass(backend, val_bag, val_bag_topics,
                                                          [t for t, _ in thresholds], options)
        candidates: list[dict[str, Any]] = []
        for k, ((threshold, fpr), target, frames_largest) in enumerate(zip(thresholds, targets, largest)):
            single = frame_area_rule(frames_largest, image_px, options.max_false_frame_rate, options.area_floor,
                                     options.area_cap)
            cand = {"target_fpr": target, "threshold": threshold, "achieved_road_fpr": fpr, "area": single,
                    "pool_objects_found": None}
            if drives is not None:
                cand["single_frame_area"] = single
                cand["area"] = sequence_area_rule(_at_candidate(drives, k), options.max_false_frame_rate,
                                                  options.area_floor, options.area_cap, options.debounce_frames,
                                                  options.max_false_alerts_per_hour, drives["camera_minutes"] / 60.0,
                                                  horizon_gate=options.horizon_gate)
                cand["val_false_frames_at_area"] = frames_with_false_obstacle(frames_largest, image_px,
                                                                              cand["area"]["fraction"])
            candidates.append(cand)
        if pool_record is not None:
            found, hits = _pool_objects_found(pool_maps, [(c["threshold"], c["area"]["fraction"]) for c in candidates],
                                              options.ego_mask_bottom)
            pixels = pool_record["anomaly_pixels"]
            for cand, f, h in zip(candidates, found, hits):
                cand["pool_objects_found"], cand["pool_pixel_recall"] = f, (h / pixels if pixels else None)
    chosen, met = choose_candidate(candidates)
    best = candidates[chosen]
    record: dict[str, Any] = {
        "method": "dsa calibrate",
        "backend": chain.name,
        "val_root": str(val_root), "val_frames": n, "val_sizes": sorted(list(s) for s in sizes),
        "rule": (f"road-pixel FPR ladder from {options.target_fpr} down; per threshold the smallest area leaving "
                 + (f"<= {options.max_false_alerts_per_hour:g} false alerts per camera-hour of the obstacle-free val "
                    f"drive (tracks confirmed by the node's tracker)" if per_hour else
                    f"<= {options.max_false_frame_rate:.0%} of "
                    + ("the obstacle-free val drive's frames with a false alert (a track confirmed by the node's "
                       "tracker)" if drives else "in-distribution val frames with a false obstacle"))
                 + f", clipped to [{options.area_floor}, {options.area_cap}]; chosen: the candidate meeting that rate "
                 "which "
                 + ("finds the most pool-val objects" if pool_record else "has the lowest threshold")),
        "target_fpr": options.target_fpr, "max_false_frame_rate": options.max_false_frame_rate,
        "max_false_alerts_per_hour": options.max_false_alerts_per_hour, "frame_rate_met": met,
        "road_pixels": int(negatives.size),
        "achieved_road_fpr": best["achieved_road_fpr"], "area": best["area"],
        "candidates": candidates, "chosen": chosen, "ego_mask_bottom": options.ego_mask_bottom,
    }
    if drives is not None:
        record["val_drives"] = {k: v for k, v in drives.items() if k != "sequences"}
        record["val_drives"]["horizon_gate_counted"] = options.horizon_gate
        record["val_drives"]["alerts_at_point"] = {  # what the node raises on the drive, with the gate and without
            gate: dict(zip(("false_frames", "false_alert_tracks"),
                           drive_alerts(_at_candidate(drives, chosen), best["area"]["fraction"],
                                        drive_tracking(options.debounce_frames, gate == "horizon_gate_on"))))
            for gate in ("horizon_gate_off", "horizon_gate_on")}
    if pool_record is not None:
        record["pool_check"] = {**pool_record, "objects_found": best["pool_objects_found"],
                                "pixel_recall_at_threshold": best["pool_pixel_recall"]}
    record["seconds"] = time.perf_counter() - t0
    if not met and per_hour:
        log.warning("no candidate threshold meets %g false alerts per camera-hour; chose the one with the fewest false "
                    "alerts (%d in %.1f camera-minutes)", options.max_false_alerts_per_hour,
                    best["area"]["false_alert_tracks"], drives["camera_minutes"])
    elif not met:
        log.warning("no candidate threshold meets the false-obstacle frame rate %.3g; chose the one with the fewest "
                    "false-obstacle frames (%d of %d)", options.max_false_frame_rate,
                    best["area"]["false_frames_kept"], best["area"]["frames"])
    if per_hour and not best["area"]["drive_shows_target"]:
        log.warning("the val drive's %.1f camera-minutes cannot show %g false alerts per hour: even with none, the "
                    "95 %% upper bound of the rate is %.3g per hour; calibrate on longer obstacle-free drives",
                    drives["camera_minutes"], options.max_false_alerts_per_hour,
                    alert_rate_upper_bound(0, best["area"]["camera_hours"]))
    return {"score": score, "anomaly_threshold": best["threshold"],
            "min_obstacle_area_fraction": best["area"]["fraction"], "calibration": record}


def pool_check_mix(pool_root: str | Path, min_size: int):
    """The paste of the pool-val check: every frame gets one pool object, on the road, resized in ``POOL_SCALE``."""
    from dsa_core.data.coco_mix import AnomalyMix, CocoOutlierPool

    return AnomalyMix(CocoOutlierPool(pool_root, min_size=min_size), p=1.0, scale_range=POOL_SCALE, road_prob=1.0)


def _pool_pass(backend, val, n: int, pool_root: str | Path, options: CalibrationOptions, maps: _Maps) -> dict[str, Any]:
    """Score the val frames with one training-pool object pasted into each (seeded); keeps the maps for the
    candidates and returns the threshold-free metrics."""
    from tqdm import tqdm

    from dsa_core.data.coco_mix import pasted_outlier_frame
    from dsa_core.eval.metrics import AnomalyMetricAccumulator
    from dsa_core.train.config import TrainConfig

    mix = pool_check_mix(pool_root, TrainConfig().coco_min_size if options.pool_min_size is None
                         else options.pool_min_size)
    acc = AnomalyMetricAccumulator()
    total = 0
    for i in tqdm(range(n), desc="calibrate: pool objects", disable=not options.progress, unit="frame"):
        image, label, _ = val.load(i)
        mixed, gt, outlier = pasted_outlier_frame(mix, image, label, options.seed, i)
        res = backend.infer(mixed[None])
        acc.update(res.anomaly[0], gt)
        if outlier.any():
            maps.add(anomaly=res.anomaly[0], class_ids=res.class_ids[0], outlier=outlier)
        total += int(np.count_nonzero(outlier))
    metrics = acc.compute() if total else {}
    return {"pool_root": str(pool_root), "frames": n, "objects": maps.count, "anomaly_pixels": total,
            "auprc": metrics.get("auprc"), "fpr95": metrics.get("fpr95"),
            "note": "training outlier pool (seen in stage 2): fit to known outliers, not generalisation"}


def _drive_pass(backend, bag: str | Path, topics: list[str] | None, thresholds: list[float],
                options: CalibrationOptions) -> dict[str, Any]:
    """Run the obstacle-free val drive through the backend; per camera, per frame, the components the node would
    find at each candidate threshold (no size filter) and the frame size. Refuses a frame whose ground truth holds
    an obstacle: it would count a true alert as a false one (and a drive of evaluation obstacles has no place in a
    calibration)."""
    from tqdm import tqdm

    from dsa_core.bags.reader import iter_frames, select_streams
    from dsa_core.bags.source import open_bag
    from dsa_core.perception.obstacles import ObstacleSettings

    source = open_bag(bag)
    streams = select_streams(source.topics, topics)
    sequences: dict[str, list] = {s.topic: [] for s in streams}
    stamps: dict[str, list[int]] = {s.topic: [] for s in streams}
    problems: list[dict] = []
    undecodable = with_horizon = 0
    total = sum(source.topics[s.topic][1] for s in streams)
    for frame in tqdm(iter_frames(source, streams, problems=problems), total=total, desc="calibrate: val drive",
                      disable=not options.progress, unit="frame"):
        if frame.gt_anomaly is not None and bool((frame.gt_anomaly == 1).any()):
            raise ValueError(f"val drive {bag}: frame {frame.index} of {frame.stream.topic} holds a ground-truth "
                             f"obstacle; calibrate on drives with none (dsa synth bag --calibration-drive)")
        if frame.rgb is None:  # the node would skip it too: the tracker sees the next frame
            undecodable += 1
            continue
        res = backend.infer(frame.rgb[None])
        comps = [_obstacle_components(res.anomaly[0], res.class_ids[0], t, options.ego_mask_bottom) for t in thresholds]
        camera = frame.ground_camera(math.radians(options.mount_pitch_deg))  # the node's horizon gate
        with_horizon += camera is not None
        sequences[frame.stream.topic].append((comps, frame.rgb.shape[:2], frame.stamp_ns, camera))
        stamps[frame.stream.topic].append(frame.stamp_ns)
    frames = sum(len(v) for v in sequences.values())
    if frames == 0:
        raise ValueError(f"val drive {bag}: no decodable camera frame")
    seconds = sum(camera_seconds(v) for v in stamps.values())
    return {"bag": str(bag), "camera_topics": list(sequences), "frames": frames, "undecodable_frames": undecodable,
            "frames_with_horizon": with_horizon, "horizon_margin_deg": ObstacleSettings().horizon_margin_deg,
            "mount_pitch_deg": options.mount_pitch_deg,
            "unreadable_messages": len(problems), "camera_minutes": seconds / 60.0,
            "sequences": list(sequences.values())}


def _at_candidate(drives: dict[str, Any], k: int) -> list[list[tuple[Any, ...]]]:
    """The drive's sequences as sequence_area_rule takes them, with the components of candidate threshold ``k``."""
    return [[(comps[k], size, *rest) for comps, size, *rest in seq] for seq in drives["sequences"]]


def write_report(out_dir: str | Path, result: dict[str, Any], markdown: str) -> None:
    """``calibration.json`` (the result) and ``calibration.md`` (``markdown``, from report_markdown) in ``out_dir``,
    each written atomically."""
    from dsa_core.atomic import write_bytes_atomic, write_json_atomic

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "calibration.json", result)
    write_bytes_atomic(out / "calibration.md", markdown.encode())


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.2f} %"


def report_markdown(model_dir: str | Path, result: dict[str, Any]) -> str:
    """The calibration in a few lines and one table: values, rule, what every candidate achieves."""
    rec = result["calibration"]
    area = rec["area"]
    pool = rec.get("pool_check")
    drives = rec.get("val_drives")
    lines = [f"# Calibration of {model_dir}", "",
             f"- score: {result['score']}",
             f"- rule: {rec['rule']}",
             f"- anomaly_threshold: **{result['anomaly_threshold']:.9g}** (road FPR "
             f"{100 * rec['achieved_road_fpr']:.4f} % over {rec['road_pixels']} road pixels of {rec['val_frames']} "
             f"frames)",
             f"- min obstacle area: **{100 * result['min_obstacle_area_fraction']:.4g} % of the image**; "
             + (f"false alerts on the val drive at this point: {area['false_alert_tracks']} in "
                f"{60 * area['camera_hours']:.1f} camera-minutes = {area['false_alerts_per_hour']:.3g} per hour "
                f"(target <= {area['max_false_alerts_per_hour']:g}: {'met' if rec['frame_rate_met'] else 'NOT met'}; "
                f"95 % upper bound of the rate {area['false_alerts_per_hour_upper95']:.3g} per hour"
                + ("" if area["drive_shows_target"] else ": the drive is too short to show the target") + ")"
                if "max_false_alerts_per_hour" in area else
                ("val drive frames with a false alert" if drives else "val frames with a false obstacle")
                + f" at this point: {area['false_frames_kept']} of {area['frames']} (target <= "
                f"{rec['max_false_frame_rate']:.0%}: {'met' if rec['frame_rate_met'] else 'NOT met'}; 95 % upper "
                f"bound of the rate {_pct(area['false_frame_rate_upper95'])})")
             + (" (cap reached)" if area["capped"] else "") + (" (floor reached)" if area["floored"] else "")]
    for h, w in rec["val_sizes"]:
        lines.append(f"  - at {w}x{h}: {math.ceil(result['min_obstacle_area_fraction'] * h * w)} px")
    if drives:
        lines.append(f"- val drive: {drives['bag']} ({drives['frames']} frames of {', '.join(drives['camera_topics'])}; "
                     f"alerts after {area['debounce_frames']} matched frames, the node's tracker): "
                     f"{area['false_alert_tracks']} false alert(s) at this point in {drives['camera_minutes']:.1f} "
                     f"camera-minutes")
        if "alerts_at_point" in drives:
            at = drives["alerts_at_point"]
            lines.append(f"  - the area counts the drive's alerts "
                         f"{'with' if drives['horizon_gate_counted'] else 'without'} the node's horizon gate; at this "
                         f"point the drive gives {at['horizon_gate_off']['false_alert_tracks']} false alert(s) in "
                         f"{at['horizon_gate_off']['false_frames']} frames without the gate and "
                         f"{at['horizon_gate_on']['false_alert_tracks']} in {at['horizon_gate_on']['false_frames']} "
                         f"with it (components more than {drives['horizon_margin_deg']:g}° above the horizon dropped, "
                         f"pitch {drives['mount_pitch_deg']:g}°, on the {drives['frames_with_horizon']} of "
                         f"{drives['frames']} frames with a CameraInfo)")
        elif "frames_with_horizon" in drives:  # a record from before both counts were kept
            lines.append(f"  - horizon gate (components more than {drives['horizon_margin_deg']:g}° above the horizon "
                         f"are no obstacles, pitch {drives['mount_pitch_deg']:g}°): applied on "
                         f"{drives['frames_with_horizon']} of {drives['frames']} frames (those with a CameraInfo)")
    if pool:
        lines.append(f"- training-pool objects pasted into val ({pool['objects']} objects, "
                     f"{pool['anomaly_pixels']} px): {pool['objects_found']} found as obstacles, pixel recall at the "
                     f"threshold {_pct(pool['pixel_recall_at_threshold'])}, AuPRC {_pct(pool['auprc'])} ({pool['note']})")
    drive_cols = " false-alert drive frames (alerts) | single-frame area (% of image) |" if drives else ""
    lines += ["", f"| road FPR | threshold | min area (% of image) | false-obstacle val frames |{drive_cols} "
                  f"pool objects found | |", "|---|---|---|---|" + ("---|---|" if drives else "") + "---|---|"]
    for i, c in enumerate(rec["candidates"]):
        a = c["area"]
        single = c.get("single_frame_area", a)
        at_area = (f"{c['val_false_frames_at_area']} / {single['frames']}" if drives
                   else f"{a['false_frames_kept']} / {a['frames']}")
        drive = (f" {a['false_frames_kept']} / {a['frames']} ({a['false_alert_tracks']}) | "
                 f"{100 * single['fraction']:.4g}{' (cap)' if single['capped'] else ''} |") if drives else ""
        lines.append(f"| {100 * c['achieved_road_fpr']:.3f} % | {c['threshold']:.4f} | {100 * a['fraction']:.4g}"
                     f"{' (cap)' if a['capped'] else ''} | {at_area} |{drive} "
                     f"{'-' if c['pool_objects_found'] is None else c['pool_objects_found']} | "
                     f"{'**chosen**' if i == rec['chosen'] else ''} |")
    lines += ["", f"- backend: {rec['backend']}, {rec['seconds']:.1f} s", ""]
    return "\n".join(lines)
