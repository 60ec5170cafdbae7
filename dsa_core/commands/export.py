"""``dsa export``: checkpoint -> model dir (backbone/head/fused ONNX, model.pt, manifest.json) [+ TensorRT engines].

    dsa export --checkpoint CKPT --out MODEL_DIR [--height H --width W] [--opset 17] [--batch 1]
    dsa export --out MODEL_DIR --build-engine --precision fp16 --build-only     # engines for an existing dir
"""
from __future__ import annotations

import argparse
import logging

from dsa_core.commands import UserError
from dsa_core.export.quantize import INT8_GRAPH, QUANTIZATIONS
from dsa_core.export.trt_msda_plugin import MSDA_CHOICES

import numpy as np

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--checkpoint", help="DSA checkpoint (loaded with weights_only=True)")
    src.add_argument("--preset", help="export a randomly initialised preset instead (benchmarks / smoke tests only)")
    parser.add_argument("--out", required=True, help="model directory to write (or to build engines for)")
    parser.add_argument("--height", type=int, help="fixed export height, the size the runtime resizes every image "
                        "to (default: the model's training scale, dsa_nano 256; 512 for the paper presets)")
    parser.add_argument("--width", type=int, help="fixed export width (default: twice the default height)")
    parser.add_argument("--batch", type=int, default=1, help="fixed batch size of the graphs")
    parser.add_argument("--opset", type=int, default=17)
    parser.add_argument("--graphs", nargs="+", default=["backbone", "head", "fused"], choices=["backbone", "head", "fused"])
    parser.add_argument("--with-scores", action="store_true", help="also output semantic scores [B,K,H,W]")
    parser.add_argument("--score-order", default=None,
                        help="where the head combines classes: mask2former (the default: masks upsampled first) or "
                             "classes_first (at mask resolution, then upsampled; faster, results/bench_score_order.md)")
    parser.add_argument("--msda-plugin", action="store_true",
                        help="also write <graph>.msda_plugin.onnx: MSDeformAttn as TensorRT's MultiscaleDeformableAttnPlugin_TRT "
                             "(TensorRT only; the standard graphs stay the fallback)")
    parser.add_argument("--quantize", choices=QUANTIZATIONS,
                        help=f"also write {INT8_GRAPH} (ONNX Runtime CPU, precision int8) with its accuracy change vs "
                             "fused.onnx in the manifest; without --checkpoint/--preset: for the existing MODEL_DIR")
    parser.add_argument("--quantize-eval-root", metavar="DIR",
                        help="with --quantize: also measure fp32 vs int8 AuPRC / FPR95 on this labelled anomaly set "
                             "(read like dsa eval reads it) and record them in the manifest")
    parser.add_argument("--quantize-eval-set", default="fs_laf",
                        choices=["fs_laf", "fs_static", "road_anomaly", "smiyc_ra21", "smiyc_ro21"],
                        help="format of --quantize-eval-root")
    parser.add_argument("--quantize-eval-max-images", type=int, help="only the first N frames of that set")
    parser.add_argument("--anomaly-threshold", type=float, default=None,
                        help="store a hand-picked threshold as the model's operating point (better: dsa calibrate)")
    parser.add_argument("--seed", type=int, default=0, help="seed for --preset initialisation")
    trt = parser.add_argument_group("TensorRT")
    trt.add_argument("--build-engine", action="store_true", help="build (or validate cached) TensorRT engines")
    trt.add_argument("--build-only", action="store_true", help="build the engines and exit (no test inference)")
    trt.add_argument("--precision", default="fp16", choices=["fp32", "fp16", "int8"])
    trt.add_argument("--engine-graph", default="split", choices=["split", "fused"])
    trt.add_argument("--calibration-images", help="int8: text file listing calibration images")
    trt.add_argument("--workspace-mb", type=int, default=2048)
    trt.add_argument("--engine-cache", help="engine cache dir (default MODEL_DIR/engines)")
    trt.add_argument("--force-rebuild", action="store_true")
    trt.add_argument("--msda", default=MSDA_CHOICES[0], choices=MSDA_CHOICES,
                     help="auto: the plugin graph when exported and the plugin is registered, else the decomposition")


