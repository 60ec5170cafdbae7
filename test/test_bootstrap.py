"""The frame bootstrap of dsa eval (dsa_core/eval/bootstrap.py) against exact pooled metrics and cases whose answer
is known."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from dsa_core.eval.bootstrap import FrameScores, frame_bootstrap, frame_counts, grid_metrics, threshold_grid
from dsa_core.eval.metrics import anomaly_metrics


def _frames(rng: np.random.Generator, n: int, shift: float = 1.5, size: int = 3000) -> list[tuple[np.ndarray, ...]]:
    """Frames of different anomaly shares and score separations: (scores, labels 0/1/255)."""
    out = []
    for _ in range(n):
        labels = (rng.random(size) < rng.uniform(0.02, 0.3)).astype(np.uint8)
        labels[rng.random(size) < 0.05] = 255
        scores = rng.normal(0.0, 1.0, size) + labels * rng.uniform(0.0, shift)
        out.append((scores.astype(np.float32), labels))
    return out


def _collect(frames) -> FrameScores:
    fs = FrameScores()
    for scores, labels in frames:
        fs.update(scores, labels)
    return fs


@pytest.mark.parametrize("grid_points, tol_auprc, tol_fpr95", [(None, 1e-9, 1e-9), (1024, 5e-4, 5e-3)])
def test_grid_metrics_match_exact_pooled_metrics_on_a_resample(grid_points, tol_auprc, tol_fpr95) -> None:
    """Default grid: more points than distinct positive scores, so exact; a coarse grid: close."""
    rng = np.random.default_rng(0)
    frames = _frames(rng, 12)
    fs = _collect(frames)
    grid = threshold_grid(fs) if grid_points is None else threshold_grid(fs, grid_points)
    assert (grid.size == np.unique(np.concatenate(fs.pos)).size) == (grid_points is None)
    counts = frame_counts(fs, grid)
    weights = np.vstack([np.ones(len(frames)), rng.multinomial(len(frames), np.full(len(frames), 1 / len(frames)))])
    auprc, fpr95 = grid_metrics(weights.astype(np.float64), counts)
    for row, w in enumerate(weights.astype(int)):
        drawn = [f for f, k in zip(frames, w) for _ in range(k)]  # a frame drawn k times counts k times
        scores = np.concatenate([s for s, _ in drawn])
        labels = np.concatenate([lab for _, lab in drawn])
        exact = anomaly_metrics(scores, labels)
        valid = labels != 255
        assert exact["auprc"] == pytest.approx(average_precision_score(labels[valid], scores[valid]), abs=1e-9)
        assert auprc[row] == pytest.approx(exact["auprc"], abs=tol_auprc)
        assert fpr95[row] == pytest.approx(exact["fpr95"], abs=tol_fpr95)


def test_frame_scores_curve_is_the_exact_pooled_curve() -> None:
    frames = _frames(np.random.default_rng(9), 7)
    pooled = anomaly_metrics(np.concatenate([s for s, _ in frames]), np.concatenate([lab for _, lab in frames]))
    assert _collect(frames).curve().metrics() == pooled


def test_identical_frames_give_an_interval_of_zero_width_at_the_point_estimate() -> None:
    frame = _frames(np.random.default_rng(1), 1)[0]
    fs = _collect([frame] * 6)  # every resample pools the same distribution
    exact = anomaly_metrics(*frame)
    out = frame_bootstrap({"eq2": fs}, resamples=50)["eq2"]
    low, high = out["auprc_interval"]
    assert low == pytest.approx(high, abs=1e-12) and low == pytest.approx(exact["auprc"], abs=5e-4)
    low, high = out["fpr95_interval"]
    assert low == pytest.approx(high, abs=1e-12) and low == pytest.approx(exact["fpr95"], abs=5e-4)


def test_interval_holds_the_point_estimate_and_narrows_with_more_frames() -> None:
    rng = np.random.default_rng(2)
    few, many = _frames(rng, 8), _frames(rng, 64)
    widths = []
    for frames in (few, many):
        fs = _collect(frames)
        exact = anomaly_metrics(np.concatenate([s for s, _ in frames]), np.concatenate([lab for _, lab in frames]))
        out = frame_bootstrap({"eq2": fs}, resamples=300, seed=3)["eq2"]
        low, high = out["auprc_interval"]
        assert low < exact["auprc"] < high
        assert out["undefined_resamples"] == 0 and out["frames"] == len(frames)
        widths.append(high - low)
    assert widths[1] < widths[0]


def test_paired_wins_of_a_perfect_score_and_of_a_copy() -> None:
    frames = _frames(np.random.default_rng(4), 10)
    perfect = _collect([(lab.astype(np.float32), lab) for _, lab in frames])  # 1 on anomalies, 0 elsewhere
    noisy, copy = _collect(frames), _collect(frames)
    out = frame_bootstrap({"perfect": perfect, "noisy": noisy}, resamples=100, reference="perfect")
    assert out["noisy"]["reference_wins_auprc"] == 1.0
    assert out["perfect"]["auprc_interval"] == pytest.approx([1.0, 1.0])
    assert "reference_wins_auprc" not in out["perfect"]
    out = frame_bootstrap({"a": noisy, "b": copy}, resamples=100, reference="a")
    assert out["b"]["reference_wins_auprc"] == 0.0  # never strictly better than itself


def test_the_same_seed_gives_the_same_interval() -> None:
    fs = _collect(_frames(np.random.default_rng(5), 10))
    a = frame_bootstrap({"s": fs}, resamples=64, seed=7)
    b = frame_bootstrap({"s": fs}, resamples=64, seed=7)
    c = frame_bootstrap({"s": fs}, resamples=64, seed=8)
    assert a == b and a != c


def test_bad_input_is_refused_with_a_clear_error() -> None:
    frames = _frames(np.random.default_rng(6), 3)
    fs = _collect(frames)
    with pytest.raises(ValueError, match="at least 2 frames"):
        frame_bootstrap({"s": _collect(frames[:1])}, resamples=10)
    with pytest.raises(ValueError, match="same frames"):
        frame_bootstrap({"s": fs, "t": _collect(frames[:2])}, resamples=10)
    with pytest.raises(ValueError, match="resamples"):
        frame_bootstrap({"s": fs}, resamples=0)
    with pytest.raises(ValueError, match="reference"):
        frame_bootstrap({"s": fs}, resamples=10, reference="nope")
    no_anomaly = _collect([(s, np.zeros_like(lab)) for s, lab in frames])
    with pytest.raises(ValueError, match="no anomaly pixels"):
        frame_bootstrap({"s": no_anomaly}, resamples=10)
