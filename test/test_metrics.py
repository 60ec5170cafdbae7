"""Pixel metrics against sklearn and hand-computed cases (ties, void, image shapes, degenerate input)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from dsa_core.eval.metrics import (
    AnomalyMetricAccumulator,
    ConfusionMatrix,
    UndefinedMetricWarning,
    anomaly_curve,
    anomaly_metrics,
)


def sklearn_reference(scores: np.ndarray, labels: np.ndarray, ignore_index: int = 255) -> dict[str, float]:
    """sklearn on the valid pixels; FPR95 by the bdlb/SMIYC rule on the full (non-dropped) ROC curve."""
    valid = labels.reshape(-1) != ignore_index
    y = labels.reshape(-1)[valid].astype(int)
    s = scores.reshape(-1)[valid]
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    return {
        "auprc": average_precision_score(y, s),
        "fpr95": fpr[np.searchsorted(tpr, 0.95, side="left")],
        "auroc": roc_auc_score(y, s),
    }


def brute_force(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Independent float64 loops over every distinct score (all pixels valid)."""
    s = scores.astype(np.float64).ravel()
    y = labels.ravel()
    n_pos, n_neg = int((y == 1).sum()), int((y == 0).sum())
    ap, fpr95, prev_tp = 0.0, None, 0
    for t in sorted(set(s.tolist()), reverse=True):
        tp = int(((s >= t) & (y == 1)).sum())
        fp = int(((s >= t) & (y == 0)).sum())
        ap += (tp - prev_tp) / n_pos * tp / (tp + fp)
        prev_tp = tp
        if fpr95 is None and tp / n_pos >= 0.95:
            fpr95 = fp / n_neg
    pairs = sum(float((s[y == 0] < p).sum()) + 0.5 * float((s[y == 0] == p).sum()) for p in s[y == 1])
    return {"auprc": ap, "fpr95": fpr95, "auroc": pairs / (n_pos * n_neg)}


def random_case(seed: int, shape: tuple[int, ...], levels: int | None, void_frac: float = 0.1, pos_frac: float = 0.1):
    rng = np.random.default_rng(seed)
    labels = (rng.random(shape) < pos_frac).astype(np.uint8)
    scores = rng.random(shape) + 0.4 * labels
    if levels is not None:  # heavy ties, as mask-based methods produce
        scores = np.round(scores * levels) / levels
    labels[rng.random(shape) < void_frac] = 255
    return scores.astype(np.float32), labels


@pytest.mark.parametrize("seed,shape,levels", [
    (0, (5000,), None), (1, (4, 37, 53), 10), (2, (3, 64, 48), 3), (3, (2, 1, 50, 60), 100), (4, (7, 7), 2),
])
def test_matches_sklearn_with_ties_void_and_image_shapes(seed, shape, levels):
    scores, labels = random_case(seed, shape, levels)
    ours = anomaly_metrics(scores, labels)
    ref = sklearn_reference(scores, labels)
    for key in ("auprc", "fpr95", "auroc"):
        assert ours[key] == pytest.approx(ref[key], abs=1e-9), key
    assert ours["n_pos"] == int((labels == 1).sum()) and ours["n_neg"] == int((labels == 0).sum())


def test_matches_brute_force_loops():
    scores, labels = random_case(5, (300,), 7, void_frac=0.0, pos_frac=0.3)
    ours = anomaly_metrics(scores, labels)
    ref = brute_force(scores, labels)
    for key in ("auprc", "fpr95", "auroc"):
        assert ours[key] == pytest.approx(ref[key], abs=1e-12), key


def test_float64_scores_are_not_rounded_to_float32():
    # Two negatives that differ only beyond float32 precision: casting would tie them with the positive.
    scores = np.array([1.0, 1.0 + 1e-12, 1.0 - 1e-12], dtype=np.float64)
    labels = np.array([1, 0, 0], dtype=np.uint8)
    ours = anomaly_metrics(scores, labels)
    assert ours["auprc"] == pytest.approx(average_precision_score([1, 0, 0], scores), abs=1e-12)
    assert ours["auroc"] == pytest.approx(0.5)


