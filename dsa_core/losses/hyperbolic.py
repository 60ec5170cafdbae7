"""Uncertainty-based hyperbolic loss L_ubhl (paper §4.3, Eq. 8-9).

Design: docs/design.md §3.7; facts: docs/model_reference.md §4, §7.6, §7.7.

Tokens, scaled to unit per-channel size (÷√D, see ``hyperbolic_uncertainty``), are mapped into the Poincaré ball
of curvature −c with the exponential map at the origin, projected strictly inside the ball, and their distance to
the origin is the (inverse) uncertainty: OOD features are pulled
to the origin, ID features pushed to the boundary. Without the projection d(0, exp0(v)) = 2‖v‖ for every c;
curvature acts only through the projection cap, which also bounds the otherwise unbounded −d term for ID tokens
(gradient is zero above the cap). Everything runs in fp32 outside autocast: tanh/artanh saturate in fp16.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dsa_core.labels import OUTLIER, VOID, VOID_GROUND

NORM_MIN = 1e-5
TANH_ARG_MAX = 15.0
ARTANH_MAX = 1.0 - 1e-5


def _check_c(c: float) -> float:
    if not c > 0:
        raise ValueError(f"curvature c must be > 0, got {c}")
    return float(c)


def expmap0(v: Tensor, c: float) -> Tensor:
    """Eq. 8: tanh(√c‖v‖)·v/(√c‖v‖), over the last dimension."""
    sqrt_c = math.sqrt(_check_c(c))
    norm = v.norm(dim=-1, keepdim=True).clamp_min(NORM_MIN)
    arg = (sqrt_c * norm).clamp(-TANH_ARG_MAX, TANH_ARG_MAX)
    return torch.tanh(arg) * v / (sqrt_c * norm)


def project(x: Tensor, c: float, eps: float = 1e-3) -> Tensor:
    """Rescale points with ‖x‖ > (1−eps)/√c onto that sphere, so artanh stays finite."""
    max_norm = (1.0 - eps) / math.sqrt(_check_c(c))
    norm = x.norm(dim=-1, keepdim=True).clamp_min(NORM_MIN)
    return torch.where(norm > max_norm, x / norm * max_norm, x)


def dist0(x: Tensor, c: float) -> Tensor:
    """Poincaré distance to the origin, (2/√c)·artanh(√c‖x‖), over the last dimension (artanh input ≤ 1−1e-5)."""
    sqrt_c = math.sqrt(_check_c(c))
    arg = (sqrt_c * x.norm(dim=-1)).clamp(max=ARTANH_MAX)
    return 2.0 / sqrt_c * torch.atanh(arg)


TOKEN_SCALES = ("none", "rms", "relative")
DEFAULT_TOKEN_SCALE = "relative"  # the one default (TrainConfig.ubhl_scale reads it); why: see scale_tokens


def scale_tokens(tokens: Tensor, scale: str) -> Tensor:
    """How tokens [B, N, D] (or [..., D]) are scaled before the exponential map.

    none: as they are. rms: ÷√D (unit-scale channels give d ≈ 2, far inside the ball at initialisation).
    relative: ÷ the root-mean-square token norm of the same image and stream (over the N tokens), so the loss is
    invariant to the stream's overall scale: growing every token no longer lowers it, only separating the ID tokens
    from the void tokens does. An average token sits at d ≈ 2 whatever the width D, far from the ball's boundary;
    a token reaches the cap only with a norm ~38x the image's RMS, which the majority ID tokens never approach.
    """
    if scale == "none":
        return tokens
    if scale == "rms":
        return tokens / math.sqrt(tokens.shape[-1])
    if scale == "relative":
        if tokens.dim() < 2:
            raise ValueError(f"relative scaling needs [..., N, D] tokens, got shape {tuple(tokens.shape)}")
        ms = tokens.pow(2).sum(-1).mean(-1, keepdim=True)  # [..., 1]: mean squared token norm
        return tokens / ms.clamp_min(1e-12).sqrt()[..., None]
    raise ValueError(f"token scale must be one of {TOKEN_SCALES}, got {scale!r}")


def hyperbolic_uncertainty(tokens: Tensor, c: float, eps: float = 1e-3, scale: str = DEFAULT_TOKEN_SCALE) -> Tensor:
    """d(0, project(exp0(scale_tokens(tokens)))) in fp32 with autocast off: [..., D] -> [...].

    Why scaling at all: d(0, exp0(x)) = 2‖x‖ below the cap, and raw adapter tokens have norms of about √D times their
    per-channel scale (≈ 40 at D = 96), already past the cap 2·artanh(1−eps)/√c ≈ 76 of c = 0.01 at
    initialisation; there the ID term −d has zero gradient and L_ubhl stops training the ID stream.
    """
    with torch.autocast(device_type=tokens.device.type, enabled=False):
        return dist0(project(expmap0(scale_tokens(tokens.float(), scale), c), c, eps), c)


def distance_cap(c: float, eps: float = 1e-3) -> float:
    """The largest distance ``hyperbolic_uncertainty`` can return (points projected onto ‖x‖ = (1−eps)/√c)."""
    return 2.0 / math.sqrt(_check_c(c)) * math.atanh(1.0 - eps)


def downsample_labels(labels: Tensor, size: tuple[int, int]) -> Tensor:
    """Nearest-neighbour downsampling of integer maps [B, H, W] -> [B, h, w] (pixel floor(i·H/h), floor(j·W/w))."""
    return F.interpolate(labels[:, None].float(), size=size, mode="nearest")[:, 0].to(labels.dtype)


def token_label_sets(labels: Tensor, token_shapes: list[tuple[int, int]], num_classes: int,
                     valid_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Boolean (ood, id) masks [B, N] over the concatenated token grids (levels in order, row-major).

    void (255) -> OOD; 0..K-1 and void ground (253, a training set's marker, labels.VOID_GROUND) -> ID; anything
    else (254 pasted outliers, invalid/padding pixels where ``valid_mask`` is False) belongs to neither set.
    """
    if labels.dim() != 3:
        raise ValueError(f"expected label maps [B, H, W], got shape {tuple(labels.shape)}")
    labels = labels.long()
    known = ((labels >= 0) & (labels < num_classes)) | (labels == VOID) | (labels == OUTLIER) | (labels == VOID_GROUND)
    if not bool(known.all()):
        bad = torch.unique(labels[~known])[:10].tolist()
        raise ValueError(f"label values {bad} are neither train ids 0..{num_classes - 1} nor "
                         f"{OUTLIER}/{VOID}/{VOID_GROUND}")
    if valid_mask is not None:
        if valid_mask.shape != labels.shape:
            raise ValueError(f"valid_mask shape {tuple(valid_mask.shape)} != labels shape {tuple(labels.shape)}")
        labels = torch.where(valid_mask.bool(), labels, torch.full_like(labels, OUTLIER))
    ood, ind = [], []
    for h, w in token_shapes:
        small = downsample_labels(labels, (int(h), int(w))).flatten(1)
        ood.append(small == VOID)
        ind.append(((small >= 0) & (small < num_classes)) | (small == VOID_GROUND))
    return torch.cat(ood, dim=1), torch.cat(ind, dim=1)


