#!/usr/bin/env python3
"""Summarise a scripts/train_demo_model.sh run: learning curves, small logs and the DSA-vs-baselines table.

    python scripts/recipe_report.py [WORK_DIR] [--out results]

Writes OUT/train_nano_curves.png, copies each stage's metrics.csv / val.csv to OUT/train_nano_logs/ and prints a
Markdown table (one row per evaluation set and held-out kind; AuPRC / FPR95 of the model's score and of every
zero-cost baseline of the same forward pass; the last column says whether the model's score beats all of them on
AuPRC, and in what share of frame resamples where the evaluation ran with --bootstrap) for results/train_nano.md.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.append(str(REPO))  # last: the venv's dsa_perception (with its generated msg module) wins


NAMES = {"model": "DSA Eq. 2", "max_softmax": "1 − max softmax", "entropy": "entropy", "not_drivable": "1 − p(road)"}


def table(evals: dict[str, dict]) -> str:
    """``evals``: name -> a ``dsa eval`` metrics.json payload. Where the evaluation resampled its frames
    (``--bootstrap``), the verdict says in what share of the resamples the model stayed ahead of the best baseline."""
    rows, header = [], None
    for name, payload in evals.items():
        scores = payload["scores"]
        for key, res in payload["datasets"].items():
            if "auprc" not in res:
                continue
            label = name if key == "fs_laf" and name != "benchmarks" else key
            cells = {"model": res}
            cells.update(res.get("baselines", {}))
            if header is None:
                header = [s for s in scores if s in cells]
            best = max((s for s in header if s != "model"), key=lambda s: cells[s]["auprc"])
            row = [label, f"{100 * res['n_pos'] / max(1, res['n_pos'] + res['n_neg']):.2f}"]  # chance AuPRC
            row += [f"{100 * cells[s]['auprc']:.1f} / {100 * cells[s]['fpr95']:.1f}" for s in header]
            verdict = "yes" if res["auprc"] > cells[best]["auprc"] else "no"
            share = cells[best].get("bootstrap", {}).get("reference_wins_auprc")  # dsa eval --bootstrap
            row.append(verdict if share is None else f"{verdict} (ahead of {NAMES.get(best, best)} in "
                       f"{100 * share:.0f} % of frame resamples)")
            rows.append(row)
    if header is None:
        return "(no evaluation found)"
    out = ["| set | chance AuPRC | " + " | ".join(f"{NAMES.get(s, s)} AuPRC / FPR95" for s in header)
           + " | DSA beats all |", "|" + "---|" * (len(header) + 3)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("work", nargs="?", type=Path, default=Path("runs/recipe"))
    p.add_argument("--out", type=Path, default=Path("results"))
    args = p.parse_args()
    from dsa_core.train.curves import plot_runs

    stages = {s: args.work / s for s in ("pretrain", "stage1", "stage2") if (args.work / s).is_dir()}
    plot_runs(stages, args.out / "train_nano_curves.png", title="dsa_nano recipe (scripts/train_demo_model.sh)")
    logs = args.out / "train_nano_logs"
    logs.mkdir(parents=True, exist_ok=True)
    for stage, run in stages.items():
        for name in ("metrics.csv", "val.csv"):
            if (run / name).is_file():
                shutil.copy(run / name, logs / f"{stage}_{name}")
    files = {"benchmarks": args.work / "eval" / "metrics.json"}
    files.update({k.name: k / "metrics.json" for k in sorted((args.work / "eval_kinds").glob("*")) if k.is_dir()})
    evals = {name: json.loads(f.read_text()) for name, f in files.items() if f.is_file()}
    print(table(evals))
    cs = evals.get("benchmarks", {}).get("datasets", {}).get("cityscapes", {})
    if "miou" in cs:
        print(f"\nCityscapes-format val mIoU: {100 * cs['miou']:.2f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
