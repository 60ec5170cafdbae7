"""scripts/recipe_report.py's DSA-vs-baselines table: the verdict per set, and the share of frame resamples when the
evaluation ran with --bootstrap."""
from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _table():
    spec = importlib.util.spec_from_file_location("recipe_report", REPO / "scripts" / "recipe_report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.table


def _entry(auprc: float, fpr95: float, **extra) -> dict:
    return {"auprc": auprc, "fpr95": fpr95, "n_pos": 10, "n_neg": 990, **extra}


def test_verdict_and_bootstrap_share_per_set() -> None:
    table = _table()
    scores = ["model", "max_softmax", "entropy", "not_drivable"]
    booted = _entry(0.7, 0.05, baselines={
        "max_softmax": _entry(0.2, 0.6, bootstrap={"reference_wins_auprc": 1.0}),
        "entropy": _entry(0.3, 0.5, bootstrap={"reference_wins_auprc": 0.97}),
        "not_drivable": _entry(0.1, 0.7, bootstrap={"reference_wins_auprc": 1.0})})
    plain = _entry(0.2, 0.3, baselines={"max_softmax": _entry(0.1, 0.6), "entropy": _entry(0.1, 0.5),
                                        "not_drivable": _entry(0.6, 0.1)})
    text = table({"benchmarks": {"scores": scores, "datasets": {"fs_laf": booted}},
                  "thin_pole": {"scores": scores, "datasets": {"fs_laf": plain}}})
    rows = {line.split(" | ")[0].strip("| "): line for line in text.splitlines()[2:]}
    assert set(rows) == {"fs_laf", "thin_pole"}
    # the best baseline on fs_laf is entropy (0.3): the model is ahead of it in 97 % of the resamples
    assert rows["fs_laf"].endswith("| yes (ahead of entropy in 97 % of frame resamples) |")
    assert rows["thin_pole"].endswith("| no |")  # no bootstrap: the plain verdict
    assert "| 70.0 / 5.0 |" in rows["fs_laf"] and "| 1.00 |" in rows["fs_laf"]  # AuPRC / FPR95 and chance AuPRC
