"""Evaluation outputs: ``metrics.json``, a Markdown table laid out like the paper's Table 3, PR / ROC plots and
input | anomaly heat map | ground-truth overlays.

The table has one row per method with "AuPRC ↑ / FPR95 ↓" (in %) per anomaly dataset in the paper's column order
(RA21, RO21, FS L&F, FS Static, Road Anomaly) and their average, recomputed over the datasets evaluated in this run
(never copied: the paper's own Average column is misaligned for several rows, docs/eval_reference.md §5).
Below the model's row come the zero-cost baselines of the same forward pass (dsa_core.eval.baselines), so the
table shows at a glance whether the model's score beats them.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from dsa_core.data.anomaly_sets import ANOMALY_KEYS
from dsa_core.eval.baselines import BASELINES
from dsa_core.labels import VOID

SHORT_NAMES = {"smiyc_ra21": "RA21", "smiyc_ro21": "RO21", "fs_laf": "FS L&F", "fs_static": "FS Static",
               "road_anomaly": "Road Anomaly", "cityscapes": "Cityscapes val"}
MAX_PLOT_POINTS = 20000


def _json_safe(value: Any) -> Any:
    """NaN/inf -> None (JSON has no NaN); numpy scalars -> Python numbers."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_metrics_json(path: Path, payload: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_json_safe(payload), indent=2, allow_nan=False))
    return path


def _metrics_of(result: dict[str, Any], score: str | None) -> dict[str, Any]:
    """The model's metrics of one dataset (score None) or those of a baseline (score = its name)."""
    return result if score is None else result.get("baselines", {}).get(score, {})


def average_anomaly(results: dict[str, dict[str, Any]], score: str | None = None) -> dict[str, Any]:
    """Mean AuPRC / FPR95 over the anomaly datasets with defined metrics, of the model (None) or a baseline."""
    keys = [k for k in ANOMALY_KEYS if k in results and _finite(_metrics_of(results[k], score).get("auprc"))
            and _finite(_metrics_of(results[k], score).get("fpr95"))]
    if not keys:
        return {"datasets": [], "auprc": float("nan"), "fpr95": float("nan")}
    return {"datasets": keys, "auprc": float(np.mean([_metrics_of(results[k], score)["auprc"] for k in keys])),
            "fpr95": float(np.mean([_metrics_of(results[k], score)["fpr95"] for k in keys]))}


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def _pct(v: Any) -> str:
    return f"{100 * v:.2f}" if _finite(v) else "n/a"


def table_markdown(method: str, results: dict[str, dict[str, Any]], resolution: str,
                   score_name: str | None = None) -> str:
    """Table 3 layout: Method | <dataset> AuPRC ↑ / FPR95 ↓ ... | Average, one row for the model and one per
    baseline found in the results; plus Cityscapes mIoU if evaluated."""
    keys = [k for k in ANOMALY_KEYS if k in results]
    lines = []
    if keys:
        head = ["Method"] + [f"{SHORT_NAMES[k]} AuPRC ↑ / FPR95 ↓" for k in keys] + ["Average AuPRC ↑ / FPR95 ↓"]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        present = [b for b in BASELINES if any(b in results[k].get("baselines", {}) for k in keys)]
        for label, score in [(method, None)] + [(f"baseline: {BASELINES[b]}", b) for b in present]:
            metrics = [_metrics_of(results[k], score) for k in keys]
            avg = average_anomaly(results, score)
            row = [label] + [f"{_pct(m.get('auprc'))} / {_pct(m.get('fpr95'))}" for m in metrics]
            row.append(f"{_pct(avg['auprc'])} / {_pct(avg['fpr95'])}")
            lines.append("| " + " | ".join(row) + " |")
        avg = average_anomaly(results)
        lines += ["", f"Average over: {', '.join(SHORT_NAMES[k] for k in avg['datasets']) or 'none'}."]
        if present:
            lines.append(f"Row {method}: {score_name or 'the model score'}. Baselines come from the same forward pass: "
                         "the Mask2Former class scores normalised over the classes (dsa_core.eval.baselines).")
    if "cityscapes" in results:
        lines += ["", "| Method | Cityscapes val mIoU ↑ |", "|---|---|",
                  f"| {method} | {_pct(results['cityscapes'].get('miou'))} |"]
    lines += ["", "Values in %. AuPRC = step-wise average precision (sklearn's average_precision_score); FPR95 = FPR "
              "at the first threshold with TPR >= 0.95 (Fishyscapes / SMIYC rule); pixels pooled over all images, "
              "void dropped.", f"Evaluation resolution: {resolution}."]
    counts = ", ".join(f"{SHORT_NAMES[k]} {r['num_evaluated']}/{r['num_found']}" for k, r in results.items())
    lines.append(f"Images evaluated / found: {counts}.")
    lines += bootstrap_lines(method, results, keys)
    return "\n".join(lines) + "\n"


