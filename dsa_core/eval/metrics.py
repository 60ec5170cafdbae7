"""Exact pixel metrics: anomaly AuPRC / FPR95 / AUROC and semantic-segmentation IoU.

Conventions (docs/design.md §5, docs/eval_reference.md §2): all valid pixels of all images are pooled, void
(``ignore_index``) is dropped, label 1 = anomaly = positive, label 0 = in-distribution = negative.

* AuPRC is step-wise average precision, AP = sum_n (R_n - R_{n-1}) P_n with thresholds at the distinct score
  values (``score >= t`` is predicted positive) -- identical to ``sklearn.metrics.average_precision_score``.
* FPR95 is the FPR at the first (highest) distinct threshold whose TPR >= 0.95, no interpolation
  (Fishyscapes ``bdlb`` / SMIYC rule: ``fpr[searchsorted(tpr, 0.95)]``).
* AUROC is the exact area under the ROC curve with ties counted as 1/2 (Mann-Whitney U), equal to
  ``sklearn.metrics.roc_auc_score``.

Why not sklearn: at 10^8 pixels sklearn argsorts everything with int64 indices and makes several float64 copies
(many GB, minutes). Here only the negatives are sorted (``np.sort``, SIMD, in place, no argsort) and the distinct
positive scores are located in them with ``searchsorted``; every count is an exact integer, nothing is binned.
Extra memory is about one copy of the valid scores plus two boolean masks (``dsa bench metrics`` records it).

Scores keep their precision: float16/float32 are handled as float32, float64 stays float64 (casting float64 to float32
would create ties and change the result, docs/eval_reference.md §2.6, pitfall 7); integer/bool scores become float64.

Degenerate input: if there are no positive or no negative pixels, AuPRC/FPR95/AUROC are all NaN and an
:class:`UndefinedMetricWarning` is issued. (With no negatives AP would formally be 1.0 and FPR undefined; returning
NaN for all three avoids a silent best case.) NaN scores raise ``ValueError``.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from dsa_core.labels import NUM_CLASSES, VOID

TPR_TARGET = 0.95


class UndefinedMetricWarning(RuntimeWarning):
    """A metric is undefined for the given pixels (no positives or no negatives); NaN was returned."""


# ----------------------------------------------------------------------------------------------------------------
# Input checking and splitting into positive / negative scores
# ----------------------------------------------------------------------------------------------------------------

def _score_array(scores: Any) -> np.ndarray:
    """Flattened scores: floating arrays as given (a view when possible), integer/bool ones as float64."""
    arr = np.asarray(scores)
    if arr.dtype.kind == "f":
        return arr.reshape(-1)
    if arr.dtype.kind in "iub":
        return arr.reshape(-1).astype(np.float64)
    raise TypeError(f"scores must be a real-valued array, got dtype {arr.dtype}")


def _work_dtype(dtype: np.dtype) -> np.dtype:
    return np.dtype(np.float64) if dtype.itemsize >= 8 else np.dtype(np.float32)


def split_anomaly_scores(scores: Any, labels: Any, ignore_index: int | None = VOID) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(positive_scores, negative_scores)`` (1-D copies, float32 or float64) of the valid pixels.

    Raises ``ValueError`` on shape mismatch or on label values other than 0, 1 and ``ignore_index``.
    """
    s = _score_array(scores)
    lab = np.asarray(labels)
    if np.shape(scores) != lab.shape:
        raise ValueError(f"scores and labels must have the same shape, got {np.shape(scores)} and {lab.shape}")
    if lab.dtype.kind not in "iub":
        raise TypeError(f"labels must be an integer or bool array (0 = ID, 1 = anomaly, {ignore_index} = void), "
                        f"got dtype {lab.dtype}")
    lab = lab.reshape(-1)
    if lab.dtype == np.bool_:
        lab = lab.view(np.uint8)
    is_pos = lab == 1
    is_neg = lab == 0
    n_ok = int(np.count_nonzero(is_pos)) + int(np.count_nonzero(is_neg))
    if ignore_index is not None:
        if ignore_index in (0, 1):
            raise ValueError(f"ignore_index must differ from the class labels 0 and 1, got {ignore_index}")
        n_ok += int(np.count_nonzero(lab == ignore_index))
    n_bad = lab.size - n_ok
    if n_bad:
        bad = np.setdiff1d(np.unique(lab), [0, 1] + ([ignore_index] if ignore_index is not None else []))
        raise ValueError(f"labels must be 0 (in-distribution), 1 (anomaly) or {ignore_index} (void); found "
                         f"{n_bad} pixels with other values, e.g. {bad[:10].tolist()}")
    wd = _work_dtype(s.dtype)
    pos = s[is_pos].astype(wd, copy=False)
    neg = s[is_neg].astype(wd, copy=False)
    return pos, neg


