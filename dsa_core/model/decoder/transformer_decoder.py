"""Mask2Former ``MultiScaleMaskedTransformerDecoder`` (masked-attention decoder, docs/model_reference.md §2.2).

Learnable queries attend, layer by layer, to one of three pixel-decoder levels (round robin 1/32, 1/16, 1/8) through
cross-attention restricted to the foreground of the mask predicted by the previous round; then self-attention and
an FFN. Prediction heads run before the first layer and after every layer, giving ``dec_layers + 1`` prediction
sets: the last is the output, the others feed deep supervision (``aux_outputs``).

Written to trace/export: the fully-blocked-row fix-up of the attention mask is a pure boolean expression instead of
Mask2Former's in-place index assignment.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dsa_core.config import DSAConfig
from dsa_core.model.decoder.pixel_decoder import c2_xavier_fill
from dsa_core.model.decoder.position_encoding import PositionEmbeddingSine

NUM_DECODER_LEVELS = 3


def _xavier_matrices(module: nn.Module) -> None:
    """Mask2Former's per-layer ``_reset_parameters``: xavier-uniform on every parameter with more than one dim."""
    for p in module.parameters():
        if p.dim() > 1 and not p.is_meta:
            nn.init.xavier_uniform_(p)


class CrossAttentionLayer(nn.Module):
    """Queries attend to one level's pixels; keys carry sine positions, queries their learned embedding."""

    def __init__(self, d_model: int, nhead: int, dropout: float, pre_norm: bool):
        super().__init__()
        self.multihead_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.pre_norm = pre_norm
        _xavier_matrices(self)

    def forward(
        self,
        tgt: torch.Tensor,
        memory: torch.Tensor,
        memory_mask: torch.Tensor | None,
        pos: torch.Tensor,
        query_pos: torch.Tensor,
    ) -> torch.Tensor:
        q = self.norm(tgt) if self.pre_norm else tgt
        tgt2 = self.multihead_attn(query=q + query_pos, key=memory + pos, value=memory, attn_mask=memory_mask)[0]
        tgt = tgt + self.dropout(tgt2)
        return tgt if self.pre_norm else self.norm(tgt)


class SelfAttentionLayer(nn.Module):
    """Queries attend to each other (query and key both get the learned query embedding)."""

    def __init__(self, d_model: int, nhead: int, dropout: float, pre_norm: bool):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.pre_norm = pre_norm
        _xavier_matrices(self)

    def forward(self, tgt: torch.Tensor, query_pos: torch.Tensor) -> torch.Tensor:
        x = self.norm(tgt) if self.pre_norm else tgt
        qk = x + query_pos
        tgt = tgt + self.dropout(self.self_attn(qk, qk, value=x)[0])
        return tgt if self.pre_norm else self.norm(tgt)


class FFNLayer(nn.Module):
    """Two linears with ReLU, residual, LayerNorm (post-norm unless ``pre_norm``)."""

    def __init__(self, d_model: int, dim_feedforward: int, dropout: float, pre_norm: bool):
        super().__init__()
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm = nn.LayerNorm(d_model)
        self.pre_norm = pre_norm
        _xavier_matrices(self)

    def forward(self, tgt: torch.Tensor) -> torch.Tensor:
        x = self.norm(tgt) if self.pre_norm else tgt
        tgt = tgt + self.dropout(self.linear2(self.dropout(F.relu(self.linear1(x)))))
        return tgt if self.pre_norm else self.norm(tgt)


