"""DSAModel end to end: shapes, frozen backbone, padding, determinism, scores, ablations, parameter counts."""
from __future__ import annotations

import copy

import pytest
import torch

from dsa_core import build_model
from dsa_core.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint, save_checkpoint
from dsa_core.config import get_config
from dsa_core.model.params import PAPER_COUNTS_M, parameter_table
from dsa_core.model.scoring import anomaly_from_semantic, semantic_scores


@pytest.fixture(scope="module")
def nano():
    torch.manual_seed(0)
    return build_model("dsa_nano")


def _images(b: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, 3, h, w), generator=g, dtype=torch.uint8)


def test_training_forward_shapes(nano):
    cfg = nano.cfg
    nano.train()
    out = nano(_images(2, 64, 96).float())
    q, k = cfg.decoder.num_queries, cfg.num_classes
    assert out["pred_logits"].shape == (2, q, k + 1)
    assert out["pred_masks"].shape == (2, q, 16, 24)
    assert len(out["aux_outputs"]) == cfg.decoder.dec_layers
    assert set(out["stream_tokens"]) == {"id", "ood"}
    n_tokens = sum(h * w for h, w in out["token_shapes"])
    assert out["token_shapes"] == [(8, 12), (4, 6), (2, 3)]
    assert out["stream_tokens"]["id"].shape == (2, n_tokens, cfg.backbone.embed_dim)


def test_backbone_frozen_and_unchanged_by_training_step(nano):
    model = copy.deepcopy(nano)
    model.train()
    assert all(not p.requires_grad for p in model.backbone.parameters())
    assert not model.backbone.training, "backbone must stay in eval mode"
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    x = _images(1, 64, 64).float()
    ref_features = [f.clone() for f in model.backbone_features(model.preprocess(x)[0])]
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    out = model(x)
    loss = out["pred_masks"].sigmoid().mean() + out["pred_logits"].softmax(-1)[..., 0].mean()
    loss = loss + out["stream_tokens"]["id"].norm(dim=-1).mean() * 1e-3 + out["stream_tokens"]["ood"].norm(dim=-1).mean() * 1e-3
    loss.backward()
    assert all(p.grad is None for p in model.backbone.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.adapter.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.decoder.parameters())
    opt.step()
    for k, v in model.backbone.state_dict().items():
        assert torch.equal(v, before[k]), f"backbone tensor {k} changed"
    after_features = model.backbone_features(model.preprocess(x)[0])
    for a, b in zip(ref_features, after_features):
        assert torch.equal(a, b)


def test_predict_odd_size_padded_and_cropped(nano):
    out = nano.predict(_images(1, 50, 77))
    assert out["semantic"].shape == (1, nano.cfg.num_classes, 50, 77)
    assert out["anomaly"].shape == (1, 50, 77)
    assert torch.isfinite(out["anomaly"]).all()
    # Independent reference: pad the image by hand with the mean colour (which normalises to the model's zero
    # padding) up to 64x96, predict on that, and crop: must equal predict on the odd-sized image.
    x = _images(1, 50, 77)
    mean = torch.tensor(nano.cfg.pixel_mean).view(1, 3, 1, 1) * 255.0
    padded = mean.expand(1, 3, 64, 96).clone()
    padded[..., :50, :77] = x.float()
    ref = nano.predict(padded)
    got = nano.predict(x)
    torch.testing.assert_close(got["anomaly"], ref["anomaly"][..., :50, :77], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(got["semantic"], ref["semantic"][..., :50, :77], rtol=1e-4, atol=1e-5)


def test_predict_scores_match_definition(nano):
    x = _images(1, 64, 64)
    out = nano.predict(x)
    nano.eval()
    with torch.no_grad():
        raw = nano(x)
    masks = torch.nn.functional.interpolate(raw["pred_masks"], size=(64, 64), mode="bilinear", align_corners=False)
    probs = raw["pred_logits"].softmax(-1)[..., :-1]
    # naive loop over queries
    sem = torch.zeros(1, nano.cfg.num_classes, 64, 64)
    for q in range(probs.shape[1]):
        sem += probs[0, q][None, :, None, None] * masks[0, q].sigmoid()[None, None]
    torch.testing.assert_close(out["semantic"], sem, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out["anomaly"], 1 - sem.max(1).values, rtol=1e-5, atol=1e-6)


def test_scoring_rba_and_errors():
    logits = torch.randn(2, 5, 4)
    masks = torch.randn(2, 5, 3, 3)
    sem = semantic_scores(logits, masks)
    assert sem.shape == (2, 3, 3, 3)
    torch.testing.assert_close(anomaly_from_semantic(sem, "rba"), -torch.tanh(sem).sum(1))
    with pytest.raises(ValueError, match="unknown anomaly score"):
        anomaly_from_semantic(sem, "energy")


def test_determinism():
    torch.manual_seed(3)
    a = build_model("dsa_nano")
    torch.manual_seed(3)
    b = build_model("dsa_nano")
    x = _images(1, 64, 64, seed=5)
    assert torch.equal(a.predict(x)["anomaly"], b.predict(x)["anomaly"])


@pytest.mark.parametrize(
    "overrides",
    [
        {"adapter.level_encoding": "shared"},
        {"adapter.streams": 1},
        {"adapter.injector": True, "adapter.streams": 1},
        {"adapter.num_blocks": 2},
        {"adapter.extra_extractors": False},
        {"adapter.fusion": "concat"},
        {"adapter.fusion": "id_only"},
        {"adapter.side": True},
        {"score": "rba"},
    ],
    ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()),
)
def test_ablation_switches_build_and_run(overrides):
    cfg = get_config("dsa_nano").replace(**overrides)
    model = build_model(cfg)
    model.train()
    out = model(_images(1, 64, 64).float())
    loss = out["pred_masks"].mean() + out["pred_logits"].mean()
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is None for p in model.backbone.parameters())
    if cfg.adapter.streams == 1:
        assert "ood" not in out["stream_tokens"]
    pred = model.predict(_images(1, 40, 72))
    assert pred["anomaly"].shape == (1, 40, 72)


