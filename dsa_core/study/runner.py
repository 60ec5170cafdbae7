"""Run a study plan: data once, backbone once, then every variant x seed (resumable), then the tables.

Layout under OUT::

    data/                      synthesized datasets (when the plan says so)
    pretrain/                  the ONE backbone pre-training run (backbone.safetensors), shared by every variant
    runs/<variant>/seed<k>/    stage1/ and/or stage2/ (the trainer's run dirs), timing.json, result.json
    results.json, table.md     aggregated over seeds (dsa_core.study.report)

Resume rules: a variant x seed with ``result.json`` is skipped; a stage with ``final.pt`` is not retrained; a stage
with only ``last.pt`` continues with the trainer's resume (same step sequence as an uninterrupted run). The
backbone is frozen in every DSA stage (the trainer enforces it), which is what makes one pre-training run a fair
shared starting point.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dsa_core.atomic import write_json_atomic
from dsa_core.study.plan import BENCHMARK_KEYS, StudyPlan, Variant, train_overrides
from dsa_core.study.separation import check_anomaly_separation

log = logging.getLogger(__name__)

RESULT_FILE = "result.json"
TIMING_FILE = "timing.json"


@dataclass
class DataRoots:
    cityscapes: Path
    coco: Path | None
    benchmarks: dict[str, Path]
    separation: dict[str, Any] | None = None


def prepare_data(plan: StudyPlan, out: Path, progress: bool = False) -> DataRoots:
    """Existing roots from the plan, or synthesize into OUT/data (each dataset once; a ``.done`` marker skips it)."""
    d = plan.data
    if d.synthesize is None:
        return DataRoots(cityscapes=d.cityscapes, coco=d.coco, benchmarks=dict(d.benchmarks))
    from dsa_core.data.synth.anomaly_synth import write_benchmark
    from dsa_core.data.synth.synthetic import write_cityscapes, write_coco

    syn = dict(d.synthesize)
    seed = int(syn.pop("seed", 0))
    root = out / "data"

    def once(name: str, write) -> Path:
        target = root / name
        marker = target / ".done"
        if not marker.is_file():
            log.info("synthesizing %s into %s", name, target)
            write(target)
            marker.write_text("ok\n")
        return target

    cs = dict(syn.pop("cityscapes", {}) or {})
    cityscapes = once("cityscapes", lambda t: write_cityscapes(
        t, int(cs.get("train", 24)), int(cs.get("val", 8)), height=int(cs.get("height", 256)),
        width=int(cs.get("width", 512)), seed=seed, progress=progress))
    coco = None
    coco_spec = syn.pop("coco", None)
    if coco_spec is not None:
        coco_spec = dict(coco_spec)
        coco = once("coco", lambda t: write_coco(
            t, int(coco_spec.get("images", 24)), height=int(coco_spec.get("height", 480)),
            width=int(coco_spec.get("width", 640)), seed=seed, progress=progress))
    benchmarks = {}
    for key, spec in (syn.pop("benchmarks", {}) or {}).items():
        if key not in BENCHMARK_KEYS:
            raise ValueError(f"data.synthesize.benchmarks: unknown benchmark {key!r}; expected {BENCHMARK_KEYS}")
        spec = dict(spec or {})
        sizes = {k: spec.pop(k, None) for k in ("count", "height", "width")}  # the rest: format options
        benchmarks[key] = once(key, lambda t, key=key, sizes=sizes, extra=spec: write_benchmark(
            key, t, sizes["count"], sizes["height"], sizes["width"], seed=seed, progress=progress, **extra))
    if syn:
        raise ValueError(f"data.synthesize: unknown keys {sorted(syn)}")
    # The benchmarks' anomaly appearances must never reach training or the outlier pool.
    separation = check_anomaly_separation(coco)
    return DataRoots(cityscapes=cityscapes, coco=coco, benchmarks=benchmarks, separation=separation)


def _stage_config(plan: StudyPlan, stage: str, *overrides: dict[str, Any], seed: int | None = None):
    from dsa_core.train.config import default_train_config

    merged: dict[str, Any] = {}
    for o in overrides:
        merged.update(o)
    if seed is not None:
        merged["seed"] = seed
    return default_train_config(plan.preset, stage).replace(**train_overrides(merged))


def _device_env(plan: StudyPlan):
    from dsa_core.train.distributed import DistEnv

    if plan.device == "cpu" or (plan.device == "auto" and not torch.cuda.is_available()):
        return DistEnv(device=torch.device("cpu"))
    if not torch.cuda.is_available():
        raise RuntimeError("plan device is 'cuda' but CUDA is not available")
    return DistEnv(device=torch.device("cuda", 0))


def _add_time(run_dir: Path, stage: str, seconds: float) -> None:
    path = run_dir / TIMING_FILE
    timing = json.loads(path.read_text()) if path.is_file() else {}
    timing[stage] = float(timing.get(stage, 0.0)) + float(seconds)
    write_json_atomic(path, timing, default=float)


def train_stage(plan: StudyPlan, stage: str, run_dir: Path, tcfg, data: DataRoots, *, model: dict[str, Any] | None = None,
                backbone: Path | None = None, init: Path | None = None, timing_dir: Path | None = None, progress: bool = False) -> Path:
    """Train one stage unless it is finished; resume an interrupted one. Returns the finished checkpoint
    (pretrain: the backbone file)."""
    from dsa_core.train.loop import BACKBONE_FILE, FINAL_CHECKPOINT, LAST_CHECKPOINT, RunSpec, run_training

    done = run_dir / (BACKBONE_FILE if stage == "pretrain" else FINAL_CHECKPOINT)
    if done.is_file():
        log.info("%s: finished earlier (%s), skipping", run_dir, done.name)
        return done
    resume = (run_dir / LAST_CHECKPOINT).is_file()
    spec = RunSpec(
        preset=plan.preset, data=data.cityscapes, out=run_dir, coco=data.coco if stage == "stage2" else None,
        init=init, backbone_weights=backbone, resume=resume, val_max_images=2, progress=progress,
        model_overrides=dict(model or {}),
    )
    log.info("%s %s (%s, %d iterations, seed %d)", "resuming" if resume else "training", run_dir, stage,
             tcfg.iterations, tcfg.seed)
    summary = run_training(spec, tcfg, _device_env(plan))
    if timing_dir is not None:
        _add_time(timing_dir, stage, summary["seconds"])
    if not done.is_file():
        raise RuntimeError(f"{run_dir}: training returned without writing {done.name} (step {summary['step']})")
    return done


def pretrain_backbone(plan: StudyPlan, out: Path, data: DataRoots, progress: bool = False) -> Path:
    """The plan's backbone file, or the one shared pre-training run under OUT/pretrain."""
    if plan.backbone_weights is not None:
        if not plan.backbone_weights.is_file():
            raise FileNotFoundError(f"backbone.weights {plan.backbone_weights} does not exist")
        return plan.backbone_weights
    tcfg = _stage_config(plan, "pretrain", plan.pretrain)
    return train_stage(plan, "pretrain", out / "pretrain", tcfg, data, timing_dir=out / "pretrain", progress=progress)


