"""``dsa eval``: evaluate a checkpoint on Cityscapes val and the anomaly benchmarks (dsa_core.eval.evaluate).

Dataset roots: ``--root-for KEY=DIR`` wins; otherwise ``--root DIR/KEY`` if that folder exists (the layout
``dsa synth all --out DIR`` writes), else ``--root`` itself. Writes ``OUT/metrics.json``, ``OUT/table.md``,
``OUT/plots/<key>_{pr,roc}.png`` and ``OUT/overlays/<key>/*.png`` (paths in metrics.json are relative to OUT).
Exit status 1 if any frame failed (each is listed by name in metrics.json and the log).
"""
from __future__ import annotations

import argparse
import logging
import re
from pathlib import Path

from dsa_core.commands import UserError

log = logging.getLogger(__name__)

DATASET_KEYS = ("cityscapes", "fs_laf", "fs_static", "road_anomaly", "smiyc_ra21", "smiyc_ro21")


def _size(text: str) -> tuple[int, int] | str:
    if text in ("model", "native"):
        return text
    m = re.fullmatch(r"(\d+)[xX](\d+)", text)
    if m is None or min(int(m.group(1)), int(m.group(2))) < 1:
        raise argparse.ArgumentTypeError(f"expected model, native or HxW with positive integers (e.g. 512x1024), "
                                         f"got {text!r}")
    return int(m.group(1)), int(m.group(2))


def _root_for(text: str) -> tuple[str, Path]:
    key, sep, path = text.partition("=")
    if not sep or key not in DATASET_KEYS or not path:
        raise argparse.ArgumentTypeError(f"expected KEY=DIR with KEY in {DATASET_KEYS}, got {text!r}")
    return key, Path(path)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", type=Path, required=True, help="DSA checkpoint (.pt)")
    parser.add_argument("--dataset", nargs="+", choices=DATASET_KEYS, required=True, help="datasets to evaluate")
    parser.add_argument("--root", type=Path, help="datasets root (DIR/<key> if present, else DIR)")
    parser.add_argument("--root-for", type=_root_for, action="append", default=[], metavar="KEY=DIR",
                        help="root of one dataset (repeatable)")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--max-images", type=int, help="evaluate only the first N frames of each set")
    parser.add_argument("--eval-size", type=_size, default="model", metavar="model|native|HxW",
                        help="model: resize each image so that its short side is the scale the model was trained at "
                             "(dsa_nano: 256 px; the paper presets: native), as the node feeds it; native: each image "
                             "at its own resolution; HxW: every image resized to HxW (scores are always resized back "
                             "to label size)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--overlays", type=int, default=3, help="overlay images per dataset (default 3)")
    parser.add_argument("--threads", type=int, help="torch intra-op CPU threads (default: torch's choice; 1 is "
                        "often fastest on a loaded shared CPU)")
    parser.add_argument("--bootstrap", type=int, default=0, metavar="N",
                        help="resample the frames N times (e.g. 1000) for 95 %% intervals of AuPRC / FPR95 and the "
                             "share of resamples in which the model beats each baseline; 0 = off")
    parser.add_argument("--no-progress", action="store_true", help="disable progress bars")


def run(args: argparse.Namespace) -> int:
    from dsa_core.eval.evaluate import EvalOptions, dataset_roots, run_evaluation

    if args.max_images is not None and args.max_images < 1:
        raise UserError(f"--max-images must be >= 1, got {args.max_images}")
    if args.threads is not None:
        if args.threads < 1:
            raise UserError(f"--threads must be >= 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    roots = dataset_roots(args.dataset, args.root, dict(args.root_for))
    if args.bootstrap < 0:
        raise UserError(f"--bootstrap must be >= 0 resamples, got {args.bootstrap}")
    options = EvalOptions(eval_size=args.eval_size, max_images=args.max_images, device=args.device,
                          overlays=args.overlays, progress=not args.no_progress, bootstrap=args.bootstrap)
    payload = run_evaluation(args.checkpoint, roots, args.out, options)
    print((args.out / "table.md").read_text())
    for key, res in payload["datasets"].items():
        for failure in res["failures"]:
            log.error("%s: %s failed: %s", key, failure["name"], failure["error"])
    if payload["num_failures"]:
        log.error("%d frame(s) failed; see %s", payload["num_failures"], args.out / "metrics.json")
        return 1
    return 0
