"""Camera-size images <-> the fixed export size of the graphs: the size contract an export makes with its users.

The graphs have one static input size (dsa_core.export.onnx_export). Every runtime backend and the TensorRT int8
calibrator call these functions, so the resize is written once; it lives in export because the export defines the
size and export must not depend on the runtime (test/test_layering.py):
* camera image uint8 [B, H, W, 3] RGB -> uint8 [B, 3, h, w]: exact 2x2 box halvings while both sides are at least
  twice the export size (OpenCV's fast integer path: no aliasing), then bilinear (half-pixel centres) for the
  remaining factor below 2. Measured on 40 synthetic 720p drive frames with dsa_nano (results/bench_pipeline.md):
  0.44 ms for 1280x720 -> 512x256 where one area-averaging resize takes 3.3 ms, 99.1 % argmax agreement with it,
  mIoU 41.04 vs 40.97, FPR95 80.7 vs 82.8, AuPRC 0.19 vs 0.20 %; bilinear alone agrees 98.2 %;
* outputs back to the camera size: nearest for class ids (source index floor(dst * in / out)), bilinear
  (half-pixel centres, = torch ``align_corners=False``) for the anomaly score.
OpenCV does the work: ~2 ms to bring a 512x1024 result back to 1080p where torch's interpolate takes ~80 ms on
this CPU. Normalisation and padding happen inside the graphs (dsa_core.model.preprocess).
"""
from __future__ import annotations

import cv2
import numpy as np


def check_images(images: np.ndarray) -> None:
    """Raise unless ``images`` is a uint8 numpy array [B, H, W, 3]."""
    if not isinstance(images, np.ndarray):
        raise TypeError(f"expected a numpy uint8 array [B, H, W, 3], got {type(images).__name__}")
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3 or 0 in images.shape:
        raise ValueError(f"expected uint8 RGB images [B, H, W, 3], got dtype {images.dtype} shape {images.shape}")


def images_to_export_size(images: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 [B, H, W, 3] RGB -> contiguous uint8 [B, 3, height, width]."""
    check_images(images)
    b, h, w, _ = images.shape
    if (h, w) == (height, width):
        return np.ascontiguousarray(images.transpose(0, 3, 1, 2))
    out = np.empty((b, 3, height, width), np.uint8)
    for i in range(b):
        image = np.ascontiguousarray(images[i])
        while image.shape[0] >= 2 * height and image.shape[1] >= 2 * width:
            image = cv2.resize(image, (image.shape[1] // 2, image.shape[0] // 2), interpolation=cv2.INTER_AREA)
        if image.shape[:2] != (height, width):
            image = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
        out[i] = image.transpose(2, 0, 1)
    return out


def outputs_to_camera_size(class_ids: np.ndarray, anomaly: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """class ids uint8 [B, h, w] (nearest) and anomaly float32 [B, h, w] (bilinear) -> [B, height, width]."""
    class_ids = np.ascontiguousarray(class_ids, dtype=np.uint8)
    anomaly = np.ascontiguousarray(anomaly, dtype=np.float32)
    if class_ids.shape != anomaly.shape or class_ids.ndim != 3:
        raise ValueError(f"expected class ids and anomaly of one shape [B, h, w], got {class_ids.shape} and {anomaly.shape}")
    if tuple(class_ids.shape[-2:]) == (height, width):
        return class_ids, anomaly
    b = class_ids.shape[0]
    ids_out = np.empty((b, height, width), np.uint8)
    for i in range(b):  # dst=: written in place, no second copy of a camera-size map
        cv2.resize(class_ids[i], (width, height), dst=ids_out[i], interpolation=cv2.INTER_NEAREST)
    return ids_out, scores_to_camera_size(anomaly, height, width)


def scores_to_camera_size(scores: np.ndarray, height: int, width: int) -> np.ndarray:
    """float32 score maps [B, h, w] -> [B, height, width], bilinear (the anomaly score's resize, for any score)."""
    scores = np.ascontiguousarray(scores, dtype=np.float32)
    if scores.ndim != 3:
        raise ValueError(f"expected score maps [B, h, w], got shape {scores.shape}")
    if tuple(scores.shape[-2:]) == (height, width):
        return scores
    out = np.empty((scores.shape[0], height, width), np.float32)
    for i in range(scores.shape[0]):
        cv2.resize(scores[i], (width, height), dst=out[i], interpolation=cv2.INTER_LINEAR)
    return out
