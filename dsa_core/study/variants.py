"""Variant pieces the training engine has no switch for, and the data-separation guard of the study.

Table 8 (loss comparison) swaps L_ubhl for Euclidean losses on the SAME tokens and token sets, with the same weight
λ (0.1 in the paper): the OOD stream's void tokens pulled toward the origin, the ID stream's labelled tokens pushed
away (DESIGN.md §3, "stream" mode), distance measured in Euclidean space instead of the Poincaré ball:

* ``contrastive`` (margin m = 1.0): mean_void ‖x_ood‖² + mean_ID max(0, m − ‖x_id‖)², the classic margin-based
  contrastive loss on feature norms.
* ``bce``: a parameter-free binary classifier on the feature norm, logit = ‖x‖ − m, target 1 (in-distribution) for
  the ID stream's labelled tokens and 0 for the OOD stream's void tokens; BCE-with-logits averaged per set.

The paper does not say how its BCE / contrastive baselines are defined beyond "Euclidean, margin 1.0, weight 0.1";
these are the simplest losses with the same pull/push structure, so the comparison isolates the geometry.

The trainer builds its objective internally (``StageObjective``), so ``token_loss(kind)`` swaps the loss module in
for the duration of one training call. It is process-global; the study runs trainings one after another.
"""
from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dsa_core.losses.hyperbolic import token_label_sets

log = logging.getLogger(__name__)

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


@contextlib.contextmanager
def token_loss(kind: str, margin: float = 1.0) -> Iterator[None]:
    """Within the block, stage-1 trainings use ``kind`` in place of L_ubhl (same λ, same log column 'loss_ubhl').

    Why a patch and not a config field: the trainer (dsa_core/train) has no loss-type switch; a ``token_loss`` field
    in TrainConfig read by ``StageObjective`` would make this unnecessary (and enter the resume config check).
    """
    if kind not in TOKEN_LOSSES:
        raise ValueError(f"token loss must be one of {TOKEN_LOSSES}, got {kind!r}")
    if kind == "ubhl":
        yield
        return
    import dsa_core.train.loop as loop

    original = loop.StageObjective

    class EuclideanObjective(original):  # type: ignore[misc, valid-type]
        def __init__(self, stage, tcfg, num_classes):
            super().__init__(stage, tcfg, num_classes)
            if self.ubhl is not None:
                self.ubhl = EuclideanTokenLoss(kind, margin, num_classes)

    loop.StageObjective = EuclideanObjective
    try:
        yield
    finally:
        loop.StageObjective = original


def check_anomaly_separation(coco_root: Path | None) -> dict[str, list[str]]:
    """Assert the benchmarks' anomaly appearances cannot reach training or the outlier pool.

    Synthetic data: the benchmark writers draw only ``TEST_ANOMALY_FAMILIES``, the COCO pool only
    ``OUTLIER_POOL_FAMILIES`` (annotated as ``POOL_FAMILY_CATEGORY``); the sets must be disjoint, and every
    category annotated in the pool must be a pool category or one the AnomalyMix filter drops (COCO_EXCLUDED_NAMES).
    Returns the families / categories checked (written to the study's results).
    """
    from dsa_core.data.coco_categories import COCO_EXCLUDED_NAMES
    from dsa_core.data.scene import OUTLIER_POOL_FAMILIES, TEST_ANOMALY_FAMILIES
    from dsa_core.data.synthetic import POOL_FAMILY_CATEGORY

    overlap = set(TEST_ANOMALY_FAMILIES) & set(OUTLIER_POOL_FAMILIES)
    if overlap:
        raise AssertionError(f"test anomaly families {sorted(overlap)} are also outlier-pool families")
    if set(POOL_FAMILY_CATEGORY) != set(OUTLIER_POOL_FAMILIES):
        raise AssertionError(f"POOL_FAMILY_CATEGORY covers {sorted(POOL_FAMILY_CATEGORY)}, the pool families are "
                             f"{sorted(OUTLIER_POOL_FAMILIES)}")
    info = {"test_families": list(TEST_ANOMALY_FAMILIES), "pool_families": list(OUTLIER_POOL_FAMILIES)}
    if coco_root is not None:
        ann = Path(coco_root) / "annotations" / "instances_train2017.json"
        with ann.open() as f:
            coco = json.load(f)
        names = {c["id"]: c["name"] for c in coco["categories"]}
        used = sorted({names[a["category_id"]] for a in coco["annotations"]})
        allowed = set(POOL_FAMILY_CATEGORY.values()) | set(COCO_EXCLUDED_NAMES)
        foreign = [n for n in used if n not in allowed]
        if foreign:
            raise AssertionError(f"{ann}: categories {foreign} are neither outlier-pool categories "
                                 f"{sorted(POOL_FAMILY_CATEGORY.values())} nor filtered by AnomalyMix")
        info["pool_categories_used"] = used
    return info