# ----------------------------------------------------------------------------------------------------------------
# The exact curve at the distinct positive scores
# ----------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class AnomalyCurve:
    """Exact counts at every distinct positive score t_i, in descending order of t_i.

    Only thresholds equal to a positive score can change TP, so they are the only ones that matter for AP and for
    the FPR95 operating point; ``fp_gt`` (negatives strictly above t_i) completes the exact ROC staircase.
    """

    thresholds: np.ndarray  # distinct positive scores, descending
    tp: np.ndarray  # int64, positives with score >= t_i
    fp: np.ndarray  # int64, negatives with score >= t_i
    fp_gt: np.ndarray  # int64, negatives with score > t_i
    n_pos: int
    n_neg: int

    @classmethod
    def from_split(cls, pos: np.ndarray, neg: np.ndarray) -> "AnomalyCurve":
        """Build from positive and negative scores; ``neg`` is sorted IN PLACE (no copy of the large array)."""
        neg.sort()
        return cls.from_sorted_negatives(pos, [neg])

    @classmethod
    def from_sorted_negatives(cls, pos: np.ndarray, neg_chunks: list[np.ndarray]) -> "AnomalyCurve":
        """Build from positive scores and the negatives as one or more ascending-sorted arrays (e.g. per image).

        Counts of negatives at each threshold are exact integers summed over the chunks, so splitting the negatives
        into chunks never changes the result.
        """
        pos_sorted = np.sort(pos)
        if (pos_sorted.size and np.isnan(pos_sorted[-1])) or any(c.size and np.isnan(c[-1]) for c in neg_chunks):
            raise ValueError("scores contain NaN; every valid pixel needs a finite or infinite score")
        n_pos, n_neg = int(pos_sorted.size), int(sum(c.size for c in neg_chunks))
        if n_pos == 0:
            empty = np.zeros(0, dtype=np.int64)
            return cls(pos_sorted, empty, empty, empty, 0, n_neg)
        new_value = np.empty(n_pos, dtype=bool)
        new_value[0] = True
        np.not_equal(pos_sorted[1:], pos_sorted[:-1], out=new_value[1:])
        starts = np.flatnonzero(new_value)  # ascending distinct values start here
        values = pos_sorted[starts]
        tp = n_pos - starts
        neg_below = np.zeros(values.size, dtype=np.int64)  # negatives < t
        neg_at_most = np.zeros(values.size, dtype=np.int64)  # negatives <= t
        for chunk in neg_chunks:
            if chunk.size == 0:
                continue
            below = np.searchsorted(chunk, values, side="left")
            neg_below += below
            # Ties between a positive and negatives are usually rare: search the right edge only where one exists.
            tied = np.flatnonzero(chunk[np.minimum(below, chunk.size - 1)] == values)
            at_most = below.copy()
            at_most[tied] = np.searchsorted(chunk, values[tied], side="right")
            neg_at_most += at_most
        fp = n_neg - neg_below
        fp_gt = n_neg - neg_at_most
        return cls(values[::-1].copy(), tp[::-1].astype(np.int64), fp[::-1].copy(), fp_gt[::-1].copy(), n_pos, n_neg)

    @property
    def defined(self) -> bool:
        return self.n_pos > 0 and self.n_neg > 0

    def _require_defined(self) -> None:
        if not self.defined:
            raise ValueError(f"curve undefined: needs anomaly and in-distribution pixels, got {self.n_pos} and "
                             f"{self.n_neg}")

    def precision(self) -> np.ndarray:
        return self.tp / (self.tp + self.fp)

    def recall(self) -> np.ndarray:
        return self.tp / self.n_pos

    def auprc(self) -> float:
        """Step-wise average precision: sum over thresholds of (recall increase) * precision."""
        self._require_defined()
        d_tp = np.diff(self.tp, prepend=0)
        return float(np.sum(d_tp / self.n_pos * self.precision()))

    def fpr_at_tpr(self, tpr_target: float = TPR_TARGET) -> float:
        """FPR at the first (highest) threshold whose TPR >= target (float comparison as in ``bdlb``)."""
        self._require_defined()
        k = int(np.searchsorted(self.recall(), tpr_target, side="left"))
        if k >= self.tp.size:  # only possible for target > 1
            raise ValueError(f"TPR never reaches {tpr_target}")
        return float(self.fp[k] / self.n_neg)

    def auroc(self) -> float:
        """Exact AUROC with ties as 1/2, from integer counts: sum_pos (#neg below + #neg tied / 2) / (P N)."""
        self._require_defined()
        counts = np.diff(self.tp, prepend=0)
        below = self.n_neg - self.fp
        tied = self.fp - self.fp_gt
        twice_u = int(np.sum(counts * (2 * below + tied)))
        return twice_u / (2.0 * self.n_pos * self.n_neg)

    def roc_points(self) -> tuple[np.ndarray, np.ndarray]:
        """Exact ROC staircase (fpr, tpr), starting at (0, 0) and ending at (1, 1), for plotting."""
        self._require_defined()
        tp_before = np.concatenate([[0], self.tp[:-1]])
        fp_pts = np.stack([self.fp_gt, self.fp], axis=1).reshape(-1)
        tp_pts = np.stack([tp_before, self.tp], axis=1).reshape(-1)
        fpr = np.concatenate([[0.0], fp_pts / self.n_neg, [1.0]])
        tpr = np.concatenate([[0.0], tp_pts / self.n_pos, [1.0]])
        return fpr, tpr

    def best_f1(self) -> tuple[float, float]:
        """(best pixel F1, its threshold t) for the rule ``score >= t``; used for SMIYC's ``thresh_p``."""
        self._require_defined()
        f1 = 2.0 * self.tp / (self.n_pos + self.tp + self.fp)
        i = int(np.argmax(f1))
        return float(f1[i]), float(self.thresholds[i])

    def metrics(self) -> dict[str, float | int]:
        if not self.defined:
            warnings.warn(f"anomaly metrics undefined with {self.n_pos} anomaly and {self.n_neg} in-distribution "
                          "pixels; returning NaN", UndefinedMetricWarning, stacklevel=3)
            nan = float("nan")
            return {"auprc": nan, "fpr95": nan, "auroc": nan, "n_pos": self.n_pos, "n_neg": self.n_neg}
        return {"auprc": self.auprc(), "fpr95": self.fpr_at_tpr(TPR_TARGET), "auroc": self.auroc(),
                "n_pos": self.n_pos, "n_neg": self.n_neg}


