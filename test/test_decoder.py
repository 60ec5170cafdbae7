"""Mask2Former decoder: shapes, masked attention, position encoding, determinism, gradients, parameter counts."""
from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F

from dsa_core.config import get_config
from dsa_core.model.decoder import (
    Mask2FormerDecoder,
    MultiScaleMaskedTransformerDecoder,
    PositionEmbeddingSine,
    attention_mask_from_masks,
)
from dsa_core.model.decoder.pixel_decoder import encoder_reference_points
from dsa_core.model.decoder.transformer_decoder import CrossAttentionLayer

pytestmark = pytest.mark.filterwarnings("ignore:MSDeformAttn head dim")

IMAGE_H, IMAGE_W = 64, 96


def _features(cfg, batch: int = 2, seed: int = 0, size: tuple[int, int] = (IMAGE_H, IMAGE_W)) -> list[torch.Tensor]:
    """Adapter-like inputs for an image of ``size``: D-channel maps at 1/4, 1/8, 1/16, 1/32."""
    g = torch.Generator().manual_seed(seed)
    d = cfg.backbone.embed_dim
    return [torch.randn(batch, d, size[0] // s, size[1] // s, generator=g) for s in (4, 8, 16, 32)]


def _nano_decoder(seed: int = 0) -> Mask2FormerDecoder:
    torch.manual_seed(seed)
    return Mask2FormerDecoder(get_config("dsa_nano"))


def test_output_shapes_and_aux_count():
    cfg = get_config("dsa_nano")
    dec = _nano_decoder()
    out = dec(_features(cfg))
    q, k = cfg.decoder.num_queries, cfg.num_classes
    assert out["pred_logits"].shape == (2, q, k + 1)
    assert out["pred_masks"].shape == (2, q, IMAGE_H // 4, IMAGE_W // 4)
    assert len(out["aux_outputs"]) == cfg.decoder.dec_layers
    for aux in out["aux_outputs"]:
        assert set(aux) == {"pred_logits", "pred_masks"}
        assert aux["pred_logits"].shape == out["pred_logits"].shape
        assert aux["pred_masks"].shape == out["pred_masks"].shape
    # The last aux set is the prediction of the round before the final one, hence different.
    assert not torch.equal(out["aux_outputs"][-1]["pred_masks"], out["pred_masks"])
    assert torch.isfinite(out["pred_masks"]).all() and torch.isfinite(out["pred_logits"]).all()


def test_pixel_decoder_levels_and_fp32_under_autocast():
    cfg = get_config("dsa_nano")
    dec = _nano_decoder()
    feats = _features(cfg)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mask_features, multi_scale = dec.pixel_decoder([f.bfloat16() for f in feats])
    assert mask_features.dtype == torch.float32
    assert mask_features.shape == (2, cfg.decoder.mask_dim, IMAGE_H // 4, IMAGE_W // 4)
    # Low -> high resolution, as the transformer decoder's round robin expects.
    assert [tuple(m.shape[-2:]) for m in multi_scale] == [(2, 3), (4, 6), (8, 12)]
    assert all(m.dtype == torch.float32 and m.shape[1] == cfg.decoder.conv_dim for m in multi_scale)


def test_pixel_decoder_mixes_levels():
    """The deformable encoder attends across levels: the 1/8 output must react to the 1/32 input, and the
    1/4 mask features to both the 1/4 lateral input and the encoder output."""
    cfg = get_config("dsa_nano")
    dec = _nano_decoder().eval()
    feats = _features(cfg, batch=1, size=(32, 64))
    with torch.no_grad():
        base_mask, base_levels = dec.pixel_decoder(feats)
        moved = list(feats)
        moved[3] = feats[3] + 1.0  # only the 1/32 input
        mask_32, levels_32 = dec.pixel_decoder(moved)
        moved = list(feats)
        moved[0] = feats[0] + 1.0  # only the 1/4 input (lateral FPN branch)
        mask_4, levels_4 = dec.pixel_decoder(moved)
    assert (levels_32[2] - base_levels[2]).abs().max() > 1e-3
    assert (mask_32 - base_mask).abs().max() > 1e-3
    assert (mask_4 - base_mask).abs().max() > 1e-3
    for a, b in zip(levels_4, base_levels):
        torch.testing.assert_close(a, b)  # the 1/4 map does not enter the encoder


def test_bad_inputs_raise():
    cfg = get_config("dsa_nano")
    dec = _nano_decoder()
    feats = _features(cfg)
    with pytest.raises(ValueError, match="4 feature maps"):
        dec(feats[:3])
    bad = list(feats)
    bad[2] = torch.randn(2, cfg.backbone.embed_dim + 1, IMAGE_H // 16, IMAGE_W // 16)
    with pytest.raises(ValueError, match="feature 2"):
        dec(bad)


def test_position_encoding_matches_direct_formula():
    num_feats, h, w = 8, 5, 7
    pe = PositionEmbeddingSine(num_feats)(torch.zeros(2, 3, h, w))
    assert pe.shape == (2, 2 * num_feats, h, w)
    expected = torch.zeros(2 * num_feats, h, w, dtype=torch.float64)
    eps = 1e-6
    for i in range(h):
        for j in range(w):
            y = (i + 1) / (h + eps) * 2 * math.pi
            x = (j + 1) / (w + eps) * 2 * math.pi
            for c in range(num_feats):
                freq = 10000.0 ** (2 * (c // 2) / num_feats)
                trig = math.sin if c % 2 == 0 else math.cos
                expected[c, i, j] = trig(y / freq)
                expected[num_feats + c, i, j] = trig(x / freq)
    torch.testing.assert_close(pe[0].double(), expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(pe[1], pe[0])
    with pytest.raises(ValueError, match="even"):
        PositionEmbeddingSine(7)


def test_encoder_reference_points_are_grid_centres():
    shapes = [(2, 3), (4, 6)]
    ref = encoder_reference_points(shapes, batch=2, device=torch.device("cpu"))
    assert ref.shape == (2, 6 + 24, 2, 2)
    # Deformable-DETR formula with valid ratio 1: linspace(0.5, H-0.5, H) / H, (x, y) order.
    rows = []
    for h, w in shapes:
        ys, xs = torch.meshgrid(torch.linspace(0.5, h - 0.5, h), torch.linspace(0.5, w - 0.5, w), indexing="ij")
        rows.append(torch.stack([xs.reshape(-1) / w, ys.reshape(-1) / h], -1))
    expected = torch.cat(rows)
    for lvl in range(len(shapes)):
        torch.testing.assert_close(ref[1, :, lvl], expected)


def _mask2former_attn_mask(mask_logits: torch.Tensor, size: tuple[int, int], heads: int) -> torch.Tensor:
    """Mask2Former's code path: interpolate, threshold, repeat per head, in-place reset of fully blocked rows."""
    m = F.interpolate(mask_logits, size=size, mode="bilinear", align_corners=False)
    m = (m.sigmoid().flatten(2).unsqueeze(1).repeat(1, heads, 1, 1).flatten(0, 1) < 0.5).bool().detach()
    m[torch.where(m.sum(-1) == m.shape[-1])] = False
    return m


def test_attention_mask_blocks_below_half_and_resets_empty_rows():
    heads = 3
    logits = torch.randn(2, 4, 3, 5, dtype=torch.float64)
    logits[0, 1] = -5.0  # empty mask: every pixel blocked -> must be reset to fully open
    logits[1, 2] = 5.0  # full mask: nothing blocked
    mask = attention_mask_from_masks(logits, (3, 5), heads)
    assert mask.dtype == torch.bool and mask.shape == (2 * heads, 4, 15)
    for b in range(2):
        for q in range(4):
            probs = [1.0 / (1.0 + math.exp(-v)) for v in logits[b, q].flatten().tolist()]
            expected = [p < 0.5 for p in probs]
            if all(expected):
                expected = [False] * len(expected)
            for h in range(heads):
                assert mask[b * heads + h, q].tolist() == expected
    assert not mask[0 * heads, 1].any() and not mask[1 * heads + 2, 2].any()
    assert mask.any()  # the random rows do block something


def test_attention_mask_matches_mask2former_with_resize():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 6, 16, 24, generator=g) * 3
    logits[1, 4] = -10.0
    for size in [(2, 3), (4, 6), (8, 12)]:
        ours = attention_mask_from_masks(logits, size, 4)
        assert torch.equal(ours, _mask2former_attn_mask(logits, size, 4))
    assert not attention_mask_from_masks(logits, (4, 6), 4)[1 * 4, 4].any()


def test_attention_mask_has_no_gradient_path():
    logits = torch.randn(1, 2, 4, 4, requires_grad=True)
    assert not attention_mask_from_masks(logits, (2, 2), 2).requires_grad


def test_masked_cross_attention_ignores_blocked_pixels():
    torch.manual_seed(0)
    d, heads, q, hw = 8, 2, 3, 10
    layer = CrossAttentionLayer(d, heads, dropout=0.0, pre_norm=False).eval()
    tgt, query_pos = torch.randn(q, 1, d), torch.randn(q, 1, d)
    memory, pos = torch.randn(hw, 1, d), torch.randn(hw, 1, d)
    logits = torch.full((1, q, 1, hw), -3.0)
    logits[0, 0, 0, :4] = 3.0  # query 0 sees pixels 0..3
    logits[0, 1, 0, 6:] = 3.0  # query 1 sees pixels 6..9; query 2 sees nothing -> reset to everything
    mask = attention_mask_from_masks(logits, (1, hw), heads)
    base = layer(tgt, memory, mask, pos, query_pos)
    changed = memory.clone()
    changed[4:6] += 10.0  # pixels 4, 5 are blocked for queries 0 and 1
    out = layer(tgt, changed, mask, pos, query_pos)
    torch.testing.assert_close(out[:2], base[:2])
    assert (out[2] - base[2]).abs().max() > 1e-3  # query 2 (reset row) attends everywhere
    changed = memory.clone()
    changed[0] += 10.0  # visible to query 0 only
    out = layer(tgt, changed, mask, pos, query_pos)
    assert (out[0] - base[0]).abs().max() > 1e-3
    torch.testing.assert_close(out[1], base[1])


def test_masked_cross_attention_matches_naive_per_head_reference():
    """Batch 2, 2 heads, float64: the [B * heads] mask layout must pair each image and head with its own mask."""
    torch.manual_seed(1)
    d, heads, q, h, w, b = 8, 2, 4, 2, 3, 2
    layer = CrossAttentionLayer(d, heads, dropout=0.0, pre_norm=False).double().eval()
    tgt, query_pos = torch.randn(q, b, d, dtype=torch.float64), torch.randn(q, b, d, dtype=torch.float64)
    memory, pos = torch.randn(h * w, b, d, dtype=torch.float64), torch.randn(h * w, b, d, dtype=torch.float64)
    logits = torch.randn(b, q, h, w, dtype=torch.float64) * 2
    logits[1, 3] = -4.0  # fully blocked -> open
    mask = attention_mask_from_masks(logits, (h, w), heads)
    got = layer(tgt, memory, mask, pos, query_pos)

    attn = layer.multihead_attn
    wq, wk, wv = attn.in_proj_weight.chunk(3)
    bq, bk, bv = attn.in_proj_bias.chunk(3)
    hd = d // heads
    expected = torch.zeros_like(got)
    for bi in range(b):
        qs = (tgt[:, bi] + query_pos[:, bi]) @ wq.T + bq
        ks = (memory[:, bi] + pos[:, bi]) @ wk.T + bk
        vs = memory[:, bi] @ wv.T + bv
        blocked = torch.sigmoid(logits[bi].flatten(1)) < 0.5  # [q, hw]
        for qi in range(q):
            row_blocked = blocked[qi] if not blocked[qi].all() else torch.zeros_like(blocked[qi])
            outs = []
            for hi in range(heads):
                sl = slice(hi * hd, (hi + 1) * hd)
                scores = (ks[:, sl] @ qs[qi, sl]) / math.sqrt(hd)
                scores = scores.masked_fill(row_blocked, float("-inf"))
                outs.append(torch.softmax(scores, 0) @ vs[:, sl])
            o = torch.cat(outs) @ attn.out_proj.weight.T + attn.out_proj.bias
            expected[qi, bi] = F.layer_norm(tgt[qi, bi] + o, (d,), layer.norm.weight, layer.norm.bias)
    torch.testing.assert_close(got, expected)


def test_layers_use_round_robin_levels_and_previous_prediction_masks():
    cfg = get_config("dsa_nano")
    dec = _nano_decoder().eval()
    captured: list[dict] = []
    hooks = [
        layer.multihead_attn.register_forward_pre_hook(lambda _m, _a, kw: captured.append(kw), with_kwargs=True)
        for layer in dec.transformer_decoder.transformer_cross_attention_layers
    ]
    with torch.no_grad():
        out = dec(_features(cfg, batch=2))
    for h in hooks:
        h.remove()
    assert len(captured) == cfg.decoder.dec_layers
    level_sizes = [(IMAGE_H // 32, IMAGE_W // 32), (IMAGE_H // 16, IMAGE_W // 16), (IMAGE_H // 8, IMAGE_W // 8)]
    for i, kw in enumerate(captured):
        size = level_sizes[i % 3]
        assert kw["key"].shape[0] == size[0] * size[1]  # layer i attends to level i mod 3 (low -> high res)
        expected = attention_mask_from_masks(out["aux_outputs"][i]["pred_masks"], size, cfg.decoder.nheads)
        assert torch.equal(kw["attn_mask"], expected)  # mask from the prediction made just before layer i


def test_pre_norm_variant_runs():
    cfg = get_config("dsa_nano").replace(**{"decoder.pre_norm": True})
    torch.manual_seed(0)
    out = Mask2FormerDecoder(cfg)(_features(cfg, batch=1, size=(32, 64)))
    assert out["pred_masks"].shape == (1, cfg.decoder.num_queries, 8, 16)
    assert torch.isfinite(out["pred_logits"]).all()


def test_deterministic_with_seed():
    cfg = get_config("dsa_nano")
    a, b = _nano_decoder(seed=7), _nano_decoder(seed=7)
    for (na, pa), (nb, pb) in zip(a.named_parameters(), b.named_parameters()):
        assert na == nb and torch.equal(pa, pb), na
    feats = _features(cfg, batch=1, size=(32, 64))
    out_a, out_b = a(feats), b(feats)
    assert torch.equal(out_a["pred_masks"], out_b["pred_masks"])
    assert torch.equal(out_a["pred_logits"], out_b["pred_logits"])
    c = _nano_decoder(seed=8)
    assert not torch.equal(c(feats)["pred_logits"], out_a["pred_logits"])


def test_gradient_reaches_every_parameter():
    cfg = get_config("dsa_nano")
    dec = _nano_decoder().train()
    feats = _features(cfg, batch=1, size=(32, 64))
    g = torch.Generator().manual_seed(1)
    weights = None

    def loss_fn() -> torch.Tensor:
        nonlocal weights
        out = dec(feats)
        preds = [out] + out["aux_outputs"]
        if weights is None:
            weights = [
                (torch.randn(p["pred_logits"].shape, generator=g), torch.randn(p["pred_masks"].shape, generator=g))
                for p in preds
            ]
        return sum((p["pred_logits"] * wl).sum() + (p["pred_masks"] * wm).mean() for p, (wl, wm) in zip(preds, weights))

    # At Mask2Former's init the deformable sampling-offset and attention-weight matrices are zero, so the encoder
    # query (and with it the pixel decoder's level embedding) has no influence yet; after one step it does.
    opt = torch.optim.SGD(dec.parameters(), lr=1e-2)
    loss_fn().backward()
    assert dec.pixel_decoder.encoder_layers[0].self_attn.sampling_offsets.weight.grad.abs().sum() > 0
    opt.step()
    opt.zero_grad()
    loss_fn().backward()
    for name, p in dec.named_parameters():
        assert p.grad is not None, f"no gradient for {name}"
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"zero gradient for {name}"


def test_input_projection_only_when_widths_differ():
    cfg = get_config("dsa_nano")
    same = MultiScaleMaskedTransformerDecoder(cfg, cfg.decoder.hidden_dim)
    assert sum(p.numel() for p in same.input_proj.parameters()) == 0
    other = MultiScaleMaskedTransformerDecoder(cfg, cfg.decoder.hidden_dim * 2)
    h = cfg.decoder.hidden_dim
    assert sum(p.numel() for p in other.input_proj.parameters()) == 3 * (2 * h * h + h)


def _count(module: torch.nn.Module) -> float:
    return sum(p.numel() for p in module.parameters()) / 1e6


@pytest.mark.parametrize(
    "preset, in_channels, total, pixel, transformer",
    [("dsa_tiny", 192, 19.71, 5.25, 14.46), ("dsa_large", 1024, 104.94, 84.76, 20.18)],
)
def test_parameter_counts_match_reference(preset, in_channels, total, pixel, transformer):
    cfg = get_config(preset)
    with torch.device("meta"):
        dec = Mask2FormerDecoder(cfg, in_channels=in_channels)
    assert all(p.is_meta for p in dec.parameters())
    counts = (_count(dec), _count(dec.pixel_decoder), _count(dec.transformer_decoder))
    print(f"{preset} decoder (in {in_channels}): total {counts[0]:.3f}M, pixel {counts[1]:.3f}M, "
          f"transformer {counts[2]:.3f}M (reference {total} = {pixel} + {transformer})")
    for got, ref in zip(counts, (total, pixel, transformer)):
        assert abs(got - ref) <= 0.01 * ref, (got, ref)


def _mask_threshold_margin(out: dict, size: tuple[int, int]) -> float:
    """Smallest |logit| among the resized masks that decide each layer's attention mask (0 = on the threshold)."""
    h, w = size
    level_sizes = [(h // 32, w // 32), (h // 16, w // 16), (h // 8, w // 8)]
    margins = [
        F.interpolate(aux["pred_masks"], size=level_sizes[i % 3], mode="bilinear", align_corners=False).abs().min()
        for i, aux in enumerate(out["aux_outputs"])
    ]
    return float(min(margins))


def test_exports_to_onnx_and_matches_onnxruntime(tmp_path):
    """Guards the export path (opset 17): MultiheadAttention with a boolean mask and the mask fix-up must trace."""
    ort = pytest.importorskip("onnxruntime")
    cfg = get_config("dsa_nano")
    dec = _nano_decoder().eval()
    size = (32, 64)

    class Wrapped(torch.nn.Module):
        def __init__(self, inner: Mask2FormerDecoder):
            super().__init__()
            self.inner = inner

        def forward(self, f4, f8, f16, f32):
            out = self.inner([f4, f8, f16, f32])
            return out["pred_logits"], out["pred_masks"]

    # Masked attention is discontinuous at sigmoid = 0.5: a mask logit within float noise (~1e-6) of 0 flips in
    # ONNX Runtime and legitimately changes the output. Use the first input seed that is not such a borderline case.
    with torch.no_grad():
        seeds = (s for s in range(20) if _mask_threshold_margin(dec(_features(cfg, 1, s, size)), size) > 2e-5)
        seed = next(seeds, None)
    assert seed is not None, "no well-conditioned input among 20 seeds"
    feats = _features(cfg, batch=1, seed=seed, size=size)
    path = tmp_path / "decoder.onnx"
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python ints becoming constants (fixed size)
        torch.onnx.export(Wrapped(dec), tuple(feats), str(path), opset_version=17, dynamo=False)
        expected = Wrapped(dec)(*feats)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {i.name: f.numpy() for i, f in zip(sess.get_inputs(), feats)})
    for g, e in zip(got, expected):
        torch.testing.assert_close(torch.from_numpy(g), e, atol=1e-4, rtol=1e-4)
