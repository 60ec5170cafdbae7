"""SMIYC component metrics: a hand-checked frame and a direct transcription of the definitions on random frames."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from dsa_core.eval.components import (
    ComponentMetricAccumulator,
    ComponentSizeFilter,
    F1_THRESHOLDS,
    aggregate_components,
    component_maps,
    component_threshold,
    frame_components,
    frame_components_from_maps,
)
from dsa_core.eval.metrics import UndefinedMetricWarning, anomaly_curve

NO_FILTER = ComponentSizeFilter(min_pred_size=0, min_gt_size=0)


def hand_frame() -> tuple[np.ndarray, np.ndarray]:
    """8x10 frame. GT: A = rows 1-2 x cols 1-3 (6 px), B = rows 5-6 x cols 6-8 (6 px); void column 9.

    Prediction (score 1): P1 = rows 1-3 x cols 2-4 (9 px) overlapping A on 4 px, 5 px on background;
    P2 = row 6, cols 0-1 (2 px, background only); P3 on the void column only (removed by the void rule).
    """
    labels = np.zeros((8, 10), np.uint8)
    labels[1:3, 1:4] = 1
    labels[5:7, 6:9] = 1
    labels[:, 9] = 255
    scores = np.zeros((8, 10), np.float32)
    scores[1:4, 2:5] = 1.0
    scores[6, 0:2] = 1.0
    scores[0:3, 9] = 1.0
    return scores, labels


def test_hand_checked_frame():
    scores, labels = hand_frame()
    f = frame_components(scores, labels, thresh_p=0.5, sizes=NO_FILTER)
    # A: |A ∩ P1| = 4, |A ∪ P1| = 6 + 9 - 4 = 11, no other GT under P1 -> 4/11. B: untouched -> 0.
    np.testing.assert_allclose(sorted(f.siou_gt), [0.0, 4 / 11])
    # P1: 4 of 9 pixels on GT; P2: 0 of 2. The void-only prediction is not a component.
    np.testing.assert_allclose(sorted(f.ppv_pred), [0.0, 4 / 9])
    r = aggregate_components([f])
    assert r["siou"] == pytest.approx((4 / 11) / 2)
    assert r["ppv"] == pytest.approx((4 / 9) / 2)
    # 4/11 = 0.364 passes for τ <= 0.35, 4/9 = 0.444 for τ <= 0.40.
    f1s = []
    for t in F1_THRESHOLDS:
        tp = int(4 / 11 >= t)
        fn = 2 - tp
        fp = 1 + int(4 / 9 < t)  # P2 always fails
        f1s.append(2 * tp / (2 * tp + fn + fp))
        assert r["per_threshold"][round(float(t), 2)]["f1"] == pytest.approx(f1s[-1])
    assert r["mean_f1"] == pytest.approx(np.mean(f1s))
    assert 0 < r["mean_f1"] < 0.5


def test_adjustment_for_prediction_covering_two_gt_components():
    # One prediction bar covers two GT blobs and 2 background pixels between them: each GT's sIoU excludes the
    # pixels of the other GT: |k| = 2, |P| = 6, other GT = 2 -> 2 / (2 + 6 - 2 - 2) = 2/4.
    labels = np.zeros((3, 8), np.uint8)
    labels[1, 1:3] = 1
    labels[1, 5:7] = 1
    scores = np.zeros((3, 8))
    scores[1, 1:7] = 1
    f = frame_components(scores, labels, 0.5, NO_FILTER)
    np.testing.assert_allclose(f.siou_gt, [0.5, 0.5])
    np.testing.assert_allclose(f.ppv_pred, [4 / 6])


def test_size_filters_and_strict_threshold():
    scores, labels = hand_frame()
    # min_pred_size 3 removes P2 (2 px); min_gt_size 7 voids both 6-px GT components -> no GT left.
    f = frame_components(scores, labels, 0.5, ComponentSizeFilter(min_pred_size=3, min_gt_size=0))
    assert f.ppv_pred.size == 1
    f = frame_components(scores, labels, 0.5, ComponentSizeFilter(min_pred_size=0, min_gt_size=7))
    assert f.siou_gt.size == 0
    # P1 loses the 4 GT pixels it overlapped (now void): its size becomes 5 and its PPV 0.
    assert sorted(f.size_pred.tolist()) == [2, 5] and np.all(f.ppv_pred == 0)
    # prediction is score > thresh_p: a threshold equal to the score predicts nothing.
    assert frame_components(scores, labels, 1.0, NO_FILTER).ppv_pred.size == 0


def naive_segment_metrics(gt_inst: np.ndarray, pred_seg: np.ndarray) -> tuple[list, list]:
    """Literal loops of the definitions in docs/eval_reference.md §2.4 over ROI pixel arrays."""
    siou_gt, ppv = [], []
    for k in np.unique(gt_inst[gt_inst > 0]):
        touching = np.unique(pred_seg[(gt_inst == k) & (pred_seg > 0)])
        p_hat = np.isin(pred_seg, touching)
        inter = np.sum((gt_inst == k) & p_hat)
        union = np.sum((gt_inst == k) | p_hat)
        on_other_gt = np.sum(p_hat & (gt_inst > 0) & (gt_inst != k))
        siou_gt.append(inter / (union - on_other_gt))
    for j in np.unique(pred_seg[pred_seg > 0]):
        ppv.append(np.sum((pred_seg == j) & (gt_inst > 0)) / np.sum(pred_seg == j))
    return siou_gt, ppv


@pytest.mark.parametrize("seed", range(6))
def test_matches_literal_definitions_on_random_frames(seed):
    rng = np.random.default_rng(seed)
    shape = (40, 50)
    gt_blobs = ndimage.binary_dilation(rng.random(shape) < 0.01, iterations=2)
    labels = gt_blobs.astype(np.uint8)
    labels[rng.random(shape) < 0.05] = 255
    scores = ndimage.gaussian_filter(rng.random(shape) + gt_blobs * 0.5, 1.5)
    sizes = ComponentSizeFilter(min_pred_size=int(rng.integers(0, 8)), min_gt_size=int(rng.integers(0, 8)))
    thresh = float(np.quantile(scores, 0.8))
    gt_ids, pred_ids = component_maps(scores, labels, thresh, sizes)
    ours = frame_components_from_maps(gt_ids, pred_ids)
    siou_ref, ppv_ref = naive_segment_metrics(gt_ids, pred_ids)
    np.testing.assert_allclose(ours.siou_gt, siou_ref, atol=1e-12)
    np.testing.assert_allclose(ours.ppv_pred, ppv_ref, atol=1e-12)
    assert ours.siou_gt.size > 0 and ours.ppv_pred.size > 0


def test_component_maps_literal_steps():
    rng = np.random.default_rng(11)
    labels = (rng.random((30, 30)) < 0.2).astype(np.uint8)
    labels[rng.random((30, 30)) < 0.1] = 255
    scores = rng.random((30, 30))
    sizes = ComponentSizeFilter(min_pred_size=4, min_gt_size=3)
    gt_ids, pred_ids = component_maps(scores, labels, 0.6, sizes)
    # Literal re-derivation with per-component loops.
    pred = (scores > 0.6) & (labels != 255)
    p_lab, n_p = ndimage.label(pred, structure=np.ones((3, 3)))
    for c in range(1, n_p + 1):
        if np.sum(p_lab == c) < 4:
            p_lab[p_lab == c] = 0
    g_lab, n_g = ndimage.label(labels == 1, structure=np.ones((3, 3)))
    lab2 = labels.copy()
    for c in range(1, n_g + 1):
        if np.sum(g_lab == c) < 3:
            lab2[g_lab == c] = 255
    roi = lab2 != 255
    np.testing.assert_array_equal(gt_ids, g_lab[roi])
    np.testing.assert_array_equal(pred_ids, p_lab[roi])


def test_accumulator_pools_frames_and_degenerate_cases():
    scores, labels = hand_frame()
    acc = ComponentMetricAccumulator(0.5, NO_FILTER)
    acc.update(scores, labels)
    acc.update(np.zeros((5, 5)), np.zeros((5, 5), np.uint8))  # a frame without anything
    acc.update(np.ones((4, 4)), np.full((4, 4), 255, np.uint8))  # an all-void frame
    full = np.ones((3, 3))  # GT and prediction cover the whole frame: no background pixel at all
    assert frame_components(full, np.ones((3, 3), np.uint8), 0.5, NO_FILTER).siou_gt.tolist() == [1.0]
    r = acc.compute()
    assert r["n_frames"] == 3 and r["n_gt_components"] == 2 and r["n_pred_components"] == 2
    assert r == {**aggregate_components([frame_components(scores, labels, 0.5, NO_FILTER)]), "n_frames": 3}
    with pytest.warns(UndefinedMetricWarning):
        empty = aggregate_components([])
    assert np.isnan(empty["siou"]) and np.isnan(empty["ppv"]) and np.isnan(empty["mean_f1"])
    with pytest.raises(ValueError, match="labels must be"):
        frame_components(scores, labels + 3, 0.5)
    with pytest.raises(ValueError, match="2-D"):
        frame_components(scores[None], labels[None], 0.5)


def test_component_threshold_selects_best_f1_pixels_with_strict_rule():
    rng = np.random.default_rng(3)
    labels = (rng.random((20, 20)) < 0.3).astype(np.uint8)
    scores = (np.round(rng.random((20, 20)) * 5) / 5 + 0.3 * labels).astype(np.float32)
    curve = anomaly_curve(scores, labels)
    _, t = curve.best_f1()
    thresh_p = component_threshold(curve)
    np.testing.assert_array_equal(scores > thresh_p, scores >= t)
