"""The zero-cost baselines against a float64 per-pixel loop written from their definitions, and the RbA score
on pixels whose right answer is known."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dsa_core.eval.baselines import BASELINES, baseline_scores, class_distribution
from dsa_core.model.scoring import anomaly_from_semantic, semantic_scores


def _by_hand(semantic: np.ndarray, road: int = 0) -> dict[str, np.ndarray]:
    """Per pixel, in float64, with Python loops: normalise, then 1 - max, entropy / log K, 1 - p(road)."""
    k, h, w = semantic.shape
    out = {name: np.zeros((h, w)) for name in BASELINES}
    for y in range(h):
        for x in range(w):
            col = [float(v) for v in semantic[:, y, x]]
            total = sum(col)
            p = [v / total for v in col] if total > 0 else [1.0 / k] * k
            out["max_softmax"][y, x] = 1.0 - max(p)
            out["entropy"][y, x] = -sum(v * math.log(v) for v in p if v > 0) / math.log(k)
            out["not_drivable"][y, x] = 1.0 - p[road]
    return out


def test_baselines_match_a_float64_loop_on_mask2former_scores() -> None:
    torch.manual_seed(0)
    logits, masks = torch.randn(1, 7, 6) * 3, torch.randn(1, 7, 5, 4) * 4
    sem = semantic_scores(logits, masks)[0].numpy()
    sem[:, 0, 0] = 0.0  # a pixel no query claims: uniform distribution
    sem[:, 0, 1] = 0.0
    sem[2, 0, 1] = 0.3  # one class only: max_softmax 0, entropy 0
    got = baseline_scores(sem)
    ref = _by_hand(sem)
    for name in BASELINES:
        assert got[name].dtype == np.float32 and got[name].shape == (5, 4)
        np.testing.assert_allclose(got[name], ref[name], rtol=0, atol=2e-6, err_msg=name)
    assert got["max_softmax"][0, 0] == pytest.approx(1 - 1 / 5) and got["entropy"][0, 0] == pytest.approx(1.0)
    assert got["max_softmax"][0, 1] == 0.0 and got["entropy"][0, 1] == 0.0 and got["not_drivable"][0, 1] == 1.0
    # batched input gives the same maps
    batched = baseline_scores(np.stack([sem, sem]))
    np.testing.assert_array_equal(batched["entropy"][1], got["entropy"])


def test_bad_semantic_scores_are_refused() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        class_distribution(-np.ones((3, 2, 2), np.float32))
    with pytest.raises(ValueError, match="K >= 2"):
        class_distribution(np.ones((4, 4), np.float32))
    with pytest.raises(ValueError, match="drivable"):
        baseline_scores(np.ones((3, 2, 2), np.float32), drivable=(5,))


def test_rba_ranks_an_unclaimed_pixel_above_a_claimed_one() -> None:
    """RbA (Nayal et al. 2023): -sum_k tanh(semantic[k]); a pixel every query mask rejects (all masks ~0) has no
    class evidence and must score higher than a pixel one query claims confidently for one class."""
    k, q = 4, 3
    logits = torch.full((1, q, k + 1), -10.0)
    logits[0, 0, 2] = 10.0  # query 0: class 2, sure
    logits[0, 1:, k] = 10.0  # queries 1, 2: no-object
    masks = torch.full((1, q, 1, 2), -20.0)  # every mask rejects both pixels ...
    masks[0, 0, 0, 0] = 20.0  # ... except query 0 at pixel (0, 0)
    sem = semantic_scores(logits, masks)
    rba = anomaly_from_semantic(sem, "rba")[0, 0]
    claimed, unclaimed = float(rba[0]), float(rba[1])
    assert claimed == pytest.approx(-math.tanh(1.0), abs=1e-4)
    assert unclaimed == pytest.approx(0.0, abs=1e-4)
    assert unclaimed > claimed
    # the same ordering as the msp score of Eq. 2
    msp = anomaly_from_semantic(sem, "msp")[0, 0]
    assert float(msp[1]) > float(msp[0])
