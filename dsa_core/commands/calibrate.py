"""``dsa calibrate``: pick a model dir's anomaly threshold and minimum obstacle area and store them in its manifest.

    dsa calibrate --model MODEL_DIR --val data/cityscapes [--pool data/coco] [--val-bag DRIVE_BAG] [--target-fpr 0.01]
                  [--max-false-alerts-per-hour RATE] [--horizon-gate] [--out DIR]

Rules and why: dsa_core.eval.calibrate. ``--val`` is a Cityscapes-format root with a val split (in-distribution
frames only); ``--pool`` is the COCO-format training outlier pool (never an evaluation set); ``--val-bag`` is a
recorded drive with no obstacle on the road, on which the minimum areas count false alerts as the node raises them
(after its debounce). ``--dry-run`` prints
the values without writing the manifest; ``--out`` also writes calibration.json / calibration.md there.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from dsa_core.commands import UserError, mount_pitch_deg

log = logging.getLogger(__name__)


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from dsa_core.eval import calibrate as cal

    parser.add_argument("--model", type=Path, required=True, help="model directory written by `dsa export`")
    parser.add_argument("--val", type=Path, required=True, help="Cityscapes-format root with leftImg8bit/val + gtFine/val")
    parser.add_argument("--pool", type=Path,
                        help="COCO-format training outlier pool: the threshold that finds most of its objects wins")
    parser.add_argument("--val-bag", type=Path,
                        help="rosbag2 of an obstacle-free drive (e.g. dsa synth bag --calibration-drive): the "
                             "minimum area counts its frames with a false alert, after the node's debounce")
    parser.add_argument("--val-bag-topic", action="append", metavar="TOPIC",
                        help="camera topic of --val-bag to use (repeatable; default every camera in it)")
    parser.add_argument("--debounce-frames", type=int, metavar="N",
                        help="the node's debounce_frames for the --val-bag alerts (default: the node's default)")
    parser.add_argument("--target-fpr", type=_fraction, default=cal.DEFAULT_TARGET_FPR,
                        help=f"highest road-pixel false-positive rate a threshold may have; lower ones are tried "
                             f"too (default {cal.DEFAULT_TARGET_FPR})")
    parser.add_argument("--max-false-frame-rate", type=float, default=cal.DEFAULT_MAX_FALSE_FRAME_RATE,
                        metavar="RATE", help=f"share of in-distribution val frames that may still hold a false "
                                             f"obstacle at the operating point "
                                             f"(default {cal.DEFAULT_MAX_FALSE_FRAME_RATE})")
    parser.add_argument("--max-false-alerts-per-hour", type=float, metavar="RATE",
                        help="with --val-bag: count false alerts (confirmed tracks) per camera-hour of the drive instead "
                             "of frames, and allow at most RATE (replaces --max-false-frame-rate for the drive; a "
                             "low rate needs hours of drive to be shown, and the report says when the drive is "
                             "too short)")
    parser.add_argument("--area-floor", type=_fraction, default=cal.DEFAULT_AREA_FLOOR,
                        help=f"smallest minimum area, share of the image (default {cal.DEFAULT_AREA_FLOOR})")
    parser.add_argument("--area-cap", type=_fraction, default=cal.DEFAULT_AREA_CAP,
                        help=f"largest minimum area, share of the image (default {cal.DEFAULT_AREA_CAP})")
    parser.add_argument("--max-frames", type=int, help="use only the first N val frames")
    parser.add_argument("--ego-mask-bottom", type=float, default=0.0, metavar="FRACTION",
                        help="share of the val camera's bottom rows (val frames and val drive) showing the ego vehicle "
                             "(as the node's ego_mask_bottom_fraction): false components there are not counted")
    parser.add_argument("--mount-pitch-deg", type=mount_pitch_deg, default=0.0, metavar="DEG",
                        help="the val drive camera's pitch below the horizon (the node's mount_pitch_deg): where the "
                             "horizon gate puts the horizon when counting the drive's alerts with it")
    parser.add_argument("--horizon-gate", action="store_true",
                        help="choose the area counting the val drive's alerts with the node's horizon gate (default: "
                             "without it, so the rate also holds for a camera with a wrong pitch or no CameraInfo; "
                             "the report gives both counts either way)")
    parser.add_argument("--pool-min-size", type=int, help="pool images' minimum side (default: the training default)")
    parser.add_argument("--backend", default="onnxruntime,torch", help="backend preference list, comma separated")
    parser.add_argument("--threads", type=int, help="inference CPU threads (default: the library's choice)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the pasted pool objects")
    parser.add_argument("--out", type=Path, help="also write calibration.json and calibration.md here")
    parser.add_argument("--dry-run", action="store_true", help="compute and print, do not write the manifest")
    parser.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    from dsa_core.eval.calibrate import CalibrationOptions, calibrate, report_markdown, write_report
    from dsa_core.runtime.operating_point import write_operating_point

    if args.max_frames is not None and args.max_frames < 1:
        raise UserError(f"--max-frames must be >= 1, got {args.max_frames}")
    if args.threads is not None and args.threads < 1:
        raise UserError(f"--threads must be >= 1, got {args.threads}")
    if not 0.0 <= args.max_false_frame_rate < 1.0:
        raise UserError(f"--max-false-frame-rate must be in [0, 1), got {args.max_false_frame_rate}")
    if not 0.0 <= args.ego_mask_bottom <= 0.5:
        raise UserError(f"--ego-mask-bottom must be in [0, 0.5], got {args.ego_mask_bottom}")
    if args.debounce_frames is not None and args.debounce_frames < 1:
        raise UserError(f"--debounce-frames must be >= 1, got {args.debounce_frames}")
    if args.max_false_alerts_per_hour is not None and not 0.0 <= args.max_false_alerts_per_hour < float("inf"):
        raise UserError(f"--max-false-alerts-per-hour must be a rate >= 0, got {args.max_false_alerts_per_hour}")
    if ((args.val_bag_topic or args.debounce_frames is not None or args.max_false_alerts_per_hour is not None
         or args.mount_pitch_deg or args.horizon_gate) and args.val_bag is None):
        raise UserError("--val-bag-topic, --debounce-frames, --max-false-alerts-per-hour, --mount-pitch-deg and "
                        "--horizon-gate apply to --val-bag, which is not given")
    if args.val_bag is not None and not args.val_bag.exists():
        raise UserError(f"--val-bag {args.val_bag} does not exist")
    if args.area_floor > args.area_cap:
        raise UserError(f"--area-floor {args.area_floor} exceeds --area-cap {args.area_cap}")
    if not (args.model / "manifest.json").is_file():
        raise UserError(f"{args.model} is not a model dir (no manifest.json); run dsa export first")
    backends = tuple(b.strip() for b in args.backend.split(",") if b.strip())
    backend_options = None
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
        backend_options = {"onnxruntime": {"intra_op_threads": args.threads, "inter_op_threads": 1}}
    options = CalibrationOptions(target_fpr=args.target_fpr, max_false_frame_rate=args.max_false_frame_rate,
                                 area_floor=args.area_floor, area_cap=args.area_cap, max_frames=args.max_frames,
                                 pool_min_size=args.pool_min_size, seed=args.seed, progress=not args.no_progress,
                                 ego_mask_bottom=args.ego_mask_bottom, debounce_frames=args.debounce_frames,
                                 max_false_alerts_per_hour=args.max_false_alerts_per_hour,
                                 mount_pitch_deg=args.mount_pitch_deg, horizon_gate=args.horizon_gate)
    try:
        result = calibrate(args.model, args.val, args.pool, options, backends, backend_options, val_bag=args.val_bag,
                           val_bag_topics=args.val_bag_topic)
    except ValueError as exc:  # an unusable val drive (obstacles in it, wrong topic, damaged): one line
        raise UserError(str(exc)) from None
    text = report_markdown(args.model, result)
    if args.out:
        write_report(args.out, result, text)
    if not args.dry_run:
        write_operating_point(args.model, result)
        text += f"\nwritten to {args.model / 'manifest.json'} (operating_point)\n"
    print(text)
    return 0
