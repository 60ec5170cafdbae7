"""Which model-selection check agrees with the held-out sets? Over stage-2 run dirs (compare_stage2_runs.py's), the
Spearman rank correlation of each check that may decide a run with the mean AuPRC over the 7 held-out sets, which
may not: python results/train_nano_logs/selection_check_agreement.py RUN_DIR [RUN_DIR ...]."""
import sys
from pathlib import Path

from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_stage2_runs import row  # noqa: E402


def first(text: str) -> float:
    return float(str(text).split("/")[0])


CHECKS = {  # name -> value of a row (higher = better)
    "held-out-category pool-val AuPRC (in-pool categories)": lambda r: first(r["held-out-category AuPRC/FPR95"]),
    "calibration: on-road pool objects found": lambda r: float(r["pool objects found"]),
    "stage-2 val mIoU": lambda r: r["val mIoU"],
    "unseen-object AuPRC, mean of 0.5x and 1x on the road": lambda r: sum(
        first(p) for p in r["unseen-object AuPRC/FPR95 0.5x, 1x"].split(",")) / 2,
}

if __name__ == "__main__":
    rows = [row(Path(a)) for a in sys.argv[1:]]
    target = [r["mean held-out AuPRC"] for r in rows]
    print(f"{len(rows)} runs; mean held-out AuPRC: " + ", ".join(f"{t:.1f}" for t in target))
    print("| check | values | Spearman rho with the held-out mean |\n|---|---|---|")
    for name, get in CHECKS.items():
        vals = [get(r) for r in rows]
        rho = spearmanr(vals, target).statistic
        print(f"| {name} | " + ", ".join(f"{v:.1f}" for v in vals) + f" | {rho:+.2f} |")
