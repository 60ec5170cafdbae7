"""The Dual-Stream Adapter: Anomaly Prior Module -> dual-stream refinement -> stream fusion -> ViT-Adapter output path.

Decisions where the paper is silent (docs/design.md §10, docs/model_reference.md §7):
  * fusion: per-level sum of the two streams' final tokens (switches: ``concat`` = concat + 1x1, ``id_only``);
  * one shared SPM stem, separate extractors per stream, 2 extra extractors per stream in the last block;
  * ``num_blocks < 4``: the blocks read the *last* ``num_blocks`` ViT group outputs (the deepest features),
    while the output path still adds all four group outputs;
  * ``injector=True`` is the plain ViT-Adapter baseline: single stream, injector + extractor per group; the frozen
    ViT blocks then run inside :meth:`DualStreamAdapter.forward_with_backbone` with gradients through activations.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from timm.layers import trunc_normal_
from torch import nn

from dsa_core.config import DSAConfig
from dsa_core.model.backbone import FrozenViT
from dsa_core.model.prior import AnomalyPriorModule
from dsa_core.model.refinement import DeformInputs, DualStreamRefinementBlock, InteractionBlock
from dsa_core.ops.ms_deform_attn import MSDeformAttn

logger = logging.getLogger(__name__)

FUSIONS = ("sum", "concat", "id_only")
NUM_GROUPS = 4


@dataclass
class AdapterOutput:
    """features: 4 maps [B, D, H/4|8|16|32, ...]; stream_tokens: {"id", "ood"?: [B, N, D]} final refinement tokens
    (levels 1/8, 1/16, 1/32 concatenated); token_shapes: [(h8, w8), (h16, w16), (h32, w32)]."""

    features: list[torch.Tensor]
    stream_tokens: dict[str, torch.Tensor]
    token_shapes: list[tuple[int, int]]


def _init_vit_adapter(module: nn.Module) -> None:
    """ViT-Adapter ``_init_weights``: trunc-normal Linear, unit norms, He-style (fan-out) conv init, zero biases."""
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.LayerNorm, nn.BatchNorm2d)):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels // module.groups
        nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out))
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class DualStreamAdapter(nn.Module):
    """DSA adapter (paper §4). ``forward(images, vit_features) -> AdapterOutput``."""

    def __init__(self, cfg: DSAConfig) -> None:
        super().__init__()
        acfg = cfg.adapter
        dim = cfg.backbone.embed_dim
        if acfg.streams not in (1, 2):
            raise ValueError(f"adapter.streams must be 1 or 2, got {acfg.streams}")
        if acfg.fusion not in FUSIONS:
            raise ValueError(f"adapter.fusion must be one of {FUSIONS}, got {acfg.fusion!r}")
        if not 1 <= acfg.num_blocks <= NUM_GROUPS:
            raise ValueError(f"adapter.num_blocks must be in 1..{NUM_GROUPS}, got {acfg.num_blocks}")
        if len(cfg.backbone.interaction_indexes) != NUM_GROUPS:
            raise ValueError(f"expected {NUM_GROUPS} interaction groups, got {len(cfg.backbone.interaction_indexes)}")
        if acfg.injector and acfg.streams != 1:
            logger.info("adapter.injector=True (ViT-Adapter baseline) implies a single stream; ignoring streams=%d", acfg.streams)
        self.injector = bool(acfg.injector)
        self.stream_names: tuple[str, ...] = ("id", "ood") if acfg.streams == 2 and not self.injector else ("id",)
        self.fusion = acfg.fusion
        self.add_vit_feature = acfg.add_vit_feature
        self.embed_dim = dim

        self.prior = AnomalyPriorModule(acfg.conv_inplane, dim, self.stream_names, acfg.level_encoding)
        self.block_groups: list[int] = list(range(NUM_GROUPS - acfg.num_blocks, NUM_GROUPS))
        n_extra = [2 if (acfg.extra_extractors and i == acfg.num_blocks - 1) else 0 for i in range(acfg.num_blocks)]
        if self.injector:
            self.blocks = nn.ModuleList(InteractionBlock(dim, acfg, n) for n in n_extra)
        else:
            self.blocks = nn.ModuleList(DualStreamRefinementBlock(dim, acfg, self.stream_names, n) for n in n_extra)
        self.fuse = nn.Linear(2 * dim, dim) if len(self.stream_names) == 2 and self.fusion == "concat" else None
        self.up = nn.ConvTranspose2d(dim, dim, 2, 2)
        self.norms = nn.ModuleList(nn.BatchNorm2d(dim) for _ in range(NUM_GROUPS))
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        if any(p.is_meta for p in self.parameters()):
            return  # shape-only build (parameter counting); nothing to initialise
        self.apply(_init_vit_adapter)
        for m in self.modules():
            if isinstance(m, MSDeformAttn):
                m._reset_parameters()
        self.prior.reset_level_embed()

    # ------------------------------------------------------------------ helpers
    def _check_inputs(self, images: torch.Tensor) -> None:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images [B, 3, H, W], got shape {tuple(images.shape)}")
        h, w = images.shape[-2:]
        if h % 32 or w % 32:
            raise ValueError(f"image size {h}x{w} must be a multiple of 32 (pad first)")

    def _fuse(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        """Per-level merge of the streams into the tokens the output path sees."""
        if len(self.stream_names) == 1 or self.fusion == "id_only":
            return tokens["id"]
        if self.fusion == "sum":
            return tokens["id"] + tokens["ood"]
        return self.fuse(torch.cat([tokens["id"], tokens["ood"]], dim=-1))

    def _output_path(
        self, c1: torch.Tensor, c: torch.Tensor, shapes: list[tuple[int, int]], vit_maps: list[torch.Tensor]
    ) -> list[torch.Tensor]:
        """ViT-Adapter: tokens -> 1/8, 1/16, 1/32 maps; c1 += up(c2); + resized ViT group outputs; BN per level."""
        b, _, d = c.shape
        parts = c.split([h * w for h, w in shapes], dim=1)
        c2, c3, c4 = (p.transpose(1, 2).reshape(b, d, h, w) for p, (h, w) in zip(parts, shapes))
        c1 = self.up(c2) + c1
        maps = [c1, c2, c3, c4]
        if self.add_vit_feature:
            maps = [
                m + F.interpolate(v, size=m.shape[-2:], mode="bilinear", align_corners=False)
                for m, v in zip(maps, vit_maps)
            ]
        return [norm(m) for norm, m in zip(self.norms, maps)]

    # ------------------------------------------------------------------ forward
    def forward(self, images: torch.Tensor, vit_features: list[torch.Tensor]) -> AdapterOutput:
        """images [B, 3, H, W] (H, W multiples of 32), vit_features: 4 maps [B, D, H/16, W/16] from ``FrozenViT``."""
        if self.injector:
            raise RuntimeError("the ViT-Adapter baseline (adapter.injector=True) must run via forward_with_backbone()")
        self._check_inputs(images)
        if len(vit_features) != NUM_GROUPS:
            raise ValueError(f"expected {NUM_GROUPS} ViT group features, got {len(vit_features)}")
        b, _, h, w = images.shape
        expected = (b, self.embed_dim, h // 16, w // 16)
        for i, f in enumerate(vit_features):
            if tuple(f.shape) != expected:
                raise ValueError(f"vit_features[{i}] has shape {tuple(f.shape)}, expected {expected}")
        c1, tokens, shapes = self.prior(images)
        inputs = DeformInputs.build(shapes, [shapes[1]], images.device)
        for block, group in zip(self.blocks, self.block_groups):
            vit_tokens = vit_features[group].flatten(2).transpose(1, 2)
            tokens = block(tokens, vit_tokens, inputs, shapes)
        features = self._output_path(c1, self._fuse(tokens), shapes, vit_features)
        return AdapterOutput(features=features, stream_tokens=tokens, token_shapes=shapes)

    def forward_with_backbone(self, images: torch.Tensor, backbone: FrozenViT) -> AdapterOutput:
        """Run backbone + adapter. For DSA this is ``forward(images, backbone(images))``; for the injector baseline
        the ViT blocks run interleaved with injectors/extractors, gradients flowing through their activations."""
        if not self.injector:
            return self.forward(images, backbone(images))
        self._check_inputs(images)
        c1, tokens, shapes = self.prior(images)
        c = tokens["id"]
        x, grid = backbone.embed(images)
        if grid != shapes[1]:
            raise ValueError(f"ViT grid {grid} differs from the adapter's 1/16 grid {shapes[1]} (patch size must be 16)")
        injector_inputs = DeformInputs.build([grid], shapes, images.device)
        extractor_inputs = DeformInputs.build(shapes, [grid], images.device)
        block_of_group = dict(zip(self.block_groups, self.blocks))
        vit_maps = []
        for group, (start, end) in enumerate(backbone.groups):
            vit_blocks = backbone.blocks[start:end + 1]
            if group in block_of_group:
                x, c = block_of_group[group](x, c, vit_blocks, injector_inputs, extractor_inputs, shapes)
            else:
                for blk in vit_blocks:
                    x = blk(x)
            vit_maps.append(backbone.tokens_to_map(x, grid))
        features = self._output_path(c1, c, shapes, vit_maps)
        return AdapterOutput(features=features, stream_tokens={"id": c}, token_shapes=shapes)
