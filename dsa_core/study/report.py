"""Aggregate per-seed results into ``results.json`` and ``table.md`` (mean ± sample std over seeds).

Tables are laid out like the paper's Tables 1/2/5/8: one row per variant, AuPRC ↑ / FPR95 ↓ per benchmark (in %),
their average over the benchmarks (averaged per seed, then mean ± std over seeds), plus what the paper does not
show but a user needs: Cityscapes-val mIoU, trainable parameters and training time.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from dsa_core.atomic import write_json_atomic
from dsa_core.study.figure import write_summary_figure
from dsa_core.study.plan import BENCHMARK_KEYS, Claim, StudyPlan

BENCH_TITLES = {"road_anomaly": "Road Anomaly", "smiyc_ra21": "SMIYC RA-21", "smiyc_ro21": "SMIYC RO-21",
                "fs_laf": "FS L&F", "fs_static": "FS Static"}


def mean_std(values: list[float]) -> dict[str, Any]:
    """Mean and sample standard deviation (ddof = 1; NaN for a single seed) of finite values."""
    arr = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    if arr.size == 0:
        return {"mean": float("nan"), "std": float("nan"), "n": 0, "values": list(values)}
    std = float(arr.std(ddof=1)) if arr.size > 1 else float("nan")
    return {"mean": float(arr.mean()), "std": std, "n": int(arr.size), "values": [float(v) for v in values]}


def load_results(out: Path, variant: str) -> list[dict[str, Any]]:
    """Every finished seed of ``variant`` under OUT/runs, ordered by seed."""
    found = []
    for path in sorted((out / "runs" / variant).glob("seed*/result.json")):
        found.append(json.loads(path.read_text()))
    return sorted(found, key=lambda r: r["seed"])


def aggregate_variant(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-metric mean ± std over seeds; the benchmark average is computed per seed first."""
    if not results:
        return {"seeds": [], "n": 0}
    benches = [k for k in BENCHMARK_KEYS if k in results[0]["metrics"]]
    per_seed: dict[str, list[float]] = {"miou": [r["metrics"]["cityscapes"]["miou"] for r in results]}
    for k in benches:
        for m in ("auprc", "fpr95", "auroc"):
            per_seed[f"{k}.{m}"] = [r["metrics"][k][m] for r in results]
    if benches:
        for m in ("auprc", "fpr95", "auroc"):
            per_seed[f"average.{m}"] = [float(np.mean([r["metrics"][k][m] for k in benches])) for r in results]
    agg = {name: mean_std(vals) for name, vals in per_seed.items()}
    agg["train_seconds"] = mean_std([r["train_seconds"] for r in results])
    first = results[0]
    return {
        "label": first["label"], "seeds": [r["seed"] for r in results], "n": len(results),
        "benchmarks": benches, "metrics": agg, "params": first["params"],
        "model_overrides": first["model_overrides"], "token_loss": first["token_loss"],
        "stage1": first["stage1"], "stage2": first["stage2"],
    }


def _fmt(stat: dict[str, Any], scale: float = 100.0, digits: int = 1) -> str:
    if stat["n"] == 0:
        return "—"
    mean = stat["mean"] * scale
    if stat["n"] == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {stat['std'] * scale:.{digits}f}"


def describe(agg: dict[str, Any]) -> str:
    """Which of the paper's components the variant has (Table 5a's check marks, in words)."""
    mo = agg["model_overrides"]
    injector = bool(mo.get("adapter.injector", False))
    side = bool(mo.get("adapter.side", False))
    apm = not (injector or side) and mo.get("adapter.level_encoding", "dual") == "dual"
    dual = not (injector or side) and int(mo.get("adapter.streams", 2)) == 2
    lam = agg["stage1"]["lambda_ubhl"]
    parts = ["ViT-Adapter (injector)" if injector else "", "side adapter" if side else "",
             "ViT fine-tuned" if mo.get("backbone.finetune", False) else "",
             f"APM {'✓' if apm else '✗'}", f"2-stream {'✓' if dual else '✗'}"]
    if lam > 0:
        loss = {"ubhl": "L_ubhl", "bce": "BCE", "contrastive": "contrastive"}[agg["token_loss"]]
        extra = f", c={agg['stage1']['curvature']:g}" if agg["token_loss"] == "ubhl" else ""
        parts.append(f"{loss} (λ={lam:g}{extra})")
    else:
        parts.append("no token loss")
    if "adapter.num_blocks" in mo:
        parts.append(f"blocks {mo['adapter.num_blocks']}")
    if agg["stage2"] is not None:
        parts.append("+ OE")
    return ", ".join(p for p in parts if p)


