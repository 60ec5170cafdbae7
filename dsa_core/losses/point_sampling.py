"""Point sampling for mask losses and matching (Mask2Former / PointRend).

Computing mask losses on a few thousand sampled points instead of the full mask is what keeps Mask2Former's
memory flat in the mask resolution; importance sampling concentrates the points on uncertain (|logit| small)
regions, where the loss carries most signal.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def point_sample(inputs: Tensor, point_coords: Tensor, align_corners: bool = False) -> Tensor:
    """Bilinearly sample ``inputs`` [N, C, H, W] at normalised points ``point_coords`` [N, P, 2] in [0, 1] (x, y).

    Returns [N, C, P]. A 4-d ``point_coords`` [N, Hg, Wg, 2] returns [N, C, Hg, Wg].
    """
    if inputs.dim() != 4:
        raise ValueError(f"point_sample expects inputs [N, C, H, W], got shape {tuple(inputs.shape)}")
    if point_coords.dim() not in (3, 4) or point_coords.shape[-1] != 2:
        raise ValueError(f"point_sample expects coords [N, P, 2] or [N, Hg, Wg, 2], got {tuple(point_coords.shape)}")
    if point_coords.shape[0] != inputs.shape[0]:
        raise ValueError(f"batch mismatch: inputs {inputs.shape[0]} vs coords {point_coords.shape[0]}")
    squeeze = point_coords.dim() == 3
    grid = 2.0 * point_coords.to(inputs.dtype) - 1.0
    if squeeze:
        grid = grid.unsqueeze(2)
    out = F.grid_sample(inputs, grid, mode="bilinear", padding_mode="zeros", align_corners=align_corners)
    return out.squeeze(3) if squeeze else out


def calculate_uncertainty(logits: Tensor) -> Tensor:
    """Uncertainty of a binary mask logit: -|logit| (highest at the decision boundary)."""
    return -torch.abs(logits)


def get_uncertain_point_coords_with_randomness(
    coarse_logits: Tensor,
    num_points: int = 12544,
    oversample_ratio: float = 3.0,
    importance_sample_ratio: float = 0.75,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Mask2Former importance sampling: draw ``oversample_ratio * num_points`` uniform points per mask, keep the
    ``importance_sample_ratio * num_points`` most uncertain ones and fill up with fresh uniform points.

    ``coarse_logits`` is [N, 1, H, W]; returns point coordinates [N, num_points, 2] in [0, 1].
    """
    if coarse_logits.dim() != 4 or coarse_logits.shape[1] != 1:
        raise ValueError(f"expected class-agnostic mask logits [N, 1, H, W], got {tuple(coarse_logits.shape)}")
    if oversample_ratio < 1:
        raise ValueError(f"oversample_ratio must be >= 1, got {oversample_ratio}")
    if not 0.0 <= importance_sample_ratio <= 1.0:
        raise ValueError(f"importance_sample_ratio must be in [0, 1], got {importance_sample_ratio}")
    if num_points < 1:
        raise ValueError(f"num_points must be >= 1, got {num_points}")
    num_masks = coarse_logits.shape[0]
    device = coarse_logits.device
    num_sampled = int(num_points * oversample_ratio)
    point_coords = torch.rand(num_masks, num_sampled, 2, device=device, generator=generator)
    point_logits = point_sample(coarse_logits, point_coords, align_corners=False)
    uncertainties = calculate_uncertainty(point_logits)[:, 0, :]
    num_uncertain = int(importance_sample_ratio * num_points)
    num_random = num_points - num_uncertain
    idx = torch.topk(uncertainties, k=num_uncertain, dim=1).indices
    chosen = torch.gather(point_coords, 1, idx.unsqueeze(-1).expand(-1, -1, 2))
    if num_random > 0:
        fresh = torch.rand(num_masks, num_random, 2, device=device, generator=generator)
        chosen = torch.cat([chosen, fresh], dim=1)
    return chosen
