"""Mask2Former ``SetCriterion``: classification + mask (BCE, dice) losses on Hungarian-matched queries.

Unmatched queries are trained towards the no-object class, whose CE weight is ``eos_coef`` (0.1). Mask losses
use importance-sampled points (12544, oversample 3, importance 0.75) and are normalised by the number of target
masks in the global batch (all-reduced over ranks, min 1), so every GPU sees the same scale. Deep supervision
repeats matching and losses for every auxiliary decoder output; their keys get ``_0``, ``_1``, ... suffixes.
"""
from __future__ import annotations

import re

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from dsa_core.losses.mask_losses import dice_loss, sigmoid_bce_loss
from dsa_core.losses.matcher import HungarianMatcher
from dsa_core.losses.point_sampling import get_uncertain_point_coords_with_randomness, point_sample

DEFAULT_WEIGHTS: dict[str, float] = {"loss_ce": 2.0, "loss_mask": 5.0, "loss_dice": 5.0}
_AUX_SUFFIX = re.compile(r"_\d+$")


def base_loss_name(key: str) -> str:
    """``loss_dice_3`` -> ``loss_dice`` (strip the deep-supervision suffix)."""
    return _AUX_SUFFIX.sub("", key)


def weighted_total(losses: dict[str, Tensor], weight_dict: dict[str, float]) -> Tensor:
    """Σ weight[base(key)] · loss[key]. Every loss must have a weight, so a forgotten weight fails loudly."""
    if not losses:
        raise ValueError("no losses to sum")
    missing = sorted({base_loss_name(k) for k in losses} - set(weight_dict))
    if missing:
        raise KeyError(f"no weight for losses {missing}; weight_dict has {sorted(weight_dict)}")
    return sum(weight_dict[base_loss_name(k)] * v for k, v in losses.items())


def global_num_masks(local_count: int, device: torch.device) -> Tensor:
    """Average number of target masks per rank (all-reduced when distributed), at least 1."""
    num = torch.as_tensor([float(local_count)], dtype=torch.float32, device=device)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(num)
        num = num / dist.get_world_size()
    return num.clamp(min=1.0)[0]


class SetCriterion(nn.Module):
    """Mask2Former losses for one decoder output plus its auxiliary outputs (returns unweighted losses)."""

    def __init__(
        self,
        num_classes: int,
        matcher: HungarianMatcher,
        weight_dict: dict[str, float] | None = None,
        eos_coef: float = 0.1,
        num_points: int = 12544,
        oversample_ratio: float = 3.0,
        importance_sample_ratio: float = 0.75,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.matcher = matcher
        self.weight_dict = dict(DEFAULT_WEIGHTS if weight_dict is None else weight_dict)
        self.eos_coef = eos_coef
        self.num_points = num_points
        self.oversample_ratio = oversample_ratio
        self.importance_sample_ratio = importance_sample_ratio
        empty_weight = torch.ones(num_classes + 1)
        empty_weight[-1] = eos_coef
        self.register_buffer("empty_weight", empty_weight, persistent=False)

    def loss_labels(self, pred_logits: Tensor, targets: list[dict[str, Tensor]],
                    indices: list[tuple[Tensor, Tensor]]) -> Tensor:
        """Weighted CE over all queries; unmatched queries target the no-object class (index K)."""
        if pred_logits.shape[-1] != self.num_classes + 1:
            raise ValueError(f"pred_logits has {pred_logits.shape[-1]} classes, expected K+1 = {self.num_classes + 1}")
        logits = pred_logits.float()
        target_classes = torch.full(logits.shape[:2], self.num_classes, dtype=torch.int64, device=logits.device)
        for b, (src, tgt) in enumerate(indices):
            target_classes[b, src.to(logits.device)] = targets[b]["labels"].to(logits.device)[tgt.to(logits.device)]
        weight = self.empty_weight.to(device=logits.device, dtype=logits.dtype)
        return F.cross_entropy(logits.transpose(1, 2), target_classes, weight)

    def loss_masks(self, pred_masks: Tensor, targets: list[dict[str, Tensor]],
                   indices: list[tuple[Tensor, Tensor]], num_masks: Tensor,
                   generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """(BCE, dice) of matched masks on importance-sampled points, each divided by ``num_masks``."""
        src_masks = torch.cat([pred_masks[b, s.to(pred_masks.device)] for b, (s, _) in enumerate(indices)])
        src_masks = src_masks.float()[:, None]
        if src_masks.shape[0] == 0:
            zero = pred_masks.sum() * 0.0  # keeps the graph connected so DDP sees every parameter used
            return zero, zero
        with torch.no_grad():
            coords = get_uncertain_point_coords_with_randomness(
                src_masks, self.num_points, self.oversample_ratio, self.importance_sample_ratio, generator=generator
            )
            # Full-resolution targets are sampled image by image so only one image's masks is ever in fp32.
            point_labels, start = [], 0
            for b, (_, tgt) in enumerate(indices):
                masks = targets[b]["masks"][tgt.to(targets[b]["masks"].device)]
                masks = masks.to(device=pred_masks.device, dtype=torch.float32)[:, None]
                point_labels.append(point_sample(masks, coords[start:start + len(tgt)])[:, 0])
                start += len(tgt)
            point_labels = torch.cat(point_labels)
        point_logits = point_sample(src_masks, coords)[:, 0]
        return sigmoid_bce_loss(point_logits, point_labels, num_masks), dice_loss(point_logits, point_labels, num_masks)

    def _single(self, outputs: dict[str, Tensor], targets: list[dict[str, Tensor]], num_masks: Tensor,
                suffix: str, generator: torch.Generator | None) -> dict[str, Tensor]:
        indices = self.matcher(outputs, targets, generator=generator)
        with torch.autocast(device_type=outputs["pred_masks"].device.type, enabled=False):
            loss_ce = self.loss_labels(outputs["pred_logits"], targets, indices)
            loss_mask, loss_dice = self.loss_masks(outputs["pred_masks"], targets, indices, num_masks, generator)
        return {f"loss_ce{suffix}": loss_ce, f"loss_mask{suffix}": loss_mask, f"loss_dice{suffix}": loss_dice}

    def forward(self, outputs: dict, targets: list[dict[str, Tensor]],
                generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """Losses for ``outputs`` (``pred_logits``, ``pred_masks``, optional ``aux_outputs``) against ``targets``
        (from :func:`semantic_to_targets`). ``generator`` seeds the point sampling (tests, reproducibility)."""
        for key in ("pred_logits", "pred_masks"):
            if key not in outputs:
                raise KeyError(f"model outputs lack {key!r}; got keys {sorted(outputs)}")
        num_masks = global_num_masks(sum(len(t["labels"]) for t in targets), outputs["pred_logits"].device)
        losses = self._single(outputs, targets, num_masks, "", generator)
        for i, aux in enumerate(outputs.get("aux_outputs", [])):
            losses.update(self._single(aux, targets, num_masks, f"_{i}", generator))
        return losses

    def weighted_total(self, losses: dict[str, Tensor], extra_weights: dict[str, float] | None = None) -> Tensor:
        """Weighted sum with this criterion's weights (+ ``extra_weights`` such as ``{"loss_ubhl": 0.1}``)."""
        weights = dict(self.weight_dict)
        weights.update(extra_weights or {})
        return weighted_total(losses, weights)
