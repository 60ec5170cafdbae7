"""Rule and report columns of stage-2 run dirs of the full-length studies (their run.sh):
python compare_stage2_runs.py RUN_DIR [RUN_DIR ...]."""
import csv, json, re, sys
from pathlib import Path

def row(d: Path) -> dict:
    r = {"run": str(d)}
    val = list(csv.DictReader(open(d / "val.csv")))
    if val:
        r["val step"] = val[-1]["step"]; r["val mIoU"] = 100 * float(val[-1]["miou"])
        r["pool-val AuPRC/FPR95"] = f"{100*float(val[-1]['auprc']):.1f} / {100*float(val[-1]['fpr95']):.1f}"
    hc = d / "heldout_category_pool_val.md"
    if hc.exists():
        m = re.search(r"\| ([\d.]+) / ([\d.]+) \|", hc.read_text())
        r["held-out-category AuPRC/FPR95"] = f"{m[1]} / {m[2]}"
    for name, label in (("unseen_object_val.md", ""), ("unseen_object_val_low_contrast.md", " low contrast")):
        uo = d / name
        if uo.exists():
            m = re.search(r"\| ([\d.]+) / ([\d.]+) \| ([\d.]+) / ([\d.]+) \|", uo.read_text())
            r[f"unseen-object{label} AuPRC/FPR95 0.5x, 1x"] = f"{m[1]} / {m[2]}, {m[3]} / {m[4]}"
            r[f"unseen-object{label} AuPRC mean"] = (float(m[1]) + float(m[3])) / 2
    cal = d / "calibration" / "calibration.md"
    if cal.exists():
        t = cal.read_text()
        r["threshold"] = re.search(r"anomaly_threshold: \*\*([\d.]+)", t)[1]
        r["min area px"] = re.search(r"at 512x256: (\d+) px", t)[1]
        r["false frames"] = re.search(r"false obstacle at this point: (\d+) of", t)[1]
        r["pool objects found"] = re.search(r"(\d+) found as obstacles", t)[1]
    sets = {}
    ev = d / "eval" / "metrics.json"
    if ev.exists():
        ds = json.loads(ev.read_text())["datasets"]
        r["eval mIoU"] = 100 * ds["cityscapes"]["miou"]
        for k in ("fs_laf", "road_anomaly"):
            sets[k] = ds[k]
    for p in sorted((d / "eval_kinds").glob("*/metrics.json")):
        sets[p.parent.name] = json.loads(p.read_text())["datasets"]["fs_laf"]
    beats, aps = 0, []
    for k, s in sets.items():
        b = max(s["baselines"].items(), key=lambda kv: kv[1]["auprc"])
        aps.append(s["auprc"]); beats += all(s["auprc"] > v["auprc"] for v in s["baselines"].values())
        r[k] = f"{100*s['auprc']:.1f} / {100*s['fpr95']:.1f} (best baseline {b[0]} {100*b[1]['auprc']:.1f})"
    if aps:
        r["mean held-out AuPRC"] = 100 * sum(aps) / len(aps); r["beats all baselines"] = f"{beats}/{len(aps)}"
    dr = d / "drive" / "report.json"
    if dr.exists():
        j = json.loads(dr.read_text()); a = j["metrics"].get("anomaly", {}); al = j.get("alerts") or {}
        nan = float("nan")
        r["drive pixel AuPRC/FPR95"] = f"{100*a.get('auprc', nan):.2f} / {100*a.get('fpr95', nan):.1f}"
        r["drive alerts P/R, confirmed"] = (f"{al.get('alert_precision')} / {al.get('alert_recall')}, "
                                          f"{al.get('obstacles_confirmed')} of {al.get('obstacles_total')}")
    return r

def heldout_sets(d: Path) -> dict:
    """Set name -> the eval's metrics of that set (Eq. 2 and its baselines): cityscapes, fs_laf, road_anomaly and
    every kind under eval_kinds/."""
    ds = json.loads((d / "eval" / "metrics.json").read_text())["datasets"]
    sets = {"cityscapes": ds["cityscapes"], "fs_laf": ds["fs_laf"], "road_anomaly": ds["road_anomaly"]}
    for p in sorted((d / "eval_kinds").glob("*/metrics.json")):
        sets[p.parent.name] = json.loads(p.read_text())["datasets"]["fs_laf"]
    return sets

#: The seven held-out sets every study reads: the two benchmark formats and the five hard kinds (evaluation only).
HELD_OUT = ("fs_laf", "road_anomaly", "road_coloured", "tiny", "thin_pole", "photo_like", "large_near")

def heldout_tables(sets: dict, arms: dict, repo: Path) -> str:
    """The closing tables of a study's compare.md: Eq. 2 on the held-out sets per arm, then the full row() table."""
    return (set_table(sets, HELD_OUT) + "\n\n## Held-out sets (`compare_stage2_runs.py`)\n\n"
            + arms_table(arms, repo))

def set_table(sets: dict, names) -> str:
    """Eq. 2 "AuPRC / FPR95" of the named sets, one column per arm (sets: arm -> heldout_sets of its run)."""
    lines = ["| AuPRC / FPR95 | " + " | ".join(sets) + " |", "|---|" + "---|" * len(sets)]
    lines += [f"| {k} | " + " | ".join(f"{100 * s[k]['auprc']:.1f} / {100 * s[k]['fpr95']:.1f}" for s in sets.values())
              + " |" for k in names]
    return "\n".join(lines)

def arms_table(arms: dict, repo: Path) -> str:
    """The full row() table, one column per arm (arms: arm -> run dir), run dirs relative to repo."""
    head = "| | " + " | ".join(arms) + " |\n|---|" + "---|" * len(arms)
    return head + "\n" + table_rows([row(run) | {"run": str(run.relative_to(repo))} for run in arms.values()])

def table_rows(rows: list) -> str:
    """The markdown body: one line per column key, one cell per run."""
    keys = list(dict.fromkeys(k for r in rows for k in r))
    return "\n".join(f"| {k} | " + " | ".join(f"{v:.1f}" if isinstance(v, float) else str(v)
                                             for v in (r.get(k, "") for r in rows)) + " |" for k in keys)

if __name__ == "__main__":
    print(table_rows([row(Path(a)) for a in sys.argv[1:]]))
