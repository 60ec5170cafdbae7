"""Mask2Former criterion pieces and the mask contrastive loss, each against a direct reference."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from dsa_core.losses.contrastive import MaskContrastiveLoss
from dsa_core.losses.criterion import SetCriterion, base_loss_name, global_num_masks, weighted_total
from dsa_core.losses.mask_losses import dice_loss, pairwise_dice, pairwise_sigmoid_bce, sigmoid_bce_loss
from dsa_core.losses.matcher import HungarianMatcher
from test_matcher import naive_bilinear  # the shared by-hand bilinear sampler
from dsa_core.losses.point_sampling import get_uncertain_point_coords_with_randomness, point_sample
from dsa_core.losses.targets import semantic_to_targets


def sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def bce(x: float, t: float) -> float:
    return -(t * math.log(sig(x)) + (1 - t) * math.log(1 - sig(x)))


# ---------------------------------------------------------------- targets
def test_semantic_to_targets_one_mask_per_present_class_void_in_none() -> None:
    labels = torch.tensor([[[0, 0, 3, 255], [254, 3, 3, 255]], [[1, 1, 1, 1], [255, 255, 255, 255]]])
    targets = semantic_to_targets(labels, num_classes=4)
    assert targets[0]["labels"].tolist() == [0, 3]
    assert targets[1]["labels"].tolist() == [1]
    for t, lab in zip(targets, labels):
        assert t["labels"].dtype == torch.int64 and t["masks"].dtype == torch.bool
        for cls, mask in zip(t["labels"].tolist(), t["masks"]):
            assert torch.equal(mask, lab == cls)
        covered = t["masks"].any(0)
        assert not covered[(lab == 255) | (lab == 254)].any()


def test_semantic_to_targets_rejects_unknown_values() -> None:
    with pytest.raises(ValueError, match=r"label values \[7\]"):
        semantic_to_targets(torch.tensor([[[0, 7]]]), num_classes=4)
    with pytest.raises(ValueError, match="integer"):
        semantic_to_targets(torch.zeros(1, 2, 2), num_classes=4)


# ---------------------------------------------------------------- point sampling
def test_importance_sampling_keeps_most_uncertain_then_random() -> None:
    logits = torch.randn(3, 1, 6, 6, generator=torch.Generator().manual_seed(0)) * 4
    num_points, over, imp = 20, 3.0, 0.75
    coords = get_uncertain_point_coords_with_randomness(logits, num_points, over, imp,
                                                        generator=torch.Generator().manual_seed(5))
    assert coords.shape == (3, 20, 2)
    g = torch.Generator().manual_seed(5)
    candidates = torch.rand(3, 60, 2, generator=g)
    fresh = torch.rand(3, 5, 2, generator=g)
    unc = -point_sample(logits, candidates)[:, 0].abs()
    for n in range(3):
        kept = coords[n, :15]
        kept_idx = [int(((candidates[n] - c).abs().sum(1) < 1e-7).nonzero()[0]) for c in kept]
        dropped = sorted(set(range(60)) - set(kept_idx))
        assert len(set(kept_idx)) == 15
        assert unc[n, kept_idx].min() >= unc[n, dropped].max()
        assert torch.equal(coords[n, 15:], fresh[n])


# ---------------------------------------------------------------- mask losses by hand
def test_pairwise_and_matched_mask_losses_by_hand() -> None:
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 7, generator=g) * 2
    targets = (torch.rand(2, 7, generator=g) > 0.5).float()
    bce_pw, dice_pw = pairwise_sigmoid_bce(logits, targets), pairwise_dice(logits, targets)
    for i in range(3):
        for j in range(2):
            x, t = logits[i].tolist(), targets[j].tolist()
            assert float(bce_pw[i, j]) == pytest.approx(sum(bce(a, b) for a, b in zip(x, t)) / 7, abs=1e-5)
            p = [sig(a) for a in x]
            ref = 1 - (2 * sum(a * b for a, b in zip(p, t)) + 1) / (sum(p) + sum(t) + 1)
            assert float(dice_pw[i, j]) == pytest.approx(ref, abs=1e-5)
    # matched versions: sum over pairs (i, i) divided by num_masks
    pairs = logits[:2]
    assert float(sigmoid_bce_loss(pairs, targets, 4.0)) == pytest.approx(
        float(bce_pw[0, 0] + bce_pw[1, 1]) / 4, abs=1e-6)
    assert float(dice_loss(pairs, targets, 4.0)) == pytest.approx(float(dice_pw[0, 0] + dice_pw[1, 1]) / 4, abs=1e-6)


# ---------------------------------------------------------------- criterion
def make_criterion(num_classes: int, num_points: int = 64) -> SetCriterion:
    return SetCriterion(num_classes, HungarianMatcher(num_points=num_points), num_points=num_points)


def random_outputs(batch: int, q: int, k: int, h: int, w: int, n_aux: int, seed: int = 0, grad: bool = True):
    g = torch.Generator().manual_seed(seed)

    def one():
        return {"pred_logits": torch.randn(batch, q, k + 1, generator=g).requires_grad_(grad),
                "pred_masks": torch.randn(batch, q, h, w, generator=g).requires_grad_(grad)}

    out = one()
    out["aux_outputs"] = [one() for _ in range(n_aux)]
    return out


def test_criterion_keys_finite_and_gradients_flow() -> None:
    k = 4
    labels = torch.randint(0, k, (2, 16, 16), generator=torch.Generator().manual_seed(0))
    labels[:, :3] = 255
    outputs = random_outputs(2, 6, k, 4, 4, n_aux=2)
    crit = make_criterion(k)
    losses = crit(outputs, semantic_to_targets(labels, k), generator=torch.Generator().manual_seed(0))
    expected = {f"{name}{suffix}" for name in ("loss_ce", "loss_mask", "loss_dice") for suffix in ("", "_0", "_1")}
    assert set(losses) == expected
    assert all(torch.isfinite(v) and v.dim() == 0 for v in losses.values())
    total = crit.weighted_total(losses)
    ref = sum({"loss_ce": 2, "loss_mask": 5, "loss_dice": 5}[base_loss_name(key)] * v for key, v in losses.items())
    assert float(total.detach()) == pytest.approx(float(ref.detach()), rel=1e-6)
    total.backward()
    for out in [outputs, *outputs["aux_outputs"]]:
        assert out["pred_logits"].grad.abs().sum() > 0
        assert out["pred_masks"].grad.abs().sum() > 0


def test_criterion_perfect_predictions_give_low_loss() -> None:
    k, h, w = 3, 32, 32
    labels = torch.full((1, h, w), 255)
    labels[0, :16] = 0
    labels[0, 16:, :16] = 2
    targets = semantic_to_targets(labels, k)
    q = 4
    logits = torch.full((1, q, k + 1), -10.0)
    logits[0, 0, 0] = logits[0, 1, 2] = 10.0
    logits[0, 2:, k] = 10.0  # remaining queries: no-object
    small = F.interpolate(labels[:, None].float(), size=(h // 4, w // 4), mode="nearest")[:, 0]
    masks = torch.full((1, q, h // 4, w // 4), -10.0)
    masks[0, 0][small[0] == 0] = 10.0
    masks[0, 1][small[0] == 2] = 10.0
    rand_out = random_outputs(1, q, k, h // 4, w // 4, 0, grad=False)
    totals = {}
    for importance in (0.75, 0.0):
        crit = SetCriterion(k, HungarianMatcher(num_points=256), num_points=256, importance_sample_ratio=importance)
        perfect = crit({"pred_logits": logits, "pred_masks": masks}, targets,
                       generator=torch.Generator().manual_seed(0))
        rand = crit(rand_out, targets, generator=torch.Generator().manual_seed(0))
        assert float(perfect["loss_ce"]) < 1e-3
        totals[importance] = float(crit.weighted_total(perfect)) / float(crit.weighted_total(rand))
    # Only points within one low-res pixel of a class boundary see interpolated (uncertain) logits; importance
    # sampling deliberately puts 75% of the points there, uniform sampling rarely does.
    assert totals[0.75] < 0.25
    assert totals[0.0] < 0.05
    assert totals[0.0] < totals[0.75]


def test_criterion_no_object_weighting_by_hand() -> None:
    k, q = 2, 3
    labels = torch.ones(1, 8, 8, dtype=torch.int64)  # one target: class 1
    outputs = random_outputs(1, q, k, 2, 2, 0, seed=3, grad=False)
    targets = semantic_to_targets(labels, k)
    crit = SetCriterion(k, HungarianMatcher(num_points=32), eos_coef=0.1, num_points=32)
    (rows, cols), = crit.matcher(outputs, targets, generator=torch.Generator().manual_seed(0))
    losses = crit(outputs, targets, generator=torch.Generator().manual_seed(0))
    matched = int(rows[0])
    num, den = 0.0, 0.0
    for i in range(q):
        cls = 1 if i == matched else k
        weight = 1.0 if i == matched else 0.1
        logp = torch.log_softmax(outputs["pred_logits"][0, i].double(), -1)[cls]
        num += -weight * float(logp)
        den += weight
    assert float(losses["loss_ce"]) == pytest.approx(num / den, abs=1e-6)


def test_criterion_mask_losses_by_hand_and_num_masks_normalisation() -> None:
    # Replays the criterion's random draws (matcher points per image, then candidate + fresh points for the
    # matched masks) and recomputes BCE/dice with hand-written sampling and formulas.
    k, q, p, over, imp = 3, 3, 20, 3.0, 0.75
    g = torch.Generator().manual_seed(4)
    labels = torch.randint(0, k, (2, 8, 8), generator=g)
    labels[0, :, :3] = 255
    targets = semantic_to_targets(labels, k)
    outputs = random_outputs(2, q, k, 4, 4, 0, seed=5, grad=False)
    crit = SetCriterion(k, HungarianMatcher(num_points=p), num_points=p, oversample_ratio=over,
                        importance_sample_ratio=imp)
    losses = crit(outputs, targets, generator=torch.Generator().manual_seed(9))
    indices = crit.matcher(outputs, targets, generator=torch.Generator().manual_seed(9))
    replay = torch.Generator().manual_seed(9)
    for _ in targets:
        torch.rand(p, 2, generator=replay)  # the matcher's draws
    src = torch.cat([outputs["pred_masks"][b, s] for b, (s, _) in enumerate(indices)])
    tgt = torch.cat([targets[b]["masks"][t].float() for b, (_, t) in enumerate(indices)])
    n = src.shape[0]
    candidates = torch.rand(n, int(p * over), 2, generator=replay)
    fresh = torch.rand(n, p - int(p * imp), 2, generator=replay)
    num_masks = sum(len(t["labels"]) for t in targets)
    bce_total = dice_total = 0.0
    for i in range(n):
        unc = [-abs(naive_bilinear(src[i], float(x), float(y))) for x, y in candidates[i]]
        order = sorted(range(len(unc)), key=lambda j: -unc[j])[: int(p * imp)]
        pts = [candidates[i, j] for j in order] + list(fresh[i])
        xs = [naive_bilinear(src[i], float(c[0]), float(c[1])) for c in pts]
        ts = [naive_bilinear(tgt[i], float(c[0]), float(c[1])) for c in pts]
        bce_total += sum(bce(x, t) for x, t in zip(xs, ts)) / p
        probs = [sig(x) for x in xs]
        dice_total += 1 - (2 * sum(a * b for a, b in zip(probs, ts)) + 1) / (sum(probs) + sum(ts) + 1)
    assert n == num_masks  # Q >= number of classes, so every target is matched
    assert float(losses["loss_mask"]) == pytest.approx(bce_total / num_masks, abs=1e-5)
    assert float(losses["loss_dice"]) == pytest.approx(dice_total / num_masks, abs=1e-5)


def test_criterion_empty_targets_give_zero_mask_loss_and_all_no_object() -> None:
    k = 3
    labels = torch.full((1, 8, 8), 255)
    outputs = random_outputs(1, 4, k, 2, 2, 1)
    losses = make_criterion(k)(outputs, semantic_to_targets(labels, k))
    assert float(losses["loss_mask"].detach()) == 0.0 and float(losses["loss_dice"].detach()) == 0.0
    ref = F.cross_entropy(outputs["pred_logits"][0].detach(), torch.full((4,), k))
    assert float(losses["loss_ce"].detach()) == pytest.approx(float(ref), abs=1e-6)
    sum(losses.values()).backward()  # still differentiable
    # a batch mixing an all-void image with a labelled one
    labels = torch.cat([labels, torch.ones(1, 8, 8, dtype=torch.int64)])
    mixed = make_criterion(k)(random_outputs(2, 4, k, 2, 2, 0, grad=False), semantic_to_targets(labels, k))
    assert all(torch.isfinite(v) for v in mixed.values()) and float(mixed["loss_mask"]) > 0


def test_weighted_total_requires_every_weight() -> None:
    losses = {"loss_ce": torch.tensor(1.0), "loss_ubhl": torch.tensor(-2.0), "loss_ubhl_0": torch.tensor(3.0)}
    with pytest.raises(KeyError, match="loss_ubhl"):
        weighted_total(losses, {"loss_ce": 2.0})
    assert float(weighted_total(losses, {"loss_ce": 2.0, "loss_ubhl": 0.1})) == pytest.approx(2.0 + 0.1)


def test_global_num_masks_without_distributed_is_local_count_min_one() -> None:
    assert float(global_num_masks(0, torch.device("cpu"))) == 1.0
    assert float(global_num_masks(7, torch.device("cpu"))) == 7.0


# ---------------------------------------------------------------- mask contrastive loss
def naive_contrastive(logits: torch.Tensor, masks: torch.Tensor, outlier: torch.Tensor, margin: float) -> float:
    b_, q_, k1 = logits.shape
    h, w = masks.shape[-2:]
    H, W = outlier.shape[-2:]
    id_terms, ood_terms = [], []
    for b in range(b_):
        s_low = [[0.0] * w for _ in range(h)]
        for y in range(h):
            for x in range(w):
                best = -1e9
                for k in range(k1 - 1):
                    val = 0.0
                    for q in range(q_):
                        prob = math.exp(float(logits[b, q, k])) / sum(math.exp(float(v)) for v in logits[b, q])
                        val += prob * sig(float(masks[b, q, y, x]))
                    best = max(best, val)
                s_low[y][x] = -best
        for Y in range(H):
            for X in range(W):
                fy, fx = Y * (h - 1) / (H - 1), X * (w - 1) / (W - 1)  # align_corners=True
                y0, x0 = min(int(fy), h - 2), min(int(fx), w - 2)
                dy, dx = fy - y0, fx - x0
                s = ((1 - dy) * (1 - dx) * s_low[y0][x0] + (1 - dy) * dx * s_low[y0][x0 + 1]
                     + dy * (1 - dx) * s_low[y0 + 1][x0] + dy * dx * s_low[y0 + 1][x0 + 1])
                if outlier[b, Y, X]:
                    ood_terms.append(max(0.0, margin - s) ** 2)
                else:
                    id_terms.append(s ** 2)
    mean = lambda v: sum(v) / len(v) if v else 0.0  # noqa: E731
    return 0.5 * (mean(id_terms) + mean(ood_terms))


def test_contrastive_loss_matches_naive_loop_on_final_and_aux() -> None:
    g = torch.Generator().manual_seed(0)
    outputs = random_outputs(2, 3, 2, 3, 3, n_aux=2, seed=1)
    outlier = torch.rand(2, 7, 7, generator=g) > 0.7
    losses = MaskContrastiveLoss(margin=1.0)(outputs, outlier)
    assert set(losses) == {"loss_ood", "loss_ood_0", "loss_ood_1"}
    for key, out in [("loss_ood", outputs), ("loss_ood_0", outputs["aux_outputs"][0]),
                     ("loss_ood_1", outputs["aux_outputs"][1])]:
        ref = naive_contrastive(out["pred_logits"].detach(), out["pred_masks"].detach(), outlier, 1.0)
        assert float(losses[key].detach()) == pytest.approx(ref, abs=1e-5)
    sum(losses.values()).backward()
    assert outputs["pred_masks"].grad.abs().sum() > 0 and outputs["pred_logits"].grad.abs().sum() > 0


def test_contrastive_loss_without_outliers_is_only_the_id_term() -> None:
    outputs = random_outputs(1, 2, 2, 2, 2, 0, seed=2, grad=False)
    none = torch.zeros(1, 4, 4, dtype=torch.bool)
    loss = MaskContrastiveLoss()(outputs, none)["loss_ood"]
    assert float(loss) == pytest.approx(naive_contrastive(outputs["pred_logits"], outputs["pred_masks"], none, 1.0),
                                        abs=1e-6)
    with pytest.raises(ValueError, match="bool"):
        MaskContrastiveLoss()(outputs, none.long())


def reference_score(out: dict, size: tuple[int, int]) -> torch.Tensor:
    """s = -max_k L_k in float64, bilinear (align_corners) to ``size``: the score the contrastive kinds share."""
    logits, masks = out["pred_logits"].detach().double(), out["pred_masks"].detach().double()
    evidence = torch.einsum("bqk,bqhw->bkhw", logits.softmax(-1)[..., :-1], masks.sigmoid())
    return torch.nn.functional.interpolate(-evidence.max(1).values[:, None], size=size, mode="bilinear",
                                           align_corners=True)[:, 0]


def test_contrastive_bce_kind_matches_naive_loop_and_raises_in_distribution_evidence() -> None:
    g = torch.Generator().manual_seed(3)
    outputs = random_outputs(2, 3, 2, 3, 3, n_aux=0, seed=4)
    outlier = torch.rand(2, 7, 7, generator=g) > 0.7
    loss = MaskContrastiveLoss(kind="bce")(outputs, outlier)["loss_ood"]
    # reference in float64: s = -max_k L_k, bilinear (align_corners) to the label size, softplus terms per pixel
    s = reference_score(outputs, (7, 7))
    softplus = lambda v: math.log1p(math.exp(float(v)))  # noqa: E731
    id_terms = [softplus(v) for v in s[~outlier]]
    ood_terms = [softplus(-v) for v in s[outlier]]
    ref = 0.5 * (sum(id_terms) / len(id_terms) + sum(ood_terms) / len(ood_terms))
    assert float(loss.detach()) == pytest.approx(ref, abs=1e-6)
    # on in-distribution pixels only, a gradient step lowers the margin form by LOWERING the class evidence and
    # lowers the bce form by RAISING it (the reason the bce kind exists here)
    for kind, sign in (("margin", -1.0), ("bce", 1.0)):
        out = random_outputs(1, 3, 2, 3, 3, n_aux=0, seed=5)
        before = torch.einsum("bqk,bqhw->bkhw", out["pred_logits"].softmax(-1)[..., :-1],
                              out["pred_masks"].sigmoid()).max(1).values.mean().item()
        MaskContrastiveLoss(kind=kind)(out, torch.zeros(1, 7, 7, dtype=torch.bool))["loss_ood"].backward()
        with torch.no_grad():
            for key in ("pred_logits", "pred_masks"):
                out[key] -= 0.5 * out[key].grad
            after = torch.einsum("bqk,bqhw->bkhw", out["pred_logits"].softmax(-1)[..., :-1],
                                 out["pred_masks"].sigmoid()).max(1).values.mean().item()
        assert sign * (after - before) > 0, kind
    with pytest.raises(ValueError, match="kind"):
        MaskContrastiveLoss(kind="hinge")


def test_contrastive_bce_id_margin_ood_kind_mixes_the_two_terms() -> None:
    g = torch.Generator().manual_seed(6)
    outputs = random_outputs(2, 3, 2, 3, 3, n_aux=1, seed=7)
    outlier = torch.rand(2, 7, 7, generator=g) > 0.6
    losses = MaskContrastiveLoss(margin=1.0, kind="bce_id_margin_ood")(outputs, outlier)
    for key, out in (("loss_ood", outputs), ("loss_ood_0", outputs["aux_outputs"][0])):
        s = reference_score(out, (7, 7))
        id_terms = [math.log1p(math.exp(float(v))) for v in s[~outlier]]  # BCE(s, 0), as in the bce kind
        ood_terms = [max(0.0, 1.0 - float(v)) ** 2 for v in s[outlier]]  # the margin form's OOD term
        ref = 0.5 * (sum(id_terms) / len(id_terms) + sum(ood_terms) / len(ood_terms))
        assert float(losses[key].detach()) == pytest.approx(ref, abs=1e-6), key


def test_contrastive_void_weight_counts_void_pixels_that_many_times_in_the_id_term() -> None:
    g = torch.Generator().manual_seed(8)
    outputs = random_outputs(2, 3, 2, 3, 3, n_aux=1, seed=9)
    outlier = torch.rand(2, 7, 7, generator=g) > 0.7
    void = (torch.rand(2, 7, 7, generator=g) > 0.6) & ~outlier
    losses = MaskContrastiveLoss(kind="bce_id_margin_ood", void_weight=4.0)(outputs, outlier, void_mask=void)
    for key, out in (("loss_ood", outputs), ("loss_ood_0", outputs["aux_outputs"][0])):
        s = reference_score(out, (7, 7))
        # every void ID pixel listed 4 times: the weighted mean is a plain mean over the repeated list
        id_terms = [math.log1p(math.exp(float(v))) for v in s[~outlier & ~void]]
        id_terms += 4 * [math.log1p(math.exp(float(v))) for v in s[void]]
        ood_terms = [max(0.0, 1.0 - float(v)) ** 2 for v in s[outlier]]
        ref = 0.5 * (sum(id_terms) / len(id_terms) + sum(ood_terms) / len(ood_terms))
        assert float(losses[key].detach()) == pytest.approx(ref, abs=1e-6), key
    # weight 1 is Mask2Anomaly's loss, with or without a void mask
    plain = MaskContrastiveLoss(kind="bce_id_margin_ood")(outputs, outlier)["loss_ood"]
    assert float(MaskContrastiveLoss(kind="bce_id_margin_ood")(outputs, outlier, void_mask=void)["loss_ood"]) == \
        pytest.approx(float(plain), abs=1e-7)
    with pytest.raises(ValueError, match="void mask"):
        MaskContrastiveLoss(void_weight=2.0)(outputs, outlier)
    with pytest.raises(ValueError, match="void_weight"):
        MaskContrastiveLoss(void_weight=0.0)


def _num_masks_worker(rank: int, init_file: str, counts: list[int], out_dir: str) -> None:
    import torch.distributed as dist_

    dist_.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=len(counts))
    try:
        value = float(global_num_masks(counts[rank], torch.device("cpu")))
        with open(f"{out_dir}/rank{rank}.txt", "w") as f:
            f.write(repr(value))
    finally:
        dist_.destroy_process_group()


@pytest.mark.slow
def test_global_num_masks_is_averaged_over_ranks(tmp_path) -> None:
    import torch.multiprocessing as mp

    # spawn, not fork: earlier tests in the same pytest process start rclpy/DDS and ONNX Runtime threads, and a
    # child forked from a multi-threaded process can crash (it did: a segfault in the child's garbage collector)
    counts = [3, 0]
    mp.start_processes(_num_masks_worker, args=(str(tmp_path / "init"), counts, str(tmp_path)), nprocs=2,
                       join=True, start_method="spawn")
    assert [float((tmp_path / f"rank{r}.txt").read_text()) for r in range(2)] == [1.5, 1.5]


@pytest.mark.slow
def test_all_losses_on_dsa_nano_training_outputs() -> None:
    """The losses consume DSAModel's training outputs as they are; L_ubhl alone reaches both adapter streams."""
    import warnings

    from dsa_core import build_model
    from dsa_core.losses.hyperbolic import UncertaintyHyperbolicLoss

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # MSDeformAttn head-dim performance notice
        model = build_model("dsa_nano").train()
    k = model.cfg.num_classes
    labels = torch.randint(0, k, (1, 64, 64), generator=torch.Generator().manual_seed(0))
    labels[:, :16] = 255
    out = model(torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1)))
    crit = make_criterion(k, num_points=256)
    losses = crit(out, semantic_to_targets(labels, k))
    assert {f"loss_dice_{i}" for i in range(len(out["aux_outputs"]))} <= set(losses)
    ubhl = UncertaintyHyperbolicLoss(num_classes=k)
    losses["loss_ubhl"] = ubhl(out["stream_tokens"], out["token_shapes"], labels)
    losses.update(MaskContrastiveLoss()(out, labels == 3))
    total = crit.weighted_total(losses, {"loss_ubhl": ubhl.weight, "loss_ood": 1.0})
    assert torch.isfinite(total)
    model.zero_grad()
    losses["loss_ubhl"].backward()
    grads = {name: p.grad for name, p in model.adapter.named_parameters() if p.grad is not None}
    assert grads and all(torch.isfinite(g).all() for g in grads.values())
    assert not any(p.grad is not None for p in model.decoder.parameters())
