"""Mask2Anomaly mask contrastive loss (``loss_ood``) for the outlier-exposure stage (docs/model_reference.md §3.3).

With L_k = Σ_q softmax(c_q)[k]·σ(m_q) over the K classes (no-object dropped) and s = −max_k L_k, the loss
½[mean_ID s² + mean_OOD max(0, m − s)²] drives the class evidence of pasted outliers to zero. As coded in
Mask2Anomaly: ID = every pixel that is not a pasted outlier (void included), s is computed at mask resolution and
upsampled bilinearly (align_corners=True) to the label size, and the loss is applied to the final and every
auxiliary output. An empty pixel set contributes 0.

``kind="bce"`` is Mask2Anomaly's other coded variant: ½[mean_ID BCE(s, 0) + mean_OOD BCE(s, 1)] with s as logit.
Unlike the margin form, its in-distribution term raises max_k L_k instead of lowering it (the margin form's ID term
moves probability to no-object at our learning rate, results/train_nano.md).

``kind="bce_id_margin_ood"`` is ours, not Mask2Anomaly's: the bce form's ID term with the margin form's OOD term,
½[mean_ID BCE(s, 0) + mean_OOD max(0, m − s)²], which separates the two differences between their kinds (the
direction of the ID term, the strength of the OOD term) in a paired study.

``void_weight`` (ours; 1 = Mask2Anomaly) weighs the void pixels (255: content none of the classes covers, e.g.
parking and gravel strips at the road edge, bins, the ego vehicle) that many times an ordinary pixel in the ID term.
Why: nearly all false obstacle alerts of the 10000-step model lie on void ground at the road edge
(results/train_nano.md), and the ID term is what tells stage 2 that void is not an outlier.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def semantic_evidence(pred_logits: Tensor, pred_masks: Tensor) -> Tensor:
    """L [B, K, h, w] = Σ_q softmax(c_q)[k]·σ(m_q), no-object column dropped (DSA Eq. 2)."""
    probs = pred_logits.float().softmax(-1)[..., :-1]
    return torch.einsum("bqk,bqhw->bkhw", probs, pred_masks.float().sigmoid())


def contrastive_score(pred_logits: Tensor, pred_masks: Tensor, size: tuple[int, int]) -> Tensor:
    """s = −max_k L_k upsampled to ``size``: [B, H, W]."""
    score = -semantic_evidence(pred_logits, pred_masks).max(dim=1).values
    return F.interpolate(score[:, None], size=size, mode="bilinear", align_corners=True)[:, 0]


#: The loss_ood kinds: Mask2Anomaly's margin form (their default) and BCE with s as the logit, and their mix.
CONTRASTIVE_KINDS = ("margin", "bce", "bce_id_margin_ood")


def _masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    return (values * mask).sum() / mask.sum().clamp(min=1)


class MaskContrastiveLoss(nn.Module):
    """``loss_ood`` (final output) and ``loss_ood_0``, ``loss_ood_1``, ... (aux outputs), unweighted."""

    def __init__(self, margin: float = 1.0, kind: str = "margin", void_weight: float = 1.0) -> None:
        super().__init__()
        if kind not in CONTRASTIVE_KINDS:
            raise ValueError(f"contrastive loss kind must be one of {CONTRASTIVE_KINDS}, got {kind!r}")
        if not void_weight > 0:
            raise ValueError(f"void_weight must be > 0, got {void_weight}")
        self.margin, self.kind, self.void_weight = margin, kind, float(void_weight)

    def single(self, pred_logits: Tensor, pred_masks: Tensor, outlier_mask: Tensor,
               valid_mask: Tensor | None = None, void_mask: Tensor | None = None) -> Tensor:
        """Loss of one decoder output against ``outlier_mask`` [B, H, W] (True = pasted outlier pixel); ``void_mask``
        [B, H, W] (True = void pixel) is needed when ``void_weight`` != 1."""
        if outlier_mask.dim() != 3:
            raise ValueError(f"expected outlier mask [B, H, W], got shape {tuple(outlier_mask.shape)}")
        if outlier_mask.dtype != torch.bool:
            raise ValueError(f"outlier mask must be bool, got {outlier_mask.dtype}")
        with torch.autocast(device_type=pred_masks.device.type, enabled=False):
            s = contrastive_score(pred_logits, pred_masks, tuple(outlier_mask.shape[-2:]))
            ood = outlier_mask.to(s.device).float()
            ind = 1.0 - ood
            if valid_mask is not None:
                valid = valid_mask.to(s.device).float()
                ood, ind = ood * valid, ind * valid
            if self.void_weight != 1.0:
                if void_mask is None or void_mask.shape != outlier_mask.shape:
                    raise ValueError(f"void_weight {self.void_weight} needs a void mask shaped like the outlier mask")
                ind = ind * (1.0 + (self.void_weight - 1.0) * void_mask.to(s.device).float())
            # BCE(s, 0) = softplus(s), BCE(s, 1) = softplus(-s)
            id_term = _masked_mean(s.pow(2) if self.kind == "margin" else F.softplus(s), ind)
            ood_values = F.softplus(-s) if self.kind == "bce" else F.relu(self.margin - s).pow(2)
            return 0.5 * (id_term + _masked_mean(ood_values, ood))

    def forward(self, outputs: dict, outlier_mask: Tensor, valid_mask: Tensor | None = None,
                void_mask: Tensor | None = None) -> dict[str, Tensor]:
        losses = {"loss_ood": self.single(outputs["pred_logits"], outputs["pred_masks"], outlier_mask, valid_mask,
                                          void_mask)}
        for i, aux in enumerate(outputs.get("aux_outputs", [])):
            losses[f"loss_ood_{i}"] = self.single(aux["pred_logits"], aux["pred_masks"], outlier_mask, valid_mask,
                                                  void_mask)
        return losses
