#!/usr/bin/env python3
"""The CPU recipe of scripts/train_demo_model.sh at GPU scale, in one run of at most ~10 minutes.

Generates the data on all CPU cores (same generators, more frames), pre-trains the stand-in backbone, runs DSA
stage 1 and stage 2 with bigger batches and crops, exports the model dir, calibrates its operating point (dsa
calibrate's rule on 100 val frames and the alerts of an obstacle-free val drive) and evaluates it on data it never
trained on: the two benchmark formats and every held-out kind (``FS_LAF_KINDS``). Every stage has a wall-time
share of ``--budget-s`` and stops at its deadline with a checkpoint if it has not finished its iterations. Every file left under ``--out`` is at most 16 MB: when an exported file would be
bigger (presets above dsa_nano), the weights are written as safetensors shards instead (``dsa export --checkpoint
OUT/weights`` re-exports them on any machine).

    bash scripts/gpu_wheels.sh                                             # here, once: gpu_wheels/
    # on the GPU machine (device tool: carry ["gpu_wheels"], timeout_s 600):
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site gpu_wheels/*.whl \
      && PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 python3 scripts/gpu_train.py --out "$OUT/dsa_gpu"
    python3 scripts/gpu_train.py --out /tmp/g --tiny --device cpu          # a smoke test at a tiny budget

What comes back under ``--out`` is at most five files, two folders deep: ``model/`` (fused.onnx, model.pt,
manifest.json) or, when a file would exceed 16 MB, ``weights/`` (safetensors shards + shards.json) instead,
``gpu_train.json`` (per-stage steps, times, validation, evaluation, and per held-out kind) and ``eval_metrics.json``.

Needs torch, timm, numpy, OpenCV, Pillow, safetensors, scipy, onnx, onnxruntime, matplotlib, pycocotools and
cityscapesscripts; the script says which are missing before it starts.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.append(str(REPO))  # last: the venv's dsa_perception (with its generated msg module) wins

MAX_FILE_BYTES = 16 * 2**20
REQUIRED = ("torch", "timm", "numpy", "cv2", "PIL", "safetensors", "scipy", "onnx", "onnxruntime", "pycocotools",
            "cityscapesscripts", "tqdm", "yaml", "matplotlib", "rosbags")
# Shares of the budget after data generation (the rest is export + evaluation).
STAGE_SHARE = {"pretrain": 0.2, "stage1": 0.55, "stage2": 0.1}


def missing_modules() -> list[str]:
    missing = []
    for name in REQUIRED:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - any import failure means "bring it along"
            missing.append(name)
    return missing


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "gpu_out")) / "dsa_gpu",
                   help="model dir + report (default: $OUT/dsa_gpu)")
    p.add_argument("--work", type=Path, default=Path("/tmp/dsa_gpu_work"), help="data and run dirs (not kept)")
    p.add_argument("--preset", default="dsa_nano")
    p.add_argument("--budget-s", type=float, default=540.0, help="wall-time budget of the whole run")
    p.add_argument("--train-frames", type=int, default=12000)
    p.add_argument("--val-frames", type=int, default=200)
    p.add_argument("--bench-frames", type=int, default=100)
    p.add_argument("--val-drive-frames", type=int, default=600,
                   help="frames of the calibration's obstacle-free drive (fewer than the CPU recipe's 30 "
                        "camera-minutes, whose calibration on the CPU backend would not fit the 10-minute run; "
                        "recalibrate the model dir on the full drive afterwards: dsa calibrate)")
    p.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 2))
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--iters", type=int, nargs=3, default=(6000, 12000, 1500), metavar=("PRETRAIN", "STAGE1", "STAGE2"))
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    p.add_argument("--tiny", action="store_true", help="smoke test: a few frames and iterations, small crops")
    args = p.parse_args(argv)
    if args.tiny:
        args.train_frames, args.val_frames, args.bench_frames, args.batch = 8, 2, 2, 2
        args.val_drive_frames = 6
        args.iters = (2, 2, 2)
    return args


def make_data(args: argparse.Namespace, data: Path,
              size: tuple[int, int]) -> tuple[dict[str, Path], dict[str, Path]]:
    """The training data and the evaluation sets: (roots by dataset key, held-out kind -> its FS L&F-format set)."""
    from dsa_core.data.coco_merge import merge_pools
    from dsa_core.data.synth.anomaly_synth import FS_LAF_KINDS, write_benchmark, write_fs_laf
    from dsa_core.data.synth.synthetic import write_coco, write_cityscapes
    from dsa_core.study.separation import check_anomaly_separation

    h, w = size
    roots = {"cityscapes": data / "cityscapes", "coco": data / "coco", "pretrain_objects": data / "pretrain_objects",
             "pool_wide": data / "pool_wide", "fs_laf": data / "fs_laf", "road_anomaly": data / "road_anomaly",
             "val_drive": data / "val_drive"}
    if not (roots["cityscapes"] / ".done").is_file():
        write_cityscapes(roots["cityscapes"], args.train_frames, args.val_frames, h, w, seed=0, progress=False,
                         workers=args.workers)
        (roots["cityscapes"] / ".done").touch()
    for key, families in (("coco", "outlier_pool"), ("pretrain_objects", "pretrain")):
        if not (roots[key] / ".done").is_file():
            write_coco(roots[key], max(8, args.train_frames // 5), height=160, width=224, seed=0, progress=False,
                       families=families)
            (roots[key] / ".done").touch()
    if not (roots["pool_wide"] / ".done").is_file():  # stage 2's pool, as in the CPU recipe
        merge_pools(roots["pool_wide"], [roots["coco"], roots["pretrain_objects"]])
        (roots["pool_wide"] / ".done").touch()
    for key in ("coco", "pool_wide"):
        check_anomaly_separation(roots[key])
    if not (data / ".val_drive_done").is_file():  # the CPU recipe's obstacle-free val drive
        import shutil

        from dsa_core.bags.drive import calibration_drive_spec
        from dsa_core.bags.writer import write_drive_bag

        shutil.rmtree(roots["val_drive"], ignore_errors=True)
        write_drive_bag(roots["val_drive"], calibration_drive_spec(h, w, args.val_drive_frames), progress=False)
        (data / ".val_drive_done").touch()
    for key in ("fs_laf", "road_anomaly"):
        if not (roots[key] / ".done").is_file():
            write_benchmark(key, roots[key], count=args.bench_frames, height=h, width=w, seed=0, progress=False)
            (roots[key] / ".done").touch()
    kinds = {kind: data / "kinds" / kind for kind in FS_LAF_KINDS}  # FS L&F format, seed 0, as the CPU recipe
    todo = [kind for kind, root in kinds.items() if not (root / ".done").is_file()]
    if todo:
        with ProcessPoolExecutor(max(1, min(args.workers, len(todo)))) as pool:  # one kind a process
            jobs = {kind: pool.submit(write_fs_laf, kinds[kind], args.bench_frames, h, w, seed=0, progress=False,
                                      kind=kind) for kind in todo}
        for kind, job in jobs.items():
            job.result()  # raises a worker's error here
            (kinds[kind] / ".done").touch()
    return roots, kinds


def train_stage(stage: str, args: argparse.Namespace, roots: dict[str, Path], runs: Path, deadline: float,
                crop: tuple[int, int], base: tuple[int, int]) -> dict:
    from dsa_core.train.config import default_train_config
    from dsa_core.train.distributed import DistEnv
    from dsa_core.train.loop import RunSpec, run_training

    import torch

    iters = dict(zip(("pretrain", "stage1", "stage2"), args.iters))[stage]
    tcfg = default_train_config(args.preset, stage).replace(
        iterations=iters, batch_size=args.batch, crop=crop, base_size=base, num_workers=min(8, args.workers),
        warmup_iters=min(200, max(0, iters // 10)), ckpt_interval=max(1, iters // 4), log_interval=max(1, iters // 100),
        coco_min_size=128)
    if stage == "stage2":
        tcfg = tcfg.replace(batch_size=max(1, args.batch // 2))
    out = runs / stage
    pool = {"pretrain": None, "stage1": roots["coco"], "stage2": roots["pool_wide"]}[stage]
    spec = RunSpec(preset=args.preset, data=roots["cityscapes"], out=out, coco=pool,
                   backbone_weights=runs / "pretrain" / "backbone.safetensors" if stage == "stage1" else None,
                   init=runs / "stage1" / "last.pt" if stage == "stage2" else None,
                   resume=(out / "last.pt").is_file(), deadline=deadline, val_every=0, val_max_images=50,
                   anomaly_from_coco=stage != "pretrain", progress=False,
                   model_overrides={"test_short_side": min(base)})  # evaluated at the scale it trains at
    env = DistEnv(device=torch.device(args.device))
    summary = run_training(spec, tcfg, env)
    if stage == "pretrain" and not (out / "backbone.safetensors").is_file():  # stopped at the deadline
        from dsa_core.checkpoint import load_checkpoint
        from dsa_core.config import get_config
        from dsa_core.train.pretrain import PatchSegViT, save_backbone

        model = PatchSegViT(get_config(args.preset))
        model.load_state_dict(load_checkpoint(out / "last.pt")["model"])
        save_backbone(model, out / "backbone.safetensors")
    return {"iterations": iters, "step": summary["step"], "finished": summary["finished"],
            "seconds": round(summary["seconds"], 1), "val": summary["val"]}


def export(args: argparse.Namespace, runs: Path, size: tuple[int, int]) -> dict:
    from dsa_core.checkpoint import load_checkpoint, model_from_checkpoint, save_sharded
    from dsa_core.export.onnx_export import export_model_dir

    ckpt = runs / "stage2" / ("final.pt" if (runs / "stage2" / "final.pt").is_file() else "last.pt")
    model, _ = model_from_checkpoint(ckpt)
    model_dir = args.out / "model"
    export_model_dir(model, model_dir, size[0], size[1], graphs=("fused",), source_checkpoint=str(ckpt))
    too_big = sorted(p.name for p in model_dir.iterdir() if p.is_file() and p.stat().st_size > MAX_FILE_BYTES)
    shards: list[Path] = []
    if too_big:  # keep only what fits; the shards re-export anywhere (`dsa export --checkpoint OUT/weights`)
        shards = save_sharded(load_checkpoint(ckpt), args.out / "weights", MAX_FILE_BYTES)
        for p in model_dir.iterdir():
            p.unlink()
        model_dir.rmdir()
    return {"checkpoint": str(ckpt), "model_dir": None if too_big else str(model_dir), "too_big": too_big,
            "weights": [str(p) for p in shards]}


def calibrate_model_dir(roots: dict[str, Path], model_dir: str | None) -> dict:
    """The model dir's operating point, as the CPU recipe sets it (dsa calibrate: val frames, the training pool and
    the val drive's alerts)."""
    if model_dir is None:
        return {"skipped": "no model dir (weights only): run dsa export and dsa calibrate where they are re-exported"}
    from dsa_core.data.synth.scene import EGO_MASK_BOTTOM_FRACTION
    from dsa_core.eval.calibrate import RECIPE_MAX_FALSE_ALERTS_PER_HOUR, CalibrationOptions, calibrate
    from dsa_core.runtime.operating_point import write_operating_point

    options = CalibrationOptions(max_frames=100, pool_min_size=128, progress=False,
                                 ego_mask_bottom=EGO_MASK_BOTTOM_FRACTION,
                                 max_false_alerts_per_hour=RECIPE_MAX_FALSE_ALERTS_PER_HOUR)
    result = calibrate(model_dir, roots["cityscapes"], roots["coco"], options, backends=("onnxruntime",),
                       val_bag=roots["val_drive"])
    write_operating_point(model_dir, result)
    rec = result["calibration"]
    return {"anomaly_threshold": result["anomaly_threshold"],
            "min_obstacle_area_fraction": result["min_obstacle_area_fraction"],
            "false_alert_frames": rec["area"]["false_frames_kept"], "false_alerts": rec["area"]["false_alert_tracks"],
            "val_drive_frames": rec["val_drives"]["frames"],
            "frame_rate_met": rec["frame_rate_met"], "seconds": round(rec["seconds"], 1)}


