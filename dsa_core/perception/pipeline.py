"""The per-frame work of the node without ROS: backend -> masks, colours, overlay, obstacles, stage timings.

The node (and the offline bag evaluation) feed it decoded RGB frames per camera; frames of equal size are
inferred in one batch, so one engine serves all cameras.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import cv2
import numpy as np

from dsa_core.runtime.operating_point import FALLBACK_THRESHOLD
from dsa_core.perception.horizon_check import road_top_elevation_deg
from dsa_core.perception.obstacles import FrameObstacles, GroundCamera, ObstacleSettings, ObstacleTracker, find_obstacles
from dsa_core.perception.visualization import colorize, overlay


class InferenceResultLike(Protocol):
    class_ids: np.ndarray  # uint8 [B, H, W]
    anomaly: np.ndarray  # float32 [B, H, W]
    timings: dict[str, float]
    # optional (dsa_core.runtime backends have them): the maps at the model's export size, for the obstacle search
    # export_class_ids: np.ndarray | None; export_anomaly: np.ndarray | None


class InferenceBackend(Protocol):
    """What the pipeline needs from dsa_core.runtime backends (or any other engine)."""

    name: str

    def infer(self, images: np.ndarray) -> InferenceResultLike: ...


@dataclass(frozen=True)
class PipelineSettings:
    anomaly_threshold: float = FALLBACK_THRESHOLD["msp"]  # callers resolve the model's value (operating_point)
    obstacles: ObstacleSettings = field(default_factory=ObstacleSettings)
    make_color: bool = True
    make_overlay: bool = True
    overlay_alpha: float = 0.4


@dataclass
class CameraResult:
    camera: str
    class_ids: np.ndarray  # uint8 HxW
    anomaly: np.ndarray  # float32 HxW
    mask: np.ndarray  # uint8 HxW, 0 / 255
    color: np.ndarray | None  # uint8 HxWx3 RGB
    overlay: np.ndarray | None  # uint8 HxWx3 RGB
    obstacles: FrameObstacles
    frame_index: int
    timings: dict[str, float]  # ms: inference (batch share), postprocess, obstacles
    road_top_deg: float | None = None  # the road's top above the camera's configured horizon (horizon_check)


@dataclass
class RawOutput:
    """One camera's share of a backend call."""

    class_ids: np.ndarray  # HxW
    anomaly: np.ndarray  # HxW
    timings: dict[str, float]  # ms: backend stages, inference (batch wall time), batch_size
    export_class_ids: np.ndarray | None = None  # hxw at the model's export size, when the backend gives it
    export_anomaly: np.ndarray | None = None


@dataclass
class Frame:
    rgb: np.ndarray  # uint8 HxWx3
    stamp: Any = None  # passed to the tracker as "first seen"
    camera: GroundCamera | None = None  # the horizon gate and flat-ground distances
    want_color: bool = True  # False skips work nobody consumes (the node: no subscriber), on top of settings
    want_overlay: bool = True


def anomaly_mask(anomaly: np.ndarray, threshold: float) -> np.ndarray:
    """uint8 0 / 255 where the float32 score >= threshold (NaN: 0). cv2.compare compares in float32 like numpy's
    ``anomaly >= threshold`` with a Python float, at 0.2 ms for 720p where np.where takes 1.7 ms."""
    return cv2.compare(anomaly, float(threshold), cv2.CMP_GE)


