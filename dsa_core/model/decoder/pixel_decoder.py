"""Mask2Former ``MSDeformAttnPixelDecoder``: deformable-attention encoder over 1/8..1/32 plus one FPN level at 1/4.

Follows facebookresearch/Mask2Former ``pixel_decoder/msdeformattn.py`` (docs/model_reference.md §2.1): per-level input
projection (1x1 conv + GroupNorm), ``enc_layers`` post-norm deformable self-attention layers with sine positions plus
a learned level embedding, a lateral 1x1 conv on the 1/4 map added to the upsampled 1/8 encoder output, a 3x3 output
conv, and a 1x1 ``mask_features`` conv. Everything runs in float32 with autocast off, as in Mask2Former (the
deformable-attention CUDA kernel is fp32/fp64 only).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dsa_core.config import DSAConfig
from dsa_core.model.decoder.position_encoding import PositionEmbeddingSine
from dsa_core.ops import MSDeformAttn
from dsa_core.ops.ms_deform_attn import level_starts

NUM_ENCODER_LEVELS = 3  # 1/8, 1/16, 1/32


def c2_xavier_fill(module: nn.Module) -> None:
    """detectron2 ``c2_xavier_fill``: kaiming-uniform with a=1 (Caffe2's XavierFill), bias 0. No-op on meta."""
    if module.weight.is_meta:
        return
    nn.init.kaiming_uniform_(module.weight, a=1)
    if module.bias is not None:
        nn.init.constant_(module.bias, 0.0)


class MSDeformAttnEncoderLayer(nn.Module):
    """Post-norm encoder layer: deformable self-attention (query = src + pos) then a ReLU FFN."""

    def __init__(self, d_model: int, d_ffn: int, dropout: float, n_heads: int, n_points: int):
        super().__init__()
        self.self_attn = MSDeformAttn(d_model, n_levels=NUM_ENCODER_LEVELS, n_heads=n_heads, n_points=n_points)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.dropout2 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.dropout3 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(
        self,
        src: torch.Tensor,
        pos: torch.Tensor,
        reference_points: torch.Tensor,
        spatial_shapes: tuple[tuple[int, int], ...],
        level_start_index: tuple[int, ...],
    ) -> torch.Tensor:
        src2 = self.self_attn(src + pos, reference_points, src, spatial_shapes, level_start_index)
        src = self.norm1(src + self.dropout1(src2))
        src2 = self.linear2(self.dropout2(F.relu(self.linear1(src))))
        return self.norm2(src + self.dropout3(src2))


def encoder_reference_points(shapes: list[tuple[int, int]], batch: int, device: torch.device) -> torch.Tensor:
    """Grid-cell centres of every level, normalised to [0, 1] as (x, y): [B, S, L, 2].

    Deformable-DETR scales these by per-level valid ratios; Mask2Former passes no padding mask, so every valid
    ratio is 1 and each token's reference point is simply its own centre, repeated for all L levels.
    """
    refs = []
    for h, w in shapes:
        ref_y, ref_x = torch.meshgrid(
            (torch.arange(h, dtype=torch.float32, device=device) + 0.5) / h,
            (torch.arange(w, dtype=torch.float32, device=device) + 0.5) / w,
            indexing="ij",
        )
        refs.append(torch.stack((ref_x.reshape(-1), ref_y.reshape(-1)), -1))
    ref = torch.cat(refs, 0)  # [S, 2]
    return ref[None, :, None, :].expand(batch, -1, len(shapes), -1)


class MSDeformAttnPixelDecoder(nn.Module):
    """Features [1/4, 1/8, 1/16, 1/32] (``in_channels`` each) -> (mask_features at 1/4, [1/32, 1/16, 1/8] maps)."""

    def __init__(self, cfg: DSAConfig, in_channels: int):
        super().__init__()
        d = cfg.decoder
        if d.conv_dim % d.norm_groups != 0:
            raise ValueError(f"conv_dim {d.conv_dim} must be divisible by norm_groups {d.norm_groups}")
        if d.conv_dim % 2 != 0:
            raise ValueError(f"conv_dim must be even for the sine position encoding, got {d.conv_dim}")
        self.in_channels = in_channels
        self.conv_dim = d.conv_dim
        self.mask_dim = d.mask_dim
        # Order is low -> high resolution (1/32, 1/16, 1/8), as in Mask2Former.
        self.input_proj = nn.ModuleList(
            nn.Sequential(nn.Conv2d(in_channels, d.conv_dim, kernel_size=1), nn.GroupNorm(d.norm_groups, d.conv_dim))
            for _ in range(NUM_ENCODER_LEVELS)
        )
        self.encoder_layers = nn.ModuleList(
            MSDeformAttnEncoderLayer(d.conv_dim, d.enc_ffn_dim, d.dropout, d.enc_heads, d.enc_n_points)
            for _ in range(d.enc_layers)
        )
        self.level_embed = nn.Parameter(torch.empty(NUM_ENCODER_LEVELS, d.conv_dim))
        self.pe_layer = PositionEmbeddingSine(d.conv_dim // 2)
        # Extra FPN level at 1/4 (common stride 4): lateral 1x1 and output 3x3 convs, both bias-free + GroupNorm.
        self.lateral_conv = nn.Sequential(
            nn.Conv2d(in_channels, d.conv_dim, kernel_size=1, bias=False), nn.GroupNorm(d.norm_groups, d.conv_dim)
        )
        self.output_conv = nn.Sequential(
            nn.Conv2d(d.conv_dim, d.conv_dim, kernel_size=3, padding=1, bias=False),
            nn.GroupNorm(d.norm_groups, d.conv_dim),
            nn.ReLU(),
        )
        self.mask_features = nn.Conv2d(d.conv_dim, d.mask_dim, kernel_size=1)
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        if self.level_embed.is_meta:
            return
        # MSDeformAttnTransformerEncoderOnly: xavier on every matrix, then MSDeformAttn's own init, level embed N(0,1).
        for p in self.encoder_layers.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        for m in self.encoder_layers.modules():
            if isinstance(m, MSDeformAttn):
                m._reset_parameters()
        nn.init.normal_(self.level_embed)
        for proj in self.input_proj:
            nn.init.xavier_uniform_(proj[0].weight, gain=1)
            nn.init.constant_(proj[0].bias, 0.0)
        c2_xavier_fill(self.lateral_conv[0])
        c2_xavier_fill(self.output_conv[0])
        c2_xavier_fill(self.mask_features)

    def forward(self, features: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """features: [1/4, 1/8, 1/16, 1/32] maps -> (mask_features [B, mask_dim, H/4, W/4], [1/32, 1/16, 1/8])."""
        if len(features) != 4:
            raise ValueError(f"pixel decoder expects 4 feature maps (1/4..1/32), got {len(features)}")
        for i, f in enumerate(features):
            if f.dim() != 4 or f.shape[1] != self.in_channels:
                raise ValueError(
                    f"feature {i} must be [B, {self.in_channels}, H, W], got shape {tuple(f.shape)}"
                )
        with torch.autocast(device_type=features[0].device.type, enabled=False):
            return self._forward_fp32([f.float() for f in features])

    def _forward_fp32(self, features: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        enc_inputs = features[1:][::-1]  # 1/32, 1/16, 1/8
        batch = enc_inputs[0].shape[0]
        srcs, pos = [], []
        shapes: list[tuple[int, int]] = []
        for lvl, x in enumerate(enc_inputs):
            h, w = x.shape[-2:]
            shapes.append((int(h), int(w)))
            srcs.append(self.input_proj[lvl](x).flatten(2).transpose(1, 2))
            pos.append(self.pe_layer(x).flatten(2).transpose(1, 2) + self.level_embed[lvl].view(1, 1, -1))
        src = torch.cat(srcs, 1)
        pos_flat = torch.cat(pos, 1)
        device = src.device
        spatial_shapes = tuple(shapes)  # Python ints: static shapes for torch.compile (ops/ms_deform_attn.py)
        sizes = [h * w for h, w in shapes]
        level_start_index = level_starts(shapes)
        reference_points = encoder_reference_points(shapes, batch, device)
        memory = src
        for layer in self.encoder_layers:
            memory = layer(memory, pos_flat, reference_points, spatial_shapes, level_start_index)
        outs = [
            z.transpose(1, 2).reshape(batch, self.conv_dim, h, w)
            for z, (h, w) in zip(memory.split(sizes, dim=1), shapes)
        ]
        lateral = self.lateral_conv(features[0])
        fpn = lateral + F.interpolate(outs[-1], size=lateral.shape[-2:], mode="bilinear", align_corners=False)
        fpn = self.output_conv(fpn)
        return self.mask_features(fpn), outs
