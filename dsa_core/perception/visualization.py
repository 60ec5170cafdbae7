"""Pictures for people: Cityscapes colour segmentation, the anomaly overlay with obstacle boxes (numpy only).

The RViz MarkerArray is built in node.py (it needs the message classes); this module stays ROS-free so the
offline bag evaluation can draw the same overlays.
"""
from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from dsa_core.labels import CITYSCAPES_PALETTE
from dsa_core.perception.obstacles import Severity, TrackedObstacle

#: class id -> RGB; ids without a colour (void 255, ids >= 19) are black.
PALETTE_LUT = np.zeros((256, 3), np.uint8)
PALETTE_LUT[: len(CITYSCAPES_PALETTE)] = np.asarray(CITYSCAPES_PALETTE, np.uint8)
_CHANNEL_LUTS = [np.ascontiguousarray(PALETTE_LUT[:, c]) for c in range(3)]

ANOMALY_RGB = (255, 0, 0)
SEVERITY_RGB = {Severity.NONE: (160, 160, 160), Severity.INFO: (0, 200, 255), Severity.WARNING: (255, 200, 0),
                Severity.CRITICAL: (255, 0, 0)}


def colorize(class_ids: np.ndarray) -> np.ndarray:
    """uint8 HxW train ids -> HxWx3 RGB (Cityscapes palette).

    One single-channel cv2.LUT per colour channel, merged: 1.0 ms at 720p, where numpy's ``PALETTE_LUT[ids]`` takes
    9 ms and cv2.LUT with a 3-channel table on the ids repeated into three channels 1.8-3.6 ms.
    """
    if class_ids.dtype != np.uint8 or class_ids.ndim != 2:
        raise ValueError(f"class_ids must be uint8 HxW, got {class_ids.dtype} {class_ids.shape}")
    class_ids = np.ascontiguousarray(class_ids)
    return cv2.merge([cv2.LUT(class_ids, lut) for lut in _CHANNEL_LUTS])


@lru_cache(maxsize=4)
def _solid(height: int, width: int, rgb: tuple[int, int, int]) -> np.ndarray:
    """A read-only image of one colour (cv2.copyTo's source for painting masked pixels: 0.1 ms at 720p where a
    boolean-index assignment takes 12 ms on a dense mask)."""
    image = np.empty((height, width, 3), np.uint8)
    image[:] = rgb
    image.flags.writeable = False
    return image


def overlay(image: np.ndarray, color: np.ndarray, mask: np.ndarray, obstacles: list[TrackedObstacle],
            alpha: float = 0.4) -> np.ndarray:
    """Camera image blended with the segmentation colours, anomaly pixels in red, obstacle boxes with track ids.

    Unconfirmed candidates get a thin grey box, confirmed ones a thick box in their severity colour.
    """
    if image.shape != color.shape or image.shape[:2] != mask.shape:
        raise ValueError(f"image {image.shape}, colour {color.shape} and mask {mask.shape} sizes differ")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    out = cv2.addWeighted(np.ascontiguousarray(image), 1.0 - alpha, np.ascontiguousarray(color), alpha, 0.0)
    cv2.copyTo(_solid(mask.shape[0], mask.shape[1], ANOMALY_RGB), mask, out)  # in place: out has the size and type
    for obs in obstacles:
        x, y, w, h = obs.detection.bbox
        rgb = SEVERITY_RGB[obs.severity] if obs.confirmed else SEVERITY_RGB[Severity.NONE]
        cv2.rectangle(out, (x, y), (x + w - 1, y + h - 1), rgb, 2 if obs.confirmed else 1)
        cv2.putText(out, str(obs.track_id), (x, max(10, y - 2)), cv2.FONT_HERSHEY_SIMPLEX, 0.35, rgb, 1, cv2.LINE_AA)
    return out
