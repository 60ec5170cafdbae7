"""HungarianMatcher vs brute force over all assignments, with costs from a naive float64 reference."""
from __future__ import annotations

import itertools
import math

import pytest
import torch

from dsa_core.losses.matcher import HungarianMatcher
from dsa_core.losses.point_sampling import point_sample


def naive_bilinear(img: torch.Tensor, x: float, y: float) -> float:
    """Sample a [H, W] map at normalised (x, y), align_corners=False, zero padding (grid_sample semantics)."""
    h, w = img.shape
    px, py = x * w - 0.5, y * h - 0.5
    x0, y0 = math.floor(px), math.floor(py)
    total = 0.0
    for yy, wy in ((y0, 1 - (py - y0)), (y0 + 1, py - y0)):
        for xx, wx in ((x0, 1 - (px - x0)), (x0 + 1, px - x0)):
            if 0 <= yy < h and 0 <= xx < w:
                total += wy * wx * float(img[yy, xx])
    return total


def naive_cost(logits, mask_logits, label, tgt_mask, coords, wc=2.0, wm=5.0, wd=5.0) -> float:
    probs = torch.softmax(logits.double(), -1)
    p = [naive_bilinear(mask_logits.double(), float(x), float(y)) for x, y in coords]
    t = [naive_bilinear(tgt_mask.double(), float(x), float(y)) for x, y in coords]
    bce = sum(-(ti * math.log(1 / (1 + math.exp(-pi))) + (1 - ti) * math.log(1 - 1 / (1 + math.exp(-pi))))
              for pi, ti in zip(p, t)) / len(p)
    sig = [1 / (1 + math.exp(-pi)) for pi in p]
    dice = 1 - (2 * sum(s * ti for s, ti in zip(sig, t)) + 1) / (sum(sig) + sum(t) + 1)
    return wc * -float(probs[label]) + wm * bce + wd * dice


def brute_force_min(cost: list[list[float]]) -> float:
    q, m = len(cost), len(cost[0])
    if m == 0:
        return 0.0
    if q >= m:
        return min(sum(cost[perm[j]][j] for j in range(m)) for perm in itertools.permutations(range(q), m))
    return min(sum(cost[i][perm[i]] for i in range(q)) for perm in itertools.permutations(range(m), q))


def make_case(seed: int, batch: int, q: int, k: int, m_list: list[int], h: int = 8, w: int = 8):
    g = torch.Generator().manual_seed(seed)
    outputs = {"pred_logits": torch.randn(batch, q, k + 1, generator=g) * 2,
               "pred_masks": torch.randn(batch, q, h // 2, w // 2, generator=g) * 3}
    targets = []
    for m in m_list:
        labels = torch.randperm(k, generator=g)[:m]
        masks = torch.rand(m, h, w, generator=g) > 0.5
        targets.append({"labels": labels, "masks": masks})
    return outputs, targets


@pytest.mark.parametrize("seed,q,m_list", [(0, 5, [4, 2]), (1, 4, [3, 1]), (2, 5, [1, 0]), (3, 3, [4, 4])])
def test_matcher_matches_brute_force(seed: int, q: int, m_list: list[int]) -> None:
    k, num_points = 6, 40
    outputs, targets = make_case(seed, len(m_list), q, k, m_list)
    matcher = HungarianMatcher(num_points=num_points)
    indices = matcher(outputs, targets, generator=torch.Generator().manual_seed(100 + seed))
    # Replay the matcher's point draws: one uniform [P, 2] draw per image, in batch order.
    g = torch.Generator().manual_seed(100 + seed)
    for b, (rows, cols) in enumerate(indices):
        coords = torch.rand(num_points, 2, generator=g)
        m = len(targets[b]["labels"])
        cost = [[naive_cost(outputs["pred_logits"][b, i], outputs["pred_masks"][b, i], int(targets[b]["labels"][j]),
                            targets[b]["masks"][j].float(), coords) for j in range(m)] for i in range(q)]
        assert len(rows) == len(cols) == min(q, m)
        assert len(set(rows.tolist())) == len(rows) and len(set(cols.tolist())) == len(cols)
        matched = sum(cost[i][j] for i, j in zip(rows.tolist(), cols.tolist()))
        assert matched == pytest.approx(brute_force_min(cost) if m else 0.0, abs=1e-4)


def test_cost_matrix_equals_naive_costs() -> None:
    outputs, targets = make_case(7, 1, 3, 4, [2])
    coords = torch.rand(25, 2, generator=torch.Generator().manual_seed(3))
    cost = HungarianMatcher(cost_class=1.5, cost_mask=3.0, cost_dice=0.5).cost_matrix(
        outputs["pred_logits"][0], outputs["pred_masks"][0], targets[0], point_coords=coords)
    for i in range(3):
        for j in range(2):
            ref = naive_cost(outputs["pred_logits"][0, i], outputs["pred_masks"][0, i], int(targets[0]["labels"][j]),
                             targets[0]["masks"][j].float(), coords, 1.5, 3.0, 0.5)
            assert float(cost[i, j]) == pytest.approx(ref, abs=1e-4)


def test_point_sample_matches_naive_bilinear() -> None:
    g = torch.Generator().manual_seed(0)
    img = torch.randn(2, 1, 5, 7, generator=g)
    coords = torch.rand(2, 30, 2, generator=g) * 1.2 - 0.1  # includes points outside the map (zero padding)
    out = point_sample(img, coords)
    assert out.shape == (2, 1, 30)
    for n in range(2):
        for p in range(30):
            ref = naive_bilinear(img[n, 0], float(coords[n, p, 0]), float(coords[n, p, 1]))
            assert float(out[n, 0, p]) == pytest.approx(ref, abs=1e-5)


def test_matcher_prefers_the_obvious_assignment() -> None:
    # Query i predicts class i with a mask equal to target i: the identity must be chosen.
    h = w = 8
    masks = torch.zeros(3, h, w, dtype=torch.bool)
    masks[0, :4], masks[1, 4:, :4], masks[2, 4:, 4:] = True, True, True
    logits = torch.full((1, 3, 4), -5.0)
    for i in range(3):
        logits[0, i, i] = 5.0
    pred_masks = torch.where(masks, 8.0, -8.0)[None][:, [2, 0, 1]]
    logits = logits[:, [2, 0, 1]]
    rows, cols = HungarianMatcher(num_points=200)(
        {"pred_logits": logits, "pred_masks": pred_masks},
        [{"labels": torch.tensor([0, 1, 2]), "masks": masks}], generator=torch.Generator().manual_seed(0))[0]
    assert dict(zip(rows.tolist(), cols.tolist())) == {0: 2, 1: 0, 2: 1}


def test_matcher_rejects_bad_input() -> None:
    outputs, targets = make_case(0, 2, 3, 4, [1, 1])
    with pytest.raises(ValueError, match="targets for a batch"):
        HungarianMatcher()(outputs, targets[:1])
    outputs["pred_masks"][0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        HungarianMatcher(num_points=5000)(outputs, targets)
