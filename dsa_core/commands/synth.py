"""``dsa synth <format>``: write small seeded datasets in the real on-disk formats.

Formats are registered in ``FORMATS`` (the registration shape of ``dsa_core.commands``: a module with
``add_arguments(parser)`` and ``run(args)``); every format also gets ``--out``, ``--seed`` and ``--no-progress``.
``dsa synth all --out DIR`` runs every registered format whose module is present, each into ``DIR/<format>`` with its
defaults.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from dsa_core.commands import Registry, UserError, add_choice, command_parser, run_entry

log = logging.getLogger(__name__)

FORMATS: Registry = {
    "cityscapes": ("dsa_core.commands.synth_formats.cityscapes", "Cityscapes gtFine layout (train/val)"),
    "coco": ("dsa_core.commands.synth_formats.coco", "COCO instances_train2017.json + train2017 images"),
    "fs_laf": ("dsa_core.commands.synth_formats.fs_laf", "Fishyscapes Lost & Found val (labels + LAF images)"),
    "fs_static": ("dsa_core.commands.synth_formats.fs_static", "Fishyscapes Static val (overlays + Cityscapes val)"),
    "road_anomaly": ("dsa_core.commands.synth_formats.road_anomaly", "Road Anomaly (frame_list.json + frames/)"),
    "smiyc_ra21": ("dsa_core.commands.synth_formats.smiyc_ra21", "SMIYC RoadAnomaly21 (dataset_AnomalyTrack)"),
    "smiyc_ro21": ("dsa_core.commands.synth_formats.smiyc_ro21", "SMIYC RoadObstacle21 (dataset_ObstacleTrack)"),
    "bag": ("dsa_core.commands.synth_formats.bag", "rosbag2 synthetic drive (images, CameraInfo, GT topics)"),
}


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="output root directory")
    parser.add_argument("--seed", type=int, default=0, help="random seed (each file depends only on it)")
    parser.add_argument("--no-progress", action="store_true", help="disable progress bars")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_choice(parser, FORMATS, "format", extra=("all",))


def run(args: argparse.Namespace) -> int:
    if args.format != "all":
        return run_entry(FORMATS, args.format, f"dsa synth {args.format}", args.options, common=_common)
    top = command_parser("dsa synth all", "every available format, each into OUT/<format>")
    _common(top)
    common = top.parse_args(args.options)
    for name in FORMATS:
        argv = ["--out", str(common.out / name), "--seed", str(common.seed)] + (["--no-progress"] if common.no_progress else [])
        log.info("dsa synth %s -> %s", name, common.out / name)
        try:
            run_entry(FORMATS, name, f"dsa synth {name}", argv, common=_common)
        except UserError as exc:
            if "not available in this build" not in str(exc):
                raise
            log.warning("%s: skipped", exc)
    return 0
