"""Layer-decay parameter groups on the real models, and the poly + linear warm-up schedule vs a direct formula."""
from __future__ import annotations

import math

import pytest
import torch

from dsa_core import build_model
from dsa_core.train.optim import build_optimizer, build_scheduler, param_groups, poly_warmup_factor
from dsa_core.train.pretrain import PatchSegViT


def _by_name(groups: list[dict]) -> dict[str, tuple[float, float]]:
    """name -> (lr scale, weight decay); each parameter must be in exactly one group."""
    out: dict[str, tuple[float, float]] = {}
    for g in groups:
        assert len(g["names"]) == len(g["params"])
        for n in g["names"]:
            assert n not in out, f"{n} in two groups"
            out[n] = (g["lr_scale"], g["weight_decay"])
    return out


@pytest.mark.parametrize("preset,decay,depth,expected_head_scale", [
    ("dsa_tiny", 0.95, 12, 0.5133), ("dsa_large", 0.9, 24, 0.0718),
])
def test_dsa_groups_by_hand(preset, decay, depth, expected_head_scale):
    with torch.device("meta"):
        model = build_model(preset)
    groups = param_groups(model, lr=1e-4, weight_decay=0.05, layer_decay=decay, num_layers=depth)
    table = _by_name(groups)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert set(table) == trainable and not any(n.startswith("backbone.") for n in table)
    head = decay ** (depth + 1)  # id 0: decay^(L + 1 - 0)
    assert head == pytest.approx(expected_head_scale, abs=5e-4)  # the numbers quoted in docs/model_reference.md §1.5
    expected = {
        "decoder.transformer_decoder.query_feat.weight": (head, 0.0),
        "decoder.transformer_decoder.query_embed.weight": (head, 0.0),
        "decoder.transformer_decoder.level_embed.weight": (head, 0.0),
        "decoder.transformer_decoder.class_embed.weight": (head, 0.05),
        "decoder.transformer_decoder.class_embed.bias": (head, 0.0),
        "decoder.transformer_decoder.mask_embed.layers.0.weight": (head, 0.05),
        "decoder.transformer_decoder.decoder_norm.weight": (1.0, 0.0),
        "decoder.pixel_decoder.level_embed": (1.0, 0.0),
        "adapter.prior.spm.stem.0.weight": (1.0, 0.05),  # conv
        "adapter.prior.spm.stem.1.weight": (1.0, 0.0),  # BatchNorm weight (1-D)
        "adapter.prior.spm.stem.1.bias": (1.0, 0.0),
    }
    for name, (scale, wd) in expected.items():
        assert name in table, name
        assert table[name][0] == pytest.approx(scale, rel=1e-12), name
        assert table[name][1] == wd, name
    # every head-embedding parameter (and only those) is scaled down
    embed_prefixes = tuple(f"decoder.transformer_decoder.{k}." for k in
                           ("query_feat", "query_embed", "level_embed", "class_embed", "mask_embed"))
    for name, (scale, wd) in table.items():
        assert scale == pytest.approx(head if name.startswith(embed_prefixes) else 1.0, rel=1e-12), name
        param = dict(model.named_parameters())[name]
        if param.ndim == 1 or name.endswith(".bias"):
            assert wd == 0.0, name
    for g in groups:
        assert g["lr"] == pytest.approx(1e-4 * g["lr_scale"])


def test_pretrain_groups_follow_block_depth():
    model = PatchSegViT(build_model("dsa_nano").cfg)
    depth, decay = model.cfg.backbone.depth, 0.8
    table = _by_name(param_groups(model, lr=1.0, weight_decay=0.1, layer_decay=decay, num_layers=depth))
    assert set(table) == {n for n, _ in model.named_parameters()}
    for b in range(depth):  # block b has id b + 1 -> decay^(L - b)
        assert table[f"backbone.vit.blocks.{b}.attn.qkv.weight"] == (pytest.approx(decay ** (depth - b)), 0.1)
        assert table[f"backbone.vit.blocks.{b}.attn.qkv.bias"][1] == 0.0
    # dsa_nano embeds patches with a conv stem: its convolutions and GroupNorms sit at layer 0 like a patch embedding
    assert table["backbone.vit.patch_embed.proj.0.weight"] == (pytest.approx(decay ** (depth + 1)), 0.1)
    assert table["backbone.vit.patch_embed.proj.1.weight"] == (pytest.approx(decay ** (depth + 1)), 0.0)
    assert table["backbone.vit.pos_embed"] == (pytest.approx(decay ** (depth + 1)), 0.0)
    assert table["backbone.vit.cls_token"] == (pytest.approx(decay ** (depth + 1)), 0.0)
    assert table["backbone.vit.norm.weight"] == (1.0, 0.0)
    assert table["head.1.weight"] == (1.0, 0.1)