def test_fpr95_hand_computed():
    # 20 positives at scores 1..20, negatives at 0.5, 2.5, 3.5, 19.5, 25. TPR >= 0.95 needs 19 positives (>= 2),
    # the highest such threshold is t = 2; negatives >= 2 are 2.5, 3.5, 19.5, 25 -> FPR = 4/5.
    pos = np.arange(1, 21, dtype=np.float32)
    neg = np.array([0.5, 2.5, 3.5, 19.5, 25], dtype=np.float32)
    scores = np.concatenate([pos, neg])
    labels = np.concatenate([np.ones(20, np.uint8), np.zeros(5, np.uint8)])
    assert anomaly_metrics(scores, labels)["fpr95"] == pytest.approx(4 / 5)
    # AUROC by hand: pairs (pos > neg): neg 0.5 -> 20, 2.5 -> 18, 3.5 -> 17, 19.5 -> 1, 25 -> 0; total 56 of 100.
    assert anomaly_metrics(scores, labels)["auroc"] == pytest.approx(56 / 100)


def test_fpr95_with_tie_at_operating_point():
    # Positives [3, 2, 2, 1]; TPR reaches 0.95 only at t = 1 (TPR 3/4 at t = 2). Negatives tied at 1 count.
    scores = np.array([3, 2, 2, 1, 1, 1, 0], dtype=np.float32)
    labels = np.array([1, 1, 1, 1, 0, 0, 0], dtype=np.uint8)
    m = anomaly_metrics(scores, labels)
    assert m["fpr95"] == pytest.approx(2 / 3)
    # AP by hand: t=3: R=1/4, P=1; t=2: R=3/4, P=1; t=1: R=1, P=4/6.
    assert m["auprc"] == pytest.approx(0.25 * 1 + 0.5 * 1 + 0.25 * 4 / 6)


def test_constant_scores():
    labels = np.array([1, 0, 0, 0, 1, 255, 0, 0], dtype=np.uint8)
    m = anomaly_metrics(np.full(labels.shape, 0.7, dtype=np.float32), labels)
    assert m["auprc"] == pytest.approx(2 / 7)  # positive rate
    assert m["fpr95"] == 1.0
    assert m["auroc"] == 0.5


def test_perfect_and_inverted_scores():
    labels = np.array([0, 0, 1, 1, 0], dtype=np.uint8)
    perfect = labels.astype(np.float32)
    assert anomaly_metrics(perfect, labels) == {"auprc": 1.0, "fpr95": 0.0, "auroc": 1.0, "n_pos": 2, "n_neg": 3}
    inverted = anomaly_metrics(1 - perfect, labels)
    assert inverted["fpr95"] == 1.0 and inverted["auroc"] == 0.0


@pytest.mark.parametrize("labels", [np.array([0, 0, 255, 0]), np.array([1, 1, 255]), np.array([255, 255])])
def test_no_positives_or_no_negatives_gives_nan_and_warning(labels):
    scores = np.linspace(0, 1, labels.size)
    with pytest.warns(UndefinedMetricWarning):
        m = anomaly_metrics(scores, labels.astype(np.uint8))
    assert np.isnan(m["auprc"]) and np.isnan(m["fpr95"]) and np.isnan(m["auroc"])
    assert (m["n_pos"], m["n_neg"]) == (int((labels == 1).sum()), int((labels == 0).sum()))


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="labels must be 0"):
        anomaly_metrics(np.zeros(3), np.array([0, 1, 2], dtype=np.uint8))
    with pytest.raises(ValueError, match="same shape"):
        anomaly_metrics(np.zeros(3), np.zeros(4, dtype=np.uint8))
    with pytest.raises(ValueError, match="NaN"):
        anomaly_metrics(np.array([0.1, np.nan, 0.3]), np.array([0, 1, 0], dtype=np.uint8))
    with pytest.raises(TypeError, match="integer or bool"):
        anomaly_metrics(np.zeros(3), np.zeros(3))
    # 255 is a class value when ignore_index is None.
    with pytest.raises(ValueError, match="other values"):
        anomaly_metrics(np.zeros(3), np.array([0, 1, 255], dtype=np.uint8), ignore_index=None)


