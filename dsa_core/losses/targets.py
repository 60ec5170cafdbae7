"""Semantic label maps -> Mask2Former set targets.

Mask2Former trains semantic segmentation as set prediction: every class present in an image becomes one
binary mask target. Void (255) and pasted outliers (254) belong to no target, so they are negatives for every
matched mask (docs/model_reference.md §2.3, §3.2).
"""
from __future__ import annotations

import torch
from torch import Tensor

from dsa_core.labels import OUTLIER, VOID


def semantic_to_targets(
    labels: Tensor, num_classes: int, ignore_labels: tuple[int, ...] = (OUTLIER, VOID)
) -> list[dict[str, Tensor]]:
    """Convert label maps [B, H, W] (train ids 0..K-1, ``ignore_labels`` excluded) into per-image targets.

    Returns one dict per image: ``labels`` [n] int64 (sorted class ids present) and ``masks`` [n, H, W] bool.
    Raises ValueError for any value that is neither a class id nor an ignore label.
    """
    if labels.dim() != 3:
        raise ValueError(f"expected label maps [B, H, W], got shape {tuple(labels.shape)}")
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise ValueError(f"expected integer label maps, got dtype {labels.dtype}")
    allowed = (labels >= 0) & (labels < num_classes)
    for value in ignore_labels:
        allowed |= labels == value
    if not bool(allowed.all()):
        bad = torch.unique(labels[~allowed])[:10].tolist()
        raise ValueError(
            f"label values {bad} are neither train ids 0..{num_classes - 1} nor ignore labels {list(ignore_labels)}"
        )
    targets = []
    for label_map in labels:
        present = torch.unique(label_map)
        present = present[(present >= 0) & (present < num_classes)].to(torch.int64)
        masks = label_map.unsqueeze(0) == present.view(-1, 1, 1)
        targets.append({"labels": present, "masks": masks})
    return targets