def _direct(step: int, total: int, warmup: int, ratio: float, power: float) -> float:
    """mmcv PolyLrUpdaterHook (min_lr 0) with linear warm-up, written as ratio + (1 - ratio) * step / warmup."""
    poly = (1 - step / total) ** power
    return poly * (ratio + (1 - ratio) * step / warmup) if step < warmup else poly


@pytest.mark.parametrize("total,warmup,ratio,power", [(100, 15, 1e-6, 1.0), (60, 10, 0.1, 0.9), (20, 0, 1e-6, 1.0)])
def test_poly_warmup_factor_matches_formula(total, warmup, ratio, power):
    for step in range(total + 1):
        assert poly_warmup_factor(step, total, warmup, ratio, power) == pytest.approx(
            _direct(step, total, warmup, ratio, power), rel=1e-12, abs=1e-15)
    assert poly_warmup_factor(total, total, warmup, ratio, power) == 0.0
    if warmup:
        assert poly_warmup_factor(0, total, warmup, ratio, power) == pytest.approx(ratio)


def test_scheduler_drives_every_group_with_its_layer_scale():
    model = PatchSegViT(build_model("dsa_nano").cfg)
    opt = build_optimizer(model, lr=1e-3, weight_decay=0.01, layer_decay=0.9, num_layers=model.cfg.backbone.depth)
    sched = build_scheduler(opt, total=30, warmup_iters=5, warmup_ratio=1e-6, power=1.0)
    for step in range(30):
        for g in opt.param_groups:
            assert g["lr"] == pytest.approx(1e-3 * g["lr_scale"] * _direct(step, 30, 5, 1e-6, 1.0), rel=1e-9, abs=1e-18)
        opt.step()
        sched.step()
    assert all(g["lr"] == 0.0 for g in opt.param_groups)
    assert math.isclose(max(g["lr_scale"] for g in opt.param_groups), 1.0)


def test_no_trainable_parameters_is_an_error():
    model = torch.nn.Linear(2, 2)
    for p in model.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        build_optimizer(model, 1e-3, 0.0, 1.0, 1)


def test_fused_update_matches_the_per_tensor_loop():
    """The optimiser runs torch's fused AdamW; it must make the same update as the plain per-tensor loop (float64
    reference copy of the same groups), so only speed changes."""
    torch.manual_seed(0)
    model = PatchSegViT(build_model("dsa_nano").cfg)
    opt = build_optimizer(model, lr=1e-3, weight_decay=0.01, layer_decay=0.9, num_layers=model.cfg.backbone.depth)
    assert all(g["fused"] for g in opt.param_groups)
    ref_params = [[p.detach().double().clone().requires_grad_(True) for p in g["params"]] for g in opt.param_groups]
    own = ("lr", "weight_decay")  # per group (layer decay, no decay on norms); the rest is AdamW's recipe
    ref = torch.optim.AdamW([{**{k: g[k] for k in own}, "params": ps} for g, ps in zip(opt.param_groups, ref_params)],
                            betas=(0.9, 0.999), eps=1e-8, foreach=False)
    for _ in range(5):
        for g, ps in zip(opt.param_groups, ref_params):
            for p, q in zip(g["params"], ps):
                grad = torch.randn_like(p)
                p.grad, q.grad = grad, grad.double()
        opt.step()
        ref.step()
    for g, ps in zip(opt.param_groups, ref_params):
        for p, q in zip(g["params"], ps):
            torch.testing.assert_close(p.detach().double(), q.detach(), rtol=1e-5, atol=1e-6)
