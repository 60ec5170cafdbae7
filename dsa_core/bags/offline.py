"""Offline bag evaluation: every camera frame of a bag through the node's own PerceptionPipeline, scored vs GT.

Why the node's pipeline object and not just the backend: the numbers must describe what the node publishes
(the same backend selection, resize, threshold, obstacle post-processing). ``dsa_perception.pipeline`` is ROS-free,
so importing it here keeps dsa_core free of rclpy.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from dsa_core.bags.reader import bag_topics, iter_frames, select_streams
from dsa_core.bags.report import write_report
from dsa_core.bags.scoring import BagScorer
from dsa_core.eval.components import ComponentSizeFilter

log = logging.getLogger(__name__)


def make_pipeline(model_dir: str | Path, backends: list[str], threshold: float | None = None, **backend_opts: Any):
    """The backend chosen exactly as the node chooses it, wrapped in the node's PerceptionPipeline."""
    from dsa_core.runtime import create_backend_with_fallback
    from dsa_perception.pipeline import PerceptionPipeline, PipelineSettings

    backend, fallback = create_backend_with_fallback(backends, model_dir, **backend_opts)
    if threshold is None:
        threshold = float(backend.manifest.get("default_anomaly_threshold", 0.5))
    settings = PipelineSettings(anomaly_threshold=threshold, make_overlay=False)
    return PerceptionPipeline(backend, settings), fallback, threshold


def evaluate_offline(bag: str | Path, model_dir: str | Path, out: str | Path, camera_topics: list[str] | None = None,
                     gt_semantic_topic: str | None = None, gt_anomaly_topic: str | None = None,
                     backends: tuple[str, ...] = ("onnxruntime", "torch"), threshold: float | None = None,
                     sizes: ComponentSizeFilter | None = None, progress: bool = True) -> dict[str, Any]:
    """Run and score the bag; writes the report into ``out`` and returns it (see report.write_report)."""
    from dsa_perception.pipeline import Frame

    topics = bag_topics(bag)
    streams = select_streams(topics, camera_topics, gt_semantic_topic, gt_anomaly_topic)
    pipeline, fallback, threshold = make_pipeline(model_dir, list(backends), threshold)
    out = Path(out)
    scorer = BagScorer(**({"sizes": sizes} if sizes else {}))
    total = sum(topics[s.topic][1] for s in streams)
    frames_in = processed = 0
    latencies: list[float] = []
    try:
        for frame in tqdm(iter_frames(bag, streams), total=total, desc="bag-eval offline", disable=not progress, unit="frame"):
            frames_in += 1
            cam = frame.stream.name
            if frame.rgb is None:
                scorer.skip(cam, frame.index, frame.stamp_ns, f"decode error: {frame.error}")
                continue
            t0 = time.perf_counter()
            result = pipeline.process({cam: Frame(rgb=frame.rgb, stamp=frame.stamp_ns)})[cam]
            latency = (time.perf_counter() - t0) * 1e3
            latencies.append(latency)
            processed += 1
            if frame.missing_gt:
                scorer.skip(cam, frame.index, frame.stamp_ns, f"no ground truth with this stamp on {', '.join(frame.missing_gt)}")
                continue
            gts = [g for g in (frame.gt_anomaly, frame.gt_semantic) if g is not None]
            bad = [g.shape for g in gts if g.shape != frame.rgb.shape[:2]]
            if bad:
                scorer.skip(cam, frame.index, frame.stamp_ns, f"ground truth size {bad[0]} != image size {frame.rgb.shape[:2]}")
                continue
            extra = {"obstacles": len(result.obstacles.obstacles)}
            scorer.add(cam, frame.index, frame.stamp_ns, result.anomaly, result.class_ids, frame.gt_anomaly,
                       frame.gt_semantic, latency_ms=latency, rgb=frame.rgb, extra=extra)
        info = {"bag": str(bag), "mode": "offline", "model_dir": str(model_dir), "backend": fallback.selected,
                "backend_failures": fallback.failures, "anomaly_threshold": threshold,
                "camera_topics": [s.topic for s in streams],
                "gt_topics": {s.topic: {"semantic": s.gt_semantic, "anomaly": s.gt_anomaly} for s in streams},
                "frames_in": frames_in, "frames_processed": processed, "dropped": None}
        report = write_report(out, scorer, info, latencies, "pipeline wall time per frame (decode excluded)")
    finally:
        scorer.close()
    has_gt = any(s.gt_anomaly or s.gt_semantic for s in streams)
    accounted = report["metrics"]["frames_scored"] + report["metrics"]["frames_skipped"]
    if has_gt and accounted != frames_in:
        raise RuntimeError(f"frame accounting broken: {frames_in} in, {accounted} scored + skipped")
    return report
