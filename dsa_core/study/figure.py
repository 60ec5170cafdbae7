"""``summary.png``: one panel per study table, benchmark-average AuPRC and AUROC per variant, every seed visible.

The tables give mean ± std; with 3 seeds a reader judges an ordering better from the seeds themselves, so each
variant shows its seeds (grey dots) and mean ± std (black diamond and bar) on an axis zoomed to the data, where
bars from zero would hide differences of a few points. Chance is marked: AUROC 50 %, AuPRC = the average anomaly pixel fraction of
the benchmarks (passed in by the caller when known).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any


def write_summary_figure(tables: list[tuple[str, list[str]]], variants: dict[str, dict[str, Any]], path: Path,
                         auprc_chance: float | None = None) -> Path | None:
    """Draw the tables' variants that have finished seeds; returns the path, or None when nothing has finished."""
    panels = [(title, [n for n in names if variants.get(n, {}).get("n", 0) > 0]) for title, names in tables]
    panels = [(title, names) for title, names in panels if names]
    if not panels:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [("average.auprc", "average AuPRC (%)"), ("average.auroc", "average AUROC (%)")]
    heights = [max(1.2, 0.42 * len(names) + 0.8) for _, names in panels]
    fig, axes = plt.subplots(len(panels), 2, figsize=(12, sum(heights)), squeeze=False,
                             gridspec_kw={"height_ratios": heights})
    for row, (title, names) in enumerate(panels):
        for col, (metric, xlabel) in enumerate(metrics):
            ax = axes[row][col]
            for i, name in enumerate(names):
                stat = variants[name]["metrics"].get(metric)
                if stat is None or stat["n"] == 0:
                    continue
                seeds = [100 * v for v in stat["values"] if v is not None]
                ax.scatter(seeds, [i] * len(seeds), color="0.6", s=14, zorder=2)
                std = 100 * stat["std"] if stat["n"] > 1 else 0.0
                ax.errorbar(100 * stat["mean"], i, xerr=std, fmt="D", color="black", markersize=5, capsize=3, zorder=3)
            chance = 50.0 if metric.endswith("auroc") else (None if auprc_chance is None else 100 * auprc_chance)
            if chance is not None:
                ax.axvline(chance, color="red", linestyle="--", linewidth=1)
            ax.set_ylim(len(names) - 0.5, -0.5)
            ax.grid(axis="x", linewidth=0.4, alpha=0.5)
            ax.set_yticks(range(len(names)))
            ax.set_yticklabels([variants[n]["label"] for n in names], fontsize=8)
            ax.set_xlabel(xlabel, fontsize=8)
            ax.tick_params(axis="x", labelsize=8)
            if col == 0:
                ax.set_title(title, fontsize=9, loc="left")
    fig.suptitle("diamond: mean ± std over seeds, grey dots: single seeds, red dashed: chance", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.985))  # room for the suptitle
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
