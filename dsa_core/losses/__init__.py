"""Training losses: Mask2Former set criterion, uncertainty-based hyperbolic loss, mask contrastive loss."""
from dsa_core.losses.contrastive import MaskContrastiveLoss, contrastive_score, semantic_evidence
from dsa_core.losses.criterion import DEFAULT_WEIGHTS, SetCriterion, base_loss_name, weighted_total
from dsa_core.losses.euclidean_token import TOKEN_LOSSES, EuclideanTokenLoss
from dsa_core.losses.hyperbolic import (
    UncertaintyHyperbolicLoss,
    dist0,
    downsample_labels,
    expmap0,
    hyperbolic_uncertainty,
    project,
    token_label_sets,
)
from dsa_core.losses.matcher import HungarianMatcher
from dsa_core.losses.point_sampling import get_uncertain_point_coords_with_randomness, point_sample
from dsa_core.losses.targets import semantic_to_targets

__all__ = [
    "DEFAULT_WEIGHTS", "EuclideanTokenLoss", "HungarianMatcher", "MaskContrastiveLoss", "SetCriterion", "TOKEN_LOSSES",
    "UncertaintyHyperbolicLoss", "base_loss_name", "contrastive_score", "dist0", "downsample_labels",
    "expmap0", "get_uncertain_point_coords_with_randomness", "hyperbolic_uncertainty", "point_sample", "project",
    "semantic_evidence", "semantic_to_targets", "token_label_sets", "weighted_total",
]
