"""Anomaly Prior Module (paper §4.1): ViT-Adapter's Spatial Prior Module plus one level encoding per stream.

The conv stem is shared; the streams differ only in their learnable (3, D) level encodings (Eq. 4-5), which is
what lets them specialise. ``level_encoding="shared"`` gives both streams the same encoding (ablation "no APM").
"""
from __future__ import annotations

import torch
from torch import nn


def _conv_bn_relu(c_in: int, c_out: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


class SpatialPriorModule(nn.Module):
    """ResNet-style conv stem -> c1 map at 1/4 and c2, c3, c4 maps at 1/8, 1/16, 1/32, all projected to D channels.

    Same layout as ViT-Adapter's ``SpatialPriorModule`` (SyncBN replaced by BatchNorm2d).
    """

    def __init__(self, inplanes: int, embed_dim: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            *_conv_bn_relu(3, inplanes, 2),
            *_conv_bn_relu(inplanes, inplanes, 1),
            *_conv_bn_relu(inplanes, inplanes, 1),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
        )
        self.conv2 = nn.Sequential(*_conv_bn_relu(inplanes, 2 * inplanes, 2))
        self.conv3 = nn.Sequential(*_conv_bn_relu(2 * inplanes, 4 * inplanes, 2))
        self.conv4 = nn.Sequential(*_conv_bn_relu(4 * inplanes, 4 * inplanes, 2))
        self.fc1 = nn.Conv2d(inplanes, embed_dim, 1)
        self.fc2 = nn.Conv2d(2 * inplanes, embed_dim, 1)
        self.fc3 = nn.Conv2d(4 * inplanes, embed_dim, 1)
        self.fc4 = nn.Conv2d(4 * inplanes, embed_dim, 1)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """images [B, 3, H, W] -> (c1 [B,D,H/4,W/4], c2 [B,D,H/8,W/8], c3 [.., H/16, ..], c4 [.., H/32, ..])."""
        c1 = self.stem(images)
        c2 = self.conv2(c1)
        c3 = self.conv3(c2)
        c4 = self.conv4(c3)
        return self.fc1(c1), self.fc2(c2), self.fc3(c3), self.fc4(c4)


class AnomalyPriorModule(nn.Module):
    """Shared SPM stem + per-stream level encodings -> c1 map and one token sequence per stream.

    ``streams``: names of the streams to produce (``("id", "ood")`` or ``("id",)``).
    ``level_encoding``: ``"dual"`` -> one (3, D) encoding per stream; ``"shared"`` -> one for all streams.
    """

    def __init__(self, inplanes: int, embed_dim: int, streams: tuple[str, ...], level_encoding: str) -> None:
        super().__init__()
        if level_encoding not in ("dual", "shared"):
            raise ValueError(f"level_encoding must be 'dual' or 'shared', got {level_encoding!r}")
        if not streams:
            raise ValueError("at least one stream is required")
        self.streams = tuple(streams)
        self.level_encoding = level_encoding
        self.spm = SpatialPriorModule(inplanes, embed_dim)
        keys = self.streams if level_encoding == "dual" else ("shared",)
        self.level_embed = nn.ParameterDict({k: nn.Parameter(torch.zeros(3, embed_dim)) for k in keys})

    def reset_level_embed(self) -> None:
        """ViT-Adapter init: level embeddings ~ N(0, 1)."""
        for p in self.level_embed.values():
            if not p.is_meta:
                nn.init.normal_(p)

    def encoding_for(self, stream: str) -> torch.Tensor:
        """The (3, D) level encoding used by ``stream``."""
        return self.level_embed[stream if self.level_encoding == "dual" else "shared"]

    def forward(
        self, images: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], list[tuple[int, int]]]:
        """images [B, 3, H, W] -> (c1 [B, D, H/4, W/4], {stream: tokens [B, N, D]}, [(h8,w8), (h16,w16), (h32,w32)]).

        Tokens are the flattened 1/8, 1/16, 1/32 maps concatenated in that order, each plus the stream's encoding.
        """
        c1, *levels = self.spm(images)
        shapes = [(int(c.shape[-2]), int(c.shape[-1])) for c in levels]
        flat = [c.flatten(2).transpose(1, 2) for c in levels]  # [B, h*w, D] per level
        tokens = {}
        for stream in self.streams:
            enc = self.encoding_for(stream)
            tokens[stream] = torch.cat([f + enc[i] for i, f in enumerate(flat)], dim=1)
        return c1, tokens, shapes