def _interval(entry: dict[str, Any], key: str) -> str:
    span = entry.get(key)
    return f"{_pct(span[0])}-{_pct(span[1])}" if span else "n/a"


def bootstrap_lines(method: str, results: dict[str, dict[str, Any]], keys: list[str]) -> list[str]:
    """The frame bootstrap's table (``dsa eval --bootstrap N``): 95 % intervals of the model's and each baseline's
    AuPRC / FPR95, and the share of resamples in which the model's AuPRC is the higher."""
    booted = [k for k in keys if "bootstrap" in results[k]]
    if not booted:
        return []
    lines = ["", "| Set | Score | AuPRC 95 % interval | FPR95 95 % interval | model's AuPRC higher in |",
             "|---|---|---|---|---|"]
    for k in booted:
        boot = results[k]["bootstrap"]
        if "error" in boot:
            lines.append(f"| {SHORT_NAMES[k]} | all | no bootstrap: {boot['error']} | | |")
            continue
        lines.append(f"| {SHORT_NAMES[k]} | {method} | {_interval(boot, 'auprc_interval')} | "
                     f"{_interval(boot, 'fpr95_interval')} | |")
        for name, entry in results[k].get("baselines", {}).items():
            b = entry.get("bootstrap", {})
            wins = b.get("reference_wins_auprc")
            lines.append(f"| {SHORT_NAMES[k]} | baseline: {BASELINES.get(name, name)} | "
                         f"{_interval(b, 'auprc_interval')} | {_interval(b, 'fpr95_interval')} | "
                         f"{'n/a' if wins is None else f'{100 * wins:.1f} %'} |")
    resamples = next((results[k]["bootstrap"]["resamples"] for k in booted if "resamples" in results[k]["bootstrap"]),
                     None)
    lines.append(f"Frame bootstrap: {resamples} resamples of each set's frames with replacement (the same resamples "
                 "for every score), pixels pooled per resample; percentile intervals (dsa_core.eval.bootstrap). A set "
                 "is one draw of frames: these intervals say how much its numbers are those frames. Against new draws of "
                 "synthetic sets they proved too narrow: read them as a floor on the uncertainty.")
    return lines


def _thin(*arrays: np.ndarray) -> list[np.ndarray]:
    n = arrays[0].size
    if n <= MAX_PLOT_POINTS:
        return list(arrays)
    idx = np.unique(np.linspace(0, n - 1, MAX_PLOT_POINTS).round().astype(np.int64))
    return [a[idx] for a in arrays]


def write_curve_plots(curve, out_dir: Path, key: str, title: str) -> dict[str, str]:
    """``<key>_pr.png`` (precision vs recall, step) and ``<key>_roc.png`` (exact ROC staircase)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    recall, precision = _thin(np.concatenate([[0.0], curve.recall()]),
                              np.concatenate([[curve.precision()[0]], curve.precision()]))
    fig, ax = plt.subplots(figsize=(5, 4), dpi=100)
    ax.step(recall, precision, where="post")
    ax.axhline(curve.n_pos / (curve.n_pos + curve.n_neg), ls="--", c="gray", lw=0.8, label="positive rate")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02),
           title=f"{title}: AuPRC {100 * curve.auprc():.2f}")
    ax.legend(loc="lower left")
    fig.tight_layout()
    pr = out_dir / f"{key}_pr.png"
    fig.savefig(pr)
    plt.close(fig)

    fpr, tpr = _thin(*curve.roc_points())
    fig, ax = plt.subplots(figsize=(5, 4), dpi=100)
    ax.plot(fpr, tpr)
    ax.plot([0, 1], [0, 1], ls="--", c="gray", lw=0.8)
    ax.axhline(0.95, ls=":", c="red", lw=0.8, label=f"TPR 0.95: FPR {100 * curve.fpr_at_tpr():.2f}%")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.02),
           title=f"{title}: AUROC {100 * curve.auroc():.2f}")
    ax.legend(loc="lower right")
    fig.tight_layout()
    roc = out_dir / f"{key}_roc.png"
    fig.savefig(roc)
    plt.close(fig)
    return {"pr": str(pr), "roc": str(roc)}


def write_overlay(path: Path, image: np.ndarray, scores: np.ndarray, label: np.ndarray) -> Path:
    """Side by side: input | anomaly heat map (per-image min-max, inferno) | GT (black ID, white anomaly, gray void)."""
    s = scores.astype(np.float64)
    finite = np.isfinite(s)
    lo, hi = (s[finite].min(), s[finite].max()) if finite.any() else (0.0, 1.0)
    norm = np.clip((np.where(finite, s, hi) - lo) / (hi - lo if hi > lo else 1.0), 0, 1)
    heat = cv2.applyColorMap((norm * 255).astype(np.uint8), cv2.COLORMAP_INFERNO)[..., ::-1]
    gt = np.zeros(image.shape, np.uint8)
    gt[label == 1] = 255
    gt[label == VOID] = 128
    panel = np.concatenate([image, heat, gt], axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(np.ascontiguousarray(panel), cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")
    return path
