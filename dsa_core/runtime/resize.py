"""The runtime's pre-/post-processing step: camera-size images <-> the fixed export size of the graphs.

The graphs have one static input size (dsa_core.export.onnx_export). Every backend (and the TensorRT int8
calibrator) calls these two functions, so the resize is written once:
* camera image uint8 [B, H, W, 3] RGB -> uint8 [B, 3, h, w]: bilinear, antialiased when shrinking, rounded;
* outputs back to the camera size: nearest for class ids, bilinear for the anomaly score.
Normalisation and padding happen inside the graphs (dsa_core.model.preprocess).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def check_images(images: np.ndarray) -> None:
    """Raise ValueError unless ``images`` is a uint8 array [B, H, W, 3]."""
    if not isinstance(images, np.ndarray):
        raise TypeError(f"expected a numpy uint8 array [B, H, W, 3], got {type(images).__name__}")
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3 or 0 in images.shape:
        raise ValueError(f"expected uint8 RGB images [B, H, W, 3], got dtype {images.dtype} shape {images.shape}")


def images_to_export_size(images: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 [B, H, W, 3] RGB -> contiguous uint8 [B, 3, height, width]."""
    check_images(images)
    arr = np.ascontiguousarray(images)
    x = torch.from_numpy(arr if arr.flags.writeable else arr.copy()).permute(0, 3, 1, 2)
    if tuple(x.shape[-2:]) != (height, width):
        shrink = x.shape[-2] > height or x.shape[-1] > width
        x = F.interpolate(x.float(), size=(height, width), mode="bilinear", align_corners=False, antialias=shrink)
        x = x.round_().clamp_(0, 255).to(torch.uint8)
    return np.ascontiguousarray(x.numpy())


def outputs_to_camera_size(class_ids: np.ndarray, anomaly: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """class ids uint8 [B, h, w] (nearest) and anomaly float32 [B, h, w] (bilinear) -> [B, height, width]."""
    if tuple(class_ids.shape[-2:]) == (height, width):
        return np.ascontiguousarray(class_ids, dtype=np.uint8), np.ascontiguousarray(anomaly, dtype=np.float32)
    ids = torch.from_numpy(np.array(class_ids, dtype=np.uint8)).unsqueeze(1)
    ids = F.interpolate(ids, size=(height, width), mode="nearest").squeeze(1)
    score = torch.from_numpy(np.array(anomaly, dtype=np.float32)).unsqueeze(1)
    score = F.interpolate(score, size=(height, width), mode="bilinear", align_corners=False).squeeze(1)
    return ids.numpy(), score.numpy()
