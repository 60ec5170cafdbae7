"""Stage-1 validation mIoU of the two arms of "A 10000-step stage 1" (results/train_nano.md):
python results/train_nano_logs/stage1_10k/plot_stage1.py  ->  results/train_nano_logs/stage1_10k/stage1_val.png"""
import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

here = Path(__file__).resolve().parent / "replicate1"
fig, ax = plt.subplots(figsize=(6, 4))
for name, label in (("stage1_6500_val.csv", "W: 6500 steps (shipped recipe)"), ("stage1_10000_val.csv", "S: 10000 steps")):
    rows = list(csv.DictReader(open(here / name)))
    ax.plot([int(r["step"]) for r in rows], [100 * float(r["miou"]) for r in rows], "o-", ms=3, label=label)
ax.set_xlabel("stage-1 step")
ax.set_ylabel("val mIoU (%), 50 frames")
ax.grid(alpha=0.3)
ax.legend()
ax.set_title("Stage 1, same data, backbone and seed; the poly schedule spans each run", fontsize=9)
fig.tight_layout()
fig.savefig(here.parent / "stage1_val.png", dpi=110)