def anomaly_curve(scores: Any, labels: Any, ignore_index: int | None = VOID) -> AnomalyCurve:
    """Exact PR/ROC counts of pooled pixels (any shape; higher score = more anomalous)."""
    pos, neg = split_anomaly_scores(scores, labels, ignore_index)
    return AnomalyCurve.from_split(pos, neg)


def anomaly_metrics(scores: Any, labels: Any, ignore_index: int | None = VOID) -> dict[str, float | int]:
    """``{"auprc", "fpr95", "auroc", "n_pos", "n_neg"}`` of pooled pixels; see the module docstring."""
    pos, neg = split_anomaly_scores(scores, labels, ignore_index)
    return AnomalyCurve.from_split(pos, neg).metrics()


class AnomalyMetricAccumulator:
    """Streaming pooled anomaly metrics: ``update`` per image, ``compute`` once (or again after more updates).

    Keeps only the valid pixels' scores (float32 for float16/32 input), split into positives and negatives, so
    no labels and no void pixels are stored. Negatives are gathered into blocks of about ``block_pixels`` that are
    sorted once when full; ``compute`` adds up the exact counts of every block at the pooled distinct positive
    scores. Memory is one copy of the valid scores plus one block being assembled (64 MiB of float32 by default),
    never a concatenation of all negatives; blocks keep the number of searchsorted passes at ``compute`` small.
    The result equals :func:`anomaly_metrics` on the concatenated images exactly (the same integer counts).
    """

    def __init__(self, ignore_index: int | None = VOID, block_pixels: int = 1 << 24) -> None:
        if block_pixels < 1:
            raise ValueError(f"block_pixels must be >= 1, got {block_pixels}")
        self.ignore_index = ignore_index
        self.block_pixels = block_pixels
        self._pos: list[np.ndarray] = []
        self._neg_sorted: list[np.ndarray] = []  # full blocks, each sorted ascending
        self._neg_pending: list[np.ndarray] = []  # per-image negatives of the block being assembled
        self._pending_size = 0
        self.num_images = 0

    def update(self, scores: Any, labels: Any) -> None:
        pos, neg = split_anomaly_scores(scores, labels, self.ignore_index)
        # Boolean indexing already made compact copies, so the caller's image (and its void pixels) is not kept.
        self._pos.append(pos)
        self._neg_pending.append(neg)
        self._pending_size += neg.size
        self.num_images += 1
        if self._pending_size >= self.block_pixels:
            self._close_block()

    def _close_block(self) -> None:
        if not self._neg_pending:
            return
        block = self._neg_pending[0] if len(self._neg_pending) == 1 else np.concatenate(self._neg_pending)
        self._neg_pending, self._pending_size = [], 0
        block.sort()
        self._neg_sorted.append(block)

    def curve(self) -> AnomalyCurve:
        self._close_block()
        if len(self._pos) > 1:  # positives are few: merging them is cheap and makes later calls faster
            self._pos = [np.concatenate(self._pos)]
        pos = self._pos[0] if self._pos else np.zeros(0, dtype=np.float32)
        return AnomalyCurve.from_sorted_negatives(pos, self._neg_sorted)

    def compute(self) -> dict[str, float | int]:
        return self.curve().metrics()

    def reset(self) -> None:
        self._pos, self._neg_sorted, self._neg_pending, self._pending_size, self.num_images = [], [], [], 0, 0


