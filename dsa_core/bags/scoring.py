"""Scoring a replayed bag: pooled pixel metrics, mIoU, component metrics and per-frame values, with our exact code.

Baselines (dsa_core.eval.baselines) of the same forward pass, when given, are pooled like the model's score
(pixel metrics only); every scored frame must then carry the same baselines, so all rows cover the same pixels.

Why two passes for components: SMIYC's component threshold (``thresh_p``) is the best-F1 threshold of the pooled
pixel curve, known only after every frame was seen. Per-frame score maps are therefore spilled to ``.npy`` files
in a scratch directory (not kept in RAM) and read back for the component pass.
"""
from __future__ import annotations

import logging
import math
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from dsa_core.eval.components import OBSTACLE_TRACK, ComponentMetricAccumulator, ComponentSizeFilter, component_threshold
from dsa_core.eval.metrics import AnomalyMetricAccumulator, ConfusionMatrix, UndefinedMetricWarning, anomaly_metrics

log = logging.getLogger(__name__)


THUMB_WIDTH = 320


def _thumbnail(rgb: np.ndarray) -> np.ndarray:
    h, w = rgb.shape[:2]
    if w <= THUMB_WIDTH:
        return np.ascontiguousarray(rgb)
    return cv2.resize(rgb, (THUMB_WIDTH, max(1, round(h * THUMB_WIDTH / w))), interpolation=cv2.INTER_AREA)


@dataclass
class FrameRecord:
    """What the report needs about one camera frame."""

    camera: str
    index: int
    stamp_ns: int
    scored: bool
    n_anomaly_px: int = 0
    auprc: float = float("nan")  # per-frame AuPRC (NaN without anomaly or in-distribution pixels)
    mean_id_score: float = float("nan")  # mean anomaly score on in-distribution pixels
    latency_ms: float = float("nan")
    score_file: str | None = None  # spilled anomaly map (for components and the image strip)
    extra: dict[str, Any] = field(default_factory=dict)


class BagScorer:
    """Accumulates one bag's predictions against its ground truth (anomaly and/or semantic)."""

    def __init__(self, num_classes: int = 19, sizes: ComponentSizeFilter = OBSTACLE_TRACK,
                 scratch_dir: str | Path | None = None) -> None:
        self.anomaly = AnomalyMetricAccumulator()
        self.confusion = ConfusionMatrix(num_classes)
        self.sizes = sizes
        self._tmp = tempfile.TemporaryDirectory(prefix="dsa_bag_scores_") if scratch_dir is None else None
        self.scratch = Path(scratch_dir or self._tmp.name)
        self.scratch.mkdir(parents=True, exist_ok=True)
        self.frames: list[FrameRecord] = []
        self.skipped: list[dict[str, Any]] = []
        self.has_anomaly_gt = False
        self.has_semantic_gt = False
        self.baselines: dict[str, AnomalyMetricAccumulator] = {}

    def skip(self, camera: str, index: int, stamp_ns: int, reason: str) -> None:
        self.skipped.append({"camera": camera, "index": index, "stamp_ns": stamp_ns, "reason": reason})
        log.warning("frame %s #%d (stamp %d) skipped: %s", camera, index, stamp_ns, reason)

    def add(self, camera: str, index: int, stamp_ns: int, anomaly: np.ndarray, class_ids: np.ndarray | None,
            gt_anomaly: np.ndarray | None, gt_semantic: np.ndarray | None, latency_ms: float = float("nan"),
            rgb: np.ndarray | None = None, extra: dict[str, Any] | None = None,
            baselines: dict[str, np.ndarray] | None = None) -> FrameRecord:
        """Score one frame. Shapes must match the ground truth (the caller skips with a reason otherwise).

        ``rgb`` (the input) is kept as a thumbnail for the report's image strip; ``baselines``: name -> score map.
        """
        rec = FrameRecord(camera, index, stamp_ns, scored=gt_anomaly is not None or gt_semantic is not None,
                          latency_ms=latency_ms, extra=dict(extra or {}))
        if gt_anomaly is not None:
            if gt_anomaly.shape != anomaly.shape:
                raise ValueError(f"anomaly map {anomaly.shape} vs ground truth {gt_anomaly.shape}")
            given = dict(baselines or {})
            if self.anomaly.num_images and set(given) != set(self.baselines):
                raise ValueError(f"frame {camera} #{index}: baselines {sorted(given)} differ from the earlier frames' "
                                 f"{sorted(self.baselines)}")
            for name, score in given.items():
                if score.shape != gt_anomaly.shape:
                    raise ValueError(f"baseline {name} map {score.shape} vs ground truth {gt_anomaly.shape}")
                self.baselines.setdefault(name, AnomalyMetricAccumulator()).update(score, gt_anomaly)
            self.has_anomaly_gt = True
            self.anomaly.update(anomaly, gt_anomaly)
            rec.n_anomaly_px = int(np.count_nonzero(gt_anomaly == 1))
            id_px = gt_anomaly == 0
            if id_px.any():
                rec.mean_id_score = float(anomaly[id_px].mean(dtype=np.float64))
            if rec.n_anomaly_px and id_px.any():
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UndefinedMetricWarning)
                    rec.auprc = float(anomaly_metrics(anomaly, gt_anomaly)["auprc"])
            path = self.scratch / f"{camera}_{index:06d}.npz"
            thumb = _thumbnail(rgb) if rgb is not None else np.zeros((0, 0, 3), np.uint8)
            np.savez(path, anomaly=anomaly.astype(np.float32, copy=False), gt=gt_anomaly, rgb=thumb)
            rec.score_file = str(path)
        if gt_semantic is not None and class_ids is not None:
            if gt_semantic.shape != class_ids.shape:
                raise ValueError(f"semantic map {class_ids.shape} vs ground truth {gt_semantic.shape}")
            self.has_semantic_gt = True
            self.confusion.update(class_ids, gt_semantic)
        self.frames.append(rec)
        return rec

    def compute(self) -> dict[str, Any]:
        """Pooled metrics; components only when the pixel curve is defined (anomaly and in-distribution pixels)."""
        out: dict[str, Any] = {"frames_scored": sum(f.scored for f in self.frames), "frames_skipped": len(self.skipped)}
        if self.has_anomaly_gt:
            curve = self.anomaly.curve()
            out["anomaly"] = curve.metrics()
            if self.baselines:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UndefinedMetricWarning)
                    out["baselines"] = {name: acc.curve().metrics() for name, acc in self.baselines.items()}
            if curve.defined:
                thresh = component_threshold(curve)
                comp = ComponentMetricAccumulator(thresh, self.sizes)
                for rec in self.frames:
                    if rec.score_file:
                        with np.load(rec.score_file) as z:
                            comp.update(z["anomaly"], z["gt"])
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UndefinedMetricWarning)
                    comps = comp.compute()
                comps.pop("per_threshold", None)
                out["components"] = {"thresh_p": thresh, "size_filter": vars(self.sizes), **comps}
                precision, recall = curve.precision(), curve.recall()
                out["_pr_curve"] = (precision, recall)
        if self.has_semantic_gt:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UndefinedMetricWarning)
                sem = self.confusion.compute()
            out["semantic"] = {"miou": sem["miou"], "pixel_accuracy": sem["pixel_accuracy"],
                               "iou": [None if math.isnan(v) else float(v) for v in sem["iou"]]}
        return out

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
