#!/usr/bin/env python3
"""The measures of the fresh-kind check (plan.md next to this file), after run.sh has finished: the shipped model
against its baselines on each fresh kind, and whether the studies' seven-set readings carry to the fresh kinds.

    python results/train_nano_logs/fresh_kinds/compare.py > results/train_nano_logs/fresh_kinds/compare.md
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
sys.path.append(str(HERE.parent))
sys.path.append(str(REPO))

from compare_stage2_runs import HELD_OUT, heldout_sets  # noqa: E402
from dsa_core.data.synth.anomaly_synth import FRESH_KINDS  # noqa: E402

RUNS = REPO / "runs"
ARMS = {"R5": "fr/r_seed5", "F5": "fr/f_seed5", "R4": "fr/r_seed4", "F4": "fr/f_seed4", "R3": "fr/r_seed3",
        "F3": "fr/f_seed3", "S5": "fr/s_seed5", "S4": "fr/s_seed4", "M5": "fr/m_seed5", "M4": "fr/m_seed4",
        "X5": "s14/x_seed5", "X4": "s14/x_seed4", "F7": "vf/f_seed7", "C7": "vf/c_seed7", "F8": "vf/f_seed8",
        "C8": "vf/c_seed8"}
#: (variant, reference, study) as each study compared them
PAIRS = [("R5", "F5", "on-road outliers"), ("R4", "F4", "on-road outliers"), ("R3", "F3", "on-road outliers"),
         ("S5", "R5", "stretched outliers"), ("S4", "R4", "stretched outliers"),
         ("M5", "R5", "several outliers"), ("M4", "R4", "several outliers"),
         ("X5", "R5", "14000-step stage 1"), ("X4", "R4", "14000-step stage 1"),
         ("F7", "C7", "flat void-ground labels"), ("F8", "C8", "flat void-ground labels")]
SHIPPED = "R5"
TIE = 1.0  # points of mean AuPRC within which a difference is a tie (plan.md)


def fresh_sets(run: Path) -> dict:
    return {k: json.loads((run / "eval_fresh" / k / "metrics.json").read_text())["datasets"]["fs_laf"]
            for k in FRESH_KINDS}


def sign(d: float) -> int:
    return 0 if abs(d) <= TIE else (1 if d > 0 else -1)


def main() -> int:
    seven = {a: heldout_sets(RUNS / r) for a, r in ARMS.items()}
    fresh = {a: fresh_sets(RUNS / r) for a, r in ARMS.items()}
    mean7 = {a: sum(100 * seven[a][k]["auprc"] for k in HELD_OUT) / len(HELD_OUT) for a in ARMS}
    mean4 = {a: sum(100 * fresh[a][k]["auprc"] for k in FRESH_KINDS) / len(FRESH_KINDS) for a in ARMS}
    print("# Fresh held-out kinds: the measures\n")
    print(f"## 1. The shipped model ({SHIPPED} = `models/dsa_nano`) against its zero-cost baselines\n")
    names = list(fresh[SHIPPED][FRESH_KINDS[0]]["baselines"])
    print("| kind (AuPRC / FPR95) | Eq. 2 | " + " | ".join(names) + " | Eq. 2 beats every baseline (AuPRC) |")
    print("|---|---|" + "---|" * len(names) + "---|")
    beats = 0
    for k in FRESH_KINDS:
        s = fresh[SHIPPED][k]
        b = s["baselines"]
        win = all(s["auprc"] > v["auprc"] for v in b.values())
        beats += win
        print(f"| {k} | {100 * s['auprc']:.1f} / {100 * s['fpr95']:.1f} | "
              + " | ".join(f"{100 * b[n]['auprc']:.1f} / {100 * b[n]['fpr95']:.1f}" for n in names)
              + f" | {'yes' if win else 'no'} |")
    print(f"\nEq. 2 beats every baseline on {beats} of {len(FRESH_KINDS)} fresh kinds.\n")
    print("## 2. Do the seven sets' readings carry to the fresh kinds?\n")
    print(f"Differences of the mean Eq. 2 AuPRC, variant minus reference; within {TIE:g} point a tie.\n")
    print("| study | pair | seven sets | fresh kinds | agree |")
    print("|---|---|---|---|---|")
    agree = decided = 0
    for v, r, study in PAIRS:
        d7, d4 = mean7[v] - mean7[r], mean4[v] - mean4[r]
        s7, s4 = sign(d7), sign(d4)
        verdict = "tie" if 0 in (s7, s4) else ("yes" if s7 == s4 else "no")
        if verdict != "tie":
            decided += 1
            agree += verdict == "yes"
        print(f"| {study} | {v} vs {r} | {d7:+.1f} | {d4:+.1f} | {verdict} |")
    share = agree / decided if decided else float("nan")
    reading = ("carry" if decided and share >= 0.75 else "over-used" if decided and share <= 0.5 else "inconclusive")
    print(f"\nAgree in {agree} of {decided} pairs without a tie ({100 * share:.0f} %): by the plan's rule, "
          f"**{reading}**.\n")
    print("## 3. Each run's means\n")
    print("| run | mean AuPRC, seven sets | mean AuPRC, fresh kinds | " + " | ".join(FRESH_KINDS) + " |")
    print("|---|---|---|" + "---|" * len(FRESH_KINDS))
    for a, r in ARMS.items():
        print(f"| {a} (`runs/{r}`) | {mean7[a]:.1f} | {mean4[a]:.1f} | "
              + " | ".join(f"{100 * fresh[a][k]['auprc']:.1f} / {100 * fresh[a][k]['fpr95']:.1f}"
                           for k in FRESH_KINDS) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