def _masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``values`` where ``mask``; 0 (graph-connected) when the mask is empty."""
    count = mask.sum()
    total = (values * mask).sum()
    return total / count.clamp(min=1)


class UncertaintyHyperbolicLoss(nn.Module):
    """L_ubhl on the final refinement tokens of the two streams (unweighted; λ = ``weight`` goes in the
    caller's weight_dict under ``loss_ubhl``).

    mode="stream" (default, docs/model_reference.md §7.6):
      L = mean_void d(OOD-stream token) − mean_ID d(ID-stream token).
    mode="label_signed": both streams get +d at void and −d at ID tokens; the two streams' terms are summed.
    Single-stream ablation (no "ood" tokens): only the ID stream is supervised — in "stream" mode that is just
    −mean_ID d(ID token); in "label_signed" mode the ID stream gets both terms.
    A term whose token set is empty is 0.
    """

    MODES = ("stream", "label_signed")
    STAT_NAMES = ("dist_id", "dist_ood", "id_at_cap")  # the keys of last_stats (logged by the trainer)

    def __init__(self, c: float = 0.01, weight: float = 0.1, mode: str = "stream", num_classes: int = 19,
                 eps: float = 1e-3, scale: str = DEFAULT_TOKEN_SCALE) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if mode not in self.MODES:
            raise ValueError(f"mode must be one of {self.MODES}, got {mode!r}")
        self.num_classes = num_classes
        self.c = _check_c(c)
        self.weight = weight
        self.mode = mode
        self.eps = eps
        if scale not in TOKEN_SCALES:
            raise ValueError(f"token scale must be one of {TOKEN_SCALES}, got {scale!r}")
        self.scale = scale
        self.last_stats: dict[str, Tensor] = {}

    def forward(self, stream_tokens: dict[str, Tensor], token_shapes: list[tuple[int, int]], labels: Tensor,
                valid_mask: Tensor | None = None) -> Tensor:
        """``stream_tokens`` {"id": [B, N, D], "ood": [B, N, D] (optional)}, ``token_shapes`` the (h, w) of each
        concatenated level, ``labels`` [B, H, W] (0..K-1 and 253 ID, 255 void = OOD, 254 ignored), ``valid_mask``
        [B, H, W] False on padding (padding labelled 255 would otherwise count as OOD)."""
        if "id" not in stream_tokens or set(stream_tokens) - {"id", "ood"}:
            raise KeyError(f"stream_tokens must have 'id' and optionally 'ood'; got keys {sorted(stream_tokens)}")
        expected_n = sum(int(h) * int(w) for h, w in token_shapes)
        for name, tokens in stream_tokens.items():
            if tokens.dim() != 3 or tokens.shape[1] != expected_n or tokens.shape[0] != labels.shape[0]:
                raise ValueError(
                    f"stream {name!r} tokens have shape {tuple(tokens.shape)}; expected [B={labels.shape[0]}, "
                    f"N={expected_n}, D] for token_shapes {list(token_shapes)}"
                )
        device = stream_tokens["id"].device
        ood_set, id_set = token_label_sets(labels.to(device), token_shapes, self.num_classes,
                                           None if valid_mask is None else valid_mask.to(device))
        ood_set, id_set = ood_set.float(), id_set.float()
        dist = {name: hyperbolic_uncertainty(tokens, self.c, self.eps, self.scale)
                for name, tokens in stream_tokens.items()}
        self.last_stats = self._stats(dist, id_set, ood_set)
        if self.mode == "stream":
            loss = -_masked_mean(dist["id"], id_set)
            if "ood" in dist:
                loss = loss + _masked_mean(dist["ood"], ood_set)
            return loss
        return sum(_masked_mean(d, ood_set) - _masked_mean(d, id_set) for d in dist.values())

    def _stats(self, dist: dict[str, Tensor], id_set: Tensor, ood_set: Tensor) -> dict[str, Tensor]:
        """Detached monitoring values: mean distance of ID-stream tokens at ID pixels, of the OOD stream (or the ID
        stream without one) at void pixels, and the fraction of ID tokens at the cap (no gradient there)."""
        with torch.no_grad():
            cap = distance_cap(self.c, self.eps)
            ood_stream = dist.get("ood", dist["id"])
            return {
                "dist_id": _masked_mean(dist["id"], id_set),
                "dist_ood": _masked_mean(ood_stream, ood_set),
                "id_at_cap": _masked_mean((dist["id"] >= cap * (1 - 1e-4)).float(), id_set),
            }
