"""Side-adapter baseline of the paper's Table 1 (Side Adapter Network, Xu et al. 2023), sized like our adapters.

SAN runs a light ViT *beside* the frozen one: its own patch embedding and transformer blocks, with the frozen
ViT's features added into the side tokens (LayerNorm + linear projection, element-wise sum) before side blocks.
Here there is one side block per interaction group, fed the frozen output of that group. The decoder needs the
four-level pyramid that the other adapters give it, so the side tokens (1/16) go through a simple feature pyramid
(2x2 transposed convolutions up to 1/8 and 1/4, 2x2 max-pool down to 1/32). The pyramid then takes the same
output path as the other adapters (each level plus the resized frozen group output, then BatchNorm), so the
comparison differs only in the adapter body. The paper gives no side-adapter details beyond the citation; the
choices above are ours.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import trunc_normal_
from timm.models.vision_transformer import Block
from torch import nn

from dsa_core.config import DSAConfig
from dsa_core.model.adapter import NUM_GROUPS, AdapterOutput, _init_vit_adapter


class SideAdapter(nn.Module):
    """``forward(images, vit_features) -> AdapterOutput`` like :class:`DualStreamAdapter` (single "id" stream)."""

    def __init__(self, cfg: DSAConfig) -> None:
        super().__init__()
        bcfg, acfg = cfg.backbone, cfg.adapter
        dim = bcfg.embed_dim
        self.embed_dim = dim
        self.patch_size = bcfg.patch_size
        self.stream_names: tuple[str, ...] = ("id",)
        self.add_vit_feature = acfg.add_vit_feature
        self.patch_embed = nn.Conv2d(3, dim, bcfg.patch_size, bcfg.patch_size)
        self.pos = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)  # conditional position encoding: any input size
        self.fuse = nn.ModuleList(nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim)) for _ in range(NUM_GROUPS))
        self.blocks = nn.ModuleList(
            Block(dim, bcfg.num_heads, mlp_ratio=bcfg.mlp_ratio, qkv_bias=True) for _ in range(NUM_GROUPS))
        self.up8 = nn.ConvTranspose2d(dim, dim, 2, 2)
        self.up4 = nn.Sequential(nn.ConvTranspose2d(dim, dim, 2, 2), nn.GELU(), nn.ConvTranspose2d(dim, dim, 2, 2))
        self.norms = nn.ModuleList(nn.BatchNorm2d(dim) for _ in range(NUM_GROUPS))
        if not any(p.is_meta for p in self.parameters()):
            self.apply(_init_vit_adapter)
            for f in self.fuse:
                trunc_normal_(f[1].weight, std=0.02)

    def forward(self, images: torch.Tensor, vit_features: list[torch.Tensor]) -> AdapterOutput:
        """images [B, 3, H, W] (H, W multiples of 32), vit_features: 4 maps [B, D, H/16, W/16]."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images [B, 3, H, W], got shape {tuple(images.shape)}")
        h, w = images.shape[-2:]
        if h % 32 or w % 32:
            raise ValueError(f"image size {h}x{w} must be a multiple of 32 (pad first)")
        if len(vit_features) != NUM_GROUPS:
            raise ValueError(f"expected {NUM_GROUPS} ViT group features, got {len(vit_features)}")
        x = self.patch_embed(images)
        b, d, gh, gw = x.shape
        for i, f in enumerate(vit_features):
            if tuple(f.shape) != (b, d, gh, gw):
                raise ValueError(f"vit_features[{i}] has shape {tuple(f.shape)}, expected {(b, d, gh, gw)}")
        x = x + self.pos(x)
        tokens = x.flatten(2).transpose(1, 2)
        for fuse, block, feat in zip(self.fuse, self.blocks, vit_features):
            tokens = block(tokens + fuse(feat.flatten(2).transpose(1, 2)))
        c3 = tokens.transpose(1, 2).reshape(b, d, gh, gw)
        maps = [self.up4(c3), self.up8(c3), c3, F.max_pool2d(c3, 2)]
        if self.add_vit_feature:
            maps = [m + F.interpolate(v, size=m.shape[-2:], mode="bilinear", align_corners=False)
                    for m, v in zip(maps, vit_features)]
        features = [norm(m) for norm, m in zip(self.norms, maps)]
        shapes = [tuple(m.shape[-2:]) for m in maps[1:]]
        stream = torch.cat([m.flatten(2).transpose(1, 2) for m in maps[1:]], dim=1)
        return AdapterOutput(features=features, stream_tokens={"id": stream}, token_shapes=shapes)
