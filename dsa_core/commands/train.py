"""``dsa train``: backbone pre-training (stand-in for ImageNet weights), DSA stage 1, stage 2 outlier exposure.

Hyper-parameters default to ``default_train_config(preset, stage)`` (paper values for dsa_tiny/dsa_large, the CPU
recipe for dsa_nano); the flags below override single fields. Multi-process: launch with
``torchrun --nproc_per_node N -m dsa_core.cli train ...`` (``--batch-size`` is the global batch).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from dsa_core.commands import UserError

def add_arguments(parser: argparse.ArgumentParser) -> None:
    from dsa_core.config import PRESETS

    parser.add_argument("--preset", default="dsa_nano", choices=sorted(PRESETS), help="model preset")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="model_set",
                        help="model config override as in `dsa info --set`, e.g. --set backbone.stem=conv "
                             "(pretrain and stage1; stage2 takes the model from --init)")
    parser.add_argument("--stage", required=True, choices=("pretrain", "stage1", "stage2"))
    parser.add_argument("--data", type=Path, required=True, help="Cityscapes root (leftImg8bit/, gtFine/)")
    parser.add_argument("--coco", type=Path,
                        help="COCO-format outlier pool (annotations/instances_train2017.json, train2017/): stage2, "
                             "pretrain with --pretrain-outlier-prob, validation with --anomaly-from-coco")
    parser.add_argument("--out", type=Path, required=True, help="run directory (last.pt, metrics.csv, ...)")
    parser.add_argument("--init", type=Path, help="start from this DSA checkpoint (stage2: the stage-1 run's last.pt)")
    parser.add_argument("--backbone-weights", type=Path,
                        help="frozen ViT weights (timm layout .safetensors/.pth), e.g. a pretrain run's backbone.safetensors")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    parser.add_argument("--max-steps", type=int, help="stop (with a checkpoint) after this many steps")
    parser.add_argument("--val-every", type=int, default=0, help="validate every N steps (0: only at the end)")
    parser.add_argument("--val-max-images", type=int, help="validate on at most this many val frames")
    parser.add_argument("--anomaly-set", metavar="KEY:DIR", type=_key_dir,
                        help="anomaly validation set read by dsa_core.data.anomaly_sets, e.g. road_anomaly:/data/RA")
    parser.add_argument("--anomaly-from-coco", action="store_true",
                        help="anomaly validation on the val split with one COCO object pasted per frame (needs --coco)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--no-amp", action="store_true", help="disable autocast on CUDA")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--threads", type=int,
                        help="torch intra-op threads per process (1 is much faster on a shared, loaded CPU)")
    parser.add_argument("--crop", type=int, nargs=2, metavar=("H", "W"))
    parser.add_argument("--base-size", type=int, nargs=2, metavar=("H", "W"), help="random-resize reference scale")
    parser.add_argument("--outlier-scale", type=float, nargs=2, metavar=("LO", "HI"),
                        help="stage 2: resize each pasted outlier by a log-uniform factor in [LO, HI]")
    parser.add_argument("--outlier-road-height", type=float, nargs=2, metavar=("LO", "HI"),
                        help="stage 2: an outlier on the road gets the pixel height of an object LO..HI times the "
                             "camera's height standing there (perspective; the top road row as horizon)")
    from dsa_core.train.config import FLAG_FIELDS, TrainConfig

    for name in FLAG_FIELDS:  # typed by the field's default; None = the preset's value
        parser.add_argument("--" + name.replace("_", "-"), type=type(getattr(TrainConfig(), name)), default=None)


def _key_dir(text: str) -> tuple[str, Path]:
    key, sep, root = text.partition(":")
    if not sep or not key or not root:
        raise argparse.ArgumentTypeError(f"expected KEY:DIR (e.g. road_anomaly:/data/RoadAnomaly), got {text!r}")
    return key, Path(root)


def run(args: argparse.Namespace) -> int:
    from dsa_core.config import get_config, parse_overrides
    from dsa_core.data.anomaly_sets import benchmark_samples
    from dsa_core.train.config import train_config_from_flags
    from dsa_core.train.distributed import cleanup_distributed, init_distributed
    from dsa_core.train.loop import RunSpec, run_training

    tcfg = train_config_from_flags(args.preset, args.stage, vars(args))
    model_overrides = parse_overrides(args.model_set)
    get_config(args.preset).replace(**model_overrides)  # an unknown --set field is refused here, not mid-run
    if args.threads is not None:
        if args.threads < 1:
            raise UserError(f"--threads must be >= 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    env = init_distributed(args.device)
    try:
        spec = RunSpec(
            preset=args.preset, data=args.data, out=args.out, coco=args.coco, init=args.init,
            backbone_weights=args.backbone_weights, resume=args.resume, max_steps=args.max_steps,
            val_every=args.val_every, val_max_images=args.val_max_images,
            anomaly_samples=(benchmark_samples(*args.anomaly_set, args.val_max_images)
                             if args.anomaly_set and env.is_main else None),
            anomaly_from_coco=args.anomaly_from_coco, progress=not args.no_progress,
            model_overrides=model_overrides,
        )
        summary = run_training(spec, tcfg, env)
    finally:
        cleanup_distributed()
    if env.is_main:
        print(json.dumps({k: summary[k] for k in ("step", "finished", "val", "seconds")}, default=float))
    return 0
