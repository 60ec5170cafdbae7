"""Binary mask losses on sampled points: sigmoid BCE and dice, per pair (for matching) and per match (for loss).

Dice uses Mask2Former's +1 smoothing: 1 - (2·Σ p·t + 1) / (Σ p + Σ t + 1), with p = sigmoid(logit).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def pairwise_sigmoid_bce(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean BCE over points for every (prediction, target) pair: [N, P] x [M, P] -> [N, M]."""
    num_points = logits.shape[1]
    pos = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits), reduction="none")
    neg = F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits), reduction="none")
    cost = torch.einsum("np,mp->nm", pos, targets) + torch.einsum("np,mp->nm", neg, 1.0 - targets)
    return cost / num_points


def pairwise_dice(logits: Tensor, targets: Tensor) -> Tensor:
    """Dice loss for every (prediction, target) pair: [N, P] x [M, P] -> [N, M]."""
    probs = logits.sigmoid()
    numerator = 2.0 * torch.einsum("np,mp->nm", probs, targets)
    denominator = probs.sum(-1)[:, None] + targets.sum(-1)[None, :]
    return 1.0 - (numerator + 1.0) / (denominator + 1.0)


def sigmoid_bce_loss(logits: Tensor, targets: Tensor, num_masks: float | Tensor) -> Tensor:
    """Sum over matched masks of the per-mask mean BCE, divided by ``num_masks``: [M, P] x [M, P] -> scalar."""
    loss = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    return loss.mean(1).sum() / num_masks


def dice_loss(logits: Tensor, targets: Tensor, num_masks: float | Tensor) -> Tensor:
    """Sum over matched masks of the dice loss, divided by ``num_masks``: [M, P] x [M, P] -> scalar."""
    probs = logits.sigmoid()
    numerator = 2.0 * (probs * targets).sum(-1)
    denominator = probs.sum(-1) + targets.sum(-1)
    return (1.0 - (numerator + 1.0) / (denominator + 1.0)).sum() / num_masks