def test_side_adapter_reads_every_frozen_group_and_trains():
    """The side-adapter baseline: own patch embedding, frozen group outputs fused in, same decoder interface."""
    torch.manual_seed(0)
    # without the output path's direct add of the frozen maps, a group reaches the features only through the fusion
    cfg = get_config("dsa_nano").replace(**{"adapter.side": True, "adapter.add_vit_feature": False})
    model = build_model(cfg).eval()
    x = model.preprocess(_images(1, 64, 96).float())[0]
    feats = model.backbone_features(x)
    base = model.adapter(x, feats)
    assert [tuple(f.shape[-2:]) for f in base.features] == [(16, 24), (8, 12), (4, 6), (2, 3)]
    assert base.token_shapes == [(8, 12), (4, 6), (2, 3)] and set(base.stream_tokens) == {"id"}
    g = torch.Generator().manual_seed(1)
    for group in range(4):  # each frozen group output reaches the side tokens
        changed = [f.clone() for f in feats]
        changed[group] = changed[group] + torch.randn(changed[group].shape, generator=g)
        assert not torch.allclose(model.adapter(x, changed).features[0], base.features[0])
    model.train()
    out = model(_images(1, 64, 96).float())
    (out["pred_masks"].mean() + out["pred_logits"].mean()).backward()
    assert model.adapter.patch_embed.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.backbone.parameters())
    with pytest.raises(ValueError, match="at most one"):
        build_model(get_config("dsa_nano").replace(**{"adapter.side": True, "adapter.injector": True}))


def test_invalid_input_shape(nano):
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        nano.predict(torch.zeros(1, 64, 64, 3))


@pytest.mark.parametrize(
    "preset,tolerances",
    [
        ("dsa_tiny", {"backbone": 0.01, "adapter": 0.10, "total": 0.04}),
        ("dsa_large", {"backbone": 0.01, "adapter": 0.03, "trainable": 0.03, "total": 0.02}),
    ],
)
def test_parameter_counts_match_paper(preset, tolerances):
    with torch.device("meta"):
        model = build_model(preset)
    counts = parameter_table(model)
    paper = PAPER_COUNTS_M[preset]
    for key, tol in tolerances.items():
        rel = abs(counts[key] / 1e6 - paper[key]) / paper[key]
        assert rel <= tol, f"{preset} {key}: {counts[key] / 1e6:.3f}M vs paper {paper[key]}M ({100 * rel:.1f}% > {100 * tol}%)"
    assert counts["trainable"] == counts["adapter"] + counts["decoder"]
    assert counts["total"] == counts["backbone"] + counts["trainable"]


def test_checkpoint_roundtrip_and_refusals(tmp_path, nano):
    path = save_checkpoint({"config": nano.cfg.to_dict(), "model": nano.state_dict(), "step": 7}, tmp_path / "m.pt")
    model, data = model_from_checkpoint(path)
    assert data["step"] == 7
    x = _images(1, 64, 64)
    assert torch.equal(model.predict(x)["anomaly"], nano.predict(x)["anomaly"])
    # truncated file
    raw = path.read_bytes()
    bad = tmp_path / "truncated.pt"
    bad.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CheckpointError, match="cannot be loaded safely"):
        load_checkpoint(bad)
    # not a DSA checkpoint
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, other)
    with pytest.raises(CheckpointError, match="expected format"):
        load_checkpoint(other)
    # pickled code is refused by weights_only
    evil = tmp_path / "evil.pt"
    torch.save({"format": "dsa-checkpoint-v1", "config": {}, "model": {}, "x": copy.deepcopy}, evil)
    with pytest.raises(CheckpointError):
        load_checkpoint(evil)
