"""A deterministic colour-rule engine and synthetic scenes, for testing the node's own logic.

An untrained model does not segment roads, so tests of the obstacle / alert logic need an engine whose output is
known from the picture. ``ColourRuleBackend`` is such an engine (a real algorithm, documented below), with the
same ``infer`` contract as dsa_core.runtime backends.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from dsa_core.labels import CITYSCAPES_CLASSES

ROAD, BUILDING, SKY = (CITYSCAPES_CLASSES.index(name) for name in ("road", "building", "sky"))  # train ids
ROAD_RGB = (128, 128, 128)
SKY_RGB = (70, 130, 230)
OBSTACLE_RGB = (250, 20, 20)


@dataclass
class ColourRuleResult:
    class_ids: np.ndarray
    anomaly: np.ndarray
    timings: dict[str, float] = field(default_factory=dict)


class ColourRuleBackend:
    """Per-pixel rule on RGB (ints):

    * class: grey (max - min channel <= 24, 60 <= mean <= 200) -> road (0); blue dominant (b > r + 40 and
      b > g) -> sky (10); anything else -> building (2);
    * anomaly score: clip((r - max(g, b)) / 255, 0, 1), i.e. ~0.9 for saturated red, 0 for grey / blue.
    """

    name = "colour_rule"

    def __init__(self) -> None:
        self.calls = 0
        self.batch_sizes: list[int] = []

    def infer(self, images: np.ndarray) -> ColourRuleResult:
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"expected uint8 [B, H, W, 3], got {images.dtype} {images.shape}")
        t0 = time.perf_counter()
        x = images.astype(np.int16)
        r, g, b = x[..., 0], x[..., 1], x[..., 2]
        spread = x.max(-1) - x.min(-1)
        mean = x.mean(-1)
        ids = np.full(images.shape[:3], BUILDING, np.uint8)
        ids[(b > r + 40) & (b > g)] = SKY
        ids[(spread <= 24) & (mean >= 60) & (mean <= 200)] = ROAD
        anomaly = np.clip((r - np.maximum(g, b)) / 255.0, 0.0, 1.0).astype(np.float32)
        self.calls += 1
        self.batch_sizes.append(images.shape[0])
        return ColourRuleResult(ids, anomaly, {"total": (time.perf_counter() - t0) * 1e3})


def road_scene(height: int, width: int, obstacle: tuple[int, int, int, int] | None = None,
               where: str = "road") -> np.ndarray:
    """Sky above the middle row, road below; optionally a red box (x, y, w, h) - its position decides 'where'."""
    if where not in ("road", "sky"):
        raise ValueError(f"where must be 'road' or 'sky', got {where!r}")
    img = np.empty((height, width, 3), np.uint8)
    img[: height // 2] = SKY_RGB
    img[height // 2:] = ROAD_RGB
    if obstacle is not None:
        x, y, w, h = obstacle
        img[y:y + h, x:x + w] = OBSTACLE_RGB
    return img


def moving_obstacle_frames(height: int, width: int, count: int, seed: int) -> list[np.ndarray]:
    """Road scenes with a red box moving left to right and sensor noise, so consecutive frames differ (a stream to
    drive the node with: `dsa bench node`)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        x = int((0.2 + 0.6 * i / max(1, count - 1)) * width)
        img = road_scene(height, width, (x, int(height * 0.7), width // 12, height // 10)).astype(np.int16)
        img += rng.integers(-8, 9, img.shape, dtype=np.int16)
        out.append(np.clip(img, 0, 255).astype(np.uint8))
    return out