def test_other_label_dtypes_and_ignore_index():
    scores, labels = random_case(6, (40, 30), 5)
    ref = anomaly_metrics(scores, labels)
    lab16 = labels.astype(np.int16)
    lab16[lab16 == 255] = -1
    other = anomaly_metrics(scores.astype(np.float16).astype(np.float32), lab16, ignore_index=-1)
    assert other["auprc"] == pytest.approx(ref["auprc"], abs=1e-12)
    bool_labels = labels == 1
    assert anomaly_metrics(scores[labels != 255], bool_labels[labels != 255])["auroc"] == pytest.approx(ref["auroc"])


def test_accumulator_equals_concatenation():
    images = [random_case(10 + i, (1, 20 + i, 30), 8) for i in range(6)]
    images.append((np.zeros((1, 5, 30), np.float32), np.full((1, 5, 30), 255, np.uint8)))  # all-void frame
    acc = AnomalyMetricAccumulator(block_pixels=1500)  # several blocks plus a partly filled one
    for s, lab in images:
        acc.update(s, lab)
    flat_s = np.concatenate([s.ravel() for s, _ in images])
    flat_l = np.concatenate([lab.ravel() for _, lab in images])
    pooled = anomaly_metrics(flat_s, flat_l)
    streamed = acc.compute()
    for key in ("auprc", "fpr95", "auroc"):
        assert streamed[key] == pytest.approx(pooled[key], abs=1e-12)
    assert (streamed["n_pos"], streamed["n_neg"]) == (pooled["n_pos"], pooled["n_neg"])
    # compute() is repeatable and updating afterwards still pools everything.
    assert acc.compute() == streamed
    acc.update(*images[0])
    again = anomaly_metrics(np.concatenate([flat_s, images[0][0].ravel()]),
                            np.concatenate([flat_l, images[0][1].ravel()]))
    assert acc.compute()["auprc"] == pytest.approx(again["auprc"], abs=1e-12)
    assert acc.num_images == len(images) + 1
    assert len(acc._neg_sorted) > 2
    assert all(np.all(np.diff(block) >= 0) for block in acc._neg_sorted)


def test_accumulator_stores_only_valid_pixels_as_float32():
    s, lab = random_case(20, (50, 50), None, void_frac=0.5)
    acc = AnomalyMetricAccumulator()
    acc.update(s.astype(np.float16), lab)
    stored = acc._pos + acc._neg_pending
    assert all(a.dtype == np.float32 for a in stored)
    assert sum(a.size for a in stored) == int((lab != 255).sum())


def test_curve_roc_points_and_best_f1():
    scores, labels = random_case(7, (400,), 6, void_frac=0.0)
    curve = anomaly_curve(scores, labels)
    fpr, tpr = curve.roc_points()
    assert np.trapezoid(tpr, fpr) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    f1, t = curve.best_f1()
    pred = scores >= t
    tp = int((pred & (labels == 1)).sum())
    brute = max(2 * int(((scores >= u) & (labels == 1)).sum())
                / (int((labels == 1).sum()) + int((scores >= u).sum())) for u in np.unique(scores))
    assert f1 == pytest.approx(brute) and f1 == pytest.approx(2 * tp / (int((labels == 1).sum()) + int(pred.sum())))


def test_confusion_matrix_hand_computed():
    gt = np.array([[0, 0, 1, 1], [2, 2, 255, 1]], dtype=np.uint8)
    pred = np.array([[0, 1, 1, 1], [2, 0, 2, 1]], dtype=np.uint8)
    cm = ConfusionMatrix(num_classes=4)
    cm.update(pred, gt)
    r = cm.compute()
    # class 0: TP 1 (pixel 0), FN 1 (pred 1), FP 1 (gt 2 -> pred 0): IoU 1/3
    # class 1: TP 3, FP 1 (gt 0 -> 1): 3/4; class 2: TP 1, FN 1: 1/2; class 3: absent -> NaN
    np.testing.assert_allclose(r["iou"][:3], [1 / 3, 3 / 4, 1 / 2])
    assert np.isnan(r["iou"][3])
    assert r["miou"] == pytest.approx((1 / 3 + 3 / 4 + 1 / 2) / 3)
    assert r["pixel_accuracy"] == pytest.approx(5 / 7)  # the void pixel (pred 2 on gt 255) is not counted