def run(args: argparse.Namespace) -> int:
    if args.checkpoint or args.preset:
        import torch

        from dsa_core.export.onnx_export import default_export_size, export_model_dir

        if args.checkpoint:
            from dsa_core.checkpoint import model_from_checkpoint

            model, _ = model_from_checkpoint(args.checkpoint)
        else:
            from dsa_core import build_model

            torch.manual_seed(args.seed)
            model = build_model(args.preset)
            log.warning("exporting a RANDOMLY INITIALISED %s (no checkpoint): for benchmarks and tests only", args.preset)
        from dsa_core.model.scoring import DEFAULT_SCORE_ORDER, SCORE_ORDERS

        score_order = args.score_order or DEFAULT_SCORE_ORDER
        if score_order not in SCORE_ORDERS:
            raise UserError(f"--score-order must be one of {', '.join(SCORE_ORDERS)}, got {score_order!r}")
        default_h, default_w = default_export_size(model.cfg)
        height = default_h if args.height is None else args.height
        width = default_w if args.width is None else args.width
        if min(height, width) < 1:
            raise UserError(f"--height and --width must be >= 1, got {height}x{width}")
        if model.cfg.test_short_side and (height, width) != (default_h, default_w):
            log.warning("exporting %s at %dx%d, not at its training scale %dx%d: the runtime will feed it images "
                        "resized to the export size", model.cfg.name, height, width, default_h, default_w)
        manifest = export_model_dir(model, args.out, height, width, batch=args.batch, opset=args.opset,
                                    with_scores=args.with_scores, anomaly_threshold=args.anomaly_threshold,
                                    source_checkpoint=args.checkpoint, graphs=tuple(args.graphs),
                                    score_order=score_order, msda_plugin=args.msda_plugin)
        print(f"wrote {args.out}: {', '.join(manifest['files'])}")
    elif not (args.build_engine or args.quantize):
        raise UserError("give --checkpoint (or --preset), or --build-engine / --quantize for an existing model dir")
    if args.quantize_eval_root and not args.quantize:
        raise UserError("--quantize-eval-root needs --quantize")
    if args.quantize_eval_max_images is not None and args.quantize_eval_max_images < 1:
        raise UserError(f"--quantize-eval-max-images must be >= 1, got {args.quantize_eval_max_images}")
    if args.quantize:
        from dsa_core.export.quantize import quantize_model_dir

        manifest = quantize_model_dir(args.out, args.quantize, eval_root=args.quantize_eval_root,
                                      eval_key=args.quantize_eval_set, eval_max_images=args.quantize_eval_max_images)
        record = manifest["files"][INT8_GRAPH]["quantization"]
        print(f"wrote {INT8_GRAPH}: " + ", ".join(f"{k} {v:.4g}" for k, v in record.items() if isinstance(v, (int, float))))
        labelled = record.get("labelled_set")
        if labelled:
            print(f"{labelled['key']} ({labelled['frames']} frames): AuPRC fp32 {100 * labelled['fp32']['auprc']:.2f} % "
                  f"-> int8 {100 * labelled['int8']['auprc']:.2f} %, FPR95 fp32 {100 * labelled['fp32']['fpr95']:.2f} % "
                  f"-> int8 {100 * labelled['int8']['fpr95']:.2f} %, argmax agreement "
                  f"{100 * labelled['argmax_agreement']:.2f} %")
    if args.build_engine:
        from dsa_core.runtime import BackendUnavailable, create_backend

        try:
            backend = create_backend("tensorrt", args.out, device="cuda", precision=args.precision, graph=args.engine_graph,
                                     cache_dir=args.engine_cache, workspace_mb=args.workspace_mb,
                                     calibration_images=args.calibration_images, force_rebuild=args.force_rebuild,
                                     msda=args.msda)
        except BackendUnavailable as exc:
            print(f"dsa export: cannot build TensorRT engines here: {exc}")
            return 3
        print(f"TensorRT engines ready: {backend.describe()}")
        if not args.build_only:
            result = backend.infer(np.zeros((1, backend.height, backend.width, 3), np.uint8))
            print(f"smoke inference ok: {result.timings}")
    return 0