def _summary(result: dict) -> dict:
    return {m: v for m, v in result.items() if m in ("miou", "auprc", "fpr95", "auroc", "baselines")}


def evaluate(args: argparse.Namespace, roots: dict[str, Path], kinds: dict[str, Path], runs: Path) -> tuple[dict, dict]:
    """(the benchmark formats' summaries, each held-out kind's summary): Eq. 2 and its baselines, as dsa eval."""
    from dsa_core.eval.evaluate import EvalOptions, run_evaluation

    ckpt = runs / "stage2" / ("final.pt" if (runs / "stage2" / "final.pt").is_file() else "last.pt")
    eval_dir = args.work / "eval"  # plots and tables stay on the machine; the metrics come back
    options = EvalOptions(device=args.device, progress=False, overlays=0)
    payload = run_evaluation(ckpt, {k: roots[k] for k in ("cityscapes", "fs_laf", "road_anomaly")}, eval_dir, options)
    (args.out / "eval_metrics.json").write_text((eval_dir / "metrics.json").read_text())
    per_kind = {kind: _summary(run_evaluation(ckpt, {"fs_laf": root}, eval_dir / "kinds" / kind,
                                              options)["datasets"]["fs_laf"]) for kind, root in kinds.items()}
    return {k: _summary(r) for k, r in payload["datasets"].items()}, per_kind


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    missing = missing_modules()
    if missing:
        print(f"gpu_train: missing Python modules {missing}: fetch their wheels with scripts/gpu_wheels.sh, carry "
              f"gpu_wheels/ and install them as this script's docstring shows", file=sys.stderr)
        return 2
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_train: --device cuda but no CUDA device is visible (use --device cpu for a smoke test)", file=sys.stderr)
        return 2
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    t0 = time.monotonic()
    end = t0 + args.budget_s
    size = (64, 128) if args.tiny else (256, 512)
    crop = (64, 128) if args.tiny else (256, 512)
    args.out.mkdir(parents=True, exist_ok=True)
    report: dict = {"preset": args.preset, "budget_s": args.budget_s, "device": args.device,
                    "gpu": torch.cuda.get_device_name(0) if args.device == "cuda" else None, "stages": {}}
    roots, kinds = make_data(args, args.work / "data", size)
    report["data_s"] = round(time.monotonic() - t0, 1)
    runs = args.work / "runs"
    left = end - time.monotonic()
    stage_start = time.monotonic()
    share = 0.0
    for stage, stage_share in STAGE_SHARE.items():  # each stage ends at its cumulative share of what is left
        share += stage_share
        deadline = stage_start + left * share
        report["stages"][stage] = train_stage(stage, args, roots, runs, deadline, crop, size)
        print(json.dumps({stage: report["stages"][stage]}, default=float), flush=True)
    report["export"] = export(args, runs, size)
    report["calibration"] = calibrate_model_dir(roots, report["export"]["model_dir"])
    report["eval"], report["eval_kinds"] = evaluate(args, roots, kinds, runs)
    report["total_s"] = round(time.monotonic() - t0, 1)
    (args.out / "gpu_train.json").write_text(json.dumps(report, indent=1, default=float))
    print(json.dumps(report, indent=1, default=float))
    big = [str(p) for p in args.out.rglob("*") if p.is_file() and p.stat().st_size > MAX_FILE_BYTES]
    if big:
        print(f"gpu_train: files over 16 MB left behind: {big}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