def test_confusion_matrix_pools_and_validates():
    rng = np.random.default_rng(0)
    gts = [rng.integers(0, 19, (8, 9)).astype(np.uint8) for _ in range(3)]
    preds = [rng.integers(0, 19, (8, 9)).astype(np.uint8) for _ in range(3)]
    cm = ConfusionMatrix()
    for p, g in zip(preds, gts):
        cm.update(p, g)
    naive = np.zeros((19, 19), np.int64)
    for p, g in zip(preds, gts):
        for a, b in zip(g.ravel(), p.ravel()):
            naive[a, b] += 1
    np.testing.assert_array_equal(cm.matrix, naive)
    with pytest.raises(ValueError, match="gt class ids"):
        cm.update(np.zeros(2, np.uint8), np.array([0, 19], np.uint8))
    with pytest.raises(ValueError, match="pred class ids"):
        cm.update(np.array([0, 40], np.uint8), np.zeros(2, np.uint8))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isfinite(cm.compute()["miou"])
    with pytest.warns(UndefinedMetricWarning):
        assert np.isnan(ConfusionMatrix().compute()["miou"])


def test_bench_metrics_command_writes_consistent_report(tmp_path):
    import json

    from dsa_core.cli import main

    out = tmp_path / "bench.json"
    rc = main(["bench", "metrics", "--pixels", "3e4", "--sklearn-pixels", "1e4", "--image-pixels", "4096", "--repeats", "2",
               "--out", str(out)])
    assert rc == 0
    report = json.loads(out.read_text())
    r = report["results"]
    assert r["ours_full"]["pixels"] == 30000 and r["sklearn_subset"]["pixels"] == 10000
    assert 0 < r["ours_full"]["valid_pixels"] < 30000  # void pixels were generated and dropped
    for key in ("auprc", "fpr95", "auroc"):
        assert r["ours_subset"]["metrics"][key] == pytest.approx(r["sklearn_subset"]["metrics"][key], abs=1e-9)
        assert r["ours_accumulator_full"]["metrics"][key] == pytest.approx(r["ours_full"]["metrics"][key], abs=1e-12)
    assert report["comparison"]["speedup_same_size"] > 0
    assert len(r["ours_full"]["seconds_all_repeats"]) == 2 and r["ours_full"]["seconds"] == min(r["ours_full"]["seconds_all_repeats"])
    assert "| sklearn (subset) |" in out.with_suffix(".md").read_text()


def test_undefined_curve_methods_raise_instead_of_returning_a_number():
    curve = anomaly_curve(np.array([0.1, 0.2]), np.array([0, 0], dtype=np.uint8))
    for method in (curve.auprc, curve.fpr_at_tpr, curve.auroc, curve.roc_points, curve.best_f1):
        with pytest.raises(ValueError, match="curve undefined"):
            method()


def test_accumulator_mixed_precision_matches_concatenation():
    a_s, a_l = random_case(30, (10, 10), None)
    b_s, b_l = random_case(31, (12, 10), None)
    b_s = b_s.astype(np.float64) + 1e-12  # not representable in float32: must not be rounded away
    acc = AnomalyMetricAccumulator(block_pixels=1)
    acc.update(a_s, a_l)
    acc.update(b_s, b_l)
    pooled = anomaly_metrics(np.concatenate([a_s.ravel(), b_s.ravel()]), np.concatenate([a_l.ravel(), b_l.ravel()]))
    streamed = acc.compute()
    assert streamed == pooled
    assert [c.dtype for c in acc._neg_sorted] == [np.float32, np.float64]  # each image kept in its own precision


def test_infinite_scores_are_ordinary_extremes():
    # sklearn refuses inf; the definitions do not. Compare with the brute-force loops.
    scores, labels = random_case(40, (200,), 5, void_frac=0.0, pos_frac=0.3)
    scores[:7] = np.inf
    scores[7:15] = -np.inf
    ours = anomaly_metrics(scores, labels)
    ref = brute_force(scores, labels)
    for key in ("auprc", "fpr95", "auroc"):
        assert ours[key] == pytest.approx(ref[key], abs=1e-12), key


def test_bench_help_lists_every_benchmark(capsys):
    from dsa_core.cli import main
    from dsa_core.commands.bench import BENCHMARKS

    with pytest.raises(SystemExit) as exc:
        main(["bench", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert all(name in out for name in BENCHMARKS)
