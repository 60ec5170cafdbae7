"""The one place that turns camera pixels into model input and model output back into image-sized maps.

Used by DSAModel.predict, by the ONNX export (so the graphs carry it) and by every runtime backend.
Images are RGB, 0..255 (uint8 or float), NCHW; normalisation uses the config's ImageNet mean/std.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def normalize(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """images [B, 3, H, W] in 0..255 -> float normalised; mean/std are in 0..1 units, shape [1, 3, 1, 1]."""
    return (images.float() / 255.0 - mean) / std


def pad_to_multiple(images: torch.Tensor, divisor: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Zero-pad bottom/right so H and W are multiples of ``divisor`` (zero = the mean colour after normalise).

    Returns the padded tensor and the original (H, W) so outputs can be cropped back.
    """
    h, w = int(images.shape[-2]), int(images.shape[-1])
    pad_h = (divisor - h % divisor) % divisor
    pad_w = (divisor - w % divisor) % divisor
    if pad_h or pad_w:
        images = F.pad(images, (0, pad_w, 0, pad_h))
    return images, (h, w)


def masks_to_input_size(pred_masks: torch.Tensor, padded_hw: tuple[int, int], original_hw: tuple[int, int]) -> torch.Tensor:
    """Mask logits at 1/4 of the padded input -> padded size (bilinear, as Mask2Former) -> cropped to the input.

    Without padding there is no crop: in an exported graph the no-op Slice still copied the full-size masks
    (0.9-1.9 % of ONNX Runtime time)."""
    masks = F.interpolate(pred_masks, size=padded_hw, mode="bilinear", align_corners=False)
    if tuple(int(v) for v in original_hw) == tuple(int(v) for v in padded_hw):
        return masks
    return masks[..., : original_hw[0], : original_hw[1]]
