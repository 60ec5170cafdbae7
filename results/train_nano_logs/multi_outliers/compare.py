#!/usr/bin/env python3
"""The measures of the several-outliers study (decision_rule.md next to this file), after run.sh has finished: the
rule's held-out parts per seed (M against the shipped recipe's R of the same seed) and the held-out table.

    python results/train_nano_logs/multi_outliers/compare.py > results/train_nano_logs/multi_outliers/compare.md
"""
from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
sys.path.append(str(HERE.parent))

from compare_stage2_runs import HELD_OUT, heldout_sets, heldout_tables  # noqa: E402

RUNS = REPO / "runs" / "fr"
ARMS = {"R5": RUNS / "r_seed5", "M5": RUNS / "m_seed5", "R4": RUNS / "r_seed4", "M4": RUNS / "m_seed4"}
PAIRS = [("M5", "R5"), ("M4", "R4")]


def main() -> int:
    sets = {arm: heldout_sets(run) for arm, run in ARMS.items()}
    auprc = {arm: {k: 100 * sets[arm][k]["auprc"] for k in HELD_OUT} for arm in ARMS}
    print("# Several pasted outliers per frame: the measures\n")
    print("Eq. 2 AuPRC in % on the seven held-out sets (`runs/recipe/data`), eval mIoU on the Cityscapes-format val.\n")
    print("| seed | (1) mean AuPRC M >= R + 1.5 | (2) mIoU M >= R - 1 | (3) largest loss on one set (<= 5) | passes |")
    print("|---|---|---|---|---|")
    verdicts = []
    for m, r in PAIRS:
        mean = {a: sum(auprc[a].values()) / len(HELD_OUT) for a in (m, r)}
        miou = {a: 100 * sets[a]["cityscapes"]["miou"] for a in (m, r)}
        worst = max(HELD_OUT, key=lambda k: auprc[r][k] - auprc[m][k])
        loss = auprc[r][worst] - auprc[m][worst]
        checks = (mean[m] >= mean[r] + 1.5, miou[m] >= miou[r] - 1, loss <= 5)
        verdicts.append(all(checks))
        print(f"| {m[1]} | {mean[m]:.1f} vs {mean[r]:.1f} | {miou[m]:.1f} vs {miou[r]:.1f} | {worst} "
              f"{-loss:+.1f} | {'yes' if all(checks) else 'no'} |")
    verdict = "passes: the drive check is next" if all(verdicts) else "fails"
    print(f"\n**Held-out rule (seeds 5 and 4 both pass): {verdict}.**\n")
    print(heldout_tables(sets, ARMS, REPO))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
