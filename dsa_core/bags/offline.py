"""Offline bag evaluation: every camera frame of a bag through the node's own PerceptionPipeline, scored vs GT.

Why the node's pipeline object and not just the backend: the numbers must describe what the node publishes
(the same backend selection, resize, threshold, obstacle post-processing). ``dsa_core.perception.pipeline`` is ROS-free,
so importing it here keeps dsa_core free of rclpy.

The operating point (threshold, minimum obstacle area) is resolved as the node resolves it: parameter, else the
model's manifest, else the per-score fallback (dsa_core.runtime.operating_point). The zero-cost baselines come
from the same backend pass (``infer(..., baselines=True)``); their cost is left out of the reported latency.
"""
from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from dsa_core.bags.alerts import AlertBox, AlertScorer, find_gt_obstacles, flagged_class
from dsa_core.bags.reader import iter_frames, select_streams
from dsa_core.bags.source import open_bag
from dsa_core.bags.report import horizon_gate_record, write_report
from dsa_core.bags.scoring import BagScorer
from dsa_core.eval.components import ComponentSizeFilter
from dsa_core.runtime.operating_point import OperatingPoint, resolve_operating_point

log = logging.getLogger(__name__)


class BaselineTap:
    """Wraps a backend so that every pass also yields the baseline maps; the pipeline sees the usual result."""

    def __init__(self, backend: Any) -> None:
        self.backend, self.name = backend, backend.name
        self.maps: dict[str, Any] | None = None
        self.ms = 0.0

    def infer(self, images):
        result = self.backend.infer(images, baselines=True)
        self.maps, self.ms = result.baselines, result.timings.get("baselines", 0.0)
        return result

    def take(self, i: int = 0) -> dict[str, Any]:
        """The maps of image ``i`` of the last pass (once)."""
        maps, self.maps = self.maps, None
        if maps is None:
            raise RuntimeError("no baseline maps: the backend has not run since the last take()")
        return {name: m[i] for name, m in maps.items()}


def make_pipeline(model_dir: str | Path, backends: list[str], threshold: float | None = None,
                  min_area_px: int | None = None, baselines: bool = True, ego_mask_bottom: float = 0.0,
                  debounce_seconds: float = 0.0, **backend_opts: Any):
    """The backend chosen exactly as the node chooses it, wrapped in the node's PerceptionPipeline at the operating
    point the node would use. Returns (pipeline, the started BackendChain, OperatingPoint, BaselineTap or None)."""
    from dsa_core.runtime.chain import BackendChain, runtime_factory
    from dsa_core.perception.obstacles import ObstacleSettings
    from dsa_core.perception.pipeline import PerceptionPipeline, PipelineSettings

    options = {"onnxruntime": {"class_scores": True}, "openvino": {"class_scores": True}} if baselines else None
    chain = BackendChain(backends, runtime_factory(model_dir, options, **backend_opts))
    backend = chain.start()
    op: OperatingPoint = resolve_operating_point(backend.manifest, threshold, min_area_px)
    settings = PipelineSettings(anomaly_threshold=op.anomaly_threshold, make_overlay=False,
                                obstacles=ObstacleSettings(min_area=op.min_area_px, min_area_fraction=op.min_area_fraction,
                                                           ego_mask_bottom_fraction=ego_mask_bottom,
                                                           debounce_seconds=debounce_seconds))
    tap = BaselineTap(backend) if baselines and backend.provides_class_scores else None
    return PerceptionPipeline(tap or backend, settings), chain, op, tap


