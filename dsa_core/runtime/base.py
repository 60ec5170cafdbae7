"""The one inference interface every backend implements, and the pipeline they share.

``infer(images uint8 [B, H, W, 3] RGB, any size)`` = resize to the export size (runtime/resize.py) -> the
backend's graphs at their fixed batch size (chunked / zero-padded as needed) -> outputs resized back to the
camera size. Backends only implement ``_run`` on a uint8 [b, 3, h, w] batch of exactly the export batch size.
"""
from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dsa_core.export.manifest import verify_model_dir
from dsa_core.runtime.resize import check_images, images_to_export_size, outputs_to_camera_size


class BackendUnavailable(RuntimeError):
    """This backend cannot run here (missing package, no device, provider not working); the reason is the text."""


@dataclass
class InferenceResult:
    class_ids: np.ndarray  # uint8 [B, H, W] Cityscapes train ids
    anomaly: np.ndarray  # float32 [B, H, W], higher = more anomalous
    timings: dict[str, float] = field(default_factory=dict)  # ms per stage, plus "total"


class InferenceBackend(ABC):
    """Base class: verifies the model dir, owns the resize + batching; subclasses run the graphs."""

    name: str = "base"

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

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "device": self.device, "precision": self.precision, "model_dir": str(self.model_dir),
                "model": self.manifest.get("model_name"), "export_size": [self.height, self.width], "batch": self.batch}

    def infer(self, images: np.ndarray) -> InferenceResult:
        check_images(images)
        t_start = time.perf_counter()
        b, cam_h, cam_w = images.shape[:3]
        x = images_to_export_size(images, self.height, self.width)
        timings = {"resize_in": (time.perf_counter() - t_start) * 1e3}
        ids_parts, score_parts = [], []
        for start in range(0, b, self.batch):
            chunk = x[start:start + self.batch]
            n = chunk.shape[0]
            if n < self.batch:  # the graphs have a fixed batch: pad with black frames, drop their outputs
                chunk = np.concatenate([chunk, np.zeros((self.batch - n, *chunk.shape[1:]), np.uint8)])
            ids, score, stages = self._run(np.ascontiguousarray(chunk))
            ids_parts.append(ids[:n])
            score_parts.append(score[:n])
            for key, ms in stages.items():
                timings[key] = timings.get(key, 0.0) + ms
        t_out = time.perf_counter()
        class_ids, anomaly = outputs_to_camera_size(np.concatenate(ids_parts), np.concatenate(score_parts), cam_h, cam_w)
        timings["resize_out"] = (time.perf_counter() - t_out) * 1e3
        timings["total"] = (time.perf_counter() - t_start) * 1e3
        return InferenceResult(class_ids=class_ids, anomaly=anomaly, timings=timings)