# ----------------------------------------------------------------------------------------------------------------
# Semantic segmentation
# ----------------------------------------------------------------------------------------------------------------

class ConfusionMatrix:
    """Pooled confusion matrix (rows = ground truth, columns = prediction) over ``num_classes`` train ids.

    IoU_c = TP / (TP + FP + FN) from the pooled matrix, as cityscapesscripts and detectron2 do; ground-truth void
    pixels are dropped before counting, so a prediction on void is neither TP nor FP.
    """

    def __init__(self, num_classes: int = NUM_CLASSES, ignore_index: int | None = VOID) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)

    def update(self, pred: Any, gt: Any) -> None:
        p = np.asarray(pred)
        g = np.asarray(gt)
        if p.shape != g.shape:
            raise ValueError(f"pred and gt must have the same shape, got {p.shape} and {g.shape}")
        if p.dtype.kind not in "iu" or g.dtype.kind not in "iu":
            raise TypeError(f"pred and gt must be integer class-id arrays, got {p.dtype} and {g.dtype}")
        p = p.reshape(-1)
        g = g.reshape(-1)
        if self.ignore_index is not None:
            valid = g != self.ignore_index
            p, g = p[valid], g[valid]
        if g.size == 0:
            return
        k = self.num_classes
        for name, arr in (("gt", g), ("pred", p)):
            lo, hi = int(arr.min()), int(arr.max())
            if lo < 0 or hi >= k:
                raise ValueError(f"{name} class ids must lie in [0, {k}) (or be {self.ignore_index} in gt); "
                                 f"found range [{lo}, {hi}]")
        idx = g.astype(np.int64) * k + p
        self.matrix += np.bincount(idx, minlength=k * k).reshape(k, k)

    def compute(self) -> dict[str, Any]:
        """``{"iou": per-class array (NaN if the class is absent from gt and pred), "miou", "pixel_accuracy"}``."""
        m = self.matrix
        tp = np.diag(m).astype(np.float64)
        union = m.sum(0) + m.sum(1) - np.diag(m)
        with np.errstate(invalid="ignore", divide="ignore"):
            iou = np.where(union > 0, tp / np.maximum(union, 1), np.nan)
        total = int(m.sum())
        if total == 0:
            warnings.warn("confusion matrix is empty; mIoU and accuracy are NaN", UndefinedMetricWarning, stacklevel=2)
            return {"iou": iou, "miou": float("nan"), "pixel_accuracy": float("nan")}
        return {"iou": iou, "miou": float(np.nanmean(iou)), "pixel_accuracy": float(tp.sum() / total)}

    def reset(self) -> None:
        self.matrix[:] = 0
