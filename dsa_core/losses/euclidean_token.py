"""Euclidean counterparts of L_ubhl on the two streams' final tokens: the token losses of the paper's Table 8.

Same tokens, token sets and weight λ as L_ubhl (docs/design.md §3.7, "stream" mode): the OOD stream's void tokens pulled
toward the origin, the ID stream's labelled tokens pushed away, distance measured in Euclidean space instead of the
Poincaré ball:

* ``contrastive`` (margin m = 1.0): mean_void ‖x_ood‖² + mean_ID max(0, m − ‖x_id‖)², the classic margin-based
  contrastive loss on feature norms.
* ``bce``: a parameter-free binary classifier on the feature norm, logit = ‖x‖ − m, target 1 (in-distribution) for
  the ID stream's labelled tokens and 0 for the OOD stream's void tokens; BCE-with-logits averaged per set.

The paper does not say how its BCE / contrastive baselines are defined beyond "Euclidean, margin 1.0, weight 0.1";
these are the simplest losses with the same pull/push structure, so the comparison isolates the geometry.
Selected by ``TrainConfig.token_loss``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dsa_core.losses.hyperbolic import token_label_sets

TOKEN_LOSSES: tuple[str, ...] = ("ubhl", "bce", "contrastive")


def _masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    return (values * mask).sum() / mask.sum().clamp(min=1)


class EuclideanTokenLoss(nn.Module):
    """Euclidean counterpart of L_ubhl on the two streams' final tokens (see module docstring)."""

    def __init__(self, kind: str, margin: float = 1.0, num_classes: int = 19) -> None:
        super().__init__()
        if kind not in ("bce", "contrastive"):
            raise ValueError(f"kind must be 'bce' or 'contrastive', got {kind!r}")
        if not margin > 0:
            raise ValueError(f"margin must be > 0, got {margin}")
        self.kind = kind
        self.margin = float(margin)
        self.num_classes = num_classes

    def forward(self, stream_tokens: dict[str, Tensor], token_shapes: list[tuple[int, int]], labels: Tensor,
                valid_mask: Tensor | None = None) -> Tensor:
        if "id" not in stream_tokens or set(stream_tokens) - {"id", "ood"}:
            raise KeyError(f"stream_tokens must have 'id' and optionally 'ood'; got keys {sorted(stream_tokens)}")
        device = stream_tokens["id"].device
        ood_set, id_set = token_label_sets(labels.to(device), token_shapes, self.num_classes,
                                           None if valid_mask is None else valid_mask.to(device))
        with torch.autocast(device_type=device.type, enabled=False):
            norms = {name: t.float().norm(dim=-1) for name, t in stream_tokens.items()}
            id_norm = norms["id"]
            if self.kind == "contrastive":
                loss = _masked_mean(F.relu(self.margin - id_norm) ** 2, id_set.float())
                if "ood" in norms:
                    loss = loss + _masked_mean(norms["ood"] ** 2, ood_set.float())
                return loss
            loss = _masked_mean(F.binary_cross_entropy_with_logits(
                id_norm - self.margin, torch.ones_like(id_norm), reduction="none"), id_set.float())
            if "ood" in norms:
                ood_norm = norms["ood"]
                loss = loss + _masked_mean(F.binary_cross_entropy_with_logits(
                    ood_norm - self.margin, torch.zeros_like(ood_norm), reduction="none"), ood_set.float())
            return loss
