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
#: Where the classes are combined: "mask2former" = upsample the Q mask logits to the input, sigmoid, combine
#: (Mask2Former's semantic inference); "classes_first" = sigmoid and combine at the masks' 1/4 resolution, then
#: upsample the K class maps (K = 19 < Q; sigmoid does not commute with the upsampling, so values differ slightly).
SCORE_ORDERS = ("mask2former", "classes_first")
#: Measured on the shipped dsa_nano (results/bench_score_order.md): classes_first is 1.06x faster in ONNX Runtime
#: but costs 0.6 mIoU points and changes 2.5 % of the class ids, so Mask2Former's order stays the default.
DEFAULT_SCORE_ORDER = "mask2former"


def semantic_scores(pred_logits: torch.Tensor, pred_masks: torch.Tensor) -> torch.Tensor:
    """pred_logits [B, Q, K+1], pred_masks [B, Q, H, W] (logits) -> [B, K, H, W]."""
    class_probs = pred_logits.softmax(-1)[..., :-1]
    return torch.einsum("bqk,bqhw->bkhw", class_probs, pred_masks.sigmoid())


def semantic_at_input(pred_logits: torch.Tensor, pred_masks: torch.Tensor, padded_hw: tuple[int, int],
                      original_hw: tuple[int, int], order: str = DEFAULT_SCORE_ORDER) -> torch.Tensor:
    """pred_logits [B, Q, K+1], mask logits [B, Q, h, w] at 1/4 of the padded input -> semantic [B, K, H, W] at
    the input size, combined in ``order`` (SCORE_ORDERS)."""
    from dsa_core.model.preprocess import masks_to_input_size

    if order == "mask2former":
        return semantic_scores(pred_logits, masks_to_input_size(pred_masks, padded_hw, original_hw))
    if order == "classes_first":
        low = torch.einsum("bqk,bqhw->bkhw", pred_logits.softmax(-1)[..., :-1], pred_masks.sigmoid())
        return masks_to_input_size(low, padded_hw, original_hw)  # the same upsample + crop, on K maps
    raise ValueError(f"unknown score order {order!r}; expected one of {SCORE_ORDERS}")


def anomaly_from_semantic(semantic: torch.Tensor, kind: str = "msp") -> torch.Tensor:
    """semantic [B, K, H, W] -> anomaly score [B, H, W]."""
    if kind == "msp":
        return 1.0 - semantic.max(dim=1).values
    if kind == "rba":
        return -torch.tanh(semantic).sum(dim=1)
    raise ValueError(f"unknown anomaly score {kind!r}; expected one of {ANOMALY_SCORES}")