def table_markdown(title: str, rows: list[tuple[str, dict[str, Any]]]) -> str:
    """One paper-style table: Methods | per benchmark AuPRC FPR95 | Average | mIoU | params | time | seeds."""
    benches = []
    for _, agg in rows:
        for k in agg.get("benchmarks", []):
            if k not in benches:
                benches.append(k)
    head = ["Variant", "components"]
    for k in benches:
        head += [f"{BENCH_TITLES[k]} AuPRC ↑", f"{BENCH_TITLES[k]} FPR95 ↓"]
    head += ["Average AuPRC ↑", "Average FPR95 ↓", "Average AUROC ↑ (50 = chance)", "CS-val mIoU ↑", "trainable params", "train time / seed",
             "seeds"]
    lines = [f"### {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, agg in rows:
        if agg["n"] == 0:
            lines.append(f"| {name} | (no finished seed) |" + " |" * (len(head) - 2))
            continue
        m = agg["metrics"]
        cells = [agg["label"], describe(agg)]
        for k in benches:
            cells += [_fmt(m[f"{k}.auprc"]), _fmt(m[f"{k}.fpr95"])]
        cells += [_fmt(m["average.auprc"]), _fmt(m["average.fpr95"]), _fmt(m["average.auroc"]), _fmt(m["miou"]),
                  f"{agg['params']['trainable'] / 1e6:.3f} M (adapter {agg['params']['adapter'] / 1e6:.3f} M)",
                  f"{m['train_seconds']['mean']:.0f} s", str(agg["n"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _per_seed(out: Path, variant: str, metric: str) -> dict[int, float]:
    """{seed: value} of one metric (``average.*`` computed over the variant's benchmarks per seed)."""
    values = {}
    for r in load_results(out, variant):
        m = r["metrics"]
        if metric == "miou":
            values[r["seed"]] = m["cityscapes"]["miou"]
        elif metric.startswith("average."):
            name = metric.split(".", 1)[1]
            values[r["seed"]] = float(np.mean([m[k][name] for k in BENCHMARK_KEYS if k in m]))
        else:
            key, name = metric.split(".", 1)
            values[r["seed"]] = m[key][name]
    return values


def evaluate_claim(out: Path, claim: Claim) -> dict[str, Any]:
    """Paired comparison on the seeds both variants finished: diff = better − worse, sign-flipped for
    lower-is-better metrics so that diff > 0 always means "the paper's ordering holds"."""
    a, b = _per_seed(out, claim.better, claim.metric), _per_seed(out, claim.worse, claim.metric)
    seeds = sorted(set(a) & set(b))
    sign = 1.0 if claim.higher_is_better else -1.0
    diffs = [sign * (a[s] - b[s]) for s in seeds]
    res: dict[str, Any] = {"better": claim.better, "worse": claim.worse, "metric": claim.metric,
                           "higher_is_better": claim.higher_is_better, "paper": claim.paper, "seeds": seeds,
                           "better_values": [a[s] for s in seeds], "worse_values": [b[s] for s in seeds],
                           "diff": mean_std(diffs), "holds_in": int(sum(d > 0 for d in diffs))}
    n = len(seeds)
    if n >= 2 and res["diff"]["std"] > 0:
        from scipy import stats

        t = res["diff"]["mean"] / (res["diff"]["std"] / math.sqrt(n))
        res["t"] = float(t)
        res["p"] = float(2.0 * stats.t.sf(abs(t), df=n - 1))  # two-sided paired t-test
    if n == 0:
        res["verdict"] = "not run"
    elif n == 1:
        res["verdict"] = ("holds" if diffs[0] > 0 else "reversed") + " (1 seed: no confidence)"
    elif "p" in res and res["p"] < 0.05:
        res["verdict"] = "holds" if res["diff"]["mean"] > 0 else "reversed"
    else:
        res["verdict"] = "not resolved (p >= 0.05)"
    return res


def holm_adjust(p_values: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (same order as given): with ~40 orderings tested at 0.05, about two
    "significant" raw results are expected by chance; the adjusted values control the family-wise error."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def with_holm(claims: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Add ``p_holm`` to every claim that has a t-test p-value (the family = those claims)."""
    tested = [c for c in claims if "p" in c]
    for c, adj in zip(tested, holm_adjust([c["p"] for c in tested])):
        c["p_holm"] = adj
    return claims


def claims_markdown(claims: list[dict[str, Any]]) -> str:
    head = ["paper ordering", "metric", "paper", "here (better / worse, mean %)", "paired diff (pp, ± std)",
            "holds in", "paired t-test p", "Holm-adjusted p", "verdict"]
    lines = ["### The paper's orderings, tested per seed", "",
             "Paired over the seeds both variants finished (same seed = same data order and shared backbone); diff > 0 "
             "means the paper's ordering holds (sign flipped for FPR95). Verdict: `holds` / `reversed` only when a two-sided "
             "paired t-test over the seeds gives p < 0.05; with 3 seeds that needs a consistent, large effect. The "
             "Holm-adjusted p corrects for testing all orderings at once (family-wise error over the tested rows).", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in claims:
        n = len(c["seeds"])
        rel = ">" if c["higher_is_better"] else "<"
        here = "—" if n == 0 else (f"{100 * np.mean(c['better_values']):.1f} / {100 * np.mean(c['worse_values']):.1f}")
        lines.append("| " + " | ".join([
            f"{c['better']} {rel} {c['worse']}", c["metric"], c["paper"], here,
            _fmt(c["diff"]) if n else "—", f"{c['holds_in']}/{n}", f"{c['p']:.3f}" if "p" in c else "—",
            f"{c['p_holm']:.3f}" if "p_holm" in c else "—", c["verdict"]]) + " |")
    return "\n".join(lines) + "\n"


def auprc_chance(results: dict[str, list[dict[str, Any]]]) -> dict[str, float] | None:
    """AuPRC of a random scorer = the anomaly pixel fraction of each benchmark (same data for every variant), and
    its average over the benchmarks; None when no result carries the pixel counts."""
    for runs in results.values():
        for r in runs:
            m = r["metrics"]
            benches = [k for k in BENCHMARK_KEYS if k in m and "n_pos" in m[k]]
            if benches:
                chance = {k: m[k]["n_pos"] / (m[k]["n_pos"] + m[k]["n_neg"]) for k in benches}
                chance["average"] = float(np.mean([chance[k] for k in benches]))
                return chance
    return None


def write_reports(plan: StudyPlan, out: Path | str) -> dict[str, Any]:
    """Aggregate every finished run of the plan's variants into OUT/results.json, OUT/table.md, OUT/summary.png."""
    out = Path(out)
    results = {v.name: load_results(out, v.name) for v in plan.variants}
    variants = {name: aggregate_variant(runs) for name, runs in results.items()}
    payload = {
        "plan": str(plan.source) if plan.source else None, "preset": plan.preset, "seeds_planned": plan.seeds,
        "std": "sample standard deviation over seeds (ddof = 1)",
        "units": "AuPRC, FPR95, AUROC, mIoU as fractions in results.json, in % in table.md; seconds for time",
        "train_budget": {"stage1": plan.stage1, "stage2": plan.stage2, "pretrain": plan.pretrain},
        "variants": variants,
        "claims": with_holm([evaluate_claim(out, c) for c in plan.claims]),
        "auprc_chance": auprc_chance(results),
    }
    sep = out / "data_separation.json"
    if sep.is_file():
        payload["data_separation"] = json.loads(sep.read_text())
    write_json_atomic(out / "results.json", payload, default=float)
    parts = [f"# DSA study: {plan.preset}, seeds {plan.seeds}", "",
             "Values in %, mean ± sample std over the finished seeds (column `seeds`). AuPRC ↑, FPR95 ↓, pooled over "
             "all valid pixels of each synthetic benchmark; mIoU on the synthetic Cityscapes-format val split. "
             "Train time = stage 1 (+ stage 2) wall time per seed on the machine that ran it.", ""]
    for table in plan.tables:
        parts.append(table_markdown(table.title, [(n, variants[n]) for n in table.variants]))
    if payload["claims"]:
        parts.append(claims_markdown(payload["claims"]))
    (out / "table.md").write_text("\n".join(parts))
    write_summary_figure([(t.title, t.variants) for t in plan.tables], variants, out / "summary.png",
                         payload["auprc_chance"]["average"] if payload["auprc_chance"] else None)
    return payload
