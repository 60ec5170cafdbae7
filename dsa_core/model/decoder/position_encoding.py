"""Sine positional encoding for 2-D feature maps (DETR / Mask2Former ``PositionEmbeddingSine``, normalize=True).

Mask2Former never passes a padding mask, so the cumulative sums of its "not masked" map are simply 1..H and 1..W;
we compute those with ``arange`` (same values, and a trace/ONNX-friendly graph).
"""
from __future__ import annotations

import math

import torch
from torch import nn


class PositionEmbeddingSine(nn.Module):
    """Returns [B, 2 * num_pos_feats, H, W]: y-encoding channels first, then x; sin/cos interleaved per frequency."""

    def __init__(self, num_pos_feats: int, temperature: float = 10000.0, scale: float = 2 * math.pi):
        super().__init__()
        if num_pos_feats <= 0 or num_pos_feats % 2 != 0:
            raise ValueError(f"num_pos_feats must be a positive even number, got {num_pos_feats}")
        self.num_pos_feats = num_pos_feats
        self.temperature = temperature
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, C, H, W] (only its shape and device are used) -> float32 encoding [B, 2*num_pos_feats, H, W]."""
        if x.dim() != 4:
            raise ValueError(f"expected a [B, C, H, W] feature map, got shape {tuple(x.shape)}")
        b, _, h, w = x.shape
        eps = 1e-6
        y_embed = torch.arange(1, h + 1, dtype=torch.float32, device=x.device) / (h + eps) * self.scale
        x_embed = torch.arange(1, w + 1, dtype=torch.float32, device=x.device) / (w + eps) * self.scale
        dim_t = torch.arange(self.num_pos_feats, dtype=torch.float32, device=x.device)
        dim_t = self.temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / self.num_pos_feats)
        pos_x = x_embed[:, None] / dim_t  # [W, F]
        pos_y = y_embed[:, None] / dim_t  # [H, F]
        pos_x = torch.stack((pos_x[:, 0::2].sin(), pos_x[:, 1::2].cos()), dim=2).flatten(1)
        pos_y = torch.stack((pos_y[:, 0::2].sin(), pos_y[:, 1::2].cos()), dim=2).flatten(1)
        pos = torch.cat(
            (pos_y[:, None, :].expand(h, w, self.num_pos_feats), pos_x[None, :, :].expand(h, w, self.num_pos_feats)),
            dim=2,
        )  # [H, W, 2F]
        return pos.permute(2, 0, 1)[None].expand(b, -1, -1, -1)

    def extra_repr(self) -> str:
        return f"num_pos_feats={self.num_pos_feats}, temperature={self.temperature}, scale={self.scale:.4f}"