def count_parameters(model: torch.nn.Module) -> dict[str, int]:
    """Parameters of the stage-1 model: trainable = adapter + decoder (the backbone is frozen in every DSA stage)."""
    from dsa_core.model.params import parameter_table
    from dsa_core.train.objectives import configure_trainable

    configure_trainable(model, "stage1")
    return parameter_table(model)


def evaluate_checkpoint(plan: StudyPlan, checkpoint: Path, data: DataRoots, progress: bool = False) -> dict[str, Any]:
    """mIoU on the Cityscapes-format val split, AuPRC / FPR95 / AUROC on every benchmark of the plan."""
    from dsa_core.checkpoint import model_from_checkpoint
    from dsa_core.data.anomaly_sets import open_benchmark
    from dsa_core.eval.evaluate import EvalOptions, evaluate_dataset

    env = _device_env(plan)
    model, _ = model_from_checkpoint(checkpoint, map_location=env.device)
    model.to(env.device).eval()
    eval_size = plan.eval.get("eval_size")
    options = EvalOptions(eval_size=tuple(eval_size) if eval_size else "native",
                          max_images=plan.eval.get("max_images"), device=str(env.device), overlays=0,
                          progress=progress)
    metrics: dict[str, Any] = {}
    sets = {"cityscapes": data.cityscapes, **data.benchmarks}
    for key, root in sets.items():
        res = evaluate_dataset(model, open_benchmark(key, root), options, out_dir=None)
        if res["failures"]:
            raise RuntimeError(f"{checkpoint}: {len(res['failures'])} frame(s) of {key} failed: {res['failures'][:3]}")
        if key == "cityscapes":
            metrics[key] = {"miou": res["miou"], "pixel_accuracy": res["pixel_accuracy"], "images": res["num_evaluated"]}
        else:
            metrics[key] = {m: res[m] for m in ("auprc", "fpr95", "auroc", "n_pos", "n_neg")}
            metrics[key]["images"] = res["num_evaluated"]
    return {"metrics": metrics, "params": count_parameters(model)}


