"""DSAModel: frozen ViT backbone -> Dual-Stream Adapter -> Mask2Former decoder (paper Fig. 2, Eq. 1-3).

The backbone never trains: its parameters are frozen, it stays in eval mode and (with no injector) runs under
no_grad, so its four group outputs are a pure function of the image (the one exception is the Fine-Tuned baseline,
``cfg.backbone.finetune``, which trains it in stage 1). That is what lets one backbone serve several
heads (semantic + anomaly here) and be exported as its own graph.
"""
from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from dsa_core.config import DSAConfig, get_config
from dsa_core.model.adapter import DualStreamAdapter
from dsa_core.model.backbone import FrozenViT, load_backbone_weights
from dsa_core.model.decoder import Mask2FormerDecoder
from dsa_core.model.preprocess import normalize, pad_to_multiple
from dsa_core.model.scoring import DEFAULT_SCORE_ORDER, anomaly_from_semantic, semantic_at_input
from dsa_core.model.side_adapter import SideAdapter

log = logging.getLogger(__name__)


class DSAModel(nn.Module):
    """The full model. Inputs are RGB images [B, 3, H, W] with values 0..255 (uint8 or float)."""

    def __init__(self, cfg: DSAConfig):
        super().__init__()
        self.cfg = cfg
        self.backbone = FrozenViT(cfg)
        if cfg.adapter.side and cfg.adapter.injector:
            raise ValueError("adapter.side and adapter.injector are two different baselines; set at most one")
        self.adapter = SideAdapter(cfg) if cfg.adapter.side else DualStreamAdapter(cfg)
        self.decoder = Mask2FormerDecoder(cfg)
        self.register_buffer("pixel_mean", torch.tensor(cfg.pixel_mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(cfg.pixel_std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def preprocess(self, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Normalise and pad to a multiple of ``cfg.size_divisor``; returns the padded batch and the original size."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images [B, 3, H, W], got shape {tuple(images.shape)}")
        return pad_to_multiple(normalize(images, self.pixel_mean, self.pixel_std), self.cfg.size_divisor)

    def backbone_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The four ViT group outputs for a normalised, padded batch (no autograd graph unless fine-tuned)."""
        return self.backbone(x)

    def forward_features(self, x: torch.Tensor, vit_features: list[torch.Tensor] | None = None) -> dict[str, Any]:
        """Adapter + decoder on a normalised, padded batch; ``vit_features`` may come from a shared backbone run."""
        if self.cfg.adapter.injector:
            adapted = self.adapter.forward_with_backbone(x, self.backbone)
        else:
            if vit_features is None:
                vit_features = self.backbone_features(x)
            adapted = self.adapter(x, vit_features)
        out = self.decoder(adapted.features)
        out["stream_tokens"] = adapted.stream_tokens
        out["token_shapes"] = adapted.token_shapes
        return out

    def forward(self, images: torch.Tensor) -> dict[str, Any]:
        """Training forward: ``pred_logits`` [B,Q,K+1], ``pred_masks`` [B,Q,H/4,W/4] (of the padded input),
        ``aux_outputs``, ``stream_tokens`` and ``token_shapes`` (for L_ubhl)."""
        x, _ = self.preprocess(images)
        return self.forward_features(x)

    def scores_from_outputs(self, outputs: dict[str, Any], padded_hw: tuple[int, int], original_hw: tuple[int, int],
                            order: str = DEFAULT_SCORE_ORDER) -> dict[str, torch.Tensor]:
        """Semantic class scores [B, K, H, W] and anomaly score [B, H, W] at input resolution (``order``:
        dsa_core.model.scoring.SCORE_ORDERS)."""
        semantic = semantic_at_input(outputs["pred_logits"], outputs["pred_masks"], padded_hw, original_hw, order)
        return {"semantic": semantic, "anomaly": anomaly_from_semantic(semantic, self.cfg.score)}

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Inference (eval mode, no grad): any input size; padded to a multiple of 32 and cropped back."""
        was_training = self.training
        self.eval()
        try:
            x, original_hw = self.preprocess(images)
            outputs = self.forward_features(x)
            return self.scores_from_outputs(outputs, tuple(x.shape[-2:]), original_hw)
        finally:
            self.train(was_training)

    def trainable_named_parameters(self) -> list[tuple[str, nn.Parameter]]:
        return [(n, p) for n, p in self.named_parameters() if p.requires_grad]


def build_model(name_or_config: "str | DSAConfig | dict[str, Any]", backbone_weights: str | None = None) -> DSAModel:
    """Build a DSAModel; optionally load the frozen backbone from a local timm/safetensors file (never downloads).

    Works under ``with torch.device("meta"):`` so that large presets can be counted without allocating them.
    """
    cfg = get_config(name_or_config)
    model = DSAModel(cfg)
    if backbone_weights is not None:
        load_backbone_weights(model.backbone, backbone_weights)
        log.info("loaded frozen backbone weights from %s", backbone_weights)
    return model
