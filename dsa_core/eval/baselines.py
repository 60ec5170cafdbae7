"""Zero-cost anomaly baselines from the same forward pass as the model's own score, for every report.

Why: a DSA score is only worth its machinery if it beats what the segmentation output already says. The
baselines read the per-pixel class distribution of the same Mask2Former outputs:

* ``semantic[k] = sum_q softmax(C_q)[k] * sigmoid(M_q)`` (dsa_core.model.scoring) is not a distribution: it does
  not sum to 1 (queries overlap, the no-object column is dropped). It is normalised over the K classes,
  ``p[k] = semantic[k] / sum_j semantic[j]`` (uniform where the sum is 0, i.e. no query claims the pixel);
* ``max_softmax`` = 1 - max_k p[k];
* ``entropy`` = -sum_k p[k] log p[k] / log K (in [0, 1]);
* ``not_drivable`` = 1 - sum_{k in DRIVABLE_CLASSES} p[k]. Drivable is the road class only: sidewalk is not
  where the vehicle drives, and the node's ``drivable_classes`` default is road alone too.

All three rank pixels (higher = more anomalous) and need nothing but the semantic scores. They are computed in
float64 and stored as float32 like the model's own score: near-uniform distributions (an untrained model) differ
only in the 8th digit, which float32 arithmetic would scramble.
"""
from __future__ import annotations

import numpy as np

from dsa_core.labels import ROAD

DRIVABLE_CLASSES: tuple[int, ...] = (ROAD,)
BASELINES: dict[str, str] = {
    "max_softmax": "1 - max softmax (normalised class scores)",
    "entropy": "entropy of the normalised class scores / log K",
    "not_drivable": "1 - p(road)",
}
MODEL_SCORE_NAMES: dict[str, str] = {
    "msp": "DSA score (Eq. 2: 1 - max_k semantic[k])",
    "rba": "DSA score (RbA: -sum_k tanh(semantic[k]))",
}


def model_score_name(score: str) -> str:
    """Report label of the model's own anomaly score kind (``cfg.score`` / the manifest's ``score``)."""
    return MODEL_SCORE_NAMES.get(score, f"DSA score ({score})")


def class_distribution(semantic: np.ndarray) -> np.ndarray:
    """semantic [..., K, H, W] (non-negative) -> per-pixel distribution over K (float64); uniform where all are 0."""
    s = np.asarray(semantic, dtype=np.float64)
    if s.ndim < 3 or s.shape[-3] < 2:
        raise ValueError(f"expected semantic scores [..., K, H, W] with K >= 2, got shape {s.shape}")
    if not np.isfinite(s).all() or (s < 0).any():
        raise ValueError("semantic scores must be finite and non-negative (softmax x sigmoid products)")
    total = s.sum(axis=-3, keepdims=True)
    k = s.shape[-3]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, s / np.where(total > 0, total, 1.0), 1.0 / k)


def baseline_scores(semantic: np.ndarray, drivable: tuple[int, ...] = DRIVABLE_CLASSES) -> dict[str, np.ndarray]:
    """semantic [..., K, H, W] -> {name: float32 [..., H, W]} for every name in ``BASELINES``."""
    p = class_distribution(semantic)
    k = p.shape[-3]
    bad = [c for c in drivable if not 0 <= c < k]
    if bad or not drivable:
        raise ValueError(f"drivable classes must be a non-empty subset of 0..{k - 1}, got {drivable}")
    log_p = np.log(np.maximum(p, np.finfo(np.float64).tiny))
    entropy = -(p * log_p).sum(axis=-3) / np.log(k)
    return {
        "max_softmax": (1.0 - p.max(axis=-3)).astype(np.float32),
        "entropy": np.clip(entropy, 0.0, 1.0).astype(np.float32),
        "not_drivable": (1.0 - np.take(p, list(drivable), axis=-3).sum(axis=-3)).astype(np.float32),
    }
