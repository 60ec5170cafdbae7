"""The frozen plain ViT that DSA adapts, and loading its weights from a local file.

DSA has no injector, so the ViT runs unmodified: in eval mode, without gradients, and the adapter only reads the
output of the last block of each interaction group (docs/design.md §3.1). The token sequence follows
ViT-Adapter (``czczup/ViT-Adapter``): patch tokens plus the patch part of the absolute position embedding, bicubically
resized to the input grid; the class token and the final norm are kept as parameters (so checkpoints load and the
frozen count equals timm's ViT without head, 5.524M / 303.3M) but are not used in the forward pass.

With ``cfg.backbone.finetune`` (the Fine-Tuned baseline) the weights are still created frozen, the stage-1 trainer
unfreezes them, and ``forward`` runs with gradients; the module stays in eval mode (the ViT has no dropout).

The plain ViT-Adapter baseline (``cfg.adapter.injector``) has to interleave its injectors with the ViT blocks and
let gradients flow through the frozen activations, so :meth:`FrozenViT.embed`, :attr:`FrozenViT.blocks` and
:attr:`FrozenViT.groups` are public and run with gradients enabled.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dsa_core.config import DSAConfig

logger = logging.getLogger(__name__)

_STRIP_PREFIXES = ("module.", "backbone.", "model.", "encoder.")


def conv_stem(patch_size: int, embed_dim: int, width: int) -> nn.Sequential:
    """3x3 stride-2 conv + GroupNorm + GELU stages down to stride ``patch_size``, then a 1x1 conv to ``embed_dim``.

    GroupNorm, not BatchNorm: the backbone module is always in eval mode (frozen), also while it is pre-trained,
    so running statistics would never be learned.
    """
    stages = int(round(math.log2(patch_size)))
    if 2 ** stages != patch_size or stages < 1:
        raise ValueError(f"the conv stem needs a power-of-two patch size, got {patch_size}")
    layers: list[nn.Module] = []
    cin, cout = 3, width
    for _ in range(stages):
        layers += [nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False), nn.GroupNorm(math.gcd(8, cout), cout),
                   nn.GELU()]
        cin, cout = cout, min(cout * 2, embed_dim)
    layers.append(nn.Conv2d(cin, embed_dim, 1))
    return nn.Sequential(*layers)


class FrozenViT(nn.Module):
    """timm ``VisionTransformer`` without head, frozen; ``forward`` returns the four interaction-group outputs."""

    def __init__(self, cfg: DSAConfig) -> None:
        super().__init__()
        bcfg = cfg.backbone
        if bcfg.arch == "beit":
            # timm's Beit keeps a relative-position index for one fixed window; running it on arbitrary crop
            # grids needs per-size table interpolation that is not implemented here.
            raise NotImplementedError(
                "backbone.arch='beit' is not supported: use arch='vit' (ViT-L/16 reproduces the paper's frozen "
                "303.3M count, docs/model_reference.md §5)"
            )
        if bcfg.arch != "vit":
            raise ValueError(f"backbone.arch must be 'vit' or 'beit', got {bcfg.arch!r}")
        groups = [tuple(int(i) for i in g) for g in bcfg.interaction_indexes]
        if len(groups) != 4:
            raise ValueError(f"expected 4 interaction groups, got {len(groups)}: {bcfg.interaction_indexes}")
        prev_end = -1
        for start, end in groups:
            if start != prev_end + 1 or end < start:
                raise ValueError(f"interaction_indexes must tile the blocks contiguously, got {bcfg.interaction_indexes}")
            prev_end = end
        if prev_end != bcfg.depth - 1:
            raise ValueError(f"interaction_indexes end at block {prev_end}, but the ViT has depth {bcfg.depth}")

        from timm.models.vision_transformer import VisionTransformer

        self.vit = VisionTransformer(
            img_size=bcfg.pretrain_img_size,
            patch_size=bcfg.patch_size,
            embed_dim=bcfg.embed_dim,
            depth=bcfg.depth,
            num_heads=bcfg.num_heads,
            mlp_ratio=bcfg.mlp_ratio,
            qkv_bias=bcfg.qkv_bias,
            num_classes=0,
            global_pool="",
            class_token=True,
        )
        if bcfg.stem == "conv":
            self.vit.patch_embed.proj = conv_stem(bcfg.patch_size, bcfg.embed_dim, bcfg.stem_width)
        elif bcfg.stem != "patch":
            raise ValueError(f"backbone.stem must be 'patch' or 'conv', got {bcfg.stem!r}")
        self.embed_dim = bcfg.embed_dim
        self.patch_size = bcfg.patch_size
        self.pretrain_grid = (bcfg.pretrain_img_size // bcfg.patch_size,) * 2
        self.groups: list[tuple[int, int]] = groups
        self.finetune = bool(bcfg.finetune)
        for p in self.parameters():
            p.requires_grad_(False)
        super().train(False)

    @property
    def blocks(self) -> nn.Sequential:
        """The transformer blocks (timm ``Block``: ``blk(tokens [B, N, D]) -> [B, N, D]``)."""
        return self.vit.blocks

    def train(self, mode: bool = True) -> "FrozenViT":
        """Stay in eval mode whatever is asked: the ViT is frozen, dropout/drop-path must never act."""
        return super().train(False)

    def resized_pos_embed(self, grid: tuple[int, int]) -> torch.Tensor:
        """Patch part of the position embedding bicubically resized (align_corners=False) to ``grid`` -> [1, h*w, D]."""
        pos = self.vit.pos_embed[:, self.vit.num_prefix_tokens:]
        gh, gw = self.pretrain_grid
        if (gh, gw) == tuple(grid):
            return pos
        pos = pos.reshape(1, gh, gw, -1).permute(0, 3, 1, 2).float()
        pos = F.interpolate(pos, size=grid, mode="bicubic", align_corners=False)
        return pos.flatten(2).transpose(1, 2).to(self.vit.pos_embed.dtype)

    def embed(self, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Patch-embed ``images`` [B, 3, H, W] and add the resized position embedding -> (tokens [B, HW, D], (h, w)).

        Runs with whatever grad mode the caller has (the injector baseline needs gradients through it).
        """
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images [B, 3, H, W], got shape {tuple(images.shape)}")
        h_img, w_img = images.shape[-2:]
        if h_img % self.patch_size or w_img % self.patch_size:
            raise ValueError(f"image size {h_img}x{w_img} must be a multiple of the patch size {self.patch_size}")
        x = self.vit.patch_embed.proj(images)
        grid = (int(x.shape[-2]), int(x.shape[-1]))
        x = self.vit.patch_embed.norm(x.flatten(2).transpose(1, 2))
        x = self.vit.pos_drop(x + self.resized_pos_embed(grid))
        return x, grid

    @staticmethod
    def tokens_to_map(tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """[B, h*w, D] -> [B, D, h, w]."""
        b, _, d = tokens.shape
        return tokens.transpose(1, 2).reshape(b, d, grid[0], grid[1])

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """images [B, 3, H, W] (normalised) -> 4 maps [B, D, H/16, W/16], last block of each interaction group.

        No autograd graph unless the backbone is fine-tuned (then the caller's grad mode decides)."""
        with torch.set_grad_enabled(self.finetune and torch.is_grad_enabled()):
            x, grid = self.embed(images)
            outs = []
            for start, end in self.groups:
                for blk in self.vit.blocks[start:end + 1]:
                    x = blk(x)
                outs.append(self.tokens_to_map(x, grid).contiguous())
        return outs


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Load a plain/wrapped torch state dict or a safetensors file (no pickle execution: weights_only=True)."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    if path.suffix not in (".pth", ".pt", ".bin", ".ckpt"):
        raise ValueError(f"backbone weights must be .pth/.pt/.bin/.ckpt or .safetensors, got {path.name!r}")
    obj: Any = torch.load(str(path), map_location="cpu", weights_only=True)
    for key in ("model", "state_dict", "module"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(torch.is_tensor(v) for v in obj.values()):
        raise ValueError(f"{path}: expected a state dict of tensors (optionally under 'model'/'state_dict'), got {type(obj).__name__}")
    return obj


def _normalise_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Strip wrapper prefixes (``module.``, ``backbone.`` ...) and drop classifier heads."""
    out = {}
    for key, value in state.items():
        changed = True
        while changed:
            changed = False
            for prefix in _STRIP_PREFIXES:
                if key.startswith(prefix):
                    key, changed = key[len(prefix):], True
        if key.startswith(("head.", "head_dist.", "fc_norm.")):
            continue
        out[key] = value
    return out


def _resize_pos_embed(pos: torch.Tensor, target_len: int, num_prefix: int) -> torch.Tensor:
    """Bicubically resize a square-grid [1, prefix + g*g, D] position embedding to ``target_len`` tokens."""
    n_old = pos.shape[1] - num_prefix
    n_new = target_len - num_prefix
    g_old, g_new = math.isqrt(n_old), math.isqrt(n_new)
    if g_old * g_old != n_old or g_new * g_new != n_new:
        raise ValueError(f"cannot resize pos_embed of {pos.shape[1]} tokens to {target_len}: grids are not square")
    prefix, grid = pos[:, :num_prefix], pos[:, num_prefix:]
    grid = grid.reshape(1, g_old, g_old, -1).permute(0, 3, 1, 2).float()
    grid = F.interpolate(grid, size=(g_new, g_new), mode="bicubic", align_corners=False)
    grid = grid.flatten(2).transpose(1, 2).to(pos.dtype)
    logger.info("resized checkpoint pos_embed grid %dx%d -> %dx%d", g_old, g_old, g_new, g_new)
    return torch.cat([prefix, grid], dim=1)


def load_backbone_weights(module: FrozenViT, path: str | Path) -> None:
    """Load a local timm ViT checkpoint (.pth/.pt, plain or under 'model'/'state_dict') or .safetensors file.

    Never downloads. Raises ``FileNotFoundError`` for a missing file and ``ValueError`` naming the missing,
    unexpected and shape-mismatched keys when the file does not fit the configured ViT.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"backbone weights file not found: {path}")
    state = _normalise_keys(_read_state_dict(path))
    own = module.vit.state_dict()
    if "pos_embed" in state and "pos_embed" in own and state["pos_embed"].shape != own["pos_embed"].shape:
        old, new = state["pos_embed"], own["pos_embed"]
        if old.dim() == 3 and old.shape[0] == 1 and old.shape[2] == new.shape[2]:
            state["pos_embed"] = _resize_pos_embed(old, new.shape[1], module.vit.num_prefix_tokens)
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = sorted(
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(own) & set(state)
        if state[k].shape != own[k].shape
    )
    if missing or unexpected or mismatched:

        def _fmt(items: list[str]) -> str:
            return ", ".join(items[:10]) + (f" ... (+{len(items) - 10} more)" if len(items) > 10 else "") if items else "none"

        raise ValueError(
            f"{path} does not match the configured ViT (embed_dim {module.embed_dim}, depth {len(module.blocks)}): "
            f"missing keys [{_fmt(missing)}]; unexpected keys [{_fmt(unexpected)}]; shape mismatches [{_fmt(mismatched)}]"
        )
    # A meta-built backbone (no storage yet) takes the file's tensors directly instead of copying into nothing.
    on_meta = any(p.is_meta for p in module.vit.parameters())
    module.vit.load_state_dict(state, strict=True, assign=on_meta)
    for p in module.parameters():
        p.requires_grad_(False)
    logger.info("loaded backbone weights from %s (%d tensors)", path, len(state))
