"""Dual-stream feature refinement (paper §4.2) built from ViT-Adapter's extractor, plus its injector for the baseline.

Extractor (Eq. 6-7): c <- c + MSDA(LN(c), LN(x)) with the stream tokens c as queries (reference points at the
centres of their 1/8, 1/16, 1/32 grids) and the ViT group output x (one level at 1/16) as values; then
c <- c + DropPath(ConvFFN(LN(c))). Each stream has its own extractors; DSA has no injector. The injector
(x <- x + gamma * MSDA(LN(x), LN(c)), 3 value levels) exists only for the plain ViT-Adapter baseline.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
from timm.layers import DropPath
from torch import nn

from dsa_core.config import AdapterConfig
from dsa_core.ops.ms_deform_attn import MSDeformAttn, level_starts

LayerNorm = partial(nn.LayerNorm, eps=1e-6)


def grid_centres(shapes: list[tuple[int, int]], device: torch.device) -> torch.Tensor:
    """Normalised (x, y) centres ((j+0.5)/W, (i+0.5)/H) of every cell of each grid, concatenated -> [1, N, 1, 2]."""
    refs = []
    for h, w in shapes:
        ys, xs = torch.meshgrid(
            (torch.arange(h, dtype=torch.float32, device=device) + 0.5) / h,
            (torch.arange(w, dtype=torch.float32, device=device) + 0.5) / w,
            indexing="ij",
        )
        refs.append(torch.stack([xs.reshape(-1), ys.reshape(-1)], -1))
    return torch.cat(refs, 0)[None, :, None, :]


@dataclass
class DeformInputs:
    """Reference points, value shapes and level starts of one MSDeformAttn call (ViT-Adapter's ``deform_inputs``)."""

    reference_points: torch.Tensor  # [1, Lq, 1, 2]
    spatial_shapes: tuple[tuple[int, int], ...]  # (H, W) per level, Python ints: static for torch.compile
    level_start_index: tuple[int, ...]

    @classmethod
    def build(cls, query_shapes: list[tuple[int, int]], value_shapes: list[tuple[int, int]], device: torch.device) -> "DeformInputs":
        shapes = tuple((int(h), int(w)) for h, w in value_shapes)
        return cls(grid_centres(query_shapes, device), shapes, level_starts(shapes))


class ConvFFN(nn.Module):
    """Linear D -> hidden, 3x3 depthwise conv on each token level (shared weights), GELU, Linear hidden -> D."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, 1, 1, groups=hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor, token_shapes: list[tuple[int, int]]) -> torch.Tensor:
        x = self.fc1(x)
        b, _, c = x.shape
        parts = x.split([h * w for h, w in token_shapes], dim=1)
        convolved = [
            self.dwconv(p.transpose(1, 2).reshape(b, c, h, w)).flatten(2).transpose(1, 2)
            for p, (h, w) in zip(parts, token_shapes)
        ]
        return self.fc2(self.act(torch.cat(convolved, dim=1)))


class Extractor(nn.Module):
    """ViT-Adapter extractor: stream tokens query one level of ViT tokens, then a ConvFFN; both residual."""

    def __init__(self, dim: int, acfg: AdapterConfig) -> None:
        super().__init__()
        self.query_norm = LayerNorm(dim)
        self.feat_norm = LayerNorm(dim)
        self.attn = MSDeformAttn(dim, n_levels=1, n_heads=acfg.deform_num_heads, n_points=acfg.n_points, ratio=acfg.deform_ratio)
        self.with_cffn = acfg.with_cffn
        if self.with_cffn:
            self.ffn = ConvFFN(dim, int(dim * acfg.cffn_ratio))
            self.ffn_norm = LayerNorm(dim)
            self.drop_path = DropPath(acfg.drop_path_rate) if acfg.drop_path_rate > 0 else nn.Identity()

    def forward(self, c: torch.Tensor, vit_tokens: torch.Tensor, inputs: DeformInputs, token_shapes: list[tuple[int, int]]) -> torch.Tensor:
        """c [B, N, D] stream tokens, vit_tokens [B, h16*w16, D] -> refined c [B, N, D]."""
        c = c + self.attn(
            self.query_norm(c), inputs.reference_points, self.feat_norm(vit_tokens), inputs.spatial_shapes, inputs.level_start_index
        )
        if self.with_cffn:
            c = c + self.drop_path(self.ffn(self.ffn_norm(c), token_shapes))
        return c


class Injector(nn.Module):
    """ViT-Adapter injector (baseline only): ViT tokens query the 3-level adapter tokens, scaled by gamma."""

    def __init__(self, dim: int, acfg: AdapterConfig) -> None:
        super().__init__()
        self.query_norm = LayerNorm(dim)
        self.feat_norm = LayerNorm(dim)
        self.attn = MSDeformAttn(dim, n_levels=3, n_heads=acfg.deform_num_heads, n_points=acfg.n_points, ratio=acfg.deform_ratio)
        self.gamma = nn.Parameter(torch.full((dim,), float(acfg.init_values)))

    def forward(self, x: torch.Tensor, c: torch.Tensor, inputs: DeformInputs) -> torch.Tensor:
        """x [B, h16*w16, D] ViT tokens, c [B, N, D] adapter tokens -> x + gamma * attn."""
        attn = self.attn(self.query_norm(x), inputs.reference_points, self.feat_norm(c), inputs.spatial_shapes, inputs.level_start_index)
        return x + self.gamma * attn


class StreamExtractors(nn.Module):
    """One stream's extractor for a refinement block, followed by its extra extractors (if any)."""

    def __init__(self, dim: int, acfg: AdapterConfig, n_extra: int) -> None:
        super().__init__()
        self.extractor = Extractor(dim, acfg)
        self.extra_extractors = nn.ModuleList(Extractor(dim, acfg) for _ in range(n_extra))

    def forward(self, c: torch.Tensor, vit_tokens: torch.Tensor, inputs: DeformInputs, token_shapes: list[tuple[int, int]]) -> torch.Tensor:
        c = self.extractor(c, vit_tokens, inputs, token_shapes)
        for extractor in self.extra_extractors:
            c = extractor(c, vit_tokens, inputs, token_shapes)
        return c


class DualStreamRefinementBlock(nn.Module):
    """Refinement block i (Eq. 6-7): every stream refines its tokens against the same ViT group output.

    Streams do not share weights; there is no injector, so the ViT tokens are read, never written.
    """

    def __init__(self, dim: int, acfg: AdapterConfig, streams: tuple[str, ...], n_extra: int) -> None:
        super().__init__()
        self.streams = nn.ModuleDict({s: StreamExtractors(dim, acfg, n_extra) for s in streams})

    def forward(
        self, tokens: dict[str, torch.Tensor], vit_tokens: torch.Tensor, inputs: DeformInputs, token_shapes: list[tuple[int, int]]
    ) -> dict[str, torch.Tensor]:
        if set(tokens) != set(self.streams):
            raise ValueError(f"expected tokens for streams {sorted(self.streams)}, got {sorted(tokens)}")
        return {s: self.streams[s](tokens[s], vit_tokens, inputs, token_shapes) for s in self.streams}


class InteractionBlock(nn.Module):
    """ViT-Adapter interaction block (baseline): injector -> the group's ViT blocks -> extractor(s)."""

    def __init__(self, dim: int, acfg: AdapterConfig, n_extra: int) -> None:
        super().__init__()
        self.injector = Injector(dim, acfg)
        self.extractors = StreamExtractors(dim, acfg, n_extra)

    def forward(
        self,
        x: torch.Tensor,
        c: torch.Tensor,
        vit_blocks: nn.Module,
        injector_inputs: DeformInputs,
        extractor_inputs: DeformInputs,
        token_shapes: list[tuple[int, int]],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.injector(x, c, injector_inputs)
        for blk in vit_blocks:
            x = blk(x)
        return x, self.extractors(c, x, extractor_inputs, token_shapes)
