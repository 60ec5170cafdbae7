"""What each training stage optimises and which parameters it may touch.

* pretrain: per-pixel CE of a trainable ViT + linear patch head (``dsa_core.train.pretrain``).
* stage1 (Eq. 10): Mask2Former set losses (class 2, mask 5, dice 5, no-object 0.1, importance-sampled points,
  deep supervision) + lambda_ubhl * L_ubhl on the two streams' final tokens (void ground counted in-distribution
  with ``ubhl_void_ground="id"``). Backbone frozen (except for the
  Fine-Tuned baseline, ``cfg.backbone.finetune``, whose ViT trains here too).
* stage2 (outlier exposure): Mask2Former losses + mask contrastive loss (margin 1.0, final + aux outputs) with
  pasted COCO objects (label 254 -> no class target, outlier for the contrastive loss); no L_ubhl; only the decoder
  trains, backbone and adapter are frozen *and kept in eval mode* (their BatchNorm statistics must not drift).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from dsa_core.labels import VOID, VOID_GROUND
from dsa_core.losses import (
    EuclideanTokenLoss,
    HungarianMatcher,
    MaskContrastiveLoss,
    SetCriterion,
    UncertaintyHyperbolicLoss,
    semantic_to_targets,
    weighted_total,
)
from dsa_core.train.config import TrainConfig
from dsa_core.train.pretrain import pretrain_loss


def configure_trainable(model: nn.Module, stage: str) -> None:
    """Set requires_grad per stage. The DSA backbone is frozen in every DSA stage (and re-checked here), except in
    stage 1 of the Fine-Tuned baseline."""
    if stage == "pretrain":
        for p in model.parameters():
            p.requires_grad_(True)
        return
    for p in model.backbone.parameters():
        p.requires_grad_(False)
    if stage == "stage1":
        modules = (model.adapter, model.decoder) + ((model.backbone,) if model.cfg.backbone.finetune else ())
        for module in modules:
            for p in module.parameters():
                p.requires_grad_(True)
    elif stage == "stage2":
        for p in model.adapter.parameters():
            p.requires_grad_(False)
        for p in model.decoder.parameters():
            p.requires_grad_(True)
    else:
        raise ValueError(f"unknown stage {stage!r}")


def set_train_mode(model: nn.Module, stage: str) -> None:
    """model.train(), then frozen parts back to eval (the ViT does that itself; stage 2 also freezes the adapter)."""
    model.train()
    if stage == "stage2":
        model.adapter.eval()


class StageObjective:
    """Computes the unweighted loss dict of one stage for a batch and the weights that sum it (``total``)."""

    def __init__(self, stage: str, tcfg: TrainConfig, num_classes: int) -> None:
        self.stage = stage
        self.num_classes = num_classes
        self.weights: dict[str, float] = {"loss_ce": tcfg.class_weight if stage != "pretrain" else 1.0}
        self.criterion: SetCriterion | None = None
        self.ubhl: UncertaintyHyperbolicLoss | EuclideanTokenLoss | None = None
        self.contrastive: MaskContrastiveLoss | None = None
        if stage == "pretrain":
            return
        matcher = HungarianMatcher(tcfg.class_weight, tcfg.mask_weight, tcfg.dice_weight, num_points=tcfg.num_points)
        self.criterion = SetCriterion(
            num_classes, matcher,
            weight_dict={"loss_ce": tcfg.class_weight, "loss_mask": tcfg.mask_weight, "loss_dice": tcfg.dice_weight},
            eos_coef=tcfg.no_object_weight, num_points=tcfg.num_points, oversample_ratio=tcfg.oversample_ratio,
            importance_sample_ratio=tcfg.importance_sample_ratio,
        )
        self.weights = dict(self.criterion.weight_dict)
        if stage == "stage1" and tcfg.lambda_ubhl > 0:
            # the token loss keeps the log column 'loss_ubhl' whichever kind it is (Table 8 swaps only the geometry)
            if tcfg.token_loss == "ubhl":
                self.ubhl = UncertaintyHyperbolicLoss(c=tcfg.curvature, weight=tcfg.lambda_ubhl, mode=tcfg.ubhl_mode,
                                                      num_classes=num_classes, scale=tcfg.ubhl_scale)
            else:
                self.ubhl = EuclideanTokenLoss(tcfg.token_loss, margin=1.0, num_classes=num_classes)
            self.weights["loss_ubhl"] = tcfg.lambda_ubhl
            self.weights.update({f"stat_{k}": 0.0 for k in UncertaintyHyperbolicLoss.STAT_NAMES})
        if stage == "stage2":
            self.contrastive = MaskContrastiveLoss(margin=tcfg.contrastive_margin, kind=tcfg.contrastive_loss,
                                                   void_weight=tcfg.contrastive_void_weight)
            self.weights["loss_ood"] = tcfg.contrastive_weight

    def losses(self, model: nn.Module, batch: dict[str, Any], device: torch.device,
               generator: torch.Generator | None = None) -> dict[str, Tensor]:
        images = batch["image"].to(device, non_blocking=True).float()
        labels = batch["label"].to(device, non_blocking=True)
        # void ground (marked only when stage 1 asks for it) is in-distribution for L_ubhl and plain void elsewhere
        token_labels, labels = labels, labels.masked_fill(labels == VOID_GROUND, VOID)
        outputs = model(images)
        if self.stage == "pretrain":
            return pretrain_loss(outputs, labels, num_classes=self.num_classes)
        targets = semantic_to_targets(labels, self.num_classes)
        losses = self.criterion(outputs, targets, generator=generator)
        # crop padding (labelled void) is neither OOD for L_ubhl nor in-distribution for the contrastive loss
        valid = batch.get("valid")
        valid = None if valid is None else valid.to(device, non_blocking=True)
        if self.ubhl is not None:
            losses["loss_ubhl"] = self.ubhl(outputs["stream_tokens"], outputs["token_shapes"], token_labels,
                                            valid_mask=valid)
            for name, value in getattr(self.ubhl, "last_stats", {}).items():  # logged, weight 0
                losses[f"stat_{name}"] = value
        if self.contrastive is not None:
            losses.update(self.contrastive(outputs, batch["outlier"].to(device, non_blocking=True),
                                           valid_mask=valid, void_mask=labels == VOID))
        return losses

    def total(self, losses: dict[str, Tensor]) -> Tensor:
        return weighted_total(losses, self.weights)
