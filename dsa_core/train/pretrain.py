"""Backbone pre-training: our documented stand-in for ImageNet weights, which cannot be downloaded here.

A ViT with exactly the preset's backbone shapes (the same ``FrozenViT`` module, made trainable for this stage only)
plus a light per-patch head (LayerNorm + Linear over the concatenated four interaction-group outputs) is trained
with per-pixel cross-entropy (patch logits upsampled bilinearly to the label size, void 255 ignored) on the
synthetic Cityscapes train split; with ``outlier_class`` the head has one more class, which learns pasted outlier-pool
objects (``TrainConfig.pretrain_outlier_prob``), so the backbone also represents objects that are not scene classes,
as ImageNet weights do. Only the ViT is kept: ``save_backbone`` writes its state dict in timm's key layout
(``patch_embed.proj.weight``, ``blocks.0.attn.qkv.weight``, ...) to a safetensors file that
``build_model(preset, backbone_weights=...)`` loads. DSA stages 1 and 2 then keep these weights frozen.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from dsa_core.config import DSAConfig
from dsa_core.labels import OUTLIER, VOID
from dsa_core.model.backbone import FrozenViT
from dsa_core.model.preprocess import normalize, pad_to_multiple


class PatchSegViT(nn.Module):
    """Trainable ViT (``backbone`` = FrozenViT shapes, unfrozen) + per-patch linear classifier."""

    def __init__(self, cfg: DSAConfig, outlier_class: bool = False) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = FrozenViT(cfg)
        for p in self.backbone.parameters():
            p.requires_grad_(True)
        dim = cfg.backbone.embed_dim * 4
        self.head = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, cfg.num_classes + int(outlier_class)))
        self.register_buffer("pixel_mean", torch.tensor(cfg.pixel_mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(cfg.pixel_std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images [B, 3, H, W] RGB 0..255 -> class logits [B, K, H, W] (padded to the size divisor, then cropped)."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images [B, 3, H, W], got shape {tuple(images.shape)}")
        x, (h, w) = pad_to_multiple(normalize(images.float(), self.pixel_mean, self.pixel_std), self.cfg.size_divisor)
        tokens, grid = self.backbone.embed(x)  # runs with gradients (FrozenViT.forward would not)
        outs = []
        for start, end in self.backbone.groups:
            for blk in self.backbone.blocks[start:end + 1]:
                tokens = blk(tokens)
            outs.append(tokens)
        logits = self.head(torch.cat(outs, dim=-1))  # [B, hw, K]
        logits = FrozenViT.tokens_to_map(logits, grid)
        logits = F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return logits[..., :h, :w]

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"semantic": [B, K, H, W] softmax scores}`` over the scene classes (same key as DSAModel.predict, for the
        validation hook; the outlier class, if any, is left out)."""
        was_training = self.training
        self.eval()
        try:
            return {"semantic": self(images)[:, :self.cfg.num_classes].softmax(1)}
        finally:
            self.train(was_training)


def pretrain_loss(logits: torch.Tensor, labels: torch.Tensor, num_classes: int,
                  ignore_index: int = VOID) -> dict[str, torch.Tensor]:
    """Per-pixel cross-entropy over train ids, void ignored. Pasted-outlier pixels (254) are class ``num_classes``
    when the head has that extra class, else ignored."""
    if logits.shape[1] not in (num_classes, num_classes + 1):
        raise ValueError(f"pretrain logits have {logits.shape[1]} classes; expected {num_classes} or {num_classes + 1}")
    labels = labels.to(logits.device).long()
    outlier_target = num_classes if logits.shape[1] == num_classes + 1 else ignore_index
    labels = torch.where(labels == OUTLIER, torch.full_like(labels, outlier_target), labels)
    if bool((labels == ignore_index).all()):
        return {"loss_ce": logits.sum() * 0.0}
    return {"loss_ce": F.cross_entropy(logits.float(), labels, ignore_index=ignore_index)}


def backbone_state_dict(model: PatchSegViT) -> dict[str, torch.Tensor]:
    """The ViT weights in timm key layout (what ``load_backbone_weights`` reads), contiguous CPU copies."""
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in model.backbone.vit.state_dict().items()}


def save_backbone(model: PatchSegViT, path: str | Path) -> Path:
    """Write the ViT weights to a safetensors file atomically (temp file + rename)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(backbone_state_dict(model), str(tmp), metadata={"format": "timm-vit", "preset": model.cfg.name})
    tmp.replace(path)
    return path
