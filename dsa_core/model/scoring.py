"""Per-pixel semantic and anomaly scores from Mask2Former's N masks and N class scores (paper Eq. 2).

semantic[k] = sum_q softmax(C_q)[k] * sigmoid(M_q)   (no-object column dropped; Mask2Former semantic inference)
msp anomaly = 1 - max_k semantic[k]                   (Mask2Anomaly / DSA Eq. 2)
rba anomaly = -sum_k tanh(semantic[k])                (Rejected-by-All, Nayal et al. 2023)
Both anomaly scores rank pixels: higher = more anomalous; neither is bounded to [0, 1].

RbA uses exactly these per-pixel class scores (softmax without the no-object column, times sigmoid masks, summed
over queries), as the authors' public implementation does: a pixel that every query mask rejects has
semantic ~ 0 and scores ~ 0, one claimed for a class scores ~ -tanh(1). The sign is right by construction;
RbA ranks badly when a model spreads mask mass over anomalies with diffuse classes (sum_k tanh grows when the same
mass is spread), which is a property of the model, not of the formula (test/test_baselines.py).
"""
from __future__ import annotations

import torch

ANOMALY_SCORES = ("msp", "rba")


def semantic_scores(pred_logits: torch.Tensor, pred_masks: torch.Tensor) -> torch.Tensor:
    """pred_logits [B, Q, K+1], pred_masks [B, Q, H, W] (logits) -> [B, K, H, W]."""
    class_probs = pred_logits.softmax(-1)[..., :-1]
    return torch.einsum("bqk,bqhw->bkhw", class_probs, pred_masks.sigmoid())


def anomaly_from_semantic(semantic: torch.Tensor, kind: str = "msp") -> torch.Tensor:
    """semantic [B, K, H, W] -> anomaly score [B, H, W]."""
    if kind == "msp":
        return 1.0 - semantic.max(dim=1).values
    if kind == "rba":
        return -torch.tanh(semantic).sum(dim=1)
    raise ValueError(f"unknown anomaly score {kind!r}; expected one of {ANOMALY_SCORES}")