class PerceptionPipeline:
    """Holds the backend, the settings and one obstacle tracker per camera."""

    def __init__(self, backend: InferenceBackend, settings: PipelineSettings | None = None) -> None:
        self.backend = backend
        self.settings = settings or PipelineSettings()
        self._trackers: dict[str, ObstacleTracker] = {}
        self._frame_index: dict[str, int] = {}

    def reconfigure(self, settings: PipelineSettings) -> None:
        self.settings = settings
        for tracker in self._trackers.values():
            tracker.reconfigure(settings.obstacles)

    def process(self, frames: dict[str, Frame]) -> dict[str, CameraResult]:
        """Run the backend on all frames (one batch per image size) and post-process each camera."""
        settings = self.settings
        return {cam: self.postprocess(cam, frames[cam], raw, settings) for cam, raw in self.infer(frames).items()}

    def infer(self, frames: dict[str, Frame]) -> dict[str, "RawOutput"]:
        """The backend's part only (one batch per image size). The node keeps it apart from ``postprocess``:
        only an exception raised here is a backend failure that justifies falling back to another backend."""
        if not frames:
            return {}
        by_size: dict[tuple[int, ...], list[str]] = {}
        for cam, frame in frames.items():
            if frame.rgb.dtype != np.uint8 or frame.rgb.ndim != 3 or frame.rgb.shape[2] != 3:
                raise ValueError(f"camera {cam!r}: expected uint8 HxWx3 RGB, got {frame.rgb.dtype} {frame.rgb.shape}")
            by_size.setdefault(frame.rgb.shape, []).append(cam)
        inferred: dict[str, tuple[np.ndarray, np.ndarray, dict[str, float]]] = {}
        for cams in by_size.values():
            t0 = time.perf_counter()
            images = frames[cams[0]].rgb[None] if len(cams) == 1 else np.stack([frames[c].rgb for c in cams])
            result = self.backend.infer(images)  # one camera: a view, no copy of the frame
            wall = (time.perf_counter() - t0) * 1e3
            stage = {f"backend_{k}": v for k, v in result.timings.items()}
            stage["inference"] = wall
            stage["batch_size"] = float(len(cams))
            small_ids = getattr(result, "export_class_ids", None)
            small_scores = getattr(result, "export_anomaly", None)
            for i, cam in enumerate(cams):
                inferred[cam] = RawOutput(result.class_ids[i], result.anomaly[i], dict(stage),
                                          None if small_ids is None else small_ids[i],
                                          None if small_scores is None else small_scores[i])
        return {cam: inferred[cam] for cam in frames}

    def postprocess(self, cam: str, frame: Frame, raw: "RawOutput",
                    settings: PipelineSettings | None = None) -> CameraResult:
        """Mask, obstacles (tracker of ``cam``), colours and overlay of one camera's backend output.

        Obstacles are searched on the export-size maps when the backend gives them (boxes and areas come back in
        camera pixels, find_obstacles); the published mask, colours and overlay stay at the camera size.
        """
        settings = settings or self.settings
        timings = dict(raw.timings)
        t0 = time.perf_counter()
        class_ids = np.ascontiguousarray(raw.class_ids, dtype=np.uint8)
        anomaly = np.ascontiguousarray(raw.anomaly, dtype=np.float32)
        mask = anomaly_mask(anomaly, settings.anomaly_threshold)
        t1 = time.perf_counter()
        tracker = self._trackers.setdefault(cam, ObstacleTracker(settings.obstacles))
        search_ids = class_ids
        if raw.export_anomaly is not None and raw.export_class_ids is not None and raw.export_anomaly.shape != mask.shape:
            small_scores = np.ascontiguousarray(raw.export_anomaly, dtype=np.float32)
            search_ids = np.ascontiguousarray(raw.export_class_ids, dtype=np.uint8)
            detections = find_obstacles(anomaly_mask(small_scores, settings.anomaly_threshold), search_ids,
                                        small_scores, settings.obstacles, image_size=mask.shape)
        else:
            detections = find_obstacles(mask, class_ids, anomaly, settings.obstacles)
        found = tracker.update(detections, mask.shape, frame.stamp, frame.camera)
        road_top = None if frame.camera is None else road_top_elevation_deg(
            search_ids, frame.camera, settings.obstacles.drivable_classes, mask.shape[0])
        t2 = time.perf_counter()
        make_color = settings.make_color and frame.want_color
        make_overlay = settings.make_overlay and frame.want_overlay
        color = colorize(class_ids) if make_color or make_overlay else None
        over = overlay(frame.rgb, color, mask, found.obstacles, settings.overlay_alpha) if make_overlay else None
        t3 = time.perf_counter()
        timings.update(mask=(t1 - t0) * 1e3, obstacles=(t2 - t1) * 1e3, visualization=(t3 - t2) * 1e3)
        index = self._frame_index.get(cam, 0)
        self._frame_index[cam] = index + 1
        return CameraResult(cam, class_ids, anomaly, mask, color if make_color else None, over, found,
                            index, timings, road_top)
