"""Learning curves from run directories (``metrics.csv`` / ``val.csv`` of the training loop) as one PNG.

Why: the recipe's choices (stem, learning rate, batch) and the per-stage budget are judged from curves, and the
L_ubhl distance statistics (``stat_dist_id`` / ``stat_dist_ood``) show whether the ID stream keeps learning.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np


def read_csv(path: Path) -> dict[str, np.ndarray]:
    """Columns of a run's CSV as float arrays (empty dict when the file does not exist)."""
    if not path.is_file():
        return {}
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}
    return {k: np.array([float(r[k]) if r.get(k) not in (None, "") else np.nan for r in rows]) for k in rows[0]}


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average over ``window`` points (shorter at the start); NaNs are skipped."""
    if window <= 1 or values.size == 0:
        return values
    out = np.empty_like(values, dtype=float)
    for i in range(values.size):
        chunk = values[max(0, i - window + 1):i + 1]
        chunk = chunk[np.isfinite(chunk)]
        out[i] = chunk.mean() if chunk.size else np.nan
    return out


def plot_runs(runs: dict[str, Path], out_png: Path, title: str = "", smooth_window: int = 10) -> Path:
    """Panels: training loss (smoothed), validation mIoU, and, where logged, validation AuPRC and the mean L_ubhl
    distances of ID tokens (ID stream) and void tokens (OOD stream); one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = {name: (read_csv(Path(d) / "metrics.csv"), read_csv(Path(d) / "val.csv")) for name, d in runs.items()}
    has_auprc = any("auprc" in v for _, v in data.values())
    has_dist = any("stat_dist_id" in m for m, _ in data.values())
    panels = 2 + has_auprc + has_dist
    fig, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 3.4), squeeze=False)
    axes = axes[0]
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (name, (metrics, val)) in enumerate(data.items()):
        c = colours[i % len(colours)]  # one colour per run in every panel
        if metrics:
            loss = metrics.get("total", metrics.get("loss_ce"))
            axes[0].plot(metrics["step"], smooth(loss, smooth_window), color=c, label=name)
        if val and "miou" in val:
            axes[1].plot(val["step"], 100 * val["miou"], marker="o", color=c, label=name)
        k = 2
        if has_auprc:
            if val and "auprc" in val:
                axes[k].plot(val["step"], 100 * val["auprc"], marker="o", color=c, label=name)
            k += 1
        if has_dist and "stat_dist_id" in metrics:
            axes[k].plot(metrics["step"], smooth(metrics["stat_dist_id"], smooth_window), color=c, label=f"{name} ID")
            axes[k].plot(metrics["step"], smooth(metrics["stat_dist_ood"], smooth_window), linestyle="--", color=c,
                         label=f"{name} void (OOD stream)")
    axes[0].set(title="training loss (smoothed)", xlabel="step")
    axes[1].set(title="val mIoU (%)", xlabel="step")
    k = 2
    if has_auprc:
        axes[k].set(title="val anomaly AuPRC (%)", xlabel="step")
        k += 1
    if has_dist:
        axes[k].set(title="L_ubhl distance to origin", xlabel="step")
    for ax in axes:
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png