def evaluate_offline(bag: str | Path, model_dir: str | Path, out: str | Path, camera_topics: list[str] | None = None,
                     gt_semantic_topic: str | None = None, gt_anomaly_topic: str | None = None,
                     backends: tuple[str, ...] = ("onnxruntime", "torch"), threshold: float | None = None,
                     sizes: ComponentSizeFilter | None = None, progress: bool = True,
                     min_area_px: int | None = None, ego_mask_bottom: float = 0.0,
                     debounce_seconds: float = 0.0, mount_pitch_deg: float = 0.0) -> dict[str, Any]:
    """Run and score the bag; writes the report into ``out`` and returns it (see report.write_report).
    ``ego_mask_bottom``, ``debounce_seconds``, ``mount_pitch_deg``: the node's ``ego_mask_bottom_fraction`` for this
    camera, its ``debounce_seconds`` and the camera's ``mount_pitch_deg`` (where the horizon gate puts the horizon)."""
    from dsa_core.perception.pipeline import Frame

    source = open_bag(bag)
    topics = source.topics
    streams = select_streams(topics, camera_topics, gt_semantic_topic, gt_anomaly_topic)
    pitch = math.radians(mount_pitch_deg)
    pipeline, chain, op, tap = make_pipeline(model_dir, list(backends), threshold, min_area_px,
                                                ego_mask_bottom=ego_mask_bottom, debounce_seconds=debounce_seconds)
    problems: list[dict] = []
    out = Path(out)
    scorer = BagScorer(**({"sizes": sizes} if sizes else {}))
    alerts = AlertScorer(gt_tables=find_gt_obstacles(source, topics, [s.topic for s in streams]))
    total = sum(topics[s.topic][1] for s in streams)
    frames_in = processed = 0
    latencies: list[float] = []
    road_tops: dict[str, list[float]] = {s.topic: [] for s in streams if s.camera_info}  # the mount pitch check
    try:
        for frame in tqdm(iter_frames(source, streams, problems=problems), total=total, desc="bag-eval offline", disable=not progress, unit="frame"):
            frames_in += 1
            cam = frame.stream.name
            if frame.rgb is None:
                scorer.skip(cam, frame.index, frame.stamp_ns, f"decode error: {frame.error}")
                alerts.add(cam, frame.index, frame.stamp_ns, frame.gt_anomaly, None, topic=frame.stream.topic)
                continue
            t0 = time.perf_counter()
            view = Frame(rgb=frame.rgb, stamp=frame.stamp_ns, camera=frame.ground_camera(pitch))  # the horizon gate
            result = pipeline.process({cam: view})[cam]
            latency = (time.perf_counter() - t0) * 1e3 - (tap.ms if tap else 0.0)
            maps = tap.take() if tap else None
            latencies.append(latency)
            processed += 1
            if result.road_top_deg is not None and frame.stream.topic in road_tops:
                road_tops[frame.stream.topic].append(result.road_top_deg)
            if frame.missing_gt:
                scorer.skip(cam, frame.index, frame.stamp_ns, f"no ground truth with this stamp on {', '.join(frame.missing_gt)}")
                continue
            gts = [g for g in (frame.gt_anomaly, frame.gt_semantic) if g is not None]
            bad = [g.shape for g in gts if g.shape != frame.rgb.shape[:2]]
            if bad:
                scorer.skip(cam, frame.index, frame.stamp_ns, f"ground truth size {bad[0]} != image size {frame.rgb.shape[:2]}")
                continue
            confirmed = [AlertBox(o.detection.bbox, o.distance_m, o.track_id,
                                  flagged_class(o.detection.bbox, result.mask, frame.gt_semantic), int(o.severity))
                         for o in result.obstacles.obstacles if o.confirmed]
            alerts.add(cam, frame.index, frame.stamp_ns, frame.gt_anomaly, confirmed, topic=frame.stream.topic)
            extra = {"obstacles": len(result.obstacles.obstacles), "severity": int(result.obstacles.severity),
                     "alert_boxes": [list(a.box) for a in confirmed]}
            scorer.add(cam, frame.index, frame.stamp_ns, result.anomaly, result.class_ids, frame.gt_anomaly,
                       frame.gt_semantic, latency_ms=latency, rgb=frame.rgb, extra=extra, baselines=maps)
        info = {"bag": str(bag), "mode": "offline", "model_dir": str(model_dir), "backend": chain.name,
                "backend_failures": chain.failures, "anomaly_threshold": op.anomaly_threshold,
                "operating_point": op.describe(),
                "horizon_gate": horizon_gate_record(pipeline.settings.obstacles, streams, mount_pitch_deg, road_tops),
                "baselines_note": None if tap else f"not available: the {chain.name} backend does not output "
                                                   "per-pixel class scores",
                "camera_topics": [s.topic for s in streams],
                "gt_topics": {s.topic: {"semantic": s.gt_semantic, "anomaly": s.gt_anomaly} for s in streams},
                "frames_in": frames_in, "frames_processed": processed, "dropped": None,
                "unreadable_messages": problems, "bag_damage": [d.as_dict() for d in source.damage]}
        report = write_report(out, scorer, info, latencies, "pipeline wall time per frame (decode excluded)",
                              alerts=alerts.compute() if alerts.scored else None)
    finally:
        scorer.close()
    for topic, top in info["horizon_gate"].get("road_top", {}).items():
        if top["warning"]:
            log.warning("%s: %s (mount pitch check over %d frames)", topic, top["warning"], top["frames"])
    has_gt = any(s.gt_anomaly or s.gt_semantic for s in streams)
    accounted = report["metrics"]["frames_scored"] + report["metrics"]["frames_skipped"]
    if has_gt and accounted != frames_in:
        raise RuntimeError(f"frame accounting broken: {frames_in} in, {accounted} scored + skipped")
    return report
