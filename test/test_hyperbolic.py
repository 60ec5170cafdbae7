"""Poincaré-ball maps and L_ubhl against closed forms (float64) and naive label handling."""
from __future__ import annotations

import math

import pytest
import torch

from dsa_core.losses.hyperbolic import (
    UncertaintyHyperbolicLoss,
    dist0,
    downsample_labels,
    expmap0,
    hyperbolic_uncertainty,
    project,
    token_label_sets,
)


def closed_expmap0(v: list[float], c: float) -> list[float]:
    n = math.sqrt(sum(x * x for x in v))
    return [math.tanh(math.sqrt(c) * n) * x / (math.sqrt(c) * n) for x in v]


def closed_dist0(x: list[float], c: float) -> float:
    n = math.sqrt(sum(a * a for a in x))
    return 2 / math.sqrt(c) * math.atanh(math.sqrt(c) * n)


@pytest.mark.parametrize("c", [0.01, 1.0, 0.001])
@pytest.mark.parametrize("norm", [1e-4, 1e-2, 0.5, 3.0, 20.0])
def test_expmap0_and_dist0_match_closed_forms_float64(c: float, norm: float) -> None:
    v = torch.randn(4, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    v = v / v.norm(dim=-1, keepdim=True) * norm
    y = expmap0(v, c)
    for row, out in zip(v.tolist(), y):
        assert out.tolist() == pytest.approx(closed_expmap0(row, c), rel=1e-10, abs=1e-300)
    inside = y[(y.norm(dim=-1) * math.sqrt(c)) < 1 - 1e-5]
    for row, d in zip(inside.tolist(), dist0(inside, c)):
        assert float(d) == pytest.approx(closed_dist0(row, c), rel=1e-9)


def test_expmap0_tiny_and_zero_norms_are_identity_to_first_order() -> None:
    v = torch.tensor([[1e-8, -2e-8, 0.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    y = expmap0(v, 0.01)
    assert torch.allclose(y, v, rtol=1e-9, atol=0)
    v32 = v.float().requires_grad_(True)
    hyperbolic_uncertainty(v32, 0.01).sum().backward()
    assert torch.isfinite(v32.grad).all()


@pytest.mark.parametrize("c", [0.01, 1.0, 0.1])
def test_distance_is_twice_the_norm_below_the_cap(c: float) -> None:
    cap = math.atanh(1 - 1e-3) / math.sqrt(c)
    norms = torch.tensor([0.01, 0.3, 0.5, 0.9]) * cap
    v = torch.randn(4, 16, generator=torch.Generator().manual_seed(1))
    v = v / v.norm(dim=-1, keepdim=True) * norms[:, None]
    d = hyperbolic_uncertainty(v, c, scale="none")
    assert torch.allclose(d, 2 * norms, rtol=2e-4)


def test_projection_caps_norm_and_leaves_inside_points() -> None:
    c, eps = 0.01, 1e-3
    max_norm = (1 - eps) / math.sqrt(c)
    x = torch.randn(5, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    x = x / x.norm(dim=-1, keepdim=True) * torch.tensor([1.0, 5.0, 9.98, 10.0, 30.0], dtype=torch.float64)[:, None]
    y = project(x, c, eps)
    norms = y.norm(dim=-1)
    assert (norms <= max_norm * (1 + 1e-12)).all()
    assert torch.equal(y[:3], x[:3])
    assert torch.allclose(norms[3:], torch.full((2,), max_norm, dtype=torch.float64))
    assert torch.allclose(y[3:] / norms[3:, None], x[3:] / x[3:].norm(dim=-1, keepdim=True))
    d_max = 2 / math.sqrt(c) * math.atanh(1 - eps)
    assert float(dist0(y, c).max()) == pytest.approx(d_max, rel=1e-9)


def test_gradient_is_zero_above_the_cap_and_radial_below() -> None:
    c = 0.01
    cap = math.atanh(1 - 1e-3) / math.sqrt(c)  # ~38.0
    direction = torch.randn(12, generator=torch.Generator().manual_seed(3))
    direction = direction / direction.norm()
    above = (direction * 1.3 * cap).requires_grad_(True)
    hyperbolic_uncertainty(above, c, scale="none").backward()
    assert above.grad.abs().max() < 1e-5
    below = (direction * 0.5 * cap).requires_grad_(True)
    hyperbolic_uncertainty(below, c, scale="none").backward()
    assert torch.allclose(below.grad, 2 * direction, atol=1e-3)


def test_rms_scaling_keeps_typical_tokens_inside_the_ball_with_gradient() -> None:
    """Unit-scale 96-d tokens (norm ~ sqrt(96) ~ 10 per unit, ~49 at scale 5) sit past the c = 0.01 cap without the
    1/sqrt(D) scaling, where the ID term has no gradient; with it they are at d = 2 * RMS and keep a gradient."""
    c, dim = 0.01, 96
    tokens = (5.0 * torch.randn(64, dim, dtype=torch.float64, generator=torch.Generator().manual_seed(11)))
    raw = hyperbolic_uncertainty(tokens, c, scale="none")
    cap = 2 / math.sqrt(c) * math.atanh(1 - 1e-3)
    assert float(raw.min()) == pytest.approx(cap, rel=1e-4)  # all saturated
    scaled = hyperbolic_uncertainty(tokens, c, scale="rms")
    rms = tokens.norm(dim=-1) / math.sqrt(dim)
    assert torch.allclose(scaled, (2 * rms).float(), rtol=1e-4)  # closed form below the cap
    t = tokens.float().requires_grad_(True)
    hyperbolic_uncertainty(t, c, scale="rms").sum().backward()
    assert (t.grad.norm(dim=-1) > 0.1 / math.sqrt(dim)).all()


def test_computed_in_fp32_under_autocast() -> None:
    v = torch.randn(3, 8).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        d = hyperbolic_uncertainty(v, 0.01)
    assert d.dtype == torch.float32
    assert torch.allclose(d, hyperbolic_uncertainty(v.float(), 0.01))


# ---------------------------------------------------------------- label handling
def test_label_downsampling_matches_naive_nearest() -> None:
    labels = torch.randint(0, 256, (2, 64, 96), generator=torch.Generator().manual_seed(4))
    for h, w in [(8, 12), (4, 6), (2, 3), (5, 7)]:
        small = downsample_labels(labels, (h, w))
        naive = torch.tensor([[[int(labels[b, i * 64 // h, j * 96 // w]) for j in range(w)] for i in range(h)]
                              for b in range(2)])
        assert torch.equal(small, naive)


def naive_sets(labels, shapes, k, valid=None):
    ood, ind = [], []
    for b in range(labels.shape[0]):
        o, i_ = [], []
        H, W = labels.shape[1:]
        for h, w in shapes:
            for y in range(h):
                for x in range(w):
                    Y, X = y * H // h, x * W // w
                    lab = int(labels[b, Y, X])
                    ok = valid is None or bool(valid[b, Y, X])
                    o.append(ok and lab == 255)
                    i_.append(ok and 0 <= lab < k)
        ood.append(o)
        ind.append(i_)
    return torch.tensor(ood), torch.tensor(ind)


def make_labels(seed: int = 5, k: int = 4):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, k, (2, 32, 64), generator=g)
    labels[torch.rand(2, 32, 64, generator=g) < 0.3] = 255
    labels[torch.rand(2, 32, 64, generator=g) < 0.1] = 254
    return labels


SHAPES = [(4, 8), (2, 4), (1, 2)]
N = sum(h * w for h, w in SHAPES)


def test_token_sets_match_naive_and_ignore_254_and_padding() -> None:
    labels = make_labels()
    valid = torch.ones(2, 32, 64, dtype=torch.bool)
    valid[:, :, 40:] = False  # right part is padding
    for v in (None, valid):
        ood, ind = token_label_sets(labels, SHAPES, 4, v)
        ref_ood, ref_ind = naive_sets(labels, SHAPES, 4, v)
        assert torch.equal(ood, ref_ood) and torch.equal(ind, ref_ind)
        assert not (ood & ind).any()


def naive_loss(tokens: dict[str, torch.Tensor], labels, k, c, mode, valid=None, scale="rms") -> float:
    ood, ind = naive_sets(labels, SHAPES, k, valid)

    def divisor(img, tok):  # rms: sqrt(D); relative: the image's root-mean-square token norm
        if scale == "rms":
            return math.sqrt(len(tok))
        return math.sqrt(sum(sum(x * x for x in t) for t in img) / len(img))

    def d(t):  # closed form, float64, with the (1-1e-3)/sqrt(c) cap
        return [[min(closed_dist0(closed_expmap0([x / divisor(img, tok) for x in tok], c), c),
                     2 / math.sqrt(c) * math.atanh(1 - 1e-3))
                 for tok in img] for img in t.double().tolist()]

    def mean(dd, mask):
        vals = [dd[b][n] for b in range(len(dd)) for n in range(len(dd[0])) if mask[b, n]]
        return sum(vals) / len(vals) if vals else 0.0

    dists = {name: d(t) for name, t in tokens.items()}
    if mode == "stream":
        return (mean(dists["ood"], ood) if "ood" in dists else 0.0) - mean(dists["id"], ind)
    return sum(mean(dd, ood) - mean(dd, ind) for dd in dists.values())


@pytest.mark.parametrize("scale", ["rms", "relative"])
@pytest.mark.parametrize("mode", ["stream", "label_signed"])
@pytest.mark.parametrize("streams", [("id", "ood"), ("id",)])
def test_loss_matches_naive_reference(mode: str, streams: tuple[str, ...], scale: str) -> None:
    labels = make_labels()
    g = torch.Generator().manual_seed(6)
    tokens = {s: torch.randn(2, N, 5, generator=g) * 30 for s in streams}  # some tokens beyond the cap (rms)
    loss = UncertaintyHyperbolicLoss(num_classes=4, c=0.01, mode=mode, scale=scale)(tokens, SHAPES, labels)
    assert float(loss) == pytest.approx(naive_loss(tokens, labels, 4, 0.01, mode, scale=scale), rel=1e-4)


def test_loss_sign_behaviour() -> None:
    labels = make_labels()
    g = torch.Generator().manual_seed(7)
    base = {s: torch.randn(2, N, 5, generator=g) for s in ("id", "ood")}
    crit = UncertaintyHyperbolicLoss(num_classes=4, scale="rms")  # per-token geometry (relative couples tokens)
    ref = float(crit(base, SHAPES, labels))
    ood_set, id_set = token_label_sets(labels, SHAPES, 4)
    bigger_id = {"id": torch.where(id_set[..., None], base["id"] * 2, base["id"]), "ood": base["ood"]}
    smaller_ood = {"id": base["id"], "ood": torch.where(ood_set[..., None], base["ood"] * 0.5, base["ood"])}
    assert float(crit(bigger_id, SHAPES, labels)) < ref
    assert float(crit(smaller_ood, SHAPES, labels)) < ref
    # tokens outside the relevant set do not matter in "stream" mode
    other = {"id": torch.where(id_set[..., None], base["id"], base["id"] * 9), "ood": base["ood"]}
    assert float(crit(other, SHAPES, labels)) == pytest.approx(ref, rel=1e-6)
    # gradients: ID tokens pushed outward (grad opposite to the token), OOD tokens pulled inward
    toks = {s: t.clone().requires_grad_(True) for s, t in base.items()}
    crit(toks, SHAPES, labels).backward()
    radial_id = (toks["id"].grad * base["id"]).sum(-1)
    radial_ood = (toks["ood"].grad * base["ood"]).sum(-1)
    assert (radial_id[id_set] < 0).all() and (radial_id[~id_set] == 0).all()
    assert (radial_ood[ood_set] > 0).all() and (radial_ood[~ood_set] == 0).all()


def test_empty_sets_contribute_zero_and_valid_mask() -> None:
    g = torch.Generator().manual_seed(8)
    tokens = {s: torch.randn(2, N, 5, generator=g) for s in ("id", "ood")}
    crit = UncertaintyHyperbolicLoss(num_classes=4, scale="rms")
    all_void = torch.full((2, 32, 64), 255)
    d_ood = hyperbolic_uncertainty(tokens["ood"], 0.01, scale="rms").mean()
    assert float(crit(tokens, SHAPES, all_void)) == pytest.approx(float(d_ood), rel=1e-6)
    invalid = torch.zeros(2, 32, 64, dtype=torch.bool)
    assert float(crit(tokens, SHAPES, all_void, valid_mask=invalid)) == 0.0
    labels = make_labels()
    valid = torch.ones(2, 32, 64, dtype=torch.bool)
    valid[1] = False
    loss = crit(tokens, SHAPES, labels, valid_mask=valid)
    assert float(loss) == pytest.approx(naive_loss(tokens, labels, 4, 0.01, "stream", valid), rel=1e-4)


def test_bad_inputs_raise() -> None:
    labels = make_labels()
    crit = UncertaintyHyperbolicLoss(num_classes=4)
    with pytest.raises(ValueError, match="expected \\[B=2, N=42"):
        crit({"id": torch.randn(2, N + 1, 5)}, SHAPES, labels)
    with pytest.raises(KeyError, match="'id'"):
        crit({"ood": torch.randn(2, N, 5)}, SHAPES, labels)
    with pytest.raises(ValueError, match="mode"):
        UncertaintyHyperbolicLoss(mode="sum")
    with pytest.raises(ValueError, match=r"label values \[7\]"):
        crit({"id": torch.randn(2, N, 5)}, SHAPES, torch.full((2, 32, 64), 7))
    with pytest.raises(ValueError, match="curvature"):
        expmap0(torch.ones(3), 0.0)


def test_relative_scaling_is_invariant_to_the_stream_scale_and_rewards_separation() -> None:
    """relative: multiplying every token of a stream by s changes nothing (loss and distances), and the loss
    falls when ID tokens grow relative to the void tokens of the same stream."""
    labels = make_labels()
    g = torch.Generator().manual_seed(12)
    tokens = {s: torch.randn(2, N, 5, generator=g) for s in ("id", "ood")}
    crit = UncertaintyHyperbolicLoss(num_classes=4, scale="relative")
    ref = float(crit(tokens, SHAPES, labels))
    scaled = {k: v * 37.0 for k, v in tokens.items()}
    assert float(crit(scaled, SHAPES, labels)) == pytest.approx(ref, rel=1e-5)
    ood_set, id_set = token_label_sets(labels, SHAPES, 4)
    apart = {"id": torch.where(ood_set[..., None], tokens["id"] * 0.3, tokens["id"]), "ood": tokens["ood"]}
    assert float(crit(apart, SHAPES, labels)) < ref
    d = hyperbolic_uncertainty(tokens["id"], 0.01, scale="relative")
    rel = tokens["id"] / tokens["id"].pow(2).sum(-1).mean(-1, keepdim=True).sqrt()[..., None]
    assert torch.allclose(d, 2 * rel.norm(dim=-1), rtol=1e-4)
    with pytest.raises(ValueError, match="token scale"):
        UncertaintyHyperbolicLoss(scale="max")


def test_one_default_token_scale_for_the_loss_and_the_trainer() -> None:
    from dsa_core.losses.hyperbolic import DEFAULT_TOKEN_SCALE
    from dsa_core.train.config import TrainConfig, default_train_config

    assert TrainConfig().ubhl_scale == DEFAULT_TOKEN_SCALE == UncertaintyHyperbolicLoss().scale
    assert default_train_config("dsa_nano", "stage1").ubhl_scale == DEFAULT_TOKEN_SCALE
    with pytest.raises(ValueError, match="ubhl_scale"):
        TrainConfig(ubhl_scale="max")
