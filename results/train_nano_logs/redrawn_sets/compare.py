#!/usr/bin/env python3
"""The measures of the redrawn held-out sets (plan.md next to this file), after run.sh has finished: per set and
generator seed, the shipped model's Eq. 2 against its zero-cost baselines, and which verdicts hold at every seed.

    python results/train_nano_logs/redrawn_sets/compare.py > results/train_nano_logs/redrawn_sets/compare.md
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
sys.path.append(str(REPO))

from dsa_core.data.synth.anomaly_synth import FS_LAF_KINDS  # noqa: E402

ROOT = REPO / "runs" / "redrawn"
SEEDS = (0, 1, 2)
TARGET_AUPRC, TARGET_FPR95, TARGET_MIOU = 50.0, 30.0, 50.0  # the CPU targets, in %


def anomaly_sets(seed: int) -> dict[str, dict]:
    """Set name -> the dsa eval entry (auprc, fpr95, baselines) of one seed's evaluation."""
    bench = json.loads((ROOT / f"seed{seed}" / "eval" / "bench" / "metrics.json").read_text())["datasets"]
    sets = {"FS L&F": bench["fs_laf"], "Road Anomaly": bench["road_anomaly"]}
    for kind in FS_LAF_KINDS:
        path = ROOT / f"seed{seed}" / "eval" / "kinds" / kind / "metrics.json"
        sets[kind] = json.loads(path.read_text())["datasets"]["fs_laf"]
    return sets


def miou(seed: int) -> float:
    bench = json.loads((ROOT / f"seed{seed}" / "eval" / "bench" / "metrics.json").read_text())["datasets"]
    return 100 * bench["cityscapes"]["miou"]


def best_baseline(entry: dict) -> tuple[str, float]:
    name, row = max(entry["baselines"].items(), key=lambda kv: kv[1]["auprc"])
    return name, 100 * row["auprc"]


def beats_all(entry: dict) -> bool:
    return all(entry["auprc"] > row["auprc"] for row in entry["baselines"].values())


def verdict(values: list[bool]) -> str:
    return ("holds: yes" if all(values) else "holds: no" if not any(values)
            else f"decided by the draw ({sum(values)} of {len(values)})")


def main() -> int:
    sets = {s: anomaly_sets(s) for s in SEEDS}
    names = list(sets[SEEDS[0]])
    print("# The held-out sets redrawn: the measures\n")
    print("Shipped model `models/dsa_nano` (R5), `dsa eval` at the model's scale; each cell: Eq. 2 AuPRC / FPR95, and "
          "in brackets the best zero-cost baseline's AuPRC (e = entropy, m = 1 − max-softmax, r = 1 − p(road)).\n")
    short = {"entropy": "e", "max_softmax": "m", "not_drivable": "r"}
    print("## 1-2. Eq. 2 against the best baseline, and whether it beats every baseline\n")
    print("| set | " + " | ".join(f"seed {s}" for s in SEEDS) + " | Eq. 2 AuPRC range | Eq. 2 beats every baseline |")
    print("|---|" + "---|" * len(SEEDS) + "---|---|")
    for n in names:
        cells, wins, aps = [], [], []
        for s in SEEDS:
            e = sets[s][n]
            b, v = best_baseline(e)
            cells.append(f"{100 * e['auprc']:.1f} / {100 * e['fpr95']:.1f} ({short.get(b, b)} {v:.1f})")
            wins.append(beats_all(e))
            aps.append(100 * e["auprc"])
        print(f"| {n} | " + " | ".join(cells) + f" | {min(aps):.1f}-{max(aps):.1f} | {verdict(wins)} |")
    print("\n## 3. The targets at each seed\n")
    print("| target | " + " | ".join(f"seed {s}" for s in SEEDS) + " | verdict |")
    print("|---|" + "---|" * len(SEEDS) + "---|")
    mi = [miou(s) for s in SEEDS]
    print(f"| Cityscapes-format val mIoU >= {TARGET_MIOU:.0f} | " + " | ".join(f"{v:.1f}" for v in mi)
          + f" | {verdict([v >= TARGET_MIOU for v in mi])} |")
    for n in ("FS L&F", "Road Anomaly"):
        for what, key, ok in (("AuPRC >=", "auprc", lambda v: v >= TARGET_AUPRC),
                              ("FPR95 <=", "fpr95", lambda v: v <= TARGET_FPR95)):
            vals = [100 * sets[s][n][key] for s in SEEDS]
            target = TARGET_AUPRC if key == "auprc" else TARGET_FPR95
            print(f"| {n} {what} {target:.0f} | " + " | ".join(f"{v:.1f}" for v in vals)
                  + f" | {verdict([ok(v) for v in vals])} |")
    wins = {s: sum(beats_all(sets[s][n]) for n in names) for s in SEEDS}
    print(f"\nSets where Eq. 2 beats every baseline, of {len(names)}: "
          + ", ".join(f"seed {s}: {wins[s]}" for s in SEEDS) + ".")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
