"""Hungarian matching between predicted queries and ground-truth masks (Mask2Former ``HungarianMatcher``).

Cost = cost_class·(−p_q[target class]) + cost_mask·BCE + cost_dice·dice, with both mask costs evaluated on the
same uniformly random points for all predictions and targets of an image, in fp32; the assignment is solved
exactly by scipy's ``linear_sum_assignment``.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn

from dsa_core.losses.mask_losses import pairwise_dice, pairwise_sigmoid_bce
from dsa_core.losses.point_sampling import point_sample


class HungarianMatcher(nn.Module):
    """One-to-one assignment of queries to targets per image (no gradients)."""

    def __init__(
        self, cost_class: float = 2.0, cost_mask: float = 5.0, cost_dice: float = 5.0, num_points: int = 12544
    ) -> None:
        super().__init__()
        if cost_class == 0 and cost_mask == 0 and cost_dice == 0:
            raise ValueError("all matching costs are 0; at least one must be non-zero")
        if num_points < 1:
            raise ValueError(f"num_points must be >= 1, got {num_points}")
        self.cost_class = cost_class
        self.cost_mask = cost_mask
        self.cost_dice = cost_dice
        self.num_points = num_points

    @torch.no_grad()
    def cost_matrix(self, pred_logits: Tensor, pred_masks: Tensor, target: dict[str, Tensor],
                    point_coords: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
        """Cost [Q, M] of one image. ``pred_logits`` [Q, K+1], ``pred_masks`` [Q, h, w] logits,
        ``target`` with ``labels`` [M] and ``masks`` [M, H, W]. ``point_coords`` [P, 2] overrides random points."""
        tgt_ids = target["labels"]
        tgt_masks = target["masks"]
        if tgt_masks.shape[0] != tgt_ids.shape[0]:
            raise ValueError(f"target has {tgt_ids.shape[0]} labels but {tgt_masks.shape[0]} masks")
        with torch.autocast(device_type=pred_masks.device.type, enabled=False):
            out_prob = pred_logits.float().softmax(-1)
            cost_class = -out_prob[:, tgt_ids]
            if point_coords is None:
                point_coords = torch.rand(self.num_points, 2, device=pred_masks.device, generator=generator)
            coords = point_coords.float().unsqueeze(0)
            out_pts = point_sample(pred_masks.float()[:, None], coords.expand(pred_masks.shape[0], -1, -1))[:, 0]
            tgt_pts = point_sample(tgt_masks.float()[:, None], coords.expand(tgt_masks.shape[0], -1, -1))[:, 0]
            cost_mask = pairwise_sigmoid_bce(out_pts, tgt_pts)
            cost_dice = pairwise_dice(out_pts, tgt_pts)
        return self.cost_class * cost_class + self.cost_mask * cost_mask + self.cost_dice * cost_dice

    @torch.no_grad()
    def forward(self, outputs: dict[str, Tensor], targets: list[dict[str, Tensor]],
                generator: torch.Generator | None = None) -> list[tuple[Tensor, Tensor]]:
        """Per image, (query indices, target indices) int64 tensors of equal length min(Q, M), sorted by query."""
        pred_logits = outputs["pred_logits"]
        pred_masks = outputs["pred_masks"]
        if pred_logits.dim() != 3 or pred_masks.dim() != 4:
            raise ValueError(
                f"expected pred_logits [B,Q,K+1] and pred_masks [B,Q,h,w], got {tuple(pred_logits.shape)} "
                f"and {tuple(pred_masks.shape)}"
            )
        if len(targets) != pred_logits.shape[0]:
            raise ValueError(f"{len(targets)} targets for a batch of {pred_logits.shape[0]} predictions")
        indices = []
        for b, target in enumerate(targets):
            cost = self.cost_matrix(pred_logits[b], pred_masks[b], target, generator=generator).cpu()
            if not bool(torch.isfinite(cost).all()):
                raise ValueError(f"matching cost of image {b} contains NaN/inf (non-finite predictions?)")
            rows, cols = linear_sum_assignment(cost.numpy())
            indices.append((torch.as_tensor(np.asarray(rows), dtype=torch.int64),
                            torch.as_tensor(np.asarray(cols), dtype=torch.int64)))
        return indices