class MLP(nn.Module):
    """Linear layers with ReLU between them (Mask2Former's ``mask_embed`` head)."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int):
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


def attention_mask_from_masks(mask_logits: torch.Tensor, target_size: tuple[int, int], num_heads: int) -> torch.Tensor:
    """Masked-attention mask: True = blocked. [B, Q, H, W] logits -> bool [B * num_heads, Q, h * w].

    A pixel is blocked for a query where the resized mask's sigmoid is < 0.5; a query whose mask is empty at this
    level would attend to nothing (NaN softmax), so such fully blocked rows are unblocked entirely. Detached: the
    mask steers attention but gets no gradient.
    """
    resized = F.interpolate(mask_logits.detach(), size=target_size, mode="bilinear", align_corners=False)
    blocked = resized.sigmoid().flatten(2) < 0.5  # [B, Q, hw]
    blocked = blocked & ~blocked.all(dim=-1, keepdim=True)
    return blocked.unsqueeze(1).expand(-1, num_heads, -1, -1).flatten(0, 1)


class MultiScaleMaskedTransformerDecoder(nn.Module):
    """[1/32, 1/16, 1/8] maps (``in_channels``) + mask_features -> class logits and mask logits per round."""

    def __init__(self, cfg: DSAConfig, in_channels: int):
        super().__init__()
        d = cfg.decoder
        if d.hidden_dim % d.nheads != 0:
            raise ValueError(f"hidden_dim {d.hidden_dim} must be divisible by nheads {d.nheads}")
        if d.dec_layers < 0:
            raise ValueError(f"dec_layers must be >= 0, got {d.dec_layers}")
        self.in_channels = in_channels
        self.num_heads = d.nheads
        self.num_layers = d.dec_layers
        self.num_queries = d.num_queries
        self.pe_layer = PositionEmbeddingSine(d.hidden_dim // 2)
        self.transformer_cross_attention_layers = nn.ModuleList(
            CrossAttentionLayer(d.hidden_dim, d.nheads, d.dropout, d.pre_norm) for _ in range(d.dec_layers)
        )
        self.transformer_self_attention_layers = nn.ModuleList(
            SelfAttentionLayer(d.hidden_dim, d.nheads, d.dropout, d.pre_norm) for _ in range(d.dec_layers)
        )
        self.transformer_ffn_layers = nn.ModuleList(
            FFNLayer(d.hidden_dim, d.dim_feedforward, d.dropout, d.pre_norm) for _ in range(d.dec_layers)
        )
        self.decoder_norm = nn.LayerNorm(d.hidden_dim)
        self.query_feat = nn.Embedding(d.num_queries, d.hidden_dim)
        self.query_embed = nn.Embedding(d.num_queries, d.hidden_dim)
        self.level_embed = nn.Embedding(NUM_DECODER_LEVELS, d.hidden_dim)
        # ENFORCE_INPUT_PROJ False: project only when the pixel decoder width differs from the decoder width.
        self.input_proj = nn.ModuleList()
        for _ in range(NUM_DECODER_LEVELS):
            if in_channels != d.hidden_dim:
                conv = nn.Conv2d(in_channels, d.hidden_dim, kernel_size=1)
                c2_xavier_fill(conv)
                self.input_proj.append(conv)
            else:
                self.input_proj.append(nn.Identity())
        self.class_embed = nn.Linear(d.hidden_dim, cfg.num_classes + 1)
        self.mask_embed = MLP(d.hidden_dim, d.hidden_dim, d.mask_dim, 3)

    def forward_prediction_heads(
        self, output: torch.Tensor, mask_features: torch.Tensor, attn_mask_target_size: tuple[int, int]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """output [Q, B, C] -> (class logits [B, Q, K+1], mask logits [B, Q, H4, W4], attention mask for next layer)."""
        decoder_output = self.decoder_norm(output).transpose(0, 1)
        outputs_class = self.class_embed(decoder_output)
        mask_embed = self.mask_embed(decoder_output)
        outputs_mask = torch.einsum("bqc,bchw->bqhw", mask_embed, mask_features)
        attn_mask = attention_mask_from_masks(outputs_mask, attn_mask_target_size, self.num_heads)
        return outputs_class, outputs_mask, attn_mask

    def forward(self, x: list[torch.Tensor], mask_features: torch.Tensor) -> dict:
        """x: [1/32, 1/16, 1/8] maps; mask_features [B, mask_dim, H/4, W/4] -> dict(pred_logits, pred_masks, aux_outputs)."""
        if len(x) != NUM_DECODER_LEVELS:
            raise ValueError(f"transformer decoder expects {NUM_DECODER_LEVELS} feature levels, got {len(x)}")
        src, pos, size_list = [], [], []
        for i, feat in enumerate(x):
            if feat.dim() != 4 or feat.shape[1] != self.in_channels:
                raise ValueError(f"level {i} must be [B, {self.in_channels}, h, w], got shape {tuple(feat.shape)}")
            size_list.append((int(feat.shape[-2]), int(feat.shape[-1])))
            pos.append(self.pe_layer(feat).to(feat.dtype).flatten(2).permute(2, 0, 1))  # [hw, B, C]
            src.append(
                (self.input_proj[i](feat).flatten(2) + self.level_embed.weight[i][None, :, None]).permute(2, 0, 1)
            )
        bs = src[0].shape[1]
        query_embed = self.query_embed.weight.unsqueeze(1).expand(-1, bs, -1)
        output = self.query_feat.weight.unsqueeze(1).expand(-1, bs, -1)

        predictions_class, predictions_mask = [], []
        outputs_class, outputs_mask, attn_mask = self.forward_prediction_heads(output, mask_features, size_list[0])
        predictions_class.append(outputs_class)
        predictions_mask.append(outputs_mask)
        for i in range(self.num_layers):
            level = i % NUM_DECODER_LEVELS
            output = self.transformer_cross_attention_layers[i](
                output, src[level], memory_mask=attn_mask, pos=pos[level], query_pos=query_embed
            )
            output = self.transformer_self_attention_layers[i](output, query_pos=query_embed)
            output = self.transformer_ffn_layers[i](output)
            outputs_class, outputs_mask, attn_mask = self.forward_prediction_heads(
                output, mask_features, size_list[(i + 1) % NUM_DECODER_LEVELS]
            )
            predictions_class.append(outputs_class)
            predictions_mask.append(outputs_mask)
        return {
            "pred_logits": predictions_class[-1],
            "pred_masks": predictions_mask[-1],
            "aux_outputs": [
                {"pred_logits": c, "pred_masks": m} for c, m in zip(predictions_class[:-1], predictions_mask[:-1])
            ],
        }
