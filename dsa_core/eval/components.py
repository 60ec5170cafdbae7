"""SMIYC component-level metrics: sIoU, PPV and mean F1 (docs/eval_reference.md §2.4).

Follows ``road_anomaly_benchmark/metrics/instance_segmentation.py`` (``default_instancer``, ``segment_metrics``,
``MetricSegment.aggregate``) step by step, per frame:

1. prediction = ``score > thresh_p`` (strict, as SMIYC), zeroed on void;
2. 8-connected components (3x3 structure) of the GT anomaly mask and of the prediction;
3. predicted components smaller than ``min_pred_size`` pixels are removed (500 anomaly track, 50 obstacle track);
4. GT components smaller than ``min_gt_size`` pixels become void (100 anomaly track, 10 obstacle track);
5. everything below is counted on the region of interest (non-void after step 4) only:

   * sIoU of GT component k: P(k) = union of predicted components touching k;
     sIoU = |k ∩ P(k)| / (|k ∪ P(k)| - |P(k) ∩ other GT components|);
   * PPV (``prec_pred``) of a predicted component: fraction of its pixels on any GT component;
   * at threshold τ: TP = #GT components with sIoU ≥ τ, FN = # with sIoU < τ, FP = #predicted components with
     PPV < τ, counts pooled over frames, F1 = 2TP / (2TP + FN + FP); mean F1 averages τ ∈ linspace(0.25, 0.75, 11).

sIoU and PPV are means over all components of all frames. One deliberate difference from the official loop: SMIYC
also runs the GT size filter on the background "component" 0, which voids the whole frame's background if it has
fewer than ``min_gt_size`` pixels; background is not a component, so it is never voided here.

The sums are computed from one contingency table of (GT component, predicted component) pixel counts per frame;
``|k ∪ P(k)| - |P(k) ∩ other GT|`` reduces to ``|k| + |P(k) ∩ background|``.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from dsa_core.labels import VOID
from scipy import ndimage

from dsa_core.eval.metrics import AnomalyCurve, UndefinedMetricWarning

F1_THRESHOLDS = np.linspace(0.25, 0.75, 11, endpoint=True)  # the exact SMIYC values (ties at τ matter)
EIGHT_CONNECTED = np.ones((3, 3), dtype=np.uint8)


@dataclass(frozen=True)
class ComponentSizeFilter:
    """SMIYC size filters in absolute pixels (so tiny synthetic frames can lose every component)."""

    min_pred_size: int
    min_gt_size: int


ANOMALY_TRACK = ComponentSizeFilter(min_pred_size=500, min_gt_size=100)
OBSTACLE_TRACK = ComponentSizeFilter(min_pred_size=50, min_gt_size=10)


@dataclass(frozen=True)
class FrameComponents:
    """Per-component values of one frame."""

    siou_gt: np.ndarray  # one per GT component
    size_gt: np.ndarray
    siou_pred: np.ndarray  # one per predicted component (sIoU with the roles swapped; reported by SMIYC)
    ppv_pred: np.ndarray
    size_pred: np.ndarray


def component_maps(scores: Any, labels: Any, thresh_p: float, sizes: ComponentSizeFilter,
                   ignore_index: int = VOID) -> tuple[np.ndarray, np.ndarray]:
    """Steps 1-5: (GT component ids, predicted component ids) of the region-of-interest pixels, 1-D, 0 = none."""
    s = np.asarray(scores)
    lab = np.asarray(labels)
    if s.ndim != 2 or s.shape != lab.shape:
        raise ValueError(f"expected 2-D scores and labels of the same shape (H, W), got {s.shape} and {lab.shape}")
    bad = ~np.isin(lab, (0, 1, ignore_index))
    if bad.any():
        raise ValueError(f"labels must be 0, 1 or {ignore_index}; found {np.unique(lab[bad])[:10].tolist()}")
    void = lab == ignore_index
    pred = (s > thresh_p) & ~void
    gt_ids, _ = ndimage.label(lab == 1, structure=EIGHT_CONNECTED)
    pred_ids, _ = ndimage.label(pred, structure=EIGHT_CONNECTED)

    pred_sizes = np.bincount(pred_ids.ravel())
    too_small = pred_sizes < sizes.min_pred_size
    too_small[0] = False
    pred_ids[too_small[pred_ids]] = 0

    gt_sizes = np.bincount(gt_ids.ravel())
    gt_small = gt_sizes < sizes.min_gt_size
    gt_small[0] = False
    roi = ~void & ~gt_small[gt_ids]
    return gt_ids[roi], pred_ids[roi]


def _compact_ids(ids: np.ndarray) -> tuple[np.ndarray, int]:
    """Renumber the component ids present in ``ids`` to 1..n (0 stays 0), in O(pixels); returns (ids, n + 1)."""
    flat = np.asarray(ids).reshape(-1).astype(np.int64, copy=False)
    if flat.size == 0:
        return flat, 1
    present = np.bincount(flat) > 0
    present[0] = False
    new_id = np.zeros(present.size, dtype=np.int64)
    new_id[present] = np.arange(1, int(present.sum()) + 1)
    return new_id[flat], int(present.sum()) + 1


def frame_components_from_maps(gt_ids: np.ndarray, pred_ids: np.ndarray) -> FrameComponents:
    """sIoU / PPV of every component from matching arrays of component ids (0 = background / no prediction)."""
    g, n_g = _compact_ids(gt_ids)
    p, n_p = _compact_ids(pred_ids)
    table = np.bincount(g * n_p + p, minlength=n_g * n_p).reshape(n_g, n_p).astype(np.int64)

    on_gt = table[1:, 1:]  # [GT comp, pred comp] overlap counts
    touches = on_gt > 0
    size_gt = table[1:, :].sum(1)
    size_pred = table[:, 1:].sum(0)
    pred_on_background = table[0, 1:]
    gt_unpredicted = table[1:, 0]

    inter_gt = on_gt.sum(1)
    siou_gt = inter_gt / (size_gt + touches.astype(np.int64) @ pred_on_background)
    inter_pred = on_gt.sum(0)
    siou_pred = inter_pred / (size_pred + touches.T.astype(np.int64) @ gt_unpredicted)
    ppv_pred = inter_pred / size_pred
    return FrameComponents(siou_gt=siou_gt, size_gt=size_gt, siou_pred=siou_pred, ppv_pred=ppv_pred,
                           size_pred=size_pred)


def frame_components(scores: Any, labels: Any, thresh_p: float, sizes: ComponentSizeFilter = ANOMALY_TRACK,
                     ignore_index: int = VOID) -> FrameComponents:
    return frame_components_from_maps(*component_maps(scores, labels, thresh_p, sizes, ignore_index))


def component_threshold(curve: AnomalyCurve) -> float:
    """SMIYC ``thresh_p`` from an exact pixel curve: the best-F1 threshold, shifted for the strict ``>`` rule.

    ``AnomalyCurve.best_f1`` gives t for ``score >= t``; the next representable value below t (in the scores'
    dtype) selects exactly the same pixels with ``score > thresh_p``. (SMIYC itself reads it from its binned curve.)
    """
    _, t = curve.best_f1()
    dtype = curve.thresholds.dtype
    return float(np.nextafter(dtype.type(t), dtype.type(-np.inf)))


def aggregate_components(frames: list[FrameComponents],
                         thresholds: np.ndarray = F1_THRESHOLDS) -> dict[str, Any]:
    """Pool frames as SMIYC's ``MetricSegment.aggregate``: component means and pooled TP/FN/FP per threshold.

    Undefined values (no GT components, no predicted components, or 2TP+FN+FP = 0) are NaN with a warning.
    """
    siou_gt = np.concatenate([f.siou_gt for f in frames]) if frames else np.zeros(0)
    siou_pred = np.concatenate([f.siou_pred for f in frames]) if frames else np.zeros(0)
    ppv = np.concatenate([f.ppv_pred for f in frames]) if frames else np.zeros(0)
    undefined = []
    if siou_gt.size == 0:
        undefined.append("no GT components: sIoU is NaN")
    if ppv.size == 0:
        undefined.append("no predicted components: PPV is NaN")
    per_t = {}
    for t in thresholds:
        tp = int(np.count_nonzero(siou_gt >= t))
        fn = int(np.count_nonzero(siou_gt < t))
        fp = int(np.count_nonzero(ppv < t))
        denom = 2 * tp + fn + fp
        per_t[round(float(t), 2)] = {"tp": tp, "fn": fn, "fp": fp, "f1": 2 * tp / denom if denom else float("nan")}
    if siou_gt.size == 0 and ppv.size == 0:
        undefined.append("no components at all: F1 is NaN")
    if undefined:
        warnings.warn("; ".join(undefined), UndefinedMetricWarning, stacklevel=2)
    return {
        "siou": float(siou_gt.mean()) if siou_gt.size else float("nan"),
        "siou_pred": float(siou_pred.mean()) if siou_pred.size else float("nan"),
        "ppv": float(ppv.mean()) if ppv.size else float("nan"),
        "mean_f1": float(np.mean([v["f1"] for v in per_t.values()])),
        "per_threshold": per_t,
        "n_gt_components": int(siou_gt.size),
        "n_pred_components": int(ppv.size),
        "n_frames": len(frames),
    }


class ComponentMetricAccumulator:
    """``update(scores, labels)`` per frame, ``compute()`` -> sIoU, PPV, mean F1 (pooled over frames)."""

    def __init__(self, thresh_p: float, sizes: ComponentSizeFilter = ANOMALY_TRACK, ignore_index: int = VOID,
                 thresholds: np.ndarray = F1_THRESHOLDS) -> None:
        self.thresh_p = float(thresh_p)
        self.sizes = sizes
        self.ignore_index = ignore_index
        self.thresholds = thresholds
        self.frames: list[FrameComponents] = []

    def update(self, scores: Any, labels: Any) -> FrameComponents:
        frame = frame_components(scores, labels, self.thresh_p, self.sizes, self.ignore_index)
        self.frames.append(frame)
        return frame

    def compute(self) -> dict[str, Any]:
        return aggregate_components(self.frames, self.thresholds)
