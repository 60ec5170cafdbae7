"""The three exported graphs as nn.Modules: fixed-size uint8 RGB NCHW in, class ids + anomaly score out.

They only re-wire DSAModel: normalisation/padding is ``DSAModel.preprocess`` and the scores are
``DSAModel.scores_from_outputs`` (both from dsa_core.model.preprocess / scoring), so pre- and post-processing exist
once and travel inside the graphs. The torch runtime backend runs these same modules eagerly, which is what makes
"torch eager vs ONNX Runtime vs TensorRT" an apples-to-apples comparison.

* ``BackboneGraph``: image -> the 4 frozen ViT group features (shareable by several heads).
* ``HeadGraph``: image + the 4 features -> class ids (uint8, argmax of the semantic scores), anomaly score
  (float32), optionally the semantic scores [B, K, H, W].
* ``FusedGraph``: image -> the same outputs in one graph.
"""
from __future__ import annotations

import torch
from torch import nn

from dsa_core.model.dsa import DSAModel
from dsa_core.model.scoring import DEFAULT_SCORE_ORDER

FEATURE_NAMES = ("vit_feat0", "vit_feat1", "vit_feat2", "vit_feat3")
IMAGE_NAME = "image"


def head_output_names(with_scores: bool) -> list[str]:
    return ["class_ids", "anomaly"] + (["semantic_scores"] if with_scores else [])


def _check_image(images: torch.Tensor) -> None:
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"expected uint8 RGB images [B, 3, H, W], got shape {tuple(images.shape)}")


class BackboneGraph(nn.Module):
    def __init__(self, model: DSAModel):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        _check_image(images)
        x, _ = self.model.preprocess(images)
        return tuple(self.model.backbone_features(x))


class HeadGraph(nn.Module):
    """``score_order``: where classes are combined (dsa_core.model.scoring.SCORE_ORDERS; the manifest records it)."""

    def __init__(self, model: DSAModel, with_scores: bool = False, score_order: str = DEFAULT_SCORE_ORDER):
        super().__init__()
        self.model = model
        self.with_scores = with_scores
        self.score_order = score_order

    def forward(self, images: torch.Tensor, f0: torch.Tensor, f1: torch.Tensor, f2: torch.Tensor, f3: torch.Tensor) -> tuple[torch.Tensor, ...]:
        _check_image(images)
        x, original_hw = self.model.preprocess(images)
        outputs = self.model.forward_features(x, [f0, f1, f2, f3])
        scores = self.model.scores_from_outputs(outputs, (int(x.shape[-2]), int(x.shape[-1])), original_hw,
                                                self.score_order)
        semantic = scores["semantic"]
        class_ids = semantic.argmax(dim=1).to(torch.uint8)
        result = (class_ids, scores["anomaly"].float())
        return result + (semantic,) if self.with_scores else result


class FusedGraph(nn.Module):
    def __init__(self, model: DSAModel, with_scores: bool = False, score_order: str = DEFAULT_SCORE_ORDER):
        super().__init__()
        self.backbone = BackboneGraph(model)
        self.head = HeadGraph(model, with_scores, score_order)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.head(images, *self.backbone(images))
