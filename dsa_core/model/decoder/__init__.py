"""Mask2Former decoder: MSDeformAttn pixel decoder + masked-attention transformer decoder (docs/design.md §3.5)."""
from __future__ import annotations

import torch
from torch import nn

from dsa_core.config import DSAConfig
from dsa_core.model.decoder.pixel_decoder import MSDeformAttnPixelDecoder
from dsa_core.model.decoder.position_encoding import PositionEmbeddingSine
from dsa_core.model.decoder.transformer_decoder import MultiScaleMaskedTransformerDecoder, attention_mask_from_masks


class Mask2FormerDecoder(nn.Module):
    """Adapter maps [1/4, 1/8, 1/16, 1/32] (D = ``cfg.backbone.embed_dim`` channels) -> mask-classification output.

    ``pixel_decoder`` and ``transformer_decoder`` are separate attributes so that stage-2 training and the
    parameter table can address them.
    """

    def __init__(self, cfg: DSAConfig, in_channels: int | None = None):
        super().__init__()
        in_channels = cfg.backbone.embed_dim if in_channels is None else in_channels
        self.pixel_decoder = MSDeformAttnPixelDecoder(cfg, in_channels)
        self.transformer_decoder = MultiScaleMaskedTransformerDecoder(cfg, cfg.decoder.conv_dim)

    def forward(self, features: list[torch.Tensor]) -> dict:
        """-> {"pred_logits": [B,Q,K+1], "pred_masks": [B,Q,H/4,W/4], "aux_outputs": [dec_layers x same keys]}."""
        mask_features, multi_scale_features = self.pixel_decoder(features)
        return self.transformer_decoder(multi_scale_features, mask_features)


__all__ = [
    "Mask2FormerDecoder",
    "MSDeformAttnPixelDecoder",
    "MultiScaleMaskedTransformerDecoder",
    "PositionEmbeddingSine",
    "attention_mask_from_masks",
]