def run_variant_seed(plan: StudyPlan, variant: Variant, seed: int, out: Path, data: DataRoots, backbone: Path,
                     progress: bool = False) -> dict[str, Any]:
    """Train (or reuse) and evaluate one variant x seed; writes and returns its result."""
    run_dir = out / "runs" / variant.name / f"seed{seed}"
    result_path = run_dir / RESULT_FILE
    if result_path.is_file():
        log.info("%s seed %d: result exists, skipping", variant.name, seed)
        return json.loads(result_path.read_text())
    run_dir.mkdir(parents=True, exist_ok=True)
    stage1_variant = plan.variant(variant.base) if variant.base else variant
    stage1_dir = out / "runs" / stage1_variant.name / f"seed{seed}"
    tcfg1 = _stage_config(plan, "stage1", plan.stage1, {"token_loss": stage1_variant.token_loss}, stage1_variant.train,
                          seed=seed)
    # A variant with ``base`` reuses the base's stage-1 checkpoint; if that is missing (e.g. --only), it is trained
    # in the base's directory, exactly as the base variant would.
    stage1_dir.mkdir(parents=True, exist_ok=True)
    ckpt = train_stage(plan, "stage1", stage1_dir / "stage1", tcfg1, data, model=stage1_variant.model,
                       backbone=backbone, timing_dir=stage1_dir, progress=progress)
    tcfg2 = None
    if variant.stage2 is not None:
        if data.coco is None:
            raise ValueError(f"variant {variant.name} runs stage2 but the plan has no COCO outlier pool")
        tcfg2 = _stage_config(plan, "stage2", plan.stage2, variant.stage2, seed=seed)
        ckpt = train_stage(plan, "stage2", run_dir / "stage2", tcfg2, data, init=ckpt, timing_dir=run_dir,
                           progress=progress)
    t0 = time.perf_counter()
    evaluation = evaluate_checkpoint(plan, ckpt, data, progress=progress)
    timing1 = json.loads((stage1_dir / TIMING_FILE).read_text()) if (stage1_dir / TIMING_FILE).is_file() else {}
    timing = json.loads((run_dir / TIMING_FILE).read_text()) if (run_dir / TIMING_FILE).is_file() else {}
    train_seconds = float(timing1.get("stage1", 0.0)) + float(timing.get("stage2", 0.0))
    result = {
        "variant": variant.name, "label": variant.label, "seed": seed, "checkpoint": str(ckpt.relative_to(out)),
        "model_overrides": stage1_variant.model, "token_loss": stage1_variant.token_loss,
        "stage1": {"iterations": tcfg1.iterations, "batch_size": tcfg1.batch_size, "crop": list(tcfg1.crop),
                   "lambda_ubhl": tcfg1.lambda_ubhl, "curvature": tcfg1.curvature, "lr": tcfg1.lr},
        "stage2": None if tcfg2 is None else {"iterations": tcfg2.iterations, "batch_size": tcfg2.batch_size,
                                               "outlier_prob": tcfg2.outlier_prob},
        "train_seconds": train_seconds, "eval_seconds": time.perf_counter() - t0,
        **evaluation,
    }
    write_json_atomic(result_path, result, default=float)
    log.info("%s seed %d: %s", variant.name, seed,
             ", ".join(f"{k}={v.get('auprc', v.get('miou')):.4f}" for k, v in result["metrics"].items()))
    return result


def _run_job(plan: StudyPlan, variant_name: str, seed: int, out: Path, data: DataRoots, backbone: Path) -> str:
    """One variant x seed in a worker process (spawned: its own torch thread setting and logging)."""
    logging.basicConfig(level=logging.INFO, format=f"%(levelname)s [{variant_name} seed {seed}] %(name)s: %(message)s")
    if plan.threads:
        torch.set_num_threads(plan.threads)
    run_variant_seed(plan, plan.variant(variant_name), seed, out, data, backbone)
    return f"{variant_name} seed {seed}"


def _run_parallel(plan: StudyPlan, jobs: list[tuple[Variant, int]], out: Path, data: DataRoots, backbone: Path,
                  workers: int) -> None:
    """Variant x seed runs in ``workers`` processes. Two phases: every stage-1 variant first, then the variants that
    reuse a base's stage-1 run (outlier exposure), so that no two processes ever train the same run directory."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    phases = [[(v, s) for v, s in jobs if v.base is None], [(v, s) for v, s in jobs if v.base is not None]]
    done, total = 0, len(jobs)
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        for phase in phases:
            futures = [pool.submit(_run_job, plan, v.name, s, out, data, backbone) for v, s in phase]
            for future in as_completed(futures):
                done += 1
                log.info("[%d/%d] finished %s", done, total, future.result())


def run_study(plan: StudyPlan, out: Path | str, seeds: list[int] | None = None, only: list[str] | None = None,
              prepare_only: bool = False, progress: bool = False, jobs: int = 1) -> dict[str, Any]:
    """Everything the plan asks for (or the ``only`` subset, plus the bases it needs); returns the aggregate.

    ``jobs`` > 1 runs that many variant x seed trainings side by side in separate processes (on a 2-core CPU: 2
    jobs with ``threads: 1`` roughly halve the wall time); the results are the same as with one process.
    """
    from dsa_core.study.report import write_reports

    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if plan.threads:
        torch.set_num_threads(plan.threads)
    seeds = list(plan.seeds if seeds is None else seeds)
    data = prepare_data(plan, out, progress=progress)
    backbone = pretrain_backbone(plan, out, data, progress=progress)
    if data.separation is not None:
        write_json_atomic(out / "data_separation.json", data.separation, default=float)
    if prepare_only:
        return {}
    pairs = [(variant, seed) for variant in plan.select(only) for seed in seeds]
    if jobs > 1:
        _run_parallel(plan, pairs, out, data, backbone, jobs)
    else:
        for done, (variant, seed) in enumerate(pairs, 1):
            log.info("[%d/%d] variant %s seed %d", done, len(pairs), variant.name, seed)
            run_variant_seed(plan, variant, seed, out, data, backbone, progress=progress)
    return write_reports(plan, out)
