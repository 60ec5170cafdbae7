"""dsa study: a micro plan end to end (2 variants x 2 seeds, real training + evaluation on tiny synthetic data),
aggregation vs numpy, resume, the Euclidean token losses by hand, and the anomaly-appearance separation."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from dsa_core.losses import EuclideanTokenLoss
from dsa_core.study.plan import PlanError, load_plan, parse_plan
from dsa_core.study.separation import check_anomaly_separation

MICRO_PLAN = {
    "preset": "dsa_nano",
    "seeds": [0, 1],
    "threads": 1,
    "device": "cpu",
    "data": {"synthesize": {
        "seed": 3,
        "cityscapes": {"train": 4, "val": 2, "height": 64, "width": 128},
        "coco": {"images": 4, "height": 64, "width": 96},
        "benchmarks": {"fs_laf": {"count": 2, "height": 64, "width": 128},
                       "smiyc_ro21": {"count": 2, "height": 64, "width": 128}},
    }},
    "backbone": {"pretrain": {"iterations": 2, "batch_size": 2, "crop": [64, 128], "base_size": [64, 128],
                              "warmup_iters": 1, "num_workers": 0}},
    "stage1": {"iterations": 2, "batch_size": 2, "crop": [64, 128], "base_size": [64, 128], "warmup_iters": 1,
               "num_points": 64, "num_workers": 0, "ckpt_interval": 1},
    "stage2": {"iterations": 1, "batch_size": 2, "crop": [64, 128], "base_size": [64, 128], "warmup_iters": 1,
               "num_points": 64, "num_workers": 0, "coco_min_size": 32},
    "variants": [
        {"name": "dsa", "label": "DSA (full)"},
        {"name": "dsa_oe", "label": "DSA + OE", "base": "dsa", "stage2": {}},
        {"name": "bce", "label": "BCE token loss", "token_loss": "bce"},
    ],
    "tables": [{"title": "Table 2 - with outlier exposure", "variants": ["dsa", "dsa_oe"]}],
    "claims": [{"better": "dsa_oe", "worse": "dsa", "metric": "average.fpr95", "higher_is_better": False,
                "paper": "T2 vs T1"}],
}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """Run the micro plan once (the expensive part), recording which sprite families the training data drew."""
    import dsa_core.data.synth.synthetic as synthetic
    from dsa_core.study.runner import run_study

    root = tmp_path_factory.mktemp("study")
    plan_path = root / "plan.yaml"
    plan_path.write_text(yaml.safe_dump(MICRO_PLAN))
    drawn: list[str] = []
    real = synthetic.make_sprite

    def recording_make_sprite(family, size, rng):  # spy: the real generator runs, we only note the family
        drawn.append(family)
        return real(family, size, rng)

    synthetic.make_sprite = recording_make_sprite
    try:
        payload = run_study(load_plan(plan_path), root / "out")
    finally:
        synthetic.make_sprite = real
    return {"root": root, "out": root / "out", "plan": plan_path, "payload": payload, "drawn": drawn}


def test_micro_study_writes_results_and_tables(study):
    out = study["out"]
    for variant in ("dsa", "dsa_oe"):
        for seed in (0, 1):
            res = json.loads((out / "runs" / variant / f"seed{seed}" / "result.json").read_text())
            assert res["variant"] == variant and res["seed"] == seed
            assert set(res["metrics"]) == {"cityscapes", "fs_laf", "smiyc_ro21"}
            assert 0.0 <= res["metrics"]["cityscapes"]["miou"] <= 1.0
            for key in ("fs_laf", "smiyc_ro21"):
                assert 0.0 < res["metrics"][key]["auprc"] <= 1.0
                assert 0.0 <= res["metrics"][key]["fpr95"] <= 1.0
            assert res["train_seconds"] > 0
            # trainable = adapter + decoder; the backbone is never trained
            p = res["params"]
            assert p["trainable"] == p["adapter"] + p["decoder"] == p["total"] - p["backbone"]
    # outlier exposure reuses the same seed's stage-1 model: only stage2 under dsa_oe, one stage1 per seed
    assert not (out / "runs" / "dsa_oe" / "seed0" / "stage1").exists()
    ck = torch.load(out / "runs" / "dsa_oe" / "seed0" / "stage2" / "final.pt", weights_only=False)
    assert ck["stage"] == "stage2" and ck["step"] == 1 and ck["train_config"]["seed"] == 0
    ck1 = torch.load(out / "runs" / "dsa" / "seed1" / "stage1" / "final.pt", weights_only=False)
    assert ck1["step"] == 2 and ck1["train_config"]["seed"] == 1
    # the variant's token loss reaches the trainer's config (and so its objective)
    ck_bce = torch.load(out / "runs" / "bce" / "seed0" / "stage1" / "final.pt", weights_only=False)
    assert ck_bce["train_config"]["token_loss"] == "bce" and ck1["train_config"]["token_loss"] == "ubhl"
    table = (out / "table.md").read_text()
    assert "### Table 2 - with outlier exposure" in table and "FS L&F AuPRC" in table and "SMIYC RO-21 FPR95" in table


def test_aggregates_match_numpy(study):
    out = study["out"]
    payload = json.loads((out / "results.json").read_text())
    table = (out / "table.md").read_text()
    for variant in ("dsa", "dsa_oe"):
        seeds = [json.loads((out / "runs" / variant / f"seed{s}" / "result.json").read_text()) for s in (0, 1)]
        agg = payload["variants"][variant]["metrics"]
        for key in ("fs_laf", "smiyc_ro21"):
            for m in ("auprc", "fpr95"):
                vals = np.array([r["metrics"][key][m] for r in seeds], dtype=np.float64)
                assert agg[f"{key}.{m}"]["mean"] == pytest.approx(vals.mean(), abs=1e-12)
                assert agg[f"{key}.{m}"]["std"] == pytest.approx(vals.std(ddof=1), abs=1e-12)
        avg = np.array([np.mean([r["metrics"][k]["auprc"] for k in ("fs_laf", "smiyc_ro21")]) for r in seeds])
        assert agg["average.auprc"]["mean"] == pytest.approx(avg.mean(), abs=1e-12)
        assert agg["average.auprc"]["std"] == pytest.approx(avg.std(ddof=1), abs=1e-12)
        miou = np.array([r["metrics"]["cityscapes"]["miou"] for r in seeds])
        assert agg["miou"]["std"] == pytest.approx(miou.std(ddof=1), abs=1e-12)
        row = next(line for line in table.splitlines() if line.startswith(f"| {seeds[0]['label']} |"))
        assert f"{100 * avg.mean():.1f} ± {100 * avg.std(ddof=1):.1f}" in row
        assert f"{100 * miou.mean():.1f} ± {100 * miou.std(ddof=1):.1f}" in row
    # the paired claim: diff = -(fpr95(dsa_oe) - fpr95(dsa)) per seed (lower is better)
    fpr = {v: np.array([np.mean([json.loads((out / "runs" / v / f"seed{s}" / "result.json").read_text())
                                 ["metrics"][k]["fpr95"] for k in ("fs_laf", "smiyc_ro21")]) for s in (0, 1)])
           for v in ("dsa", "dsa_oe")}
    diffs = -(fpr["dsa_oe"] - fpr["dsa"])
    (claim,) = payload["claims"]
    assert claim["seeds"] == [0, 1] and claim["holds_in"] == int((diffs > 0).sum())
    assert claim["diff"]["mean"] == pytest.approx(diffs.mean(), abs=1e-12)
    assert claim["diff"]["std"] == pytest.approx(diffs.std(ddof=1), abs=1e-12)
    if diffs.std() > 0:
        from scipy.stats import ttest_rel

        assert claim["p"] == pytest.approx(ttest_rel(fpr["dsa_oe"], fpr["dsa"]).pvalue, rel=1e-9)
    assert "### The paper's orderings, tested per seed" in table and "dsa_oe < dsa" in table
    # chance AuPRC = anomaly pixel fraction, counted independently from the label files of the benchmarks
    from PIL import Image

    from dsa_core.data.anomaly_sets import open_benchmark

    fractions = []
    for key in ("fs_laf", "smiyc_ro21"):
        bench = open_benchmark(key, out / "data" / key)
        pos = neg = 0
        for sample in bench:
            lab = np.asarray(sample.label)
            pos, neg = pos + int((lab == 1).sum()), neg + int((lab == 0).sum())
        fractions.append(pos / (pos + neg))
        assert payload["auprc_chance"][key] == pytest.approx(fractions[-1], abs=1e-12)
    assert payload["auprc_chance"]["average"] == pytest.approx(np.mean(fractions), abs=1e-12)
    with Image.open(out / "summary.png") as fig:
        assert fig.size[0] > 500 and fig.size[1] > 100


def test_resume_skips_finished_and_continues_interrupted(study):
    from dsa_core.study.runner import run_study

    out = study["out"]
    finished = out / "runs" / "dsa" / "seed0" / "result.json"
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/seed*/result.json")}
    ckpts = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/seed*/stage*/final.pt")}
    backbone = out / "pretrain" / "backbone.safetensors"
    backbone_stamp = backbone.stat().st_mtime_ns
    # "interrupt" dsa seed 1 after its last checkpoint: no final.pt, no result
    s1 = out / "runs" / "dsa" / "seed1"
    (s1 / "stage1" / "final.pt").unlink()
    (s1 / "result.json").unlink()
    run_study(load_plan(study["plan"]), out)
    for p, t in stamps.items():
        if p.parent != s1:
            assert p.stat().st_mtime_ns == t, f"{p} was rewritten although it was finished"
    for p, t in ckpts.items():
        if p.parent.parent != s1:
            assert p.stat().st_mtime_ns == t, f"{p} was retrained"
    assert backbone.stat().st_mtime_ns == backbone_stamp
    resumed = torch.load(s1 / "stage1" / "final.pt", weights_only=False)
    assert resumed["step"] == 2  # resumed at the checkpointed step, not retrained from 0
    assert (s1 / "result.json").is_file() and finished.is_file()


def test_training_data_never_draws_test_anomaly_families(study):
    from dsa_core.data.synth.sprites import OUTLIER_POOL_FAMILIES, TEST_ANOMALY_FAMILIES

    assert study["drawn"], "the synthetic COCO pool drew no sprite at all"
    assert set(study["drawn"]) <= set(OUTLIER_POOL_FAMILIES)
    assert not set(study["drawn"]) & set(TEST_ANOMALY_FAMILIES)
    sep = json.loads((study["out"] / "data_separation.json").read_text())
    assert set(sep["test_families"]).isdisjoint(sep["pool_families"])


def test_separation_check_rejects_foreign_pool_category(study, tmp_path):
    coco = tmp_path / "coco"
    shutil.copytree(study["out"] / "data" / "coco" / "annotations", coco / "annotations")
    ann_path = coco / "annotations" / "instances_train2017.json"
    ann = json.loads(ann_path.read_text())
    check_anomaly_separation(coco)  # the real pool passes
    dog = next(c["id"] for c in ann["categories"] if c["name"] == "dog")
    ann["annotations"][0]["category_id"] = dog
    ann_path.write_text(json.dumps(ann))
    with pytest.raises(AssertionError, match="dog"):
        check_anomaly_separation(coco)


def _tokens_and_labels():
    g = torch.Generator().manual_seed(0)
    shapes = [(2, 4), (1, 2)]
    n = 10
    tokens = {"id": torch.randn(2, n, 5, generator=g, dtype=torch.float64) * 0.7,
              "ood": torch.randn(2, n, 5, generator=g, dtype=torch.float64) * 0.7}
    labels = torch.randint(0, 19, (2, 4, 8), generator=g)
    labels[:, :2, :4] = 255
    labels[1, 2:, 4:] = 254
    return tokens, shapes, labels


@pytest.mark.parametrize("kind", ["bce", "contrastive"])
def test_euclidean_token_losses_by_hand(kind):
    tokens, shapes, labels = _tokens_and_labels()
    loss = EuclideanTokenLoss(kind, margin=1.0)(tokens, shapes, labels)
    # naive reference: label of each token by nearest downsampling, per-token loops
    ood_terms, id_terms = [], []
    for b in range(2):
        offset = 0
        for h, w in shapes:
            for i in range(h):
                for j in range(w):
                    lab = int(labels[b, i * 4 // h, j * 8 // w])
                    t = offset + i * w + j
                    n_id = float(tokens["id"][b, t].norm())
                    n_ood = float(tokens["ood"][b, t].norm())
                    if lab == 255:
                        ood_terms.append(n_ood ** 2 if kind == "contrastive" else np.log1p(np.exp(n_ood - 1.0)))
                    elif lab < 19:
                        id_terms.append(max(0.0, 1.0 - n_id) ** 2 if kind == "contrastive"
                                        else np.log1p(np.exp(-(n_id - 1.0))))
            offset += h * w
    expected = np.mean(ood_terms) + np.mean(id_terms)
    assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_train_config_token_loss_selects_the_stage1_token_loss():
    from dsa_core.losses import UncertaintyHyperbolicLoss
    from dsa_core.train.config import default_train_config
    from dsa_core.train.objectives import StageObjective

    tcfg = default_train_config("dsa_nano", "stage1")
    assert isinstance(StageObjective("stage1", tcfg, 19).ubhl, UncertaintyHyperbolicLoss)
    for kind in ("bce", "contrastive"):
        obj = StageObjective("stage1", tcfg.replace(token_loss=kind), 19)
        assert isinstance(obj.ubhl, EuclideanTokenLoss) and obj.ubhl.kind == kind
        assert obj.weights["loss_ubhl"] == tcfg.lambda_ubhl
    assert StageObjective("stage1", tcfg.replace(token_loss="bce", lambda_ubhl=0.0), 19).ubhl is None
    with pytest.raises(ValueError, match="token_loss must be one of"):
        tcfg.replace(token_loss="hinge")


def test_plan_validation_errors(tmp_path):
    good = {"preset": "dsa_nano", "seeds": [0], "data": {"cityscapes": str(tmp_path)},
            "variants": [{"name": "dsa"}]}
    parse_plan(good)
    with pytest.raises(PlanError, match="unknown config field"):
        parse_plan({**good, "variants": [{"name": "x", "model": {"adapter.nope": 1}}]})
    with pytest.raises(PlanError, match="lambda_ubhl > 0"):
        parse_plan({**good, "variants": [{"name": "x", "token_loss": "bce", "train": {"lambda_ubhl": 0.0}}]})
    with pytest.raises(PlanError, match="no variant named"):
        parse_plan({**good, "variants": [{"name": "x", "base": "y", "stage2": {}}]})
    with pytest.raises(PlanError, match="not in the plan"):
        parse_plan({**good, "tables": [{"title": "t", "variants": ["ghost"]}]})
    with pytest.raises(PlanError, match="unknown training config"):
        parse_plan({**good, "stage1": {"iters": 3}})
    with pytest.raises(PlanError, match="COCO"):
        parse_plan({**good, "variants": [{"name": "dsa"}, {"name": "oe", "base": "dsa", "stage2": {}}]})


@pytest.mark.parametrize("name", ["ablations_nano.yaml", "ablations_nano_quick.yaml", "ablations_tiny_gpu.yaml"])
def test_shipped_plans_parse(name):
    path = Path(__file__).resolve().parents[1] / "study_plans" / name
    if name == "ablations_tiny_gpu.yaml":
        plan = load_plan(path)
        assert plan.preset == "dsa_tiny"
        nano = load_plan(path.with_name("ablations_nano.yaml"))
        # same study: same variants, tables and seeds; only budget/data/preset differ
        assert [(v.name, v.model, v.train, v.token_loss, v.base) for v in plan.variants] == \
               [(v.name, v.model, v.train, v.token_loss, v.base) for v in nano.variants]
        assert [t.variants for t in plan.tables] == [t.variants for t in nano.tables] and plan.seeds == nano.seeds
        assert plan.claims == nano.claims and len(plan.claims) > 10
    else:
        assert load_plan(path).preset == "dsa_nano"


def test_describe_names_each_baselines_components():
    from dsa_core.study.report import describe

    def agg(model, lam=0.1, loss="ubhl", stage2=None):
        return {"model_overrides": model, "token_loss": loss, "stage2": stage2,
                "stage1": {"lambda_ubhl": lam, "curvature": 0.01}}

    assert describe(agg({})) == "APM ✓, 2-stream ✓, L_ubhl (λ=0.1, c=0.01)"
    assert describe(agg({"adapter.side": True}, lam=0.0)) == "side adapter, APM ✗, 2-stream ✗, no token loss"
    assert describe(agg({"backbone.finetune": True}, stage2={})) == \
        "ViT fine-tuned, APM ✓, 2-stream ✓, L_ubhl (λ=0.1, c=0.01), + OE"
    assert describe(agg({"adapter.streams": 1}, loss="bce")) == "APM ✓, 2-stream ✗, BCE (λ=0.1)"


def test_report_only_without_runs_says_so(tmp_path, capsys):
    from dsa_core.cli import main

    plan = Path(__file__).resolve().parents[1] / "study_plans" / "ablations_nano.yaml"
    assert main(["study", "--plan", str(plan), "--out", str(tmp_path / "nowhere"), "--report-only"]) == 2
    assert "does not exist; nothing to aggregate" in capsys.readouterr().err
    assert not (tmp_path / "nowhere").exists()


def test_holm_adjustment_against_the_textbook_procedure():
    from dsa_core.study.report import holm_adjust

    rng = np.random.default_rng(0)
    for m in (1, 2, 5, 13):
        p = list(rng.uniform(0, 0.2, m))
        adj = holm_adjust(p)
        # textbook: step down through the sorted p-values; reject H_(k) while p_(k) <= alpha / (m - k + 1).
        for alpha in (0.01, 0.05, 0.1):
            rejected, k = set(), 0
            for i in sorted(range(m), key=lambda i: p[i]):
                if p[i] > alpha / (m - k):
                    break
                rejected.add(i)
                k += 1
            assert {i for i in range(m) if adj[i] <= alpha} == rejected
        assert all(a >= b for a, b in zip(adj, p)) and max(adj) <= 1.0
    assert holm_adjust([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])


@pytest.mark.slow
def test_parallel_jobs_give_the_same_results_as_one_process(study, tmp_path):
    """--jobs 2: stage-1 runs in two spawned processes, then the outlier-exposure runs; identical numbers."""
    from dsa_core.study.runner import run_study

    out = tmp_path / "parallel"
    payload = run_study(load_plan(study["plan"]), out, jobs=2)
    for variant in ("dsa", "dsa_oe", "bce"):
        for seed in (0, 1):
            name = Path("runs") / variant / f"seed{seed}" / "result.json"
            assert json.loads((out / name).read_text())["metrics"] == \
                json.loads((study["out"] / name).read_text())["metrics"]
    assert payload["variants"]["dsa_oe"]["n"] == 2
    with pytest.raises(ValueError, match="jobs must be >= 1"):
        run_study(load_plan(study["plan"]), out, jobs=0)
