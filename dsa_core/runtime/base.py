"""The one inference interface every backend implements, and the pipeline they share.

``infer(images uint8 [B, H, W, 3] RGB, any size)`` = resize to the export size (export/resize.py) -> the
backend's graphs at their fixed batch size (chunked / zero-padded as needed) -> outputs resized back to the
camera size. Backends only implement ``_run`` on a uint8 [b, 3, h, w] batch of exactly the export batch size.

``infer(images, baselines=True)`` also returns the zero-cost baseline maps (dsa_core.eval.baselines) of the same
pass, for evaluation; it needs a backend that outputs the per-pixel class scores (``provides_class_scores``). The
maps are computed at the export size and resized to the camera like the anomaly score.
"""
from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dsa_core.export.manifest import verify_model_dir
from dsa_core.export.resize import check_images, images_to_export_size, outputs_to_camera_size, scores_to_camera_size


class BackendUnavailable(RuntimeError):
    """This backend cannot run here (missing package, no device, provider not working); the reason is the text."""


@dataclass
class InferenceResult:
    class_ids: np.ndarray  # uint8 [B, H, W] Cityscapes train ids
    anomaly: np.ndarray  # float32 [B, H, W], higher = more anomalous
    timings: dict[str, float] = field(default_factory=dict)  # ms per stage, plus "total"
    baselines: dict[str, np.ndarray] | None = None  # name -> float32 [B, H, W], only when asked for
    # the same maps at the export size, before the resize back (obstacles are searched there: fewer pixels)
    export_class_ids: np.ndarray | None = None  # uint8 [B, h, w]
    export_anomaly: np.ndarray | None = None  # float32 [B, h, w]


class InferenceBackend(ABC):
    """Base class: verifies the model dir, owns the resize + batching; subclasses run the graphs."""

    name: str = "base"
    provides_class_scores: bool = False  # True when _run_scores works (baselines)

    def __init__(self, model_dir: str | Path, device: str = "cpu", precision: str = "fp32"):
        self.model_dir = Path(model_dir)
        self.device = device
        self.precision = precision
        self.manifest: dict[str, Any] = verify_model_dir(self.model_dir)
        spec = self.manifest["input"]
        self.height, self.width, self.batch = int(spec["height"]), int(spec["width"]), int(spec["batch"])

    @abstractmethod
    def _run(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
        """uint8 [batch, 3, h, w] at the export size -> (class ids uint8 [batch,h,w], anomaly float32, stage ms)."""

    def _run_scores(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, float]]:
        """Like ``_run`` plus the per-pixel class scores float32 [batch, K, h, w] of the same pass."""
        raise BackendUnavailable(f"the {self.name} backend does not output per-pixel class scores")

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "device": self.device, "precision": self.precision, "model_dir": str(self.model_dir),
                "model": self.manifest.get("model_name"), "export_size": [self.height, self.width], "batch": self.batch}

    def infer(self, images: np.ndarray, baselines: bool = False) -> InferenceResult:
        if baselines and not self.provides_class_scores:
            raise BackendUnavailable(f"baselines need per-pixel class scores, which the {self.name} backend does not "
                                     "output here")
        check_images(images)
        t_start = time.perf_counter()
        b, cam_h, cam_w = images.shape[:3]
        x = images_to_export_size(images, self.height, self.width)
        timings = {"resize_in": (time.perf_counter() - t_start) * 1e3}
        ids_parts, score_parts, baseline_parts = [], [], []
        for start in range(0, b, self.batch):
            chunk = x[start:start + self.batch]
            n = chunk.shape[0]
            if n < self.batch:  # the graphs have a fixed batch: pad with black frames, drop their outputs
                chunk = np.concatenate([chunk, np.zeros((self.batch - n, *chunk.shape[1:]), np.uint8)])
            if baselines:
                from dsa_core.eval.baselines import baseline_scores

                ids, score, semantic, stages = self._run_scores(np.ascontiguousarray(chunk))
                t_b = time.perf_counter()
                baseline_parts.append(baseline_scores(semantic[:n]))
                timings["baselines"] = timings.get("baselines", 0.0) + (time.perf_counter() - t_b) * 1e3
            else:
                ids, score, stages = self._run(np.ascontiguousarray(chunk))
            ids_parts.append(ids[:n])
            score_parts.append(score[:n])
            for key, ms in stages.items():
                timings[key] = timings.get(key, 0.0) + ms
        t_out = time.perf_counter()
        small_ids = ids_parts[0] if len(ids_parts) == 1 else np.concatenate(ids_parts)
        small_scores = score_parts[0] if len(score_parts) == 1 else np.concatenate(score_parts)
        class_ids, anomaly = outputs_to_camera_size(small_ids, small_scores, cam_h, cam_w)
        maps = None
        if baselines:
            t_b = time.perf_counter()
            maps = {k: scores_to_camera_size(np.concatenate([part[k] for part in baseline_parts]), cam_h, cam_w)
                    for k in baseline_parts[0]}
            timings["baselines"] += (time.perf_counter() - t_b) * 1e3  # the maps' own cost, not the model's
        timings["resize_out"] = (time.perf_counter() - t_out) * 1e3
        timings["total"] = (time.perf_counter() - t_start) * 1e3
        return InferenceResult(class_ids=class_ids, anomaly=anomaly, timings=timings, baselines=maps,
                               export_class_ids=small_ids, export_anomaly=small_scores)
