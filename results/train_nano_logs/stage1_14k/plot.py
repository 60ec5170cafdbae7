#!/usr/bin/env python3
"""Where the stage-1 lever saturates, in one picture (results/train_nano.md, "Where the recipe saturates"): the
stage-1 val curves of the 6500-step, 10000-step and continued runs, and what each extension of stage 1 changed on the
held-out sets, paired per stage-2 seed. Reads only committed files:

    python results/train_nano_logs/stage1_14k/plot.py  ->  results/train_nano_logs/stage1_14k/saturation.png
"""
from __future__ import annotations

import csv
import re
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

sys.path.append(str(Path(__file__).resolve().parents[1]))
from compare_stage2_runs import HELD_OUT  # noqa: E402

HERE = Path(__file__).resolve().parent
LOGS = HERE.parent


def val_curve(path: Path, offset: int = 0) -> tuple[list[int], list[float]]:
    rows = list(csv.DictReader(open(path)))
    return [offset + int(r["step"]) for r in rows], [100 * float(r["miou"]) for r in rows]


def from_compare_table(path: Path, column: int) -> dict:
    """eval mIoU and per-set AuPRC / FPR95 of one run column of a compare_stage2_runs.py table."""
    out = {}
    for line in path.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) <= column:
            continue
        if cells[0] == "eval mIoU":
            out["miou"] = float(cells[column])
        elif cells[0] in HELD_OUT:
            m = re.match(r"([\d.]+) / ([\d.]+)", cells[column])
            out[cells[0]] = (float(m[1]), float(m[2]))
    return out


def from_heldout_eval(path: Path) -> dict:
    """The same from a heldout_eval.md report (one `final` row per set)."""
    out, section = {}, "main"
    for line in path.read_text().splitlines():
        if line.startswith("## kind "):
            section = line[len("## kind "):].strip()
        m = re.match(r"\| final \| ([\d.]+)(?: / ([\d.]+))?(?: \| ([\d.]+) / ([\d.]+))?", line)
        if not m:
            continue
        if section == "main" and m[2] is None:
            out["miou"] = float(m[1])
        elif section == "main" and "fs_laf" not in out:
            out["fs_laf"], out["road_anomaly"] = (float(m[1]), float(m[2])), (float(m[3]), float(m[4]))
        elif section != "main":
            out[section] = (float(m[1]), float(m[2]))
    return out


def measures(run: dict) -> dict:
    return {"mean held-out AuPRC": sum(run[k][0] for k in HELD_OUT) / len(HELD_OUT), "eval mIoU": run["miou"],
            "thin_pole AuPRC": run["thin_pole"][0], "road_coloured AuPRC": run["road_coloured"][0],
            "Road Anomaly FPR95 (lower is better)": run["road_anomaly"][1]}


def pairs() -> dict[str, list[tuple[dict, dict]]]:
    """extension -> [(before, after) per stage-2 seed]."""
    r1 = LOGS / "stage1_10k" / "replicate1" / "compare_seed4.md"
    r2 = LOGS / "stage1_10k" / "replicate2"
    here = HERE / "compare.md"
    return {
        "6500 -> 10000\n(Cityscapes void labels)": [
            (from_compare_table(r1, 1), from_compare_table(r1, 2)),
            (from_heldout_eval(r2 / "w_seed5_heldout_eval.md"), from_heldout_eval(r2 / "s_seed5_heldout_eval.md"))],
        "10000 -> 14000\n(shipped stage 2)": [
            (from_compare_table(here, 1), from_compare_table(here, 2)),
            (from_compare_table(here, 3), from_compare_table(here, 4))],
    }


def main() -> None:
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [1, 1.4]})
    ax = axes[0]
    recipe = val_curve(LOGS / "flat_recipe" / "stage1_val.csv")
    more = val_curve(HERE / "stage1_continued_val.csv", offset=10000)
    ax.plot(*val_curve(LOGS / "stage1_10k" / "replicate1" / "stage1_6500_val.csv"), "o-", ms=3,
            label="6500-step run (Cityscapes void labels)")
    ax.plot(*recipe, "o-", ms=3, label="10000-step run (the recipe)")
    # the continuation starts from the recipe's 10000-step model
    ax.plot([recipe[0][-1]] + more[0], [recipe[1][-1]] + more[1], "o-", ms=3,
            label="+4000 steps (14000-step schedule)")
    ax.set_xlabel("stage-1 step")
    ax.set_ylabel("stage-1 val mIoU (%), 50 frames")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Stage 1: semantics still rise", fontsize=10)

    ax = axes[1]
    extensions = pairs()
    names = list(measures(next(iter(extensions.values()))[0][0]))
    width = 0.8 / len(names)
    for g, (ext, runs) in enumerate(extensions.items()):
        for i, name in enumerate(names):
            deltas = [measures(after)[name] - measures(before)[name] for before, after in runs]
            x = g + (i - (len(names) - 1) / 2) * width
            ax.bar(x, sum(deltas) / len(deltas), width * 0.9, color=f"C{i}", alpha=0.5, label=name if g == 0 else None)
            ax.plot([x] * len(deltas), deltas, "k.", ms=6)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks(range(len(extensions)), list(extensions))
    ax.set_ylabel("change, points (dots: stage-2 seeds; bar: mean)")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=7, loc="best")
    ax.set_title("Held-out sets per extension of stage 1, paired per seed", fontsize=10)
    fig.tight_layout()
    fig.savefig(HERE / "saturation.png", dpi=110)


if __name__ == "__main__":
    main()
